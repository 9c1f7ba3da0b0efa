"""Layer sensitivity: one layer quantized at a time, scores against the quantize pass and the cost analysis."""

from __future__ import annotations

import json

import pytest
import torch

from machop import api
from machop.config import load_config
from machop.data.batches import example_batch
from machop.errors import ConfigError
from machop.graph import Graph
from machop.metrics.sensitivity import (
    calibrated_frac_config,
    check_widths,
    half_frac_config,
    layer_sensitivity,
    weighted_nodes,
)
from machop.passes.calibrate import calibration_settings, collect_statistics, resolve_config
from machop.passes.complexity import complexity_analysis_pass
from machop.passes.quantize import quantize_transform_pass
from machop.passes.registry import PassData
from machop.runtime.classification import classification_metrics
from machop.runtime.predict import predict

WIDTHS = [2, 4, 8]


@pytest.fixture(scope="module")
def prepared(digits_project):
    """The trained digits project's model, dataset and graph."""
    config = load_config(None, model="jsc-three-linear-layers", dataset="digits",
                         load_name=str(digits_project.best_checkpoint))
    ready = api.prepare(config)
    return ready, Graph(ready.model, example_batch(ready.dataset.validation))


def accuracy(graph: Graph, split) -> float:
    logits, targets = predict(graph.module, split)
    return classification_metrics(logits, targets, 10)["accuracy"]


def alone(graph: Graph, node: str, config: dict) -> Graph:
    return quantize_transform_pass(graph, {"by": "name", "default": {"config": {"name": None}},
                                           node: {"config": config}})[0]


def test_each_score_is_the_accuracy_of_the_model_with_that_layer_alone_quantized(prepared):
    ready, graph = prepared
    split = ready.dataset.validation
    before = [p.clone() for p in graph.module.parameters()]
    result = layer_sensitivity(graph, split, 10, [8, 2, 4, 4])
    assert result.widths == WIDTHS and result.nodes == weighted_nodes(graph) == ["seq_blocks_2", "seq_blocks_4",
                                                                                 "seq_blocks_6"]
    assert result.base == accuracy(graph, split) and result.evaluations == 9
    for node in result.nodes:
        for width in WIDTHS:
            expected = accuracy(alone(graph, node, half_frac_config(graph, node, width)), split)
            assert result.scores[node][width] == expected  # the registry's accuracy, exactly
            assert result.drop(node, width) == result.base - expected
            assert result.fracs[node][width] == {"data_in": width // 2, "weight": width // 2}
    assert all(torch.equal(a, b) for a, b in zip(before, graph.module.parameters()))  # the base is untouched
    assert result.drop(result.nodes[0], 2) > 0.05  # 2-bit fixed point really loses accuracy


def test_bitops_saved_is_what_the_cost_analysis_counts(prepared):
    _, graph = prepared
    result = layer_sensitivity(graph, prepared[0].dataset.validation.head(16), 10, WIDTHS)
    base_bitops = complexity_analysis_pass(graph.copy())[1]["totals"]["bitops"]
    for node in result.nodes:
        for width in WIDTHS:
            quantized = alone(graph, node, half_frac_config(graph, node, width))
            bitops = complexity_analysis_pass(quantized)[1]["totals"]["bitops"]
            assert result.bitops_saved(node, width) == base_bitops - bitops == \
                result.macs[node] * (32 * 32 - width * width)


def test_calibrated_frac_widths_are_the_calibration_s_choices(prepared):
    ready, graph = prepared
    settings = calibration_settings({"method": "max", "num_samples": 64})
    data = PassData(ready.dataset, batch_size=32, seed=0)
    result = layer_sensitivity(graph, ready.dataset.validation, 10, [3],
                               node_config=calibrated_frac_config(graph, settings, data), frac="auto")
    calibration = collect_statistics(graph, {n: ("data_in", "weight") for n in result.nodes}, settings, data)
    for node in result.nodes:
        auto = {"name": "integer", "data_in_width": 3, "data_in_frac_width": "auto",
                "weight_width": 3, "weight_frac_width": "auto"}
        resolved = resolve_config(graph, {"by": "name", "default": {"config": {"name": None}},
                                          node: {"config": auto}}, calibration)[0][node]["config"]
        assert result.fracs[node][3] == {"data_in": resolved["data_in_frac_width"],
                                         "weight": resolved["weight_frac_width"]}
        assert result.scores[node][3] == accuracy(alone(graph, node, resolved), ready.dataset.validation)


@pytest.mark.parametrize("widths, message", [([], "at least one width"), ([0], "got 0"), ([33], "got 33"),
                                             (["4"], "got '4'"), ([True], "got True")])
def test_widths_must_be_integers_of_a_fixed_point_format(widths, message):
    with pytest.raises(ConfigError, match=message):
        check_widths(widths)


def test_api_writes_json_and_heatmap_and_reads_widths_from_the_search_space(digits_project, tmp_path):
    search = {"search_space": {"name": "graph/quantize/mixed_precision_ptq",
                               "seed": {"linear": {"config": {"name": ["integer"], "data_in_width": [4, 8],
                                                              "weight_width+weight_frac_width": [[3, 1], [8, 4]]}}}}}
    config = load_config(None, model="jsc-three-linear-layers", dataset="digits", search=search,
                         load_name=str(digits_project.best_checkpoint), project_dir=str(tmp_path), project="s")
    assert api.search_space_widths(config) == [3, 4, 8]
    outcome = api.sensitivity(config, frac_width="NA")
    record = json.loads(outcome.json_path.read_text())
    assert outcome.json_path == tmp_path / "s" / "analysis" / "sensitivity.json"
    assert record["widths"] == [3, 4, 8] and record["frac_width"] == "width // 2"
    assert [row["node"] for row in record["nodes"]] == outcome.result.nodes
    assert record["nodes"][0]["drop"]["3"] == outcome.result.drop(outcome.result.nodes[0], 3)
    assert outcome.png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_prints_the_table_and_calibrates_by_default(cli, digits_project, tmp_path):
    result = cli("analyze", "jsc-three-linear-layers", "digits", "--load", digits_project.best_checkpoint,
                 "--sensitivity", "--widths", "2,4", "--project-dir", tmp_path, "--project", "c")
    assert result.code == 0, result.stderr
    assert "frac auto (mse, weights per tensor, on train)" in " ".join(result.stdout.split())
    assert "seq_blocks_2" in result.stdout and "2 bits" in result.stdout and "Most sensitive at 2 bits" in result.stdout
    record = json.loads((tmp_path / "c" / "analysis" / "sensitivity.json").read_text())
    assert record["frac_width"].startswith("auto") and record["widths"] == [2, 4]
