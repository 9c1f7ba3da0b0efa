"""Quantized Linear/Conv sums are the exact fixed-point sums at every width (float64 where float32 rounds)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from machop.quant.arithmetic import parse_node_config
from machop.quant.exact import fixed_operand, float32_sums_are_exact, simulation_dtype, sum_format
from machop.quant.modules import QuantConv2d, QuantLinear

WIDE = {"name": "integer", "data_in_width": 16, "data_in_frac_width": 8, "weight_width": 16,
        "weight_frac_width": 12, "bias_width": 16, "bias_frac_width": 8}
NARROW = {"name": "integer", "data_in_width": 8, "data_in_frac_width": 4, "weight_width": 8,
          "weight_frac_width": 4, "bias_width": 8, "bias_frac_width": 4}


def quant_linear(config, in_features=64, out_features=32, seed=0):
    torch.manual_seed(seed)
    dense = nn.Linear(in_features, out_features)
    with torch.no_grad():
        dense.weight.mul_(4)  # reach the top of the 16/12 grid too
    specs = parse_node_config(config, node="fc")
    return QuantLinear.from_float(dense, specs, config).eval()


def codes(x, frac):
    """Integer codes (int64) of values on a 2^-frac grid, checked to be exact."""
    scaled = x.double() * 2.0**frac
    assert torch.equal(scaled, scaled.round())
    return scaled.round().long()


def exact_linear_codes(layer, x):
    """(codes, frac) of Σ x·w + b computed with int64 codes: the exact reference."""
    f_in, f_w, f_b = 8, 12, 8
    xq = layer.specs["data_in"].quantize(x)
    weight, bias = layer.quantized_parameters()
    frac = f_in + f_w
    total = codes(xq, f_in) @ codes(weight, f_w).T + (codes(bias, f_b) << (frac - f_b))
    return total, frac


def round_half_even_shift(values, shift):
    """values / 2^shift rounded half to even, in integers."""
    floor = torch.div(values, 2**shift, rounding_mode="floor")
    rest = values - floor * 2**shift
    half = 2 ** (shift - 1)
    up = (rest > half) | ((rest == half) & (floor % 2 == 1))
    return floor + up.long()


def test_16_bit_linear_output_equals_the_exact_sum_rounded_once_to_float32():
    layer = quant_linear(WIDE)
    assert layer.exact_dtype == torch.float64
    x = torch.randn(1000, 64) * 40
    total, frac = exact_linear_codes(layer, x)
    reference = (total.double() / 2.0**frac).float()  # int64 -> float64 is exact below 2^53
    with torch.no_grad():
        out = layer(x)
    assert out.dtype == torch.float32
    assert torch.equal(out, reference)


def test_16_bit_linear_with_a_16_bit_output_equals_the_integer_reference_exactly():
    config = {**WIDE, "data_out_width": 16, "data_out_frac_width": 6}
    layer = quant_linear(config)
    x = torch.randn(1000, 64) * 40
    total, frac = exact_linear_codes(layer, x)
    rounded = round_half_even_shift(total, frac - 6).clamp(-(2**15), 2**15 - 1)
    with torch.no_grad():
        out = layer(x)
    assert torch.equal(codes(out, 6), rounded)


def test_float32_sums_of_the_16_bit_layer_would_not_be_exact():
    """The reason for float64: the same layer summed in float32 misses the exact result."""
    layer = quant_linear(WIDE)
    x = torch.randn(1000, 64) * 40
    total, frac = exact_linear_codes(layer, x)
    layer.exact_dtype = None
    with torch.no_grad():
        float32_sums = layer(x)
    assert not torch.equal(float32_sums.double(), total.double() / 2.0**frac)


def test_narrow_layers_keep_float32_and_are_exact_there():
    layer = quant_linear(NARROW, in_features=16, out_features=8)
    assert layer.exact_dtype is None
    form = sum_format(fixed_operand(layer.specs["data_in"]), fixed_operand(layer.specs["weight"]),
                      fixed_operand(layer.specs["bias"]), 16)
    assert form.magnitude_bits <= 24
    x = torch.randn(500, 16) * 4
    xq = layer.specs["data_in"].quantize(x)
    weight, bias = layer.quantized_parameters()
    with torch.no_grad():
        assert torch.equal(layer(x).double(), xq.double() @ weight.double().T + bias.double())


def test_sum_format_counts_reduction_length_and_bias_alignment():
    specs = parse_node_config(NARROW, node="fc")
    x, w, b = (fixed_operand(specs[op]) for op in ("data_in", "weight", "bias"))
    # 128 * 128 * K codes at frac 8, plus a bias of 128 codes at frac 4 (x16 at frac 8).
    assert sum_format(x, w, b, 1).frac == 8
    assert sum_format(x, w, b, 1).magnitude_bits == (128 * 128 + 128 * 16).bit_length()
    assert sum_format(x, w, b, 1024).magnitude_bits == (1024 * 128 * 128 + 128 * 16).bit_length()
    assert simulation_dtype(specs, 512) is None  # 2^23 + ...: below 2^24
    assert simulation_dtype(specs, 1024) == torch.float64


def test_float_operands_keep_the_float_path():
    specs = parse_node_config({"name": "integer", "weight_width": 16, "weight_frac_width": 12}, node="fc")
    assert simulation_dtype(specs, 4096) is None
    specs = parse_node_config({"name": "minifloat_ieee", "data_in_width": 8, "data_in_exponent_width": 4,
                               "weight_width": 8, "weight_exponent_width": 4}, node="fc")
    assert simulation_dtype(specs, 4096) is None


@pytest.mark.parametrize("per_channel", [False, True])
def test_16_bit_conv_equals_the_exact_sum(per_channel):
    torch.manual_seed(1)
    conv = nn.Conv2d(8, 4, 3, padding=1)
    config = dict(WIDE)
    if per_channel:
        config["weight_frac_width"] = [10, 11, 12, 13]
    specs = parse_node_config(config, node="conv")
    layer = QuantConv2d.from_float(conv, specs, config).eval()
    assert layer.exact_dtype == torch.float64
    x = torch.randn(16, 8, 6, 6) * 40
    xq = specs["data_in"].quantize(x)
    weight, bias = layer.quantized_parameters()
    # float64 holds every partial sum here (< 2^53), so this reference is the exact sum.
    exact = torch.nn.functional.conv2d(xq.double(), weight.double(), bias.double(), padding=1)
    with torch.no_grad():
        assert torch.equal(layer(x), exact.float())


def test_small_16_bit_weights_stay_float32_and_are_exact():
    """The worst case of the widths asks for float64; the actual weight codes fit float32's 24 bits."""
    layer = quant_linear(WIDE)
    with torch.no_grad():
        layer.weight.mul_(0.001)  # Σ|w|·max|x| + |b| ≈ 0.016 · 128 + 0.125 < 2^(24 - 20)
    assert layer.exact_dtype == torch.float64
    x = torch.randn(1000, 64) * 40
    with torch.no_grad():
        out = layer(x)
    assert layer.sum_dtype() is None
    total, frac = exact_linear_codes(layer, x)
    assert torch.equal(out.double(), total.double() / 2.0**frac)  # exact, not merely rounded once


def test_weights_that_grow_in_place_go_back_to_float64():
    layer = quant_linear(WIDE)
    with torch.no_grad():
        layer.weight.mul_(0.001)
        layer(torch.zeros(1, 64))
        assert layer.sum_dtype() is None
        layer.weight.mul_(1000)  # a new version: the cached weights and their dtype are refreshed
        x = torch.randn(1000, 64) * 40
        out = layer(x)
    assert layer.sum_dtype() == torch.float64
    total, frac = exact_linear_codes(layer, x)
    assert torch.equal(out, (total.double() / 2.0**frac).float())


def test_float32_bound_counts_each_channel_its_bias_and_the_output_grid():
    # x: 8/4 (largest |x| = 128 / 16 = 8), w and b: 8/4, so F = 8 and the bound must stay below 2^16.
    specs = parse_node_config(NARROW, node="fc")
    assert simulation_dtype(specs, 1032) == torch.float64  # the worst case: 1032·128·127 + 128·16 codes
    weight = torch.full((2, 1032), 7.9375)  # channel 0: 1032 · 7.9375 · 8 = 65532
    weight[1] = 0
    assert float32_sums_are_exact(specs, weight, torch.zeros(2))
    assert not float32_sums_are_exact(specs, weight, torch.tensor([4.0, 0.0]))  # 65536 reaches 2^16
    assert float32_sums_are_exact(specs, weight, torch.tensor([0.0, 4.0]))  # channel 1 holds only 4
    assert not float32_sums_are_exact(specs, torch.full((2, 1033), 7.9375), torch.zeros(2))
    narrow_out = parse_node_config({**NARROW, "data_out_width": 8, "data_out_frac_width": 2}, node="fc")
    assert float32_sums_are_exact(narrow_out, weight, torch.zeros(2))
    wide_out = parse_node_config({**NARROW, "data_out_width": 32, "data_out_frac_width": 2}, node="fc")
    assert not float32_sums_are_exact(wide_out, weight, torch.zeros(2))  # codes float32 cannot hold
