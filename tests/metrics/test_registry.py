"""Metric registry and `machop analyze`: names, directions, caching, errors."""

from __future__ import annotations

import json

import pytest
import torch

from machop.data import DatasetInfo, load_dataset
from machop.errors import ConfigError, DataError, ModelError
from machop.metrics import METRICS, MetricContext, compute_metrics, measure, resolve_metric_names
from machop.models import build_model


def test_directions_are_natural():
    assert METRICS["accuracy"].direction == "maximize"
    assert METRICS["bitops"].direction == "minimize"
    assert METRICS["memory_density"].direction == "maximize"
    assert METRICS["latency"].direction == "minimize" and METRICS["throughput"].direction == "maximize"


def test_unknown_metric_suggests():
    with pytest.raises(ConfigError, match="unknown metric 'acuracy'; did you mean 'accuracy'"):
        resolve_metric_names(["acuracy"])


def test_measure_matches_direct_evaluation_and_caches_groups():
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model("jsc-tiny", data.info)
    values, notes = measure(model, ["accuracy", "f1", "macs", "params"], dataset=data, split="test")
    from machop.train import evaluate
    direct = evaluate(model, data.test, 10)
    assert values["accuracy"] == pytest.approx(direct["accuracy"])
    assert values["f1"] == pytest.approx(direct["f1"])
    assert values["macs"] == 64 * 10 and values["params"] == 128 + 650 and notes == {}


def test_num_samples_limits_the_evaluation():
    data = load_dataset("digits")
    model = build_model("jsc-tiny", data.info)
    from machop.graph import Graph
    context = MetricContext(graph=Graph(model, data.test.x[:4]), dataset=data, split="test", num_samples=50)
    compute_metrics(["accuracy"], context)
    assert context.results["classification"]["num_samples"] == 50
    assert sum(row["support"] for row in context.results["classification"]["per_class"]) == 50


def test_metric_state_is_fresh_every_call():
    data = load_dataset("digits")
    model = build_model("jsc-tiny", data.info)
    first, _ = measure(model, ["accuracy"], dataset=data, split="test")
    second, _ = measure(model, ["accuracy"], dataset=data, split="test")
    assert first == second


def test_bad_inputs():
    data = load_dataset("digits")
    model = build_model("jsc-tiny", data.info)
    with pytest.raises(ConfigError, match="num_samples must be positive, got 0"):
        measure(model, ["accuracy"], dataset=data, num_samples=0)
    with pytest.raises(ModelError, match="has no example input"):
        measure(model, ["macs"])
    with pytest.raises(DataError, match="unknown split 'dev'"):
        measure(model, ["accuracy"], dataset=data, split="dev")
    values, _ = measure(build_model("jsc-tiny", DatasetInfo("jsc", 5, 16)), ["macs"],
                        example_input=torch.randn(2, 16))
    assert values == {"macs": 80}


def test_analyze_cli_writes_json(cli, tmp_path):
    result = cli("analyze", "jsc-three-linear-layers", "digits", "--metrics", "accuracy,macs,bitops,model_size",
                 "--split", "test", "--per-class", "--project-dir", tmp_path, "--project", "a")
    assert result.code == 0, result.stderr
    report = json.loads((tmp_path / "a" / "analysis.json").read_text())
    assert set(report["metrics"]) == {"accuracy", "macs", "bitops", "model_size"}
    assert report["metrics"]["macs"] == 64 * 16 + 16 * 16 + 16 * 10
    assert len(report["per_class"]) == 10 and len(report["confusion_matrix"]) == 10
    assert "Per layer" in result.stdout and "seq_blocks_2" in result.stdout and "Per class" in result.stdout


def test_analyze_applies_config_passes(cli, tmp_path):
    config = tmp_path / "q.toml"
    config.write_text('model = "jsc-three-linear-layers"\ndataset = "digits"\n'
                      "[passes.quantize]\nby = 'type'\n[passes.quantize.default.config]\nname = 'NA'\n"
                      "[passes.quantize.linear.config]\nname = 'integer'\ndata_in_width = 8\n"
                      "weight_width = 8\nbias_width = 8\n")
    result = cli("analyze", "-c", config, "--metrics", "bitops,average_bitwidth", "--project-dir", tmp_path)
    assert result.code == 0, result.stderr
    report = json.loads(next(tmp_path.rglob("analysis.json")).read_text())
    assert report["metrics"] == {"bitops": 1440 * 64, "average_bitwidth": 8.0}


@pytest.mark.parametrize("args, message", [
    (["--metrics", "acuracy"], "did you mean 'accuracy'"),
    (["--metrics", "accuracy", "--num-samples", "0"], "num_samples must be positive"),
    (["--metrics", "accuracy", "--split", "dev"], "unknown split 'dev'"),
    (["--metrics", ","], "no metric named"),
])
def test_analyze_bad_input(cli, tmp_path, args, message):
    result = cli("analyze", "jsc-tiny", "digits", *args, "--project-dir", tmp_path / "out")
    assert result.code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
