"""The forward without gradients (plans, no-gradient quantizers) gives the plain forward's exact bits.

The reference everywhere is the plain path: OperandSpec.quantize, and a module's forward with
gradients recorded (fresh straight-through quantization of the weights, the same values).
"""

from __future__ import annotations

import copy
import itertools
import pickle

import pytest
import torch
from torch import nn

from machop.quant.arithmetic import OperandSpec, parse_node_config
from machop.quant.modules import QuantConv2d, QuantLinear, QuantReLU

SPECS = [OperandSpec("integer", width=w, frac_width=f, is_signed=s)
         for w, f, s in [(1, 0, True), (1, 0, False), (4, 2, True), (4, -2, False), (8, 4, True),
                         (8, 4, False), (7, 4, False), (8, 0, True), (8, 2, True), (6, 9, True),
                         (16, 8, True), (24, 12, False), (25, 10, True), (32, 16, True)]]
INT8 = {"name": "integer", "data_in_width": 8, "data_in_frac_width": 4, "weight_width": 8,
        "weight_frac_width": 4, "bias_width": 8, "bias_frac_width": 4}
WIDE = {"name": "integer", "data_in_width": 16, "data_in_frac_width": 8, "weight_width": 16,
        "weight_frac_width": 12, "bias_width": 16, "bias_frac_width": 8}
RELU = {"name": "integer", "data_in_width": 8, "data_in_frac_width": 4}
NARROW_SPEC = OperandSpec("integer", width=4, frac_width=2)
WIDE_SPEC = OperandSpec("integer", width=8, frac_width=4)


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bit patterns: equality here includes the sign of zero and NaN payloads."""
    return t.view({torch.float32: torch.int32, torch.float64: torch.int64}[t.dtype])


def assert_same_bits(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert torch.equal(bits(got), bits(want))


def inputs(dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    """Ties at many steps, wide random spreads, NaN, infinities, signed zeros, huge and tiny values."""
    generator = torch.Generator().manual_seed(seed)
    ties = torch.cat([(torch.arange(-300, 300, dtype=dtype) + 0.5) / 2.0**f for f in (-2, 0, 2, 4, 9)])
    spread = torch.cat([torch.randn(400, generator=generator, dtype=dtype) * s for s in (1e-3, 1, 40, 1e6)])
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e38, -1e38, 1e-40],
                           dtype=dtype)
    return torch.cat([ties, spread, special])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("spec", SPECS, ids=repr)
def test_no_grad_quantizer_gives_the_bits_of_quantize(spec, dtype):
    x = inputs(dtype)
    with torch.no_grad():
        assert_same_bits(spec.no_grad_quantizer(dtype, True)(x), spec.quantize(x))
        assert_same_bits(spec.no_grad_quantizer(dtype, False)(x), spec.quantize(x))  # off-CPU constants


def test_no_grad_quantizer_of_another_dtype_still_gives_the_bits_of_quantize():
    spec = SPECS[4]
    quantize = spec.no_grad_quantizer(torch.float32, True)
    for x in (inputs(torch.float64), inputs().half(), torch.arange(-20, 20)):
        with torch.no_grad():
            torch.testing.assert_close(quantize(x), spec.quantize(x), rtol=0, atol=0, equal_nan=True)


def test_quantizing_a_quantized_tensor_again_gives_the_bits_of_quantize():
    """Every chain of three formats: the second and third see tensors that remember their grid."""
    x = inputs()
    with torch.no_grad():
        for first, second, third in itertools.product(SPECS, repeat=3):
            once = first.no_grad_quantizer(torch.float32, True)(x)
            twice = second.no_grad_quantizer(torch.float32, True)(once)
            thrice = third.no_grad_quantizer(torch.float32, True)(twice)
            want_twice = second.quantize(once)
            assert_same_bits(twice, want_twice)
            assert_same_bits(thrice, third.quantize(want_twice))


def test_a_clamp_onto_a_finer_grid_makes_the_finer_grid_the_one_remembered():
    """Codes 0..15 at step 1, clamped to 7.9375 (step 1/16), then rounded to step 1/4: 8.0."""
    coarse, fine, middle = (OperandSpec("integer", width=w, frac_width=f, is_signed=s)
                            for w, f, s in [(4, 0, False), (8, 4, True), (8, 2, True)])
    with torch.no_grad():
        q = coarse.no_grad_quantizer(torch.float32, True)(torch.tensor([3.0, 12.0]))
        q = fine.no_grad_quantizer(torch.float32, True)(q)
        assert q.tolist() == [3.0, 7.9375]
        assert middle.no_grad_quantizer(torch.float32, True)(q).tolist() == [3.0, 8.0]


def test_a_tensor_already_within_the_grid_is_returned_as_it_is():
    narrow, wide = NARROW_SPEC, WIDE_SPEC
    with torch.no_grad():
        q = narrow.no_grad_quantizer(torch.float32, True)(inputs())
        assert wide.no_grad_quantizer(torch.float32, True)(q) is q


def test_a_quantized_tensor_changed_in_place_is_quantized_in_full():
    narrow, wide = NARROW_SPEC, WIDE_SPEC
    with torch.no_grad():
        q = narrow.no_grad_quantizer(torch.float32, True)(inputs())
        q.add_(0.01)  # off the grid: the remembered grid no longer holds
        assert_same_bits(wide.no_grad_quantizer(torch.float32, True)(q), wide.quantize(q))
        r = narrow.no_grad_quantizer(torch.float32, True)(inputs())
        r.requires_grad_()  # a tensor that records gradients gets a new tensor, never itself
        assert wide.no_grad_quantizer(torch.float32, True)(r) is not r


def test_inference_mode_gives_the_same_bits():
    x = inputs()
    with torch.inference_mode():
        once = SPECS[4].no_grad_quantizer(torch.float32, True)(x)
        twice = SPECS[8].no_grad_quantizer(torch.float32, True)(once)
    assert_same_bits(once, SPECS[4].quantize(x))
    assert_same_bits(twice, SPECS[8].quantize(SPECS[4].quantize(x)))


# ---- modules ----------------------------------------------------------------------------------


def relu(config=RELU, unsigned=True):
    return QuantReLU(parse_node_config(config, node="relu", operands=("data_in", "data_out"),
                                       unsigned_data_in=unsigned), config)


def linear(config=INT8, in_features=16, out_features=16, seed=0, scale=1.0):
    torch.manual_seed(seed)
    dense = nn.Linear(in_features, out_features)
    with torch.no_grad():
        dense.weight.mul_(scale)
    return QuantLinear.from_float(dense, parse_node_config(config, node="fc"), config).eval()


def reference(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The plain forward: gradients recorded, weights quantized afresh."""
    with torch.enable_grad():
        return module(x.clone().requires_grad_()).detach()


def planned(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module(x)


def jsc_like() -> nn.Sequential:
    """ReLU, then Linear+ReLU three times, as jsc-three-linear-layers quantized with its ReLUs."""
    layers = [relu()]
    for seed, (i, o) in enumerate([(16, 16), (16, 16), (16, 5)]):
        layers += [linear(in_features=i, out_features=o, seed=seed, scale=4.0), relu()]
    return nn.Sequential(*layers).eval()


def batch(seed=0, rows=256, features=16):
    x = torch.randn(rows, features, generator=torch.Generator().manual_seed(seed)) * 6
    x[0, :4] = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0])
    x[1] = (torch.arange(features) - 8.0 + 0.5) / 16  # ties of the 2^-4 grid
    return x


def test_a_quantized_mlp_without_gradients_gives_the_plain_forwards_bits():
    model, x = jsc_like(), batch()
    want = reference(model, x)
    assert_same_bits(planned(model, x), want)
    assert all(layer.eval_plan is not None for layer in model)
    assert_same_bits(planned(model, x), want)  # the plans made by the first call


MINIFLOAT = {"name": "minifloat_ieee", "data_in_width": 8, "data_in_exponent_width": 4, "weight_width": 8,
             "weight_exponent_width": 4, "data_out_width": 6, "data_out_exponent_width": 3}


@pytest.mark.parametrize("config", [INT8, WIDE, {**INT8, "data_out_width": 6, "data_out_frac_width": 2},
                                    {**WIDE, "data_out_width": 16, "data_out_frac_width": 6},
                                    {**INT8, "weight_frac_width": [3, 4, 5, 6]}, MINIFLOAT],
                         ids=["int8", "wide", "int8-out", "wide-out", "per-channel", "minifloat"])
def test_linear_and_conv_plans_give_the_plain_forwards_bits(config):
    per_channel = isinstance(config.get("weight_frac_width"), list)
    layer = linear({**config, "weight_frac_width": 4} if per_channel else config, scale=4.0)
    x = batch() * 10
    assert_same_bits(planned(layer, x), reference(layer, x))
    torch.manual_seed(1)
    conv = QuantConv2d.from_float(nn.Conv2d(3, 4, 3, padding=1), parse_node_config(config, node="conv"),
                                  config).eval()
    images = torch.randn(8, 3, 6, 6) * 10
    assert_same_bits(planned(conv, images), reference(conv, images))
    assert_same_bits(planned(conv, images), reference(conv, images))


def test_a_signed_relu_with_an_output_format_gives_the_plain_forwards_bits():
    layer = relu({**RELU, "data_out_width": 4, "data_out_frac_width": 1}, unsigned=False)
    x = batch()
    assert_same_bits(planned(layer, x), reference(layer, x))
    assert_same_bits(planned(layer, planned(relu(), x)), reference(layer, reference(relu(), x)))


def test_a_plan_follows_the_weights_changed_in_place_replaced_or_reloaded():
    layer, x = linear(), batch()
    planned(layer, x)
    with torch.no_grad():
        layer.weight.mul_(0.5)
    assert_same_bits(planned(layer, x), reference(layer, x))
    layer.bias = nn.Parameter(torch.full((16,), 0.25))
    assert layer.eval_plan is None
    assert_same_bits(planned(layer, x), reference(layer, x))
    layer.weight.data = torch.randn(16, 16)  # neither a new attribute nor a new version
    assert_same_bits(planned(layer, x), reference(layer, x))
    layer.load_state_dict(linear(seed=3).state_dict())
    assert_same_bits(planned(layer, x), reference(layer, x))
    layer.double()
    assert_same_bits(planned(layer, x.double()), reference(layer, x.double()))


def test_setting_the_specs_or_the_sum_dtype_drops_the_plan_and_the_cached_weights():
    layer, x = linear(scale=4.0), batch() * 10
    before = planned(layer, x)
    layer.specs = parse_node_config({**INT8, "weight_width": 3, "weight_frac_width": 1}, node="fc")
    assert layer.eval_plan is None
    after = planned(layer, x)
    assert not torch.equal(after, before)
    assert_same_bits(after, reference(layer, x))
    wide = linear(WIDE, scale=4.0)
    exact = planned(wide, x)
    wide.exact_dtype = None  # float32 sums, as before exact simulation: rounds where float64 did not
    assert_same_bits(planned(wide, x), reference(wide, x))
    assert not torch.equal(planned(wide, x), exact)


def test_without_the_weight_cache_no_plan_is_made():
    layer, x = linear(), batch()
    layer.cache_weights = False
    assert_same_bits(planned(layer, x), reference(layer, x))
    assert layer.eval_plan is None


def test_training_after_evaluation_records_straight_through_gradients():
    layer, x = linear(), batch()[2:]
    planned(layer, x)
    layer.train()
    assert layer.eval_plan is None
    x.requires_grad_()
    layer(x).sum().backward()
    weight, _ = layer.quantized_parameters()
    assert torch.equal(x.grad, weight.detach().sum(0).expand_as(x))  # d/dx of sum(q(x) @ Wq^T) is 1 @ Wq
    assert layer.weight.grad is not None


def test_copies_and_pickles_of_a_planned_model_leave_the_plans_behind():
    model, x = jsc_like(), batch()
    want = planned(model, x)
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert all(layer.eval_plan is None for layer in twin)
        assert_same_bits(planned(twin, x), want)


def test_eval_on_an_evaluating_layer_keeps_its_plan_and_a_mode_change_drops_it():
    layer, x = linear(), batch()
    planned(layer, x)
    plan = layer.eval_plan
    layer.eval()  # already in eval mode: evaluating twice quantizes the weights once
    assert layer.eval_plan is plan
    layer.train()
    assert layer.eval_plan is None
    layer.eval()
    assert_same_bits(planned(layer, x), reference(layer, x))
