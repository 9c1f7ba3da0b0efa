# Every target creates and reuses the local virtual environment in .venv.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
MACHOP  := $(VENV)/bin/machop
STAMP   := $(VENV)/.machop-installed
DEMO_DIR ?= outputs

.PHONY: install demo test bench clean browser

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned, so nothing later resolves a different (CUDA) build.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

DEMO_CONFIG  := configs/demo_digits.toml
DEMO_PROJECT := $(DEMO_DIR)/demo-digits

demo: install
	$(MACHOP) train --config $(DEMO_CONFIG) --project-dir $(DEMO_DIR)
	$(MACHOP) test --config $(DEMO_CONFIG) --project-dir $(DEMO_DIR) --load $(DEMO_PROJECT)/checkpoints/best.ckpt
	$(PY) -m machop.demo $(DEMO_PROJECT)
	$(MACHOP) search --config configs/quickstart.toml --project-dir $(DEMO_DIR)

# CI renders report.html in headless Chromium; elsewhere that test is skipped when it is absent.
browser:
	@if [ "$$CI" = "true" ] && ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed; the HTML rendering test will be skipped"; \
	fi

test: install browser
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/train_epoch.py
	$(PY) benchmarks/fake_quant.py
	$(PY) benchmarks/latency_ranking.py
	$(PY) benchmarks/sampler_efficiency.py
	$(PY) benchmarks/search_trial_overhead.py
	$(PY) benchmarks/storage_cost.py
	$(PY) benchmarks/search_workers.py
	$(PY) benchmarks/search_memory.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
