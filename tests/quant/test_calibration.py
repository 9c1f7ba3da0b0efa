"""Calibration of frac widths against a NumPy float64 reference of the definitions, and per-channel
fixed point against the per-tensor quantizer row by row."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from machop.quant.arithmetic import OperandSpec, frac_width_range
from machop.quant.calibration import (
    METHODS,
    Observer,
    choose_channel_fracs,
    choose_frac,
    percentile_of_rows,
)
from machop.quant.modules import QuantLinear
from machop.quant.quantizers import integer_quantize

# --------------------------------------------------------------------------------------------
# NumPy reference: the documented definitions, searched by brute force over every allowed frac
# --------------------------------------------------------------------------------------------

LOWEST, MARGIN = -32, 32


def ref_range(width: int, signed: bool) -> tuple[int, int]:
    return (-(2 ** (width - 1)), 2 ** (width - 1) - 1) if signed else (0, 2**width - 1)


def ref_values(x: np.ndarray, signed: bool) -> np.ndarray:
    x = x.astype(np.float64)
    return x if signed else np.maximum(x, 0)


def ref_quantize(x: np.ndarray, width: int, frac: int, signed: bool) -> np.ndarray:
    lo, hi = ref_range(width, signed)
    return np.clip(np.round(x * 2.0**frac), lo, hi) / 2.0**frac


def ref_fit(statistic: float, width: int, signed: bool) -> int:
    """Largest allowed f with statistic * 2^f <= hi (hi at least 1), by trying every f."""
    if statistic == 0:
        return width // 2
    cap = max(ref_range(width, signed)[1], 1)
    fitting = [f for f in range(LOWEST, width + MARGIN + 1) if statistic * 2.0**f <= cap]
    return max(fitting) if fitting else LOWEST


def ref_choose(x: np.ndarray, width: int, signed: bool, method: str, percentile: float = 99.99) -> int:
    values = ref_values(x.ravel(), signed)
    magnitude = np.abs(values)
    peak = float(magnitude.max()) if magnitude.size else 0.0
    if method == "max":
        return ref_fit(peak, width, signed)
    if method == "percentile":
        level = float(np.percentile(magnitude, percentile))
        return ref_fit(level if level > 0 else peak, width, signed)
    low = ref_fit(peak, width, signed)
    if peak == 0:
        return low
    errors = {f: float(np.sum((values - ref_quantize(values, width, f, signed)) ** 2))
              for f in range(low, width + MARGIN + 1)}
    best = min(errors.values())
    return min(f for f, e in errors.items() if e <= best * (1 + 1e-9))


def samples(seed: int) -> list[np.ndarray]:
    """Tensors of several shapes: gaussian, heavy-tailed, ReLU-like, tiny, huge, exact grids."""
    rng = np.random.default_rng(seed)
    return [
        rng.normal(0, 0.3, 500),
        rng.standard_t(2, 400) * 2,
        np.maximum(rng.normal(0.2, 1.0, 300), 0),
        rng.normal(0, 1e-4, 200),
        rng.normal(0, 3e3, 200),
        rng.integers(-8, 8, 64) / 4.0,
        np.concatenate([rng.normal(0, 0.1, 999), [25.0]]),
        np.array([-0.75]),
        np.zeros(5),
    ]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("width", [1, 2, 3, 4, 6, 8, 12])
def test_per_tensor_frac_equals_the_reference(method: str, signed: bool, width: int) -> None:
    for index, x in enumerate(samples(width)):
        got = choose_frac(torch.from_numpy(x).float(), width, signed, method)
        want = ref_choose(x.astype(np.float32), width, signed, method)
        assert got == want, (index, got, want)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("width", [2, 3, 5, 8])
def test_per_channel_fracs_are_the_reference_of_each_row(method: str, width: int) -> None:
    rng = np.random.default_rng(width)
    scales = np.array([1e-3, 0.05, 0.3, 1.0, 7.0, 0.0])[:, None]
    weight = (rng.normal(size=(6, 3, 5)) * scales[:, :, None]).astype(np.float32)
    got = choose_channel_fracs(torch.from_numpy(weight), width, True, method)
    assert got == tuple(ref_choose(row, width, True, method) for row in weight)
    bias = (rng.normal(size=6) * scales[:, 0]).astype(np.float32)
    assert choose_channel_fracs(torch.from_numpy(bias), width, True, method) == \
        tuple(ref_choose(np.array([b]), width, True, method) for b in bias)


@pytest.mark.parametrize("p", [50, 90, 99, 99.99, 100, 0.1])
def test_percentile_interpolates_exactly_like_numpy(p: float) -> None:
    rows = np.random.default_rng(3).exponential(size=(4, 1001)).astype(np.float32)
    got = percentile_of_rows(torch.from_numpy(rows), p).numpy()
    assert np.array_equal(got, np.percentile(rows.astype(np.float64), p, axis=1))


def test_hand_computed_choices() -> None:
    x = torch.tensor([0.1, -0.2, 0.3, 5.0])
    # max: 5 * 2^f <= 7 -> f = 0; 4 bits signed.
    assert choose_frac(x, 4, True, "max") == 0
    # unsigned: negatives are 0 at every f, so only 5.0 counts: 5 * 2^f <= 15 -> f = 1.
    assert choose_frac(x, 4, False, "max") == 1
    # A percentile that lands on 0 falls back to the max; all zeros give width // 2.
    assert choose_frac(torch.tensor([0.0] * 99 + [3.0]), 8, True, "percentile", 50) == 5
    assert choose_frac(torch.zeros(4), 6, True, "mse") == 3
    # mse keeps 5.0 at 4 bits (clipping it would cost more than rounding the rest)...
    assert choose_frac(x, 4, True, "mse") == 0
    # ...but clips a lone 2.0 among twenty 0.5s at 2 bits (codes -2..1): errors 5 at f = -1
    # (max's choice: 0.5 rounds to 0), 6 at f = 0, 2.25 at f = 1 (2.0 clips to 0.5), 4.3125 at f = 2.
    many = torch.tensor([0.5] * 20 + [2.0])
    assert (choose_frac(many, 2, True, "max"), choose_frac(many, 2, True, "mse")) == (-1, 1)
    # Beyond the allowed range: a tiny tensor takes the largest frac, a huge one the smallest.
    assert choose_frac(torch.tensor([1e-30]), 8, True, "max") == frac_width_range(8)[1]
    assert choose_frac(torch.tensor([1e30]), 8, True, "mse") == frac_width_range(8)[0]


def test_mse_is_never_worse_than_max_or_percentile() -> None:
    rng = np.random.default_rng(7)
    for width in (2, 3, 4, 6, 8):
        x = np.concatenate([rng.normal(0, 1, 2000), rng.normal(0, 20, 5)])
        error = {}
        for method in METHODS:
            f = choose_frac(torch.from_numpy(x).float(), width, True, method)
            error[method] = float(np.sum((x - ref_quantize(x, width, f, True)) ** 2))
        assert error["mse"] <= min(error["max"], error["percentile"]) * (1 + 1e-9)


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown calibration method 'kl'"):
        choose_frac(torch.ones(3), 8, True, "kl")


# --------------------------------------------------------------------------------------------
# Observer: exact extremes, bounded uniform sample
# --------------------------------------------------------------------------------------------


def test_observer_keeps_every_value_while_under_capacity() -> None:
    observer = Observer(capacity=100, generator=torch.Generator().manual_seed(0))
    batches = [torch.randn(4, 5) for _ in range(3)] + [torch.tensor([float("nan"), float("inf")])]
    for batch in batches:
        observer.update(batch)
    everything = torch.cat([b.flatten() for b in batches[:3]])
    assert observer.count == 60
    assert sorted(observer.sample.tolist()) == sorted(everything.tolist())
    assert observer.largest(True) == float(everything.abs().max())
    assert observer.largest(False) == max(float(everything.max()), 0.0)
    for method in METHODS:
        assert observer.choose(6, True, method) == choose_frac(everything, 6, True, method)


def test_observer_sample_is_bounded_and_seeded() -> None:
    values = torch.randn(5000, generator=torch.Generator().manual_seed(1))

    def observe(chunk: int, seed: int) -> Observer:
        observer = Observer(capacity=256, generator=torch.Generator().manual_seed(seed))
        for start in range(0, len(values), chunk):
            observer.update(values[start:start + chunk])
        return observer

    first, again, other = observe(100, 0), observe(100, 0), observe(100, 1)
    assert first.sample.numel() == 256 and first.count == 5000
    assert torch.equal(first.sample, again.sample)
    assert not torch.equal(first.sample.sort().values, other.sample.sort().values)
    assert observe(5000, 0).sample.numel() == 256
    assert first.largest(True) == float(values.abs().max())  # exact, though the sample is not all
    assert set(first.sample.tolist()) <= set(values.tolist())


@pytest.mark.parametrize("batch", [64, 1000, 30])
def test_observer_sample_is_uniform(batch: int) -> None:
    """Each of 1000 values is kept with probability 100/1000: counts over 200 seeds stay near 20.

    Batches of 64 fill the sample, then draw only the values that enter; one batch of 1000 draws
    those below a cut at once; batches of 30 cross the capacity mid-batch."""
    values = torch.arange(1000, dtype=torch.float32)
    kept = torch.zeros(1000)
    for seed in range(200):
        observer = Observer(capacity=100, generator=torch.Generator().manual_seed(seed))
        for start in range(0, 1000, batch):
            observer.update(values[start:start + batch])
        assert observer.sample.numel() == 100 and len(set(observer.sample.tolist())) == 100
        kept[observer.sample.long()] += 1
    # Binomial(200, 0.1): mean 20, sd 4.2; first and last halves alike (no bias by arrival order).
    assert abs(kept[:500].mean().item() - 20) < 1 and abs(kept[500:].mean().item() - 20) < 1
    assert kept.min() > 0 and kept.max() < 45


# --------------------------------------------------------------------------------------------
# Per-channel fixed point
# --------------------------------------------------------------------------------------------


def test_per_channel_quantizer_is_the_per_tensor_one_row_by_row() -> None:
    x = torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(0)) * 4
    fracs = (-2, 0, 3, 7, 40)
    for signed in (True, False):
        q = integer_quantize(x, 6, fracs, is_signed=signed)
        for row, frac in enumerate(fracs):
            assert torch.equal(q[row], integer_quantize(x[row], 6, frac, is_signed=signed))
            reference = ref_quantize(x[row].numpy().astype(np.float64), 6, frac, signed)
            assert np.array_equal(q[row].numpy(), reference.astype(np.float32))
    assert torch.equal(integer_quantize(x, 6, [2] * 5), integer_quantize(x, 6, 2))
    with pytest.raises(ValueError, match="3 given for a tensor of shape"):
        integer_quantize(x, 6, [1, 2, 3])


def test_per_channel_gradient_is_straight_through() -> None:
    x = torch.randn(3, 4, requires_grad=True)
    integer_quantize(x, 4, [1, 2, 3]).sum().backward()
    assert torch.equal(x.grad, torch.ones(3, 4))


def test_per_channel_spec_records_a_list_and_quantizes_cached_weights() -> None:
    spec = OperandSpec("integer", width=4, frac_width=[1, 2, 3])
    assert spec.frac_width == (1, 2, 3)
    assert spec.precision() == {"type": "integer", "width": 4, "frac_width": [1, 2, 3]}
    linear = torch.nn.Linear(2, 3)
    specs = {"weight": spec, "bias": OperandSpec("integer", width=8, frac_width=[5, 6, 7])}
    module = QuantLinear.from_float(linear, specs, {"name": "integer"})
    with torch.no_grad():
        weight, bias = module.quantized_parameters()
        assert module.quantized_parameters()[0] is weight  # cached while the weights stay
    assert torch.equal(weight, integer_quantize(linear.weight.detach(), 4, [1, 2, 3]))
    assert torch.equal(bias, integer_quantize(linear.bias.detach(), 8, [5, 6, 7]))
    assert module.machop_precision()["weight"]["frac_width"] == [1, 2, 3]
