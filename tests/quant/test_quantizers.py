"""Quantizers against small NumPy float64 references of their definitions, plus properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from machop.quant.quantizers import (
    binary_quantize,
    block_fp_quantize,
    block_shape,
    integer_quantize,
    log_quantize,
    minifloat_denorm_quantize,
    minifloat_ieee_quantize,
    ternary_quantize,
)

# --------------------------------------------------------------------------------------------
# NumPy references
# --------------------------------------------------------------------------------------------


def np_integer(x: np.ndarray, width: int, frac: int, signed: bool) -> np.ndarray:
    lo, hi = (-(2 ** (width - 1)), 2 ** (width - 1) - 1) if signed else (0, 2**width - 1)
    x = x.astype(np.float64)
    return (np.clip(np.round(x * 2.0**frac), lo, hi) / 2.0**frac).astype(np.float32)


def ieee_grid(width: int, e: int, bias: int) -> np.ndarray:
    """Every non-negative value of the format, from its bit fields (exponent 0 = subnormal)."""
    m = width - 1 - e
    values = []
    for ef in range(2**e):
        for mf in range(2**m):
            if ef == 0:
                values.append(mf / 2**m * 2.0 ** (1 - bias))
            else:
                values.append((1 + mf / 2**m) * 2.0 ** (ef - bias))
    return np.unique(values)


def denorm_grid(width: int, e: int, bias: int) -> np.ndarray:
    m = width - 1 - e
    return np.unique([mf / 2**m * 2.0 ** (ef - bias) for ef in range(2**e) for mf in range(2**m)])


def np_round_to_grid(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Nearest grid value of |x| (sign kept); a tie goes to the value that is an even multiple
    of the spacing between the two candidates; beyond the grid saturates."""
    x = x.astype(np.float64)
    a = np.abs(x)
    hi_index = np.clip(np.searchsorted(grid, a), 1, len(grid) - 1)
    lo, hi = grid[hi_index - 1], grid[hi_index]
    spacing = hi - lo
    to_hi = (a - lo > hi - a) | ((a - lo == hi - a) & (np.round(hi / spacing) % 2 == 0))
    q = np.where(to_hi, hi, lo)
    q = np.where(a >= grid[-1], grid[-1], q)
    return np.copysign(q, x).astype(np.float32)


def np_log(x: np.ndarray, width: int, bias: int) -> np.ndarray:
    x = x.astype(np.float64)
    lo, hi = -bias, 2 ** (width - 1) - 1 - bias
    with np.errstate(divide="ignore"):
        e = np.clip(np.round(np.log2(np.abs(x))), lo, hi)
    e = np.where(x == 0, lo, e)
    return np.where(x < 0, -(2.0**e), 2.0**e).astype(np.float32)


def np_block_fp(x: np.ndarray, width: int, e: int, bias: int, block: int) -> np.ndarray:
    """Blocks of `block` consecutive elements of the last dimension (x's last dim divisible)."""
    m = width - 1
    blocks = x.astype(np.float64).reshape(-1, block)
    block_max = np.abs(blocks).max(axis=1, keepdims=True)
    _, p = np.frexp(block_max)  # block_max = f * 2^p, f in [0.5, 1): floor(log2) + 1 = p
    exponent = np.clip(p, -bias, 2**e - 1 - bias)
    codes = np.clip(np.round(np.abs(blocks) * 2.0 ** (m - exponent)), 0, 2**m - 1)
    return np.copysign(codes * 2.0 ** (exponent - m), blocks).reshape(x.shape).astype(np.float32)


def np_ternary(x: np.ndarray, threshold: float, scaling: bool) -> np.ndarray:
    """Statistics in float64, delta and alpha rounded to float32 (the input's precision)."""
    a = np.abs(x.astype(np.float32))
    delta = np.float32(threshold * a.astype(np.float64).mean())
    kept = a > delta
    q = np.sign(x) * kept
    if scaling:
        q = q * np.float32(a[kept].astype(np.float64).mean() if kept.any() else 0.0)
    return q.astype(np.float32)


def assert_bit_exact(actual: torch.Tensor, expected: np.ndarray) -> None:
    expected_t = torch.from_numpy(np.ascontiguousarray(expected))
    if not torch.equal(actual, expected_t):
        bad = (actual != expected_t).nonzero()[:5].flatten().tolist()
        raise AssertionError(f"mismatch at {bad}: got {actual.flatten()[bad].tolist()}, "
                             f"expected {expected_t.flatten()[bad].tolist()}")


# --------------------------------------------------------------------------------------------
# Integer
# --------------------------------------------------------------------------------------------


def integer_inputs(width: int, frac: int, generator: torch.Generator) -> torch.Tensor:
    span = 2 ** (width + 1)
    ties = (torch.arange(-span, span, dtype=torch.float64) + 0.5) / 2**frac
    grid = torch.arange(-span, span, dtype=torch.float64) / 2**frac
    scale = 2.0 ** (width - frac)
    noise = torch.randn(512, generator=generator, dtype=torch.float64) * scale
    special = torch.tensor([0.0, -0.0, 1e30, -1e30, float("inf"), -float("inf"), 1e-30, -1e-30],
                           dtype=torch.float64)
    return torch.cat([ties, grid, noise, special]).float()


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("width", range(1, 17))
def test_integer_bit_exact_against_numpy(width: int, signed: bool) -> None:
    generator = torch.Generator().manual_seed(width)
    for frac in range(width + 1):
        x = integer_inputs(width, frac, generator)
        assert_bit_exact(integer_quantize(x, width, frac, is_signed=signed),
                         np_integer(x.numpy(), width, frac, signed))


@pytest.mark.parametrize("value, expected", [
    (0.375, 0.5),     # 1.5 -> 2 (half to even)
    (0.625, 0.5),     # 2.5 -> 2
    (-0.125, 0.0),    # -0.5 -> -0
    (0.875, 1.0),     # 3.5 -> 4
    (5.0, 1.75),      # 20 -> clamp 7
    (-5.0, -2.0),     # -20 -> clamp -8
])
def test_integer_hand_computed_width4_frac2(value: float, expected: float) -> None:
    assert integer_quantize(torch.tensor([value]), 4, 2).item() == expected


def test_integer_unsigned_and_width_one() -> None:
    x = torch.tensor([-1.0, 5.0, 4.0, 0.3])
    assert integer_quantize(x, 4, 2, is_signed=False).tolist() == [0.0, 3.75, 3.75, 0.25]
    # width 1 signed holds {-1, 0} * 2^-f
    x = torch.tensor([0.4, 0.6, -0.5, -0.6, -3.0])
    assert integer_quantize(x, 1, 0).tolist() == [0.0, 0.0, 0.0, -1.0, -1.0]
    assert integer_quantize(x, 1, 1).tolist() == [0.0, 0.0, -0.5, -0.5, -0.5]


def test_integer_default_frac_width_is_half_the_width() -> None:
    x = torch.randn(100)
    assert torch.equal(integer_quantize(x, 8), integer_quantize(x, 8, 4))
    assert torch.equal(integer_quantize(x, 7), integer_quantize(x, 7, 3))


def test_integer_dtypes() -> None:
    x = torch.randn(64)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        q = integer_quantize(x.to(dtype), 8, 4)
        assert q.dtype == dtype
        assert torch.equal(q.float(), integer_quantize(x.to(dtype).float(), 8, 4))
    # half overflows 2^16; the float32 computation does not
    assert integer_quantize(torch.tensor([0.5], dtype=torch.float16), 16, 16).item() == 0.5
    assert integer_quantize(torch.tensor([3, -9]), 4, 0).tolist() == [3.0, -8.0]
    assert integer_quantize(torch.tensor([float("nan")]), 8, 4).isnan().all()


@st.composite
def integer_formats(draw: st.DrawFn) -> tuple[int, int, bool]:
    width = draw(st.integers(1, 16))
    return width, draw(st.integers(0, width)), draw(st.booleans())


float32s = st.floats(allow_nan=False, allow_infinity=False, width=32)
float_lists = st.lists(float32s, min_size=1, max_size=64)


@settings(max_examples=50, deadline=None)
@given(fmt=integer_formats(), values=float_lists)
def test_integer_idempotent_and_in_range(fmt: tuple[int, int, bool], values: list[float]) -> None:
    width, frac, signed = fmt
    q = integer_quantize(torch.tensor(values), width, frac, is_signed=signed)
    assert torch.equal(integer_quantize(q, width, frac, is_signed=signed), q)
    codes = q.double() * 2**frac
    lo, hi = (-(2 ** (width - 1)), 2 ** (width - 1) - 1) if signed else (0, 2**width - 1)
    assert torch.equal(codes, codes.round())
    assert codes.min() >= lo and codes.max() <= hi


@settings(max_examples=50, deadline=None)
@given(fmt=integer_formats(), values=float_lists)
def test_integer_monotone(fmt: tuple[int, int, bool], values: list[float]) -> None:
    width, frac, signed = fmt
    q = integer_quantize(torch.tensor(sorted(values)), width, frac, is_signed=signed)
    assert (q[1:] >= q[:-1]).all()


@settings(max_examples=50, deadline=None)
@given(fmt=integer_formats(), values=float_lists)
def test_integer_straight_through_gradient(fmt: tuple[int, int, bool], values: list[float]) -> None:
    width, frac, signed = fmt
    x = torch.tensor(values, requires_grad=True)
    q = integer_quantize(x, width, frac, is_signed=signed)
    q.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    assert torch.equal(q.detach(), integer_quantize(x.detach(), width, frac, is_signed=signed))


# --------------------------------------------------------------------------------------------
# Minifloat
# --------------------------------------------------------------------------------------------

# (12, 8, 130) reaches float32's subnormal range and takes the exact slow paths.
MINIFLOAT_FORMATS = [(8, 4, 7), (8, 5, 15), (8, 3, 3), (8, 2, 1), (6, 2, 1), (5, 3, 3), (4, 2, 1),
                     (3, 1, 0), (8, 4, 3), (8, 4, 12), (7, 6, 31), (16, 5, 15), (12, 8, 130)]


def grid_inputs(grid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grid values, midpoints (ties), points just around them, random magnitudes, both signs."""
    g = grid.astype(np.float32)
    mids = ((grid[1:] + grid[:-1]) / 2).astype(np.float32)
    near = np.concatenate([np.nextafter(mids, np.float32(0)), np.nextafter(mids, np.float32(np.inf))])
    top = grid[-1]
    wild = 2.0 ** rng.uniform(np.log2(grid[1]) - 3, min(np.log2(top) + 3, 127), 2000)
    wild = wild.astype(np.float32)
    special = np.array([0, top * 1.01, top * 4, 1e30, np.inf, grid[1] / 3, 1e-30], np.float32)
    magnitudes = np.concatenate([g, mids, near, wild, special])
    return np.concatenate([magnitudes, -magnitudes]).astype(np.float32)


@pytest.mark.parametrize("width, e, bias", MINIFLOAT_FORMATS)
def test_minifloat_ieee_is_nearest_value_of_the_format(width: int, e: int, bias: int) -> None:
    grid = ieee_grid(width, e, bias)
    x = grid_inputs(grid, np.random.default_rng(width * 100 + e))
    q = minifloat_ieee_quantize(torch.from_numpy(x), width, e, bias)
    assert_bit_exact(q, np_round_to_grid(x, grid))


@pytest.mark.parametrize("width, e, bias", [f for f in MINIFLOAT_FORMATS if f[0] - 1 - f[1] >= 1])
def test_minifloat_denorm_is_nearest_value_of_the_format(width: int, e: int, bias: int) -> None:
    grid = denorm_grid(width, e, bias)
    x = grid_inputs(grid, np.random.default_rng(width * 100 + e))
    q = minifloat_denorm_quantize(torch.from_numpy(x), width, e, bias)
    assert_bit_exact(q, np_round_to_grid(x, grid))


@pytest.mark.parametrize("dtype, exponent_width", [(torch.bfloat16, 8), (torch.float16, 5)])
def test_minifloat_ieee_rounds_like_torch_half_types(dtype: torch.dtype, exponent_width: int) -> None:
    # Same bit layout, round-to-nearest-even and subnormals; only inf/NaN codes differ, so compare
    # below the half type's largest finite value.
    generator = torch.Generator().manual_seed(0)
    finfo = torch.finfo(dtype)
    lowest = finfo.smallest_normal * finfo.eps / 4  # below the smallest subnormal
    magnitude = torch.exp2(torch.empty(100000).uniform_(math.log2(lowest), math.log2(finfo.max),
                                                        generator=generator))
    x = magnitude * torch.randint(0, 2, (100000,), generator=generator).mul(2).sub(1)
    x = x[x.abs() < finfo.max]
    assert torch.equal(minifloat_ieee_quantize(x, 16, exponent_width), x.to(dtype).float())


def test_minifloat_default_bias_and_hand_values() -> None:
    x = torch.tensor([1.3, 1000.0, -1000.0, 2.0**-10, 3 * 2.0**-10, 1.375, 0.0])
    # e4m3, bias 7: step 1/8 at 1.x, max (2 - 1/8) * 2^8 = 480, subnormal step 2^-9
    assert minifloat_ieee_quantize(x, 8, 4).tolist() == [1.25, 480.0, -480.0, 0.0, 2.0**-8, 1.375, 0.0]
    assert torch.equal(minifloat_ieee_quantize(x, 8, 4), minifloat_ieee_quantize(x, 8, 4, 7))
    # no implicit one: max (1 - 1/8) * 2^8 = 224; 0.9 -> 7/8 on the 2^0 exponent
    y = torch.tensor([0.9, 1.0, 300.0, 0.0])
    assert minifloat_denorm_quantize(y, 8, 4).tolist() == [0.875, 1.0, 224.0, 0.0]


def np_mase_minifloat_ieee(x: np.ndarray, width: int, e: int, bias: int) -> np.ndarray:
    """MASE's minifloat_ieee_quantizer formula (mantissa clamped, never carried), in NumPy."""
    m = width - 1 - e
    a = np.abs(x.astype(np.float64))
    exponent = np.clip(np.floor(np.log2(a + 1e-9)), -bias, 2**e - 1 - bias)
    mant = a / 2.0**exponent
    normal = exponent != -bias
    normal_code = np.clip(np.round(mant * 2**m - 2**m), 0, 2**m - 1)
    sub_code = np.clip(np.round(mant * 2**m / 2), 0, 2**m - 1)
    mant = np.where(normal, 1 + normal_code / 2**m, sub_code / 2**m * 2)
    return np.copysign(2.0**exponent * mant, x).astype(np.float32)


def np_mase_minifloat_denorm(x: np.ndarray, width: int, e: int, bias: int) -> np.ndarray:
    """MASE's minifloat_denorm_quantizer formula (exponent ceil(log2), mantissa clamped)."""
    m = width - 1 - e
    a = np.abs(x.astype(np.float64))
    exponent = np.clip(np.ceil(np.log2(a + 1e-9)), -bias, 2**e - 1 - bias)
    code = np.clip(np.round(a / 2.0**exponent * 2**m), 0, 2**m - 1)
    return np.copysign(2.0**exponent * code / 2**m, x).astype(np.float32)


@pytest.mark.parametrize("width, e", [(8, 4), (8, 3), (6, 2)])
def test_minifloat_agrees_with_mase_except_just_below_powers_of_two(width: int, e: int) -> None:
    bias, m = 2 ** (e - 1) - 1, width - 1 - e
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(20000) * 2.0 ** rng.uniform(-bias, 2**e - bias, 20000)).astype(np.float32)
    x = x[np.abs(x) > 1e-6]  # MASE passes |x| <= 1e-8 through; keep clear of its 1e-9 nudge too
    for ours, mase in [(minifloat_ieee_quantize, np_mase_minifloat_ieee),
                       (minifloat_denorm_quantize, np_mase_minifloat_denorm)]:
        q = ours(torch.from_numpy(x), width, e).numpy()
        reference = mase(x, width, e, bias)
        differs = q != reference
        # Where they differ, ours rounded up to a power of two that MASE's clamp cannot reach.
        power = np.abs(q[differs])
        assert np.all(np.log2(power) == np.round(np.log2(power)))
        assert np.all(np.abs(reference[differs]) < power)
        assert differs.mean() < 2.0 ** -(m - 1)


# --------------------------------------------------------------------------------------------
# Log
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width, bias", [(2, 0), (3, 1), (4, 3), (5, 7), (6, 15), (8, 63), (4, 0),
                                         (4, 6), (9, 130)])
def test_log_against_numpy(width: int, bias: int) -> None:
    rng = np.random.default_rng(width)
    low, high = max(-bias - 3, -149), min(2 ** (width - 1) - bias + 3, 127)  # float32's range
    powers = 2.0 ** np.arange(low, high)
    sqrt2 = (powers * np.sqrt(2)).astype(np.float32)  # the rounding boundary, never a tie
    around = np.concatenate([np.nextafter(sqrt2, np.float32(0)), sqrt2,
                             np.nextafter(sqrt2, np.float32(np.inf))])
    wild = (2.0 ** rng.uniform(low - 1, high, 2000)).astype(np.float32)
    magnitudes = np.concatenate([powers.astype(np.float32), around, wild, [0, 1e-30, 1e30, np.inf]])
    x = np.concatenate([magnitudes, -magnitudes]).astype(np.float32)
    assert_bit_exact(log_quantize(torch.from_numpy(x), width, bias), np_log(x, width, bias))


def test_log_hand_values_and_zero() -> None:
    x = torch.tensor([0.0, -0.0, 3.0, 1.4, 1.5, 100.0, -0.01, 1e-9])
    # width 4: 3 exponent bits, default bias 3: magnitudes 2^-3 .. 2^4; zero -> +2^-3 (no zero code)
    assert log_quantize(x, 4).tolist() == [0.125, 0.125, 4.0, 1.0, 2.0, 16.0, -0.125, 0.125]
    assert log_quantize(torch.tensor([float("nan")]), 4).isnan().all()


# --------------------------------------------------------------------------------------------
# Block floating point
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width, e, block", [(4, 4, 4), (8, 8, 16), (6, 3, 8), (2, 4, 2), (12, 8, 16),
                                             (8, 2, 16)])
def test_block_fp_against_numpy(width: int, e: int, block: int) -> None:
    generator = torch.Generator().manual_seed(width + e)
    rows = torch.randn(32, 4 * block, generator=generator)
    rows = rows * 2.0 ** torch.randint(-12, 12, (32, 1), generator=generator)
    rows[0] = 0.0                           # an all-zero block
    rows[1, :block] = 2.0                   # block max an exact power of two
    rows[2, :block] = torch.linspace(-1, 1, block)
    rows[3] *= 1e6                          # saturates small exponent widths
    rows[4] *= 2.0**-135                    # float32 subnormals: the exact slow paths for e = 8
    bias = 2 ** (e - 1) - 1
    assert_bit_exact(block_fp_quantize(rows, width, e, block_size=block),
                     np_block_fp(rows.numpy(), width, e, bias, block))


def test_block_fp_hand_values() -> None:
    x = torch.tensor([[0.5, 0.3, -0.1, 0.01], [100.0, 1.0, 0.0, -0.0]])
    # block max 0.5 -> shared exponent 0, 3 mantissa bits: step 1/8
    # block max 100 -> exponent 7, step 16: 100 -> 96, 1 -> 0
    q = block_fp_quantize(x, 4, 4, block_size=4)
    assert q.tolist() == [[0.5, 0.25, -0.125, 0.0], [96.0, 0.0, 0.0, 0.0]]


def test_block_fp_blocks_pad_and_tile() -> None:
    assert block_shape((3, 5), 16) == (1, 5)
    assert block_shape((3, 40), [1, 16]) == (1, 16)
    assert block_shape((8, 40), [4, 16]) == (4, 16)
    assert block_shape((2, 3, 4, 5), [2, 2]) == (1, 1, 2, 2)
    assert block_shape((40,), [1, 16]) == (16,)
    # 40 = 2 * 16 + 8: the last block is zero-padded, which cannot change its exponent
    x = torch.randn(3, 40)
    padded = torch.cat([x, torch.zeros(3, 8)], dim=1)
    assert torch.equal(block_fp_quantize(x, 6, 5, block_size=16),
                       block_fp_quantize(padded, 6, 5, block_size=16)[:, :40])
    # 2-D tiles: each 2 x 4 tile shares one exponent
    x = torch.randn(4, 8)
    tiles = x.reshape(2, 2, 2, 4).permute(0, 2, 1, 3).reshape(4, 8)
    q_tiles = block_fp_quantize(tiles, 6, 5, block_size=8)
    back = q_tiles.reshape(2, 2, 2, 4).permute(0, 2, 1, 3).reshape(4, 8)
    assert torch.equal(block_fp_quantize(x, 6, 5, block_size=[2, 4]), back)
    # scalars and empty tensors
    assert block_fp_quantize(torch.tensor(0.3), 4, 4).shape == ()
    assert block_fp_quantize(torch.empty(0, 16), 4, 4).shape == (0, 16)


# --------------------------------------------------------------------------------------------
# Binary and ternary
# --------------------------------------------------------------------------------------------


def test_binary_against_numpy() -> None:
    x = torch.randn(1000)
    x[:4] = torch.tensor([0.0, -0.0, 1e-30, -1e-30])
    xn = x.numpy().astype(np.float64)
    assert_bit_exact(binary_quantize(x), np.where(xn >= 0, 1.0, -1.0).astype(np.float32))
    assert_bit_exact(binary_quantize(x, bipolar=False), np.where(xn > 0, 1.0, 0.0).astype(np.float32))


def test_binary_stochastic_probability_is_half_x_plus_one() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0]).repeat_interleave(20000)
    q = binary_quantize(x, stochastic=True, generator=generator).reshape(5, -1)
    assert set(q.unique().tolist()) <= {-1.0, 1.0}
    # E[q] = 2p - 1 = clamp(x, -1, 1)
    assert torch.allclose(q.mean(dim=1), torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]), atol=0.02)
    u = binary_quantize(x, stochastic=True, bipolar=False, generator=generator).reshape(5, -1)
    assert set(u.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(u.mean(dim=1), torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]), atol=0.02)
    again = binary_quantize(x, stochastic=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, q.flatten())


@pytest.mark.parametrize("threshold, scaling", [(0.7, True), (0.7, False), (0.0, True), (1.5, True)])
def test_ternary_against_numpy(threshold: float, scaling: bool) -> None:
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(1))
    assert_bit_exact(ternary_quantize(x, threshold, scaling), np_ternary(x.numpy(), threshold, scaling))


def test_ternary_hand_values() -> None:
    x = torch.tensor([1.0, -2.0, 0.1, 0.5, 0.0])
    # mean |x| = 0.72, delta = 0.504: keep 1 and -2, alpha = 1.5
    assert ternary_quantize(x).tolist() == [1.5, -1.5, 0.0, 0.0, 0.0]
    assert ternary_quantize(x, scaling_factor=False).tolist() == [1.0, -1.0, 0.0, 0.0, 0.0]
    assert ternary_quantize(torch.zeros(3)).tolist() == [0.0, 0.0, 0.0]


# --------------------------------------------------------------------------------------------
# Properties shared by every quantizer
# --------------------------------------------------------------------------------------------

DETERMINISTIC = {
    "integer": lambda x: integer_quantize(x, 6, 3),
    "integer_unsigned": lambda x: integer_quantize(x, 5, 2, is_signed=False),
    "minifloat_ieee": lambda x: minifloat_ieee_quantize(x, 8, 4),
    "minifloat_ieee_e5m2": lambda x: minifloat_ieee_quantize(x, 8, 5),
    "minifloat_denorm": lambda x: minifloat_denorm_quantize(x, 8, 4),
    "log": lambda x: log_quantize(x, 5),
    "block_fp": lambda x: block_fp_quantize(x, 5, 4, block_size=16),
    "binary": lambda x: binary_quantize(x),
    "binary_unipolar": lambda x: binary_quantize(x, bipolar=False),
    "ternary": lambda x: ternary_quantize(x),
    "ternary_unscaled": lambda x: ternary_quantize(x, scaling_factor=False),
}


def property_inputs(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(16, generator=generator) * 2.0 ** torch.randint(-10, 10, (1,), generator=generator)
    x[0] = 0.0
    return x


@pytest.mark.parametrize("name", DETERMINISTIC)
@pytest.mark.parametrize("seed", range(5))
def test_idempotent(name: str, seed: int) -> None:
    quantize = DETERMINISTIC[name]
    q = quantize(property_inputs(seed))
    assert torch.equal(quantize(q), q)


@pytest.mark.parametrize("name", DETERMINISTIC)
@pytest.mark.parametrize("seed", range(5))
def test_monotone_within_a_block(name: str, seed: int) -> None:
    # 16 elements form one block_fp block and one ternary statistic.
    q = DETERMINISTIC[name](property_inputs(seed).sort().values)
    assert (q[1:] >= q[:-1]).all()


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_straight_through_gradient_is_identity(name: str) -> None:
    x = (torch.randn(4, 16) * 3).requires_grad_()
    q = DETERMINISTIC[name](x)
    q.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    assert torch.equal(q.detach(), DETERMINISTIC[name](x.detach()))


def test_stochastic_binary_gradient_is_identity() -> None:
    x = torch.randn(100, requires_grad=True)
    binary_quantize(x, stochastic=True).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_outputs_on_grid_and_in_range() -> None:
    x = torch.randn(4096) * 2.0 ** torch.randint(-20, 20, (4096,))
    ieee = torch.from_numpy(ieee_grid(8, 4, 7).astype(np.float32))
    assert torch.isin(minifloat_ieee_quantize(x, 8, 4).abs(), ieee).all()
    denorm = torch.from_numpy(denorm_grid(8, 4, 7).astype(np.float32))
    assert torch.isin(minifloat_denorm_quantize(x, 8, 4).abs(), denorm).all()
    powers = 2.0 ** torch.arange(-7, 9)
    assert torch.isin(log_quantize(x, 5).abs(), powers).all()
    q = block_fp_quantize(x.reshape(-1, 16), 5, 4).reshape(-1, 16)
    steps = 2.0 ** (torch.frexp(x.reshape(-1, 16).abs().amax(1, keepdim=True)).exponent.clamp(-7, 8) - 4)
    codes = q / steps
    assert torch.equal(codes, codes.round()) and codes.abs().max() <= 15
    assert set(ternary_quantize(x, scaling_factor=False).unique().tolist()) <= {-1.0, 0.0, 1.0}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_add_rounding_equals_round_clamp_divide_at_every_width(dtype):
    """The fast path (x + C rounds onto the grid) against the definition, ties and extremes included."""
    from machop.quant.quantizers import integer_range

    generator = torch.Generator().manual_seed(1)
    for width in range(1, 33):
        for frac in (-6, 0, 1, width // 2, width - 1, width + 3, 40):
            ties = torch.arange(-2000, 2000, dtype=dtype) / 2 / 2.0**frac
            spread = torch.cat([torch.randn(3000, generator=generator, dtype=dtype) * s for s in (1e-2, 1, 1e3, 1e9)])
            special = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, 1e38, -1e38, 1e-40], dtype=dtype)
            x = torch.cat([ties, spread, special])
            for signed in (True, False):
                lo, hi = integer_range(width, signed)
                want = torch.mul(x, 2.0**frac).round_().clamp_(lo, hi).div_(2.0**frac)
                got = integer_quantize(x, width, frac, signed)
                assert got.dtype == dtype
                assert torch.equal(got.nan_to_num(nan=0.5), want.nan_to_num(nan=0.5)), (width, frac, signed)
