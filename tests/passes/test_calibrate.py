"""Calibrated frac widths ("auto"): settings, statistics, the resolved config, MASE's "NA" unchanged,
and the accuracy properties of the methods on a trained model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from machop import api
from machop.data import DatasetInfo
from machop.data.batches import example_batch
from machop.data.dataset import Dataset, Split
from machop.errors import PassError
from machop.graph import Graph
from machop.models import build_model
from machop.passes import PassData, apply_passes, quantize_transform_pass
from machop.passes.calibrate import (
    calibrated_quantize_args,
    calibration_settings,
    collect_statistics,
    resolve_config,
    sequential_config,
    watched_operands,
)
from machop.quant.calibration import choose_channel_fracs, choose_frac
from machop.train.checkpoint import read_checkpoint
from machop.train.evaluate import evaluate

JSC = DatasetInfo("jsc", 5, 16)
LINEARS = ("seq_blocks_2", "seq_blocks_4", "seq_blocks_6")


def dataset(sizes: tuple[int, int, int] = (300, 50, 50), seed: int = 0) -> Dataset:
    """A JSC-shaped dataset generated in code (heavy-tailed features, so ranges matter)."""
    generator = torch.Generator().manual_seed(seed)
    splits = []
    for size in sizes:
        x = torch.randn(size, 16, generator=generator) * torch.linspace(0.1, 8, 16)
        splits.append(Split(x, torch.randint(0, 5, (size,), generator=generator)))
    return Dataset(JSC, *splits)


def graph_of(seed: int = 0) -> Graph:
    torch.manual_seed(seed)
    return Graph(build_model("jsc-three-linear-layers", JSC).eval(), torch.randn(8, 16))


def linear_args(width: int = 4, frac="auto", calibration: dict | None = None, **extra) -> dict:
    args = {"by": "type", "default": {"config": {"name": None}},
            "linear": {"config": {"name": "integer", "data_in_width": width, "data_in_frac_width": frac,
                                  "weight_width": width, "weight_frac_width": frac, **extra}}}
    if calibration is not None:
        args["calibration"] = calibration
    return args


def linear_inputs(graph: Graph, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input each Linear of the float graph sees for `x`."""
    seen = {}
    hooks = [graph.submodule(graph.node(name)).register_forward_hook(
        lambda module, inputs, output, name=name: seen.__setitem__(name, inputs[0].detach()))
        for name in LINEARS]
    with torch.no_grad():
        graph.module(x)
    for hook in hooks:
        hook.remove()
    return seen


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


def test_settings_defaults_and_values():
    settings = calibration_settings(None)
    assert (settings.method, settings.granularity, settings.split, settings.percentile) == \
        ("mse", "tensor", "train", 99.99)
    assert settings.samples_used(5000, 128) == 1024 and settings.samples_used(300, 128) == 300
    table = {"method": "percentile", "granularity": "channel", "split": "val", "num_batches": 2,
             "percentile": 99, "seed": 3, "sample_size": 10, "activation_granularity": "tensor"}
    settings = calibration_settings(table)
    assert (settings.split, settings.num_batches, settings.seed, settings.sample_size) == ("validation", 2, 3, 10)
    assert settings.samples_used(300, 128) == 256 and settings.samples_used(200, 128) == 200


@pytest.mark.parametrize("table, fragment", [
    ({"method": "minmax"}, "method = 'minmax' is invalid; did you mean 'max'? (valid: max, percentile, mse)"),
    ({"granularity": "row"}, "granularity = 'row' is invalid"),
    ({"activation_granularity": "channel"}, "activations (data_in, data_out) are calibrated per tensor"),
    ({"percentile": 0}, "percentile must be a number in (0, 100]"),
    ({"percentile": 100.01}, "percentile must be a number in (0, 100]"),
    ({"percentile": "99"}, "percentile must be a number in (0, 100]"),
    ({"num_samples": 0}, "num_samples must be a positive integer, got 0"),
    ({"num_samples": -5}, "num_samples must be a positive integer"),
    ({"num_samples": True}, "num_samples must be a positive integer"),
    ({"num_batches": 1.5}, "num_batches must be a positive integer"),
    ({"num_samples": 10, "num_batches": 1}, "both num_samples and num_batches"),
    ({"split": "holdout"}, "split = 'holdout' is not a split"),
    ({"seed": -1}, "seed must be an integer >= 0"),
    ({"sample_size": 0}, "sample_size must be a positive integer"),
    ({"methd": "mse"}, "unknown key 'methd'; did you mean 'method'?"),
    ([1], "must be a table"),
])
def test_bad_settings_are_one_line_pass_errors(table, fragment):
    with pytest.raises(PassError) as info:
        calibration_settings(table)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert "passes.quantize.calibration" in str(info.value)


def test_settings_are_checked_against_the_data():
    data = PassData(dataset((300, 50, 0)), batch_size=64)
    assert len(calibration_settings({"num_samples": 300}).check_data(data)) == 300
    with pytest.raises(PassError, match="num_samples = 301 is larger than the train split"):
        calibration_settings({"num_samples": 301}).check_data(data)
    with pytest.raises(PassError, match=r"num_batches = 6 is more than the train split holds \(300 samples = 5"):
        calibration_settings({"num_batches": 6}).check_data(data)
    with pytest.raises(PassError, match="the test split is empty"):
        calibration_settings({"split": "test"}).check_data(data)
    with pytest.raises(PassError, match="the test split is empty"):
        apply_passes(graph_of(), [("quantize", linear_args(calibration={"split": "test"}))], data=data)


# --------------------------------------------------------------------------------------------
# Statistics and the resolved config
# --------------------------------------------------------------------------------------------


def test_auto_becomes_the_chosen_fracs_of_the_float_graph():
    graph, data = graph_of(), dataset()
    settings = calibration_settings({"num_samples": 200, "seed": 5})
    args = linear_args(5, calibration={"num_samples": 200, "seed": 5})
    resolved = calibrated_quantize_args(graph, args, PassData(data, batch_size=64))
    # The calibration samples: the first 200 of a permutation seeded by `seed`.
    order = torch.randperm(300, generator=torch.Generator().manual_seed(5))[:200]
    inputs = linear_inputs(graph, data.train.x[order])
    for name in LINEARS:
        config = resolved[name]["config"]
        assert config["data_in_frac_width"] == choose_frac(inputs[name], 5, True, "mse")
        weight = graph.submodule(graph.node(name)).weight
        assert config["weight_frac_width"] == choose_frac(weight, 5, True, "mse")
    assert resolved["by"] == "name" and resolved["calibration"] == args["calibration"]
    assert settings.method == "mse"
    # The pass records the explicit config, so the graph rebuilds from it without data.
    quantized, _ = apply_passes(graph, [("quantize", args)], data=PassData(data, batch_size=64))
    assert quantized.passes == [("quantize", resolved)]
    rebuilt, _ = apply_passes(graph, quantized.passes)
    x = data.test.x
    assert torch.equal(rebuilt.module(x), quantized.module(x))


def test_per_channel_weights_and_biases_and_per_tensor_inputs():
    graph, data = graph_of(), dataset()
    args = linear_args(4, calibration={"granularity": "channel", "method": "max"},
                       bias_width=8, bias_frac_width="auto")
    statistics = collect_statistics(graph, watched_operands(graph, args),
                                    calibration_settings(args["calibration"]), PassData(data))
    resolved, chosen = resolve_config(graph, args, statistics)
    for name in LINEARS:
        module = graph.submodule(graph.node(name))
        config = resolved[name]["config"]
        assert config["weight_frac_width"] == list(choose_channel_fracs(module.weight, 4, True, "max"))
        assert config["bias_frac_width"] == list(choose_channel_fracs(module.bias, 8, True, "max"))
        assert len(config["weight_frac_width"]) == module.out_features
        assert isinstance(config["data_in_frac_width"], int)
        assert chosen[f"{name}/weight_frac_width"] == config["weight_frac_width"]
    quantized, _ = quantize_transform_pass(graph, resolved)
    precision = quantized.meta["seq_blocks_4"].precision
    assert precision["weight"]["frac_width"] == resolved["seq_blocks_4"]["config"]["weight_frac_width"]
    assert isinstance(precision["data_in"]["frac_width"], int)


def test_calibration_is_seeded_and_bounded():
    graph, data = graph_of(), dataset((600, 50, 50))
    args = linear_args(3, calibration={"num_samples": 100, "sample_size": 64})
    first = calibrated_quantize_args(graph, args, PassData(data))
    assert calibrated_quantize_args(graph, args, PassData(data)) == first
    statistics = collect_statistics(graph, watched_operands(graph, args),
                                    calibration_settings(args["calibration"]), PassData(data))
    observer = statistics.observers["seq_blocks_2"]["data_in"]
    assert observer.count == 1600 and observer.sample.numel() == 64 and statistics.samples == 100
    # Other samples (another seed) give other statistics; the run's seed is the default.
    other = collect_statistics(graph, watched_operands(graph, args), calibration_settings(args["calibration"]),
                               PassData(data, seed=9))
    assert other.observers["seq_blocks_2"]["data_in"].largest(True) != observer.largest(True)


def test_relu_inputs_are_calibrated_unsigned_and_add_operands_both_observed():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 16) * 0.2)
            self.skip = nn.Linear(16, 4)

        def forward(self, x):
            return torch.add(F.relu(F.linear(x, self.weight)), self.skip(x) * 10)

    torch.manual_seed(0)
    graph, data = Graph(Net().eval(), torch.randn(8, 16)), dataset()
    auto = {"name": "integer", "data_in_width": 6, "data_in_frac_width": "auto"}
    args = {"by": "type", "default": {"config": {"name": None}}, "relu": {"config": auto},
            "add": {"config": auto}, "linear": {"config": {**auto, "weight_width": 6, "weight_frac_width": "auto"}}}
    resolved = calibrated_quantize_args(graph, args, PassData(data, batch_size=300))
    x = data.train.x[torch.randperm(300, generator=torch.Generator().manual_seed(0))]
    with torch.no_grad():
        pre = F.linear(x, graph.module.weight)
        both = torch.cat([F.relu(pre).flatten(), (graph.module.skip(x) * 10).flatten()])
    assert [graph.meta[name].kind for name in ("linear", "relu", "skip", "add")] == \
        ["linear", "relu", "linear", "add"]
    assert resolved["relu"]["config"]["data_in_frac_width"] == choose_frac(pre, 6, False, "mse")
    assert resolved["add"]["config"]["data_in_frac_width"] == choose_frac(both, 6, True, "mse")
    assert resolved["linear"]["config"]["weight_frac_width"] == choose_frac(graph.module.weight, 6, True, "mse")
    assert resolved["skip"]["config"]["weight_frac_width"] == \
        choose_frac(graph.module.skip.weight, 6, True, "mse")
    quantize_transform_pass(graph, resolved)  # the explicit config builds


def test_outputs_and_functional_weights_per_channel():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 16) * torch.tensor([[0.01], [0.1], [1.0], [3.0]]))

        def forward(self, x):
            return F.linear(x, self.weight)

    torch.manual_seed(0)
    graph, data = Graph(Net().eval(), torch.randn(8, 16)), dataset()
    config = {"name": "integer", "data_in_width": 8, "weight_width": 4, "weight_frac_width": "auto",
              "data_out_width": 6, "data_out_frac_width": "auto"}
    args = {"by": "type", "default": {"config": {"name": None}}, "linear": {"config": config},
            "calibration": {"granularity": "channel", "method": "max"}}
    resolved = calibrated_quantize_args(graph, args, PassData(data))
    with torch.no_grad():
        out = F.linear(data.train.x, graph.module.weight)
    entry = resolved["linear"]["config"]
    assert entry["data_out_frac_width"] == choose_frac(out, 6, True, "max")
    assert entry["weight_frac_width"] == list(choose_channel_fracs(graph.module.weight, 4, True, "max"))
    assert len(set(entry["weight_frac_width"])) == 4  # ranges 0.01..3: four binary points
    quantized, _ = quantize_transform_pass(graph, resolved)
    assert quantized.meta["linear"].precision["weight"]["frac_width"] == entry["weight_frac_width"]
    with pytest.raises(PassError, match="3 frac widths for 4 output channels"):
        quantize_transform_pass(graph, {**resolved, "linear": {"config": {**entry, "weight_frac_width": [1, 2, 3]}}})


def test_auto_without_data_is_a_pass_error_naming_the_node():
    graph = graph_of()
    with pytest.raises(PassError, match="node 'seq_blocks_2': frac_width = \"auto\" is chosen by calibration"):
        apply_passes(graph, [("quantize", linear_args())])
    with pytest.raises(PassError, match="'data_in_frac_width': \"auto\" is chosen by calibration"):
        quantize_transform_pass(graph, linear_args())
    # "auto" only where nothing is quantized needs no data.
    args = {"by": "type", "default": {"config": {"name": None, "data_in_frac_width": "auto"}}}
    assert apply_passes(graph, [("quantize", args)])[0].passes == [("quantize", args)]


def test_sequential_calibration_sees_the_earlier_layers_quantized():
    graph, data = graph_of(), dataset()
    args = linear_args(3, calibration={"num_samples": 200})
    settings = calibration_settings(args["calibration"])
    sequential, _ = sequential_config(graph, args, settings, PassData(data))
    at_once = calibrated_quantize_args(graph, args, PassData(data))
    assert sequential["seq_blocks_2"] == at_once["seq_blocks_2"]  # nothing before the first layer
    partly, _ = quantize_transform_pass(graph, {"by": "name", "default": {"config": {"name": None}},
                                                "seq_blocks_2": sequential["seq_blocks_2"]})
    order = torch.randperm(300, generator=torch.Generator().manual_seed(0))[:200]
    seen = linear_inputs(partly, data.train.x[order])["seq_blocks_4"]
    assert sequential["seq_blocks_4"]["config"]["data_in_frac_width"] == choose_frac(seen, 3, True, "mse")


# --------------------------------------------------------------------------------------------
# MASE's "NA" is today's width // 2, bit for bit
# --------------------------------------------------------------------------------------------


def np_fixed(x: torch.Tensor, width: int, frac: int) -> torch.Tensor:
    """MASE's fixed point in NumPy float64: clip(round_half_even(x 2^f), -2^(w-1), 2^(w-1)-1) / 2^f."""
    lo, hi = -(2 ** (width - 1)), 2 ** (width - 1) - 1
    values = x.detach().double().numpy()
    return torch.from_numpy((np.clip(np.round(values * 2.0**frac), lo, hi) / 2.0**frac).astype(np.float32))


@pytest.mark.parametrize("width", [3, 6, 8])
def test_mase_na_config_gives_exactly_the_width_over_two_outputs(width):
    torch.manual_seed(0)
    model = build_model("jsc-three-linear-layers", JSC).eval()
    graph, data = Graph(model, torch.randn(8, 16)), dataset()
    args = {"by": "type", "default": {"config": {"name": "NA"}},
            "linear": {"config": {"name": "integer", "data_in_width": width, "data_in_frac_width": "NA",
                                  "weight_width": width, "weight_frac_width": "NA", "bias_width": width,
                                  "bias_frac_width": "NA"}}}
    assert calibrated_quantize_args(graph, args, PassData(data)) is args  # no calibration at all
    quantized, _ = apply_passes(graph, [("quantize", args)], data=PassData(data))
    x = data.test.x
    expected = x
    with torch.no_grad():
        for module in model.seq_blocks:
            if isinstance(module, nn.Linear):
                frac = width // 2
                expected = F.linear(np_fixed(expected, width, frac), np_fixed(module.weight, width, frac),
                                    np_fixed(module.bias, width, frac))
            else:
                expected = module(expected)
        assert torch.equal(quantized.module(x), expected)


# --------------------------------------------------------------------------------------------
# Through the API, and the accuracy properties on a trained model
# --------------------------------------------------------------------------------------------


def test_transform_calibrates_and_the_saved_model_reloads_without_calibrating(trained_digits, tmp_path):
    config = trained_digits.config.model_copy(update={
        "project_dir": str(tmp_path), "project": "t",
        "passes": {"quantize": linear_args(4, calibration={"granularity": "channel"})}})
    outcome = api.transform(config)
    checkpoint = read_checkpoint(outcome.model_path)
    (name, recorded), = checkpoint.passes
    assert name == "quantize" and recorded["seq_blocks_2"]["config"]["data_in_frac_width"] != "auto"
    assert len(recorded["seq_blocks_2"]["config"]["weight_frac_width"]) == 16
    reloaded = api.prepare(config.model_copy(update={"load_name": str(outcome.model_path), "passes": {}}))
    x = trained_digits.dataset.test.x
    with torch.no_grad():
        assert torch.equal(reloaded.model(x), outcome.model(x))


def accuracies(prepared, width: int) -> dict[str, float]:
    """Test accuracy with every Linear input and weight at `width`, per frac-width rule."""
    base = Graph(prepared.model, example_batch(prepared.dataset.validation))
    data = PassData(prepared.dataset, batch_size=prepared.config.batch_size, seed=prepared.config.seed)
    rules = {"w // 2": ("NA", None)}
    rules.update({f"{method} {granularity}": ("auto", {"method": method, "granularity": granularity})
                  for method in ("max", "mse") for granularity in ("tensor", "channel")})
    results = {"float": evaluate(base.module, prepared.dataset.test, 10, batch_size=1024)["accuracy"]}
    for name, (frac, calibration) in rules.items():
        graph, _ = apply_passes(base, [("quantize", linear_args(width, frac, calibration))], data=data)
        results[name] = evaluate(graph.module, prepared.dataset.test, 10, batch_size=1024)["accuracy"]
    return results


def test_mse_calibration_keeps_accuracy_where_width_over_two_loses_it(trained_digits):
    """The acceptance properties on a model trained in seconds (benchmarks/calibration_table.py
    measures the demo's jsc-s): mse per-channel weights within 0.5 pp of float at 8 bits, 30 pp
    above width // 2 at 3 bits, and never more than 0.5 pp below max at 2..8 bits."""
    table = {width: accuracies(trained_digits, width) for width in range(2, 9)}
    assert table[8]["float"] - table[8]["mse channel"] <= 0.005
    assert table[3]["mse channel"] - table[3]["w // 2"] >= 0.30
    for width, row in table.items():
        for granularity in ("tensor", "channel"):
            assert row[f"mse {granularity}"] >= row[f"max {granularity}"] - 0.005, (width, row)
