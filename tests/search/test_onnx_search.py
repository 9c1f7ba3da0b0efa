"""A search with a real latency objective (ONNX Runtime) on VGG7, and the report's proxy fidelity."""

from __future__ import annotations

import math

import pytest
from tests.helpers.search import load

pytest.importorskip("onnxruntime")

CONFIG = """
model = "vgg7"
dataset = "cifar10"
batch_size = 16
seed = 0

[model_args]
widths = [8, 16, 32]
hidden = 32

[search.search_space]
name = "graph/quantize/mixed_precision_ptq"
setup = { by = "type", share_by_type = true }
[search.search_space.seed.default.config]
name = ["NA"]
[search.search_space.seed.conv2d.config]
name = ["integer"]
data_in_width = [4, 8]
weight_width = [4, 8]
[search.search_space.seed.linear.config]
name = ["integer"]
data_in_width = [8]
weight_width = [8]

[search.strategy]
name = "optuna"
[search.strategy.sw_runner.basic_evaluation]
data_loader = "val_dataloader"
[search.strategy.hw_runner.bitops]
[search.strategy.hw_runner.onnx]
[search.strategy.setup]
sampler = "bruteforce"
n_trials = 3
sum_scaled_metrics = false
[search.strategy.metrics]
accuracy.scale = 1.0
accuracy.direction = "maximize"
onnx_latency.scale = 1.0
onnx_latency.direction = "minimize"
"""


def test_vgg7_search_with_onnx_latency_then_report_shows_proxy_fidelity(cli, tmp_path):
    from tests.helpers.cifar10 import write_batches

    write_batches(tmp_path / "data" / "cifar-10-batches-py")
    config = tmp_path / "search.toml"
    config.write_text(CONFIG)
    result = cli("search", "--config", config, "--project-dir", tmp_path, "--project", "v",
                 "--data-dir", tmp_path / "data")
    assert result.code == 0, result.stderr
    study = load(tmp_path / "v")
    assert [o.name for o in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    trials = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(trials) == 3
    for trial in trials:
        metrics = trial.user_attrs["machop_metrics"]
        assert metrics["onnx_latency"] > 0 and math.isfinite(metrics["onnx_latency"])
        assert trial.values[1] == metrics["onnx_latency"] and metrics["onnx_size"] > 0
    report = cli("report", tmp_path / "v")
    assert report.code == 0, report.stderr
    out = report.stdout
    assert "Proxy fidelity" in out and "onnx_latency" in out and "(n=3)" in out
    table = out[out.index("Proxy fidelity"):]
    assert "bitops" in table and "proxy_fidelity_json" in out
