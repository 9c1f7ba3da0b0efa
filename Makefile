# Every target creates and reuses the local virtual environment in .venv.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
MACHOP  := $(VENV)/bin/machop
STAMP   := $(VENV)/.machop-installed
DEMO_DIR ?= outputs

.PHONY: install demo test bench clean browser postgres experiments

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned, so nothing later resolves a different (CUDA) build.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,deploy]'
	touch $(STAMP)

DEMO_CONFIG  := configs/demo_digits.toml
DEMO_SEEDS   ?= 5

demo: install
	$(PY) -m machop.cli.demo --config $(DEMO_CONFIG) --seeds $(DEMO_SEEDS) --project-dir $(DEMO_DIR)
	$(MACHOP) search --config configs/quickstart.toml --project-dir $(DEMO_DIR)

EXP_DIR ?= outputs/experiments
EXP_THREADS ?= 1
FIGURES := docs/figures
EXP_PAGE := $(PY) -m machop.search.report.experiments_page

# docs/experiments.md: experiments 1-4, 6 and 7 on digits from scratch, each one `machop` command with
# EXP_THREADS torch threads (one by default: these models are too small for intra-op threads to pay
# on a busy CPU), timed; then the figures are copied to docs/figures/ and every results block of the
# page is rewritten from the outputs, so the page quotes exactly what this run gave.
experiments: install
	rm -rf $(EXP_DIR) && mkdir -p $(EXP_DIR) $(FIGURES)
	$(EXP_PAGE) run $(EXP_DIR) --threads $(EXP_THREADS)
	$(EXP_PAGE) write $(EXP_DIR) --page docs/experiments.md --figures $(FIGURES)
	@ls -l $(FIGURES)

# CI renders report.html in headless Chromium; elsewhere that test is skipped when it is absent.
browser:
	@if [ "$$CI" = "true" ] && ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed; the HTML rendering test will be skipped"; \
	fi

# CI runs the multi-worker tests against a real PostgreSQL server the tests start themselves.
postgres:
	@if [ "$$CI" = "true" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && apt-get install -y -qq postgresql >/dev/null) \
		|| echo "postgresql could not be installed; the PostgreSQL worker tests will be skipped"; \
	fi

# Two pytest workers (one per core on CI's 2-core machines); a test file runs whole on one worker,
# so its module fixtures are built once. TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= 2

test: install browser postgres
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

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
