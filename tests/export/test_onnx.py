"""ONNX export: QDQ layout, ONNX Runtime's int8 kernels, and parity with the simulation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from onnx import numpy_helper  # noqa: E402

from machop.data.registry import load_dataset  # noqa: E402
from machop.errors import MachopError  # noqa: E402
from machop.export.onnx import check_parity, to_onnx  # noqa: E402
from machop.export.onnx.build import build_onnx  # noqa: E402
from machop.export.onnx.session import INT8_KERNELS, kernel_counts, layer_kernels, optimized_graph  # noqa: E402
from machop.export.request import ExportRequest  # noqa: E402
from machop.graph import Graph  # noqa: E402
from machop.models.registry import build_model  # noqa: E402
from machop.passes import PassData, apply_passes  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _float_graph(digits, name: str, **model_args) -> Graph:
    """The model with BatchNorm statistics from the training split, in evaluation mode."""
    torch.manual_seed(0)
    model = build_model(name, digits.info, model_args)
    model.train()
    with torch.no_grad():
        model(digits.train.x[:256].float())
    model.eval()
    return Graph(model, digits.validation.x[:8].float())


def _node(width: int, frac="auto", bias=False) -> dict:
    config = {"name": "integer", "data_in_width": width, "data_in_frac_width": frac,
              "weight_width": width, "weight_frac_width": frac}
    if bias:
        config.update(bias_width=width, bias_frac_width=frac)
    return config


def _quantized(graph: Graph, digits, width: int, *, frac="auto", granularity="channel", bias=False,
               method="max") -> Graph:
    node = _node(width, frac, bias)
    args = {"by": "type", "default": {"config": {"name": "NA"}}, "linear": {"config": node},
            "conv2d": {"config": node}}
    if frac == "auto":
        args["calibration"] = {"granularity": granularity, "method": method, "split": "train",
                               "num_samples": 256}
    quantized, _ = apply_passes(graph, [("quantize", args)], data=PassData(digits, 64, 0))
    return quantized


def _parity(graph: Graph, digits, per_layer=False):
    build = build_onnx(graph.module, graph.example_input)
    request = ExportRequest(model=graph.module, out=None, example_input=graph.example_input, dataset=digits,
                            batch_size=64, per_layer=per_layer)
    return build, check_parity(graph.module, build, request, threads=1)


@pytest.fixture(scope="module")
def jsc8(digits):
    return _quantized(_float_graph(digits, "jsc-s"), digits, 8, bias=True)


@pytest.fixture(scope="module")
def vgg8(digits):
    graph = _float_graph(digits, "vgg7", widths=[16, 32, 64], hidden=64)
    return _quantized(graph, digits, 8)


def _initializer(model, name):
    return next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name == name)


def test_jsc_int8_agrees_and_runs_int8_kernels(jsc8, digits):
    build, report = _parity(jsc8, digits, per_layer=True)
    assert report.samples == len(digits.validation)
    assert report.agreement >= 0.995
    optimized = optimized_graph(build.serialized())
    linears = [row["node"] for row in build.plan.layers]
    kernels = layer_kernels(optimized, linears)
    assert set(kernels) == set(linears) and all(op in INT8_KERNELS for op in kernels.values())
    # One per-layer row per quantized input. The first layer's input is quantized from the same
    # float values in both (bit-exact); later ones differ in a few codes (bias and BatchNorm
    # rounding at the accumulator's scale, carried forward).
    rows = {row["node"]: row for row in report.per_layer}
    assert set(rows) == {f"{n}/data_in" for n in linears}
    assert rows["seq_blocks_2/data_in"]["differing_values"] == 0
    for row in rows.values():
        assert row["differing_values"] <= 0.05 * row["values"]


def test_qdq_scales_are_powers_of_two_with_zero_points_zero(jsc8):
    build = build_onnx(jsc8.module, jsc8.example_input)
    model = build.model
    first = "seq_blocks_5"  # no BatchNorm folded in: its scales are exactly 2^-frac
    precision = jsc8.meta[first].precision
    scales = _initializer(model, f"{first}.weight_scale")
    np.testing.assert_array_equal(scales, np.exp2(-np.asarray(precision["weight"]["frac_width"], np.float64)))
    codes = _initializer(model, f"{first}.weight_quantized")
    assert codes.dtype == np.int8
    dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == f"{first}.weight_quantized")
    assert [a.i for a in dq.attribute if a.name == "axis"] == [0]
    assert not _initializer(model, f"{first}.weight_zero_point").any()
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            scale = float(_initializer(model, node.input[1]))
            assert np.log2(scale) == round(np.log2(scale))
            assert int(_initializer(model, node.input[2])) == 0
    # After a ReLU the codes are unsigned: a uint8 QuantizeLinear feeds every later linear.
    unsigned = [n for n in model.graph.node if n.op_type == "QuantizeLinear"
                and _initializer(model, n.input[2]).dtype == np.uint8]
    assert len(unsigned) == 4


def test_bias_is_int32_at_the_accumulator_scale(jsc8):
    model = build_onnx(jsc8.module, jsc8.example_input).model
    node = "seq_blocks_7"
    bias_scale = _initializer(model, f"{node}.bias_scale")
    weight_scale = _initializer(model, f"{node}.weight_scale")
    data_in = jsc8.meta[node].precision["data_in"]["frac_width"]
    np.testing.assert_array_equal(bias_scale, (weight_scale * np.float32(2.0 ** -data_in)).astype(np.float32))
    assert _initializer(model, f"{node}.bias_quantized").dtype == np.int32


def test_vgg7_int8_agrees_and_fuses_every_conv(vgg8, digits):
    build, report = _parity(vgg8, digits)
    assert report.agreement >= 0.995
    counts = kernel_counts(optimized_graph(build.serialized()))
    assert counts.get("QLinearConv") == 6 and counts.get("QGemm") == 3
    assert all("folded in" in row["exported"] for row in build.plan.layers if row["kind"] == "conv2d")


def test_unsigned_inputs_after_relus_need_no_requantization(digits):
    graph = _float_graph(digits, "vgg7", widths=[16, 32, 64], hidden=64)
    layers = [n.name for n in graph.compute_nodes() if graph.meta[n.name].kind in ("conv2d", "linear")]
    args = {"by": "name", "default": {"config": {"name": "NA"}},
            "calibration": {"method": "max", "split": "train", "num_samples": 256}}
    for index, name in enumerate(layers):  # every layer but the first reads a ReLU's output
        args[name] = {"config": {**_node(8), "data_in_is_signed": index == 0}}
    quantized, _ = apply_passes(graph, [("quantize", args)], data=PassData(digits, 64, 0))
    build, report = _parity(quantized, digits)
    assert report.agreement >= 0.995
    counts = kernel_counts(optimized_graph(build.serialized()))
    assert counts.get("QLinearConv") == 6 and counts.get("QGemm") == 3
    assert counts.get("QuantizeLinear") == 1  # the input's; a signed input after a ReLU adds one per ReLU


def test_sixteen_bits_agree_on_every_prediction(digits):
    graph = _quantized(_float_graph(digits, "jsc-s"), digits, 16, frac=8)
    build, report = _parity(graph, digits)
    assert report.agreement == 1.0
    assert any(i.data_type == 5 for i in build.model.graph.initializer)  # int16 weight codes
    assert max(o.version for o in build.model.opset_import if o.domain in ("", "ai.onnx")) == 21


def test_narrow_widths_are_clipped_to_their_range(digits):
    graph = _quantized(_float_graph(digits, "jsc-s"), digits, 4, granularity="tensor", method="mse")
    build, report = _parity(graph, digits)
    # At 4 bits the accumulator grid (input scale x weight scale) is coarse, so rounding the
    # folded BatchNorm's bias onto it moves some predictions (0.961 measured, see docs/deploy.md).
    assert report.agreement >= 0.95
    assert any("bias as int32" in note for note in report.notes)
    assert any(n.op_type == "Clip" for n in build.model.graph.node)


def test_wider_than_sixteen_bits_is_refused(digits):
    graph = _quantized(_float_graph(digits, "jsc-s"), digits, 20, frac=10)
    with pytest.raises(MachopError, match=r"seq_blocks_2.*20-bit.*up to 16"):
        build_onnx(graph.module, graph.example_input)


def test_other_arithmetics_export_as_float_with_a_note(digits):
    args = {"by": "type", "default": {"config": {"name": "NA"}},
            "linear": {"config": {"name": "minifloat_ieee", "weight_width": 8, "weight_exponent_width": 4}}}
    graph, _ = apply_passes(_float_graph(digits, "jsc-s"), [("quantize", args)])
    build, report = _parity(graph, digits)
    assert any("computes them in float" in note for note in build.notes)
    assert report.agreement == 1.0
    # Minifloat activations would need the quantizer's bit casts in the graph, which ONNX lacks.
    args["linear"]["config"].update(data_in_width=8, data_in_exponent_width=4)
    graph, _ = apply_passes(_float_graph(digits, "jsc-s"), [("quantize", args)])
    with pytest.raises(MachopError, match="ONNX export failed"):
        build_onnx(graph.module, graph.example_input)


def test_to_onnx_writes_the_model_and_parity(jsc8, digits, tmp_path):
    import onnx

    result = to_onnx(jsc8.module, tmp_path / "out", jsc8.example_input, dataset=digits, batch_size=64, threads=1)
    names = sorted(path.name for path in result.files)
    assert names == ["model.onnx", "parity.json"]
    onnx.checker.check_model(onnx.load(str(tmp_path / "out" / "model.onnx")))
    assert result.parity.agreement >= 0.995


def test_an_op_without_onnx_export_names_the_node():
    class Odd(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.inv(x.reshape(-1, 2, 2) + 3 * torch.eye(2))

    graph = Graph(Odd(), torch.randn(2, 8))
    with pytest.raises(MachopError, match="linalg_inv"):
        build_onnx(graph.module, graph.example_input)
