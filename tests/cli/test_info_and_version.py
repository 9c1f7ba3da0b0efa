"""`machop info` lists the registries without importing torch; `machop --version`."""

from __future__ import annotations

import importlib.metadata
import inspect
import subprocess
import sys

import pytest

HEAVY = ("torch", "torch.fx", "torchmetrics", "lightning", "optuna", "sklearn", "numpy", "scipy",
         "matplotlib")


@pytest.mark.parametrize("topic", ["models", "datasets", "metrics", "all"])
def test_info_imports_no_heavy_module(topic):
    code = ("import sys\n"
            "from machop.cli.app import run\n"
            f"code = run(['info', {topic!r}])\n"
            f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "print('HEAVY', code, heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "HEAVY 0 []"


def test_info_lists_every_entry_with_its_description(cli):
    from machop.data.registry import DATASETS
    from machop.metrics.registry import METRICS
    from machop.models.registry import MODELS

    stdout = cli("info", "all").stdout
    for registry in (MODELS, DATASETS, METRICS):
        assert all(name in stdout for name in registry)
    assert MODELS["vgg7"].description in stdout
    assert DATASETS["cifar10"].description in stdout


def test_model_descriptions_are_the_factories_docstrings():
    from machop.models.registry import MODELS

    for entry in MODELS.values():
        assert entry.description == inspect.getdoc(entry.factory()).splitlines()[0]


def test_version_comes_from_the_package_metadata(cli):
    result = cli("--version")
    assert result.code == 0
    assert result.stdout == f"machop {importlib.metadata.version('machop')}\n"
