"""The onnx metric group: real ONNX Runtime latency, throughput and size, from analyze and a runner."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnxruntime")

from machop.data.registry import load_dataset  # noqa: E402
from machop.graph import Graph  # noqa: E402
from machop.metrics.registry import MetricContext, compute_metrics  # noqa: E402
from machop.models.registry import build_model  # noqa: E402
from machop.search.runners import RunContext, build_runners  # noqa: E402


def test_onnx_metrics_from_the_registry_and_the_hw_runner():
    digits = load_dataset("digits")
    torch.manual_seed(0)
    graph = Graph(build_model("jsc-tiny", digits.info, {}).eval(), digits.validation.x[:8].float())
    context = MetricContext(graph=graph, dataset=digits, batch_size=32)
    values = compute_metrics(["onnx_latency", "onnx_throughput", "onnx_size"], context)
    assert values["onnx_latency"] > 0 and values["onnx_throughput"] > 0
    from machop.export.onnx.build import build_onnx

    assert values["onnx_size"] == len(build_onnx(graph.module, graph.example_input).serialized())
    assert context.results["onnx"]["threads"] == torch.get_num_threads()
    runner, = build_runners({}, {"onnx": {}})
    metrics = runner(graph, RunContext(dataset=digits, train_defaults={"batch_size": 16}), {})
    assert set(metrics) == {"onnx_latency", "onnx_throughput", "onnx_size"}
