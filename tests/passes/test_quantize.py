"""quantize_transform_pass: selection, exact math, caching, metadata, summary, errors."""

from __future__ import annotations

import operator

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from machop.data import DatasetInfo, load_dataset
from machop.errors import PassError
from machop.graph import Graph
from machop.models import build_model
from machop.passes import quantize_transform_pass
from machop.quant.modules import QuantLinear, QuantReLU
from machop.quant.quantizers import integer_quantize
from machop.train import TrainSettings, evaluate, fit

JSC = DatasetInfo("jsc", 5, 16)
INT8 = {"name": "integer", "data_in_width": 8, "data_in_frac_width": 4, "weight_width": 8,
        "weight_frac_width": 4, "bias_width": 8, "bias_frac_width": 4}
NONE = {"config": {"name": None}}


def graph_of(name="jsc-three-linear-layers", seed=0):
    torch.manual_seed(seed)
    return Graph(build_model(name, JSC), torch.randn(8, 16))


def state(graph):
    return {k: v.clone() for k, v in graph.module.state_dict().items()}


def linear_types(graph):
    return {n: type(graph.submodule(graph.node(n))).__name__
            for n in ("seq_blocks_2", "seq_blocks_4", "seq_blocks_6")}


def test_by_type_quantizes_every_linear_and_nothing_else():
    graph = graph_of()
    before = state(graph)
    new, info = quantize_transform_pass(graph, {"by": "type", "default": NONE, "linear": {"config": INT8}})
    assert set(linear_types(new).values()) == {"QuantLinear"}
    assert set(linear_types(graph).values()) == {"Linear"}  # input untouched
    after = state(new)
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert state(graph).keys() == before.keys()
    assert info["histogram"] == {"linear": {"total": 3, "quantized": 3}, "relu": {"total": 4, "quantized": 0}}
    assert new.passes == [("quantize", {"by": "type", "default": NONE, "linear": {"config": INT8}})]


def test_by_name_quantizes_exactly_the_named_nodes():
    new, _ = quantize_transform_pass(graph_of(), {"by": "name", "default": NONE,
                                                  "seq_blocks_4": {"config": INT8}})
    assert linear_types(new) == {"seq_blocks_2": "Linear", "seq_blocks_4": "QuantLinear",
                                 "seq_blocks_6": "Linear"}


def test_regex_name_needs_a_full_match():
    new, _ = quantize_transform_pass(graph_of(), {"by": "regex_name", "default": NONE,
                                                  "seq_blocks_[24]": {"config": INT8}})
    assert linear_types(new) == {"seq_blocks_2": "QuantLinear", "seq_blocks_4": "QuantLinear",
                                 "seq_blocks_6": "Linear"}


def test_default_applies_to_unnamed_quantizable_nodes():
    new, info = quantize_transform_pass(graph_of(), {"by": "name", "default": {"config": INT8},
                                                     "seq_blocks_6": NONE})
    assert linear_types(new)["seq_blocks_6"] == "Linear"
    assert isinstance(new.module.get_submodule("seq_blocks.1"), QuantReLU)
    assert info["histogram"]["linear"] == {"total": 3, "quantized": 2}


def test_bypass_keeps_float():
    new, _ = quantize_transform_pass(graph_of(), {"by": "type", "default": NONE,
                                                  "linear": {"config": {**INT8, "bypass": True}}})
    assert set(linear_types(new).values()) == {"Linear"}


def test_quantized_linear_math_is_exact():
    graph = graph_of()
    new, _ = quantize_transform_pass(graph, {"by": "name", "default": NONE, "seq_blocks_2": {"config": INT8}})
    layer = new.module.get_submodule("seq_blocks.2")
    float_layer = graph.module.get_submodule("seq_blocks.2")
    x = torch.randn(32, 16) * 3
    q = lambda t: integer_quantize(t, 8, 4)  # noqa: E731
    expected = F.linear(q(x), q(float_layer.weight), q(float_layer.bias))
    with torch.no_grad():
        assert torch.equal(layer(x), expected)


def test_relu_input_is_unsigned():
    new, _ = quantize_transform_pass(graph_of(), {"by": "type", "default": NONE, "relu": {"config": {
        "name": "integer", "data_in_width": 4, "data_in_frac_width": 2}}})
    relu = new.module.get_submodule("seq_blocks.1")
    x = torch.tensor([-1.0, 0.3, 1.1, 9.0])
    assert torch.equal(relu(x), torch.tensor([0.0, 0.25, 1.0, 3.75]))


@pytest.mark.parametrize("signed", [False, True])
def test_relu_skips_the_max_only_where_the_quantizer_already_clamps(signed):
    config = {"name": "integer", "data_in_width": 8, "data_in_frac_width": 4, **({"data_in_is_signed": True} if signed else {})}
    new, _ = quantize_transform_pass(graph_of(), {"by": "type", "default": NONE, "relu": {"config": config}})
    relu = new.module.get_submodule("seq_blocks.1")
    assert relu.quantizer_clamps is not signed  # unsigned codes are never negative: no ReLU pass needed
    x = torch.cat([torch.randn(1000) * 8, torch.tensor([float("nan"), -0.0])])
    expected = torch.relu(relu.specs["data_in"].quantize(x))
    with torch.no_grad():
        out = relu(x)
    assert torch.equal(out.nan_to_num(-1.0), expected.nan_to_num(-1.0)) and out.isnan().sum() == 1
    assert (out[~out.isnan()] >= 0).all()


def test_metadata_records_precisions():
    new, _ = quantize_transform_pass(graph_of(), {"by": "type", "default": NONE, "linear": {"config": INT8}})
    precision = new.meta["seq_blocks_2"].precision
    assert precision["weight"] == {"type": "integer", "width": 8, "frac_width": 4}
    assert precision["data_in"] == {"type": "integer", "width": 8, "frac_width": 4}
    assert precision["data_out"] == {"type": "float", "width": 32}
    assert new.meta["seq_blocks_2"].kind == "linear"


def test_weights_are_cached_in_eval_and_refreshed_when_they_change():
    new, _ = quantize_transform_pass(graph_of(), {"by": "type", "default": NONE, "linear": {"config": INT8}})
    layer: QuantLinear = new.module.get_submodule("seq_blocks.2").eval()
    with torch.no_grad():
        first, _ = layer.quantized_parameters()
        again, _ = layer.quantized_parameters()
        assert first is again
        layer.weight.add_(1.0)
        changed, _ = layer.quantized_parameters()
    assert changed is not first
    assert torch.equal(changed, integer_quantize(layer.weight.detach(), 8, 4))


def test_training_gets_straight_through_gradients():
    new, _ = quantize_transform_pass(graph_of(), {"by": "type", "default": NONE, "linear": {"config": INT8}})
    layer = new.module.get_submodule("seq_blocks.2").train()
    x = torch.randn(4, 16)
    layer(x).sum().backward()
    q = integer_quantize(x, 8, 4)
    assert torch.allclose(layer.weight.grad, torch.ones(16, 1) * q.sum(0, keepdim=True))


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 4))

    def forward(self, x):
        y = F.relu(F.linear(x, self.w))
        return operator.add(torch.matmul(y, self.w), x) - y


def test_functional_forms_are_quantized():
    model = Functional()
    x = torch.randn(3, 4)
    graph = Graph(model, x)
    config = {"name": "integer", "data_in_width": 16, "data_in_frac_width": 8,
              "weight_width": 16, "weight_frac_width": 8}
    new, info = quantize_transform_pass(graph, {"by": "type", "default": {"config": config}})
    quantized = {row["op"]: row["new_type"] for row in info["rows"]}
    assert quantized == {"linear": "QuantFunctionalWeighted", "relu": "QuantReLU",
                         "matmul": "QuantBinaryOp", "add": "QuantBinaryOp", "sub": "QuantBinaryOp"}
    assert torch.allclose(new(x), model(x), atol=0.05)
    assert new.meta["matmul"].kind == "matmul"


def test_summary_rows():
    _, info = quantize_transform_pass(graph_of(), {"by": "name", "default": NONE,
                                                   "seq_blocks_2": {"config": INT8}})
    row = next(r for r in info["rows"] if r["node"] == "seq_blocks_2")
    assert row["op"] == "linear" and row["original_type"] == "Linear" and row["new_type"] == "QuantLinear"
    assert "weight: integer8 frac_width=4" in row["precision"]


@pytest.fixture(scope="module")
def trained_digits():
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model("jsc-s", data.info)
    fit(model, data, TrainSettings(max_epochs=15, learning_rate=1e-2, batch_size=32, t_max=15,
                                   precision="32"))
    return data, model.eval()


def test_16_bit_quantization_keeps_accuracy(trained_digits):
    data, model = trained_digits
    config = {"name": "integer", **{f"{op}_{key}": value for op in ("data_in", "weight", "bias")
                                    for key, value in (("width", 16), ("frac_width", 8))}}
    new, _ = quantize_transform_pass(Graph(model, data.test.x[:8]),
                                     {"by": "type", "default": NONE, "linear": {"config": config},
                                      "relu": {"config": {"name": "integer", "data_in_width": 16,
                                                          "data_in_frac_width": 8}}})
    float_accuracy = evaluate(model, data.test, 10)["accuracy"]
    quant_accuracy = evaluate(new.module, data.test, 10)["accuracy"]
    assert abs(float_accuracy - quant_accuracy) <= 0.005


@pytest.mark.parametrize("args, message", [
    ({"by": "type", "linear": {"config": INT8}}, "needs a 'default' entry"),
    ({"by": "kind", "default": NONE}, "by = 'kind' is invalid"),
    ({"by": "name", "default": NONE, "seq_block_2": {"config": INT8}}, "did you mean 'seq_blocks_2'"),
    ({"by": "type", "default": NONE, "linaer": {"config": INT8}}, "did you mean 'linear'"),
    ({"by": "regex_name", "default": NONE, "fc.*": {"config": INT8}}, "matches no node"),
    ({"by": "type", "default": NONE, "linear": INT8}, "must be a table with a 'config' table"),
    ({"by": "type", "default": NONE, "linear": {"config": {**INT8, "weight_frac_width": 41}}}, "weight_frac_width"),
    ({"by": "type", "default": NONE, "linear": {"config": {**INT8, "weight_frac_width": [4] * 3}}},
     "3 frac widths for 16 output channels"),
    ({"by": "type", "default": NONE, "relu": {"config": {"name": "integer", "data_in_width": 4,
                                                        "data_in_frac_width": [2, 2]}}}, "only weight and bias"),
    ({"by": "type", "default": NONE, "linear": {"config": {**INT8, "name": "posit"}}}, "posit"),
    ({"by": "type", "default": NONE, "linear": {"config": {**INT8, "data_in_width": 0}}}, "data_in_width"),
])
def test_bad_configs_are_pass_errors(args, message):
    with pytest.raises(PassError, match=message) as info:
        quantize_transform_pass(graph_of(), args)
    assert "\n" not in str(info.value)


class Convs(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(2, 3, 3, padding=1)
        self.c2 = nn.Conv2d(1, 2, 3, stride=2, bias=False)

    def forward(self, x):
        y = self.c2(x)                       # (N, 2, 3, 3)
        return self.c1(y.flatten(2))         # (N, 3, 9)


def test_conv1d_and_conv2d_modules_are_quantized_exactly():
    torch.manual_seed(0)
    model = Convs()
    x = torch.randn(4, 1, 7, 7)
    new, info = quantize_transform_pass(Graph(model, x), {"by": "type", "default": NONE,
                                                          "conv1d": {"config": INT8},
                                                          "conv2d": {"config": INT8}})
    assert {r["node"]: r["new_type"] for r in info["rows"]} == {"c2": "QuantConv2d", "c1": "QuantConv1d"}
    q = lambda t: integer_quantize(t, 8, 4)  # noqa: E731
    y = F.conv2d(q(x), q(model.c2.weight), None, stride=2)
    expected = F.conv1d(q(y.flatten(2)), q(model.c1.weight), q(model.c1.bias), padding=1)
    with torch.no_grad():
        assert torch.equal(new(x), expected)
    assert "bias" not in new.meta["c2"].precision


def _random_config(generator: torch.Generator) -> dict:
    def pick(values):
        return values[int(torch.randint(len(values), (1,), generator=generator))]

    entry = {"name": "integer", "data_in_width": pick([4, 8, 16]), "weight_width": pick([2, 4, 8]),
             "bias_width": pick([8, 16])}
    if pick([False, True]):
        entry["data_out_width"] = 8
    relu = pick([None, {"name": "integer", "data_in_width": pick([4, 8])}])
    return {"by": "type", "default": NONE, "linear": {"config": entry}, "relu": {"config": relu or {"name": None}},
            "add": {"config": {"name": "integer", "data_in_width": 16}},
            "matmul": {"config": {"name": "integer", "data_in_width": pick([8, 16])}}}


@pytest.mark.parametrize("seed", range(4))
def test_metadata_of_the_swapped_nodes_equals_a_fresh_recording(seed):
    from machop.graph.metadata import record_metadata

    generator = torch.Generator().manual_seed(seed)
    for graph in (graph_of(seed=seed), Graph(Functional(), torch.randn(3, 4))):
        new, _ = quantize_transform_pass(graph, _random_config(generator))
        recorded = record_metadata(new.module, new.example_input)
        assert {k: m.as_dict() for k, m in new.meta.items()} == {k: m.as_dict() for k, m in recorded.items()}
        x = graph.example_input
        assert torch.equal(new(x), new.module.forward(x))  # the code runs the swapped modules
        assert {k: m.as_dict() for k, m in graph.meta.items()} == \
            {k: m.as_dict() for k, m in record_metadata(graph.module, x).items()}  # the input is untouched
