"""`machop analyze` of cost-only metrics works from a dataset's static info when its files are absent."""

from __future__ import annotations

import json

import pytest

from machop import api
from machop.config import load_config
from machop.data.registry import DATASETS, static_info

STATIC_LINE = "used the dataset's static shape only"


@pytest.fixture
def no_downloads(monkeypatch):
    """Fail the test if a loader tries the network (downloads stay allowed by MACHOP_OFFLINE)."""
    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.delenv("MACHOP_OFFLINE", raising=False)
    monkeypatch.setattr("sklearn.datasets.fetch_openml", refuse)
    monkeypatch.setattr("urllib.request.urlopen", refuse)


def analyze_cli(cli, tmp_path, *args):
    empty = tmp_path / "no-data"
    empty.mkdir()
    return cli("analyze", *args, "--data-dir", empty, "--project-dir", tmp_path / "out")


def test_vgg7_cifar10_costs_without_the_cifar10_files(cli, tmp_path, no_downloads):
    result = analyze_cli(cli, tmp_path, "vgg7", "cifar10", "--metrics", "flops,params,bitops")
    assert result.code == 0, result.stderr
    assert "1,233,932,288" in result.stdout and "14,029,450" in result.stdout
    lines = [line for line in result.stdout.splitlines() if STATIC_LINE in line]
    assert len(lines) == 1 and "input 3x32x32, 10 classes" in lines[0]
    saved = json.loads((tmp_path / "out" / "vgg7_classification_cifar10" / "analysis.json").read_text())
    assert saved["metrics"]["flops"] == 1_233_932_288 and saved["metrics"]["params"] == 14_029_450
    assert STATIC_LINE in saved["static_only"]


def test_jsc_costs_without_the_jsc_file(cli, tmp_path, no_downloads):
    result = analyze_cli(cli, tmp_path, "jsc-three-linear-layers", "jsc", "--metrics", "macs,flops")
    assert result.code == 0, result.stderr
    assert "│ macs   │   592 │" in result.stdout and "│ flops  │ 1,184 │" in result.stdout
    assert result.stdout.count(STATIC_LINE) == 1 and "16 features, 5 classes" in result.stdout


def test_metrics_that_need_samples_still_name_the_missing_file(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("MACHOP_OFFLINE", "1")
    result = analyze_cli(cli, tmp_path, "jsc-three-linear-layers", "jsc", "--metrics", "macs,accuracy")
    assert result.code == 2
    assert result.stderr.count("\n") == 1 and "JSC data not found" in result.stderr
    assert STATIC_LINE not in result.stdout


def test_api_reports_static_analysis_and_uses_real_data_when_present(tmp_path, no_downloads):
    config = load_config(None, model="jsc-three-linear-layers", dataset="jsc",
                         data_dir=str(tmp_path / "none"), project_dir=str(tmp_path / "out"))
    static = api.analyze(config, ["macs", "flops", "params"])
    assert static.metrics == {"macs": 592, "flops": 1184, "params": 2 * 16 + 16 * 16 + 16 + 16 * 16 + 16
                              + 16 * 5 + 5}
    assert STATIC_LINE in static.static_only
    present = api.analyze(load_config(None, model="jsc-three-linear-layers", dataset="toy-tiny",
                                      project_dir=str(tmp_path / "out")), ["macs"])
    assert present.static_only is None and present.metrics["macs"] == 4 * 16 + 16 * 16 + 16 * 2


@pytest.mark.parametrize("name", ["digits", "toy-tiny"])
def test_static_info_equals_the_info_of_the_loaded_dataset(name):
    from machop.data import load_dataset

    dataset = load_dataset(name)
    assert static_info(name) == dataset.info
    assert tuple(dataset.test.x.shape[1:]) == dataset.info.input_shape


def test_every_dataset_declares_its_static_info():
    shapes = {name: static_info(name).input_shape for name in DATASETS}
    assert shapes == {"digits": (1, 8, 8), "jsc": (16,), "cifar10": (3, 32, 32), "toy-tiny": (4,)}
