"""hls4ml export without the C simulation: types per layer, refusals, options, files written."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from tests.helpers.hls4ml import (
    IMAGE,
    JSC,
    conv_config,
    quantized_conv,
    quantized_jsc,
    with_random_statistics,
)
from torch import nn
from torch.nn import functional as F

from machop.data import DatasetInfo
from machop.errors import MachopError, ModelError
from machop.export.hls4ml import check_options, export, to_hls4ml
from machop.export.hls4ml_plan import plan_export
from machop.export.hls4ml_types import FixedType, add_type, compose
from machop.graph import Graph
from machop.models import build_model
from machop.passes import quantize_transform_pass
from machop.quant.exact import fixed_operand, sum_format
from machop.quant.quantizers import integer_quantize

pytest.importorskip("hls4ml")

X = torch.randn(8, 16)
INT = {"name": "integer", "data_in_width": 8, "data_in_frac_width": 3, "weight_width": 6,
       "weight_frac_width": 4, "bias_width": 8, "bias_frac_width": 4}
NONE = {"config": {"name": None}}


@pytest.fixture(scope="module")
def toy():
    return quantized_jsc("jsc-toy", seed=1)


def test_every_tensor_gets_the_type_whose_cast_is_machops_quantizer(toy):
    plan = plan_export(toy, X)
    layers = {layer.name: layer for layer in plan.layers}
    first_bn = toy.get_submodule("seq_blocks.0")
    width = first_bn.specs["data_in"].width
    assert layers["x"].precision["result"].text() == f"ap_fixed<{width},{width - 3},AP_RND_CONV,AP_SAT>"
    relu, linear = toy.get_submodule("seq_blocks.1"), toy.get_submodule("seq_blocks.2")
    # The ReLU's unsigned quantizer, then the Linear's signed one on the same grid: one cast.
    expected = min(relu.specs["data_in"].width, linear.specs["data_in"].width - 1)
    assert layers["seq_blocks_1"].precision["result"] == FixedType(expected, 3, False, quantizer=True)
    specs = linear.specs
    form = sum_format(*(fixed_operand(specs[op]) for op in ("data_in", "weight", "bias")), linear.in_features)
    accum = layers["seq_blocks_2"].precision["accum"]
    assert (accum.width, accum.frac) == (form.magnitude_bits + 1, form.frac)
    bn = toy.get_submodule("seq_blocks.3")
    # The Linear's output is rounded once, by the BatchNorm's data_in quantizer, in the Dense layer.
    assert layers["seq_blocks_2"].precision["result"].width == bn.specs["data_in"].width
    assert layers["seq_blocks_3"].precision["scale"] == FixedType(8, 5)
    assert not plan.float_layers and plan.quantized


def test_compose_equals_two_quantizers_in_a_row_or_is_refused():
    x = torch.linspace(-40, 40, 8001, dtype=torch.float64)
    composed = 0
    for first in (FixedType(8, 3, False, True), FixedType(6, 2, True, True), FixedType(5, 4, True, True)):
        for then in (FixedType(8, 3, True, True), FixedType(7, 5, True, True), FixedType(6, 1, False, True),
                     FixedType(8, 4, False, True)):
            one = compose(first, then)
            twice = integer_quantize(integer_quantize(x, first.width, first.frac, first.signed),
                                     then.width, then.frac, then.signed)
            if one is None:
                # refused: the second cast rounds again (coarser grid) or saturates off the first grid
                assert then.frac < first.frac or not torch.equal(
                    integer_quantize(x, first.width, first.frac, first.signed), twice)
                continue
            composed += 1
            assert torch.equal(integer_quantize(x, one.width, one.frac, one.signed), twice)
    assert composed >= 4


def graph_module(model, config):
    quantized, _ = quantize_transform_pass(Graph(model, X), config)
    return quantized.module


def test_a_coarser_second_rounding_is_one_line_naming_the_node():
    model = build_model("jsc-three-linear-layers", JSC).eval()
    config = {"by": "name", "default": NONE,
              "seq_blocks_1": {"config": {"name": "integer", "data_in_width": 8, "data_in_frac_width": 5}},
              "seq_blocks_2": {"config": INT}}
    with pytest.raises(ModelError, match=r"node 'seq_blocks_1'.*rounded to ap_ufixed<8,3.*again to ap_fixed<8,5") as error:
        plan_export(graph_module(model, config), X)
    assert "\n" not in str(error.value)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 16), nn.Linear(16, 16)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x))) + x


def test_residual_add_reads_both_branches_once_and_sums_exactly():
    act = {"name": "integer", "data_in_width": 8, "data_in_frac_width": 3}
    config = {"by": "type", "default": NONE, "linear": {"config": INT}, "relu": {"config": act},
              "add": {"config": act}}
    layers = {layer.name: layer for layer in plan_export(graph_module(Residual().eval(), config), X).layers}
    # The add's data_in quantizer is the type its operands' producers write: x is read by fc1 and by
    # the add at the same 8/3, fc2's output only by the add.
    assert layers["x"].precision["result"] == FixedType(8, 3, True, quantizer=True)
    assert layers["fc2"].precision["result"] == FixedType(8, 3, True, quantizer=True)
    assert layers["add"].precision["result"] == FixedType(9, 3, True)  # every sum of two 8/3 values
    assert layers["add"].inputs == ["fc2", "x"]
    # Left in float, the add reads x exactly while fc1 reads it at 8/3: two precisions of one tensor.
    config.pop("add")
    with pytest.raises(ModelError, match=r"node 'x': its output is consumed at different precisions") as error:
        plan_export(graph_module(Residual().eval(), config), X)
    assert "\n" not in str(error.value)


def test_add_type_holds_every_sum_and_no_narrower_type_does():
    types = [FixedType(4, 1, True), FixedType(5, 3, False), FixedType(3, 0, True), FixedType(6, 2, False)]
    for first in types:
        for second in types:
            total = add_type(first, second)
            frac = max(first.frac, second.frac)
            sums = {a * 2 ** (frac - first.frac) + b * 2 ** (frac - second.frac)
                    for a in range(-(2 ** (first.width - 1)) if first.signed else 0, 2 ** (first.width - int(first.signed)))
                    for b in range(-(2 ** (second.width - 1)) if second.signed else 0, 2 ** (second.width - int(second.signed)))}
            lo, hi = (-(2 ** (total.width - 1)), 2 ** (total.width - 1) - 1) if total.signed else (0, 2**total.width - 1)
            assert total.frac == frac and lo <= min(sums) and max(sums) <= hi
            narrower = FixedType(total.width - 1, frac, total.signed)
            assert not narrower.holds(FixedType(total.width, frac, total.signed)) and (
                min(sums) < (-(2 ** (narrower.width - 1)) if total.signed else 0)
                or max(sums) > (2 ** (narrower.width - int(total.signed)) - 1))


def test_conv_model_types_conv_pool_flatten_and_add():
    model = quantized_conv(seed=2)
    plan = plan_export(model, torch.randn(4, *IMAGE.image_size))
    layers = {layer.name: layer for layer in plan.layers}
    assert plan.input_shape == IMAGE.image_size and not plan.flatten_input and not plan.float_layers
    conv2 = model.get_submodule("conv2")
    form = sum_format(*(fixed_operand(conv2.specs[op]) for op in ("data_in", "weight", "bias")), 3 * 3 * 3)
    accum = layers["conv2"].precision["accum"]
    assert (accum.width, accum.frac) == (form.magnitude_bits + 1, form.frac)
    assert layers["conv2"].precision["result"] == accum  # read by a ReLU whose quantizer is its own
    # Both branches are ReLU outputs read at 8/3 (unsigned: 7 bits); their sum needs 8.
    assert layers["relu"].precision["result"] == layers["relu_1"].precision["result"] == FixedType(7, 3, False, True)
    assert layers["add"].precision["result"] == FixedType(8, 3, False)
    # The Linear's 8/3 quantizer applies at the MaxPool (the flatten is a view in hls4ml) ...
    assert layers["pool"].precision["result"] == layers["flatten"].precision["result"] == FixedType(8, 3, True, True)
    assert layers["pool"].precision["accum"] == FixedType(8, 3, False)  # ... which takes its maxima exactly
    assert plan.channels_last == {"x", "conv1", "bn", "relu", "conv2", "relu_1", "add", "pool"}


def test_vgg7_plans_with_its_view_flatten():
    info = DatasetInfo("digits", 10, 64, image_size=(1, 8, 8))
    model = build_model("vgg7", info, {"widths": (2, 2, 2), "hidden": 4}).eval()
    example = torch.randn(2, 1, 8, 8)
    plan = plan_export(graph_module_for(model, conv_config(), example), example)
    kinds = [layer.kind for layer in plan.layers]
    assert kinds.count("conv2d") == 6 and kinds.count("max_pool2d") == 3 and kinds.count("batch_norm2d") == 6
    assert kinds.count("flatten") == 1 and kinds.count("linear") == 3 and not plan.float_layers


def graph_module_for(model, config, example):
    quantized, _ = quantize_transform_pass(Graph(model, example), config)
    return quantized.module


class FunctionalPool(nn.Module):
    def forward(self, x):
        return torch.flatten(F.max_pool2d(x, 2), 1)


@pytest.mark.parametrize(("model", "shape", "message"), [
    (nn.Sequential(nn.Conv1d(2, 2, 3, groups=2), nn.Flatten(), nn.Linear(28, 5)), (2, 16),
     r"node '_0': conv1d with groups=2.*hls4ml's PyTorch frontend converts groups=1"),
    (nn.Sequential(nn.Conv1d(1, 2, 3), nn.AvgPool1d(2), nn.Flatten(), nn.Linear(14, 5)), (1, 16),
     r"node '_1': avg_pool1d divides by its window size.*cannot be bit-exact"),
    (FunctionalPool(), (1, 4, 4), r"node 'max_pool2d': a functional max_pool2d call.*nn.MaxPool2d"),
    (nn.Sequential(nn.Conv1d(1, 2, 3)), (1, 16), r"the model's output has shape \(2, 2, 14\); hls4ml export needs"),
    (nn.Sequential(nn.Conv1d(1, 2, 3), nn.Linear(14, 5)), (1, 16),
     r"node '_1': a Linear on a tensor of shape \(2, 2, 14\).*flatten first"),
])
def test_conv_layouts_hls4ml_cannot_convert_are_one_line(model, shape, message):
    with pytest.raises(ModelError, match=message) as error:
        plan_export(model.eval(), torch.randn(2, *shape))
    assert "\n" not in str(error.value)


def test_non_fixed_operands_are_refused():
    model = build_model("jsc-three-linear-layers", JSC).eval()
    minifloat = {"name": "minifloat_ieee", "data_in_width": 8, "data_in_exponent_width": 4,
                 "weight_width": 8, "weight_exponent_width": 4}
    with pytest.raises(ModelError, match=r"node 'seq_blocks_2': data_in is minifloat_ieee, which ap_fixed cannot"):
        plan_export(graph_module(model, {"by": "name", "default": NONE, "seq_blocks_2": {"config": minifloat}}), X)


def test_two_consumers_reading_one_tensor_at_different_precisions_are_refused():
    class Fork(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(16, 4), nn.Linear(16, 4)

        def forward(self, x):
            self.a(x)  # traced although unused: x has two consumers
            return self.b(x)

    other = {**INT, "data_in_width": 6}
    module = graph_module(Fork().eval(), {"by": "name", "default": NONE, "a": {"config": INT}, "b": {"config": other}})
    with pytest.raises(ModelError, match=r"node 'x': its output is consumed at different precisions"):
        plan_export(module, X)


def test_export_writes_project_readme_and_layers_and_warns_on_a_float_batch_norm(tmp_path):
    torch.manual_seed(0)
    model = with_random_statistics(build_model("jsc-tiny", JSC)).eval()
    module = graph_module(model, {"by": "type", "default": NONE, "linear": {"config": INT},
                                  "relu": {"config": {"name": "integer", "data_in_width": 8, "data_in_frac_width": 3}}})
    out = tmp_path / "hls"
    result = to_hls4ml(module, out, example_input=X, backend="Vitis", reuse_factor=2)
    assert result.out == out and result.parity is None
    assert (out / "hls4ml_prj" / "firmware" / "myproject.cpp").is_file()
    assert out / "README.md" in result.files
    floats = [note for note in result.notes if note.startswith("left in float at ")]
    assert len(floats) == 1 and "seq_blocks_0 (data_in, weight, bias)" in floats[0]
    layers = json.loads((out / "layers.json").read_text())
    assert layers["backend"] == "Vitis" and layers["reuse_factor"] == 2
    assert {row["name"] for row in layers["layers"]} == {"x", "seq_blocks_0", "seq_blocks_1", "seq_blocks_2",
                                                         "seq_blocks_3"}
    readme = (out / "README.md").read_text()
    assert "vitis-run --tcl build_prj.tcl --mode hls" in readme
    # The ReLU's unsigned 8/3 quantizer and the Linear's signed 8/3 one: 7 unsigned bits.
    assert "| seq_blocks_1 | relu | `ap_ufixed<7,4,AP_RND_CONV,AP_SAT>`" in readme
    assert "Not checked" in readme
    assert not list(tmp_path.glob(".hls.*"))  # the temporary folder was renamed


def test_float_only_model_needs_allow_float_and_writes_nothing(tmp_path):
    model = build_model("jsc-three-linear-layers", JSC).eval()
    with pytest.raises(MachopError, match="no quantized operand.*--allow-float"):
        to_hls4ml(model, tmp_path / "float", example_input=X)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("options", "message"), [
    ({"backend": "Quartus"}, r"backend = 'Quartus' is invalid \(valid: Vivado, Vitis, oneAPI\)"),
    ({"io_type": "io_serial"}, r"io_type = 'io_serial' is invalid"),
    ({"reuse_factor": 0}, "reuse_factor must be a positive integer"),
    ({"csim": "yes"}, "csim must be true or false"),
    ({"precision": 8}, "unknown option 'precision'"),
])
def test_bad_options_are_one_line(options, message):
    with pytest.raises(MachopError, match=message):
        check_options(options)


def test_csim_without_a_compiler_and_an_unwritable_out_write_nothing(tmp_path, monkeypatch, toy):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(MachopError, match="cannot write to"):
        to_hls4ml(toy, blocker / "out", example_input=X)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(MachopError, match=r"--csim builds hls4ml's C simulation with g\+\+, which is not installed; install it"):
        to_hls4ml(toy, tmp_path / "out", example_input=X, csim=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_strict_requires_bit_exact_outputs_unless_a_threshold_is_given(tmp_path, toy):
    from dataclasses import replace

    from machop.export.hls4ml import strict_verdict
    from machop.export.request import ExportRequest, ParityReport

    exact = ParityReport(samples=10, agreement=1.0, max_abs_diff=0.0, differing_samples=0, bit_exact=True)
    close = ParityReport(samples=10, agreement=1.0, max_abs_diff=0.25, differing_samples=3, bit_exact=False)
    request = ExportRequest(model=toy, out=tmp_path / "out", example_input=X, strict=True,
                            options={"csim": True})
    assert strict_verdict(request, exact)
    with pytest.raises(MachopError, match=r"differs .* on 3 of 10 samples .* must be bit-exact"):
        strict_verdict(request, close)
    assert strict_verdict(replace(request, threshold=0.9), close)
    assert not strict_verdict(replace(request, threshold=0.9), replace(close, agreement=0.8))
    assert strict_verdict(replace(request, strict=False), close)
    with pytest.raises(MachopError, match="--strict judges the C simulation's parity, so it needs --csim"):
        export(replace(request, options={}))
    assert not (tmp_path / "out").exists()
