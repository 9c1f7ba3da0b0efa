"""Quantized BatchNorm: fixed-point scale and shift, selection in the quantize pass, metadata, calibration."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from machop.data import DatasetInfo
from machop.data.dataset import Dataset, Split
from machop.errors import PassError
from machop.graph import Graph
from machop.models import build_model
from machop.passes import quantize_transform_pass
from machop.passes.calibrate import calibrated_quantize_args
from machop.passes.complexity import complexity_analysis_pass
from machop.passes.registry import PassData
from machop.quant.arithmetic import parse_node_config
from machop.quant.modules import QuantBatchNorm1d, QuantBatchNorm2d, batch_norm_scale_shift
from machop.quant.quantizers import integer_quantize

JSC = DatasetInfo("jsc", 5, 16)
BN = {"name": "integer", "data_in_width": 8, "data_in_frac_width": 4, "weight_width": 8,
      "weight_frac_width": 5, "bias_width": 8, "bias_frac_width": 4}
NONE = {"config": {"name": None}}


def random_statistics(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator))
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            with torch.no_grad():
                module.weight.copy_(torch.randn(n, generator=generator))
                module.bias.copy_(torch.randn(n, generator=generator))
    return model


def jsc_graph(name="jsc-toy"):
    torch.manual_seed(0)
    return Graph(random_statistics(build_model(name, JSC)).eval(), torch.randn(8, 16))


def test_eval_forward_is_quantized_input_times_quantized_scale_plus_quantized_shift():
    bn = random_statistics(nn.BatchNorm1d(6)).eval()
    layer = QuantBatchNorm1d.from_float(bn, parse_node_config(BN, node="bn"), BN).eval()
    scale, shift = batch_norm_scale_shift(bn)
    x = torch.randn(300, 6) * 5
    expected = (integer_quantize(x, 8, 4).double() * integer_quantize(scale, 8, 5).double()
                + integer_quantize(shift, 8, 4).double())
    with torch.no_grad():
        out = layer(x)
    assert torch.equal(out.double(), expected)  # 8x8-bit products: float32 is exact here
    assert layer.exact_dtype is None


def test_float_scale_and_shift_match_torch_batch_norm():
    bn = random_statistics(nn.BatchNorm2d(3)).eval()
    scale, shift = batch_norm_scale_shift(bn)
    x = torch.randn(4, 3, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1), bn(x))


def test_2d_with_per_channel_scale_fracs():
    bn = random_statistics(nn.BatchNorm2d(3)).eval()
    config = {**BN, "weight_frac_width": [4, 5, 6]}
    layer = QuantBatchNorm2d.from_float(bn, parse_node_config(config, node="bn"), config).eval()
    scale, shift = batch_norm_scale_shift(bn)
    x = torch.randn(2, 3, 4, 4) * 3
    q_scale = torch.stack([integer_quantize(scale[c:c + 1], 8, f) for c, f in enumerate((4, 5, 6))]).view(1, 3, 1, 1)
    expected = integer_quantize(x, 8, 4) * q_scale + integer_quantize(shift, 8, 4).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.equal(layer(x), expected)
    assert layer.machop_precision()["weight"]["frac_width"] == [4, 5, 6]


def test_training_uses_batch_statistics_and_updates_running_ones_like_batch_norm():
    config = {"name": "integer", "data_in_width": 16, "data_in_frac_width": 8}
    bn = random_statistics(nn.BatchNorm1d(4))
    layer = QuantBatchNorm1d.from_float(bn, parse_node_config(config, node="bn"), config).train()
    reference = random_statistics(nn.BatchNorm1d(4)).train()
    x = torch.randn(64, 4).requires_grad_()
    out = layer(x)
    xq = integer_quantize(x.detach(), 16, 8)
    torch.testing.assert_close(out, reference(xq))
    torch.testing.assert_close(layer.running_mean, reference.running_mean)
    torch.testing.assert_close(layer.running_var, reference.running_var)
    out.square().sum().backward()
    assert x.grad is not None and layer.weight.grad is not None


def test_cached_scale_follows_changed_statistics():
    bn = random_statistics(nn.BatchNorm1d(4)).eval()
    layer = QuantBatchNorm1d.from_float(bn, parse_node_config(BN, node="bn"), BN).eval()
    x = torch.randn(10, 4)
    with torch.no_grad():
        before = layer(x)
        layer.running_var.mul_(4)
        after = layer(x)
    assert not torch.equal(before, after)


def test_pass_quantizes_batch_norm_by_type_key_only_never_by_default():
    graph = jsc_graph()
    everything = {"by": "type", "default": {"config": BN}}
    quantized, info = quantize_transform_pass(graph, everything)
    assert type(quantized.submodule(quantized.node("seq_blocks_0"))) is nn.BatchNorm1d
    assert "batch_norm1d" not in info["histogram"]
    quantized, info = quantize_transform_pass(graph, {"by": "type", "default": NONE, "batch_norm1d": {"config": BN}})
    assert isinstance(quantized.submodule(quantized.node("seq_blocks_0")), QuantBatchNorm1d)
    assert info["histogram"]["batch_norm1d"] == {"total": 4, "quantized": 4}
    meta = quantized.meta["seq_blocks_3"]
    assert meta.precision["weight"] == {"type": "integer", "width": 8, "frac_width": 5}
    assert meta.precision["data_out"]["type"] == "float"


def test_by_name_and_model_size_counts_scale_and_shift_at_their_widths():
    graph = jsc_graph("jsc-tiny")
    quantized, _ = quantize_transform_pass(graph, {"by": "name", "default": NONE, "seq_blocks_0": {"config": BN}})
    before = complexity_analysis_pass(graph)[1]["totals"]["model_size_bits"]
    after = complexity_analysis_pass(quantized)[1]["totals"]["model_size_bits"]
    # 16 scales and 16 shifts drop from 32 to 8 bits; running statistics are buffers, not counted.
    assert before - after == 2 * 16 * (32 - 8)


def test_per_channel_list_of_the_wrong_length_is_one_line():
    graph = jsc_graph()
    config = {**BN, "weight_frac_width": [4, 5]}
    with pytest.raises(PassError, match=r"seq_blocks_0.*2 frac widths for 16 output channels"):
        quantize_transform_pass(graph, {"by": "name", "default": NONE, "seq_blocks_0": {"config": config}})


def test_auto_frac_widths_calibrate_the_batch_norm_operands():
    graph = jsc_graph("jsc-tiny")
    generator = torch.Generator().manual_seed(0)
    splits = [Split(torch.randn(n, 16, generator=generator) * 3, torch.randint(0, 5, (n,), generator=generator))
              for n in (200, 20, 20)]
    dataset = Dataset(JSC, *splits)
    auto = {**BN, "data_in_frac_width": "auto", "weight_frac_width": "auto", "bias_frac_width": "auto"}
    args = {"by": "name", "default": NONE, "seq_blocks_0": {"config": auto},
            "calibration": {"method": "max", "granularity": "channel"}}
    resolved = calibrated_quantize_args(graph, args, PassData(dataset, 64, 0))
    entry = resolved["seq_blocks_0"]["config"]
    scale, shift = batch_norm_scale_shift(graph.submodule(graph.node("seq_blocks_0")))
    # max method per channel: the largest f with |scale_c| * 2^f <= 127.
    expected = [int(torch.floor(torch.log2(127 / s.abs()))) for s in scale]
    assert entry["weight_frac_width"] == [min(max(f, -32), 40) for f in expected]
    assert isinstance(entry["data_in_frac_width"], int) and len(entry["bias_frac_width"]) == 16
    quantize_transform_pass(graph, resolved)
