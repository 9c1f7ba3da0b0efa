"""Fake quantizers: float tensors whose values lie on a low-precision grid, STE gradients.

Every public function returns a tensor of the input's dtype (float32 for integer inputs) whose
values are exactly representable in the target format, and whose gradient is the identity
(straight-through estimator). Half-precision inputs are computed in float32 and cast back.

Semantics follow MASE (`chop.nn.quantizers`) with these deliberate differences, each a fix:

- minifloat / block_fp round to the *nearest* grid value. MASE clamps the integer mantissa
  instead of carrying into the next binade, so values within half a step below a power of two
  (and, for block_fp and minifloat_denorm, exact powers of two) are rounded down a step; for
  block_fp that also makes MASE's quantizer non-idempotent. The grids themselves are MASE's.
- MASE passes values with |x| <= 1e-8 through unquantized (`isclose(x, 0)`); here they are
  quantized like every other value (usually to 0), so every output lies on the grid.
- log: MASE adds 0.1 * 2^min_exponent to |x| before taking log2 (to dodge log2(0)); here
  round(log2|x|) is exact and zero is mapped to +2^min_exponent explicitly, as in MASE.
- binary unipolar gives {0, 1} (MASE scales it by the mean |x| of each row); ternary uses one
  threshold and scale per tensor (MASE: per first-dim slice, fixed 0.75, 4-D tensors only).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from decimal import Decimal, getcontext
from functools import lru_cache, partial

import torch
from torch import Tensor
from torch.nn import functional as F

# --------------------------------------------------------------------------------------------
# Shared machinery
# --------------------------------------------------------------------------------------------


class _StraightThrough(torch.autograd.Function):
    """Forward: an arbitrary quantizer; backward: the incoming gradient unchanged."""

    @staticmethod
    def forward(ctx, x: Tensor, forward: Callable[[Tensor], Tensor]) -> Tensor:
        return forward(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def _straight_through(x: Tensor, forward: Callable[[Tensor], Tensor]) -> Tensor:
    # A Function keeps the forward bit-exact; `x + (q - x).detach()` can be off by an ulp.
    if torch.is_grad_enabled() and x.requires_grad:
        return _StraightThrough.apply(x, forward)
    return forward(x)


def _compute_dtype(x: Tensor) -> torch.dtype:
    # Half types overflow 2^f scales and cannot hold wide grids; integers carry no fraction.
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


def _in_compute_dtype(x: Tensor) -> Tensor:
    return x.to(_compute_dtype(x))


def _back_to_input_dtype(q: Tensor, x: Tensor) -> Tensor:
    return q.to(x.dtype) if x.is_floating_point() else q


# (same-size integer dtype, mantissa bits, exponent bias) of the compute dtypes
_LAYOUT = {torch.float32: (torch.int32, 23, 127), torch.float64: (torch.int64, 52, 1023)}


def _is_normal_exponent(lowest: int, highest: int, dtype: torch.dtype) -> bool:
    _, _, bias = _LAYOUT[dtype]
    return 1 - bias <= lowest and highest <= bias


def _pow2(exponent: Tensor, dtype: torch.dtype) -> Tensor:
    """2**exponent built from its bit pattern (exact, unlike exp2/pow on some backends)."""
    int_dtype, mantissa_bits, bias = _LAYOUT[dtype]
    biased = exponent.to(int_dtype).clamp(1 - bias, bias).add_(bias)
    return torch.bitwise_left_shift(biased, mantissa_bits).view(dtype)


def _scale_pow2(x: Tensor, exponent: Tensor) -> Tensor:
    """x * 2**exponent, exact whenever the result is representable (|exponent| <= 252)."""
    # Two halves: the intermediate lies between x and the result, so it never over/underflows
    # when both ends are normal numbers.
    half = torch.div(exponent, 2, rounding_mode="floor")
    return x * _pow2(half, x.dtype) * _pow2(exponent - half, x.dtype)


def _round_to_step(magnitude: Tensor, step: Tensor, lowest_step: int, highest_step: int) -> Tensor:
    """Round (half to even) to the nearest multiple of 2**step, exactly; steps lie in the range."""
    if _is_normal_exponent(-highest_step, -lowest_step, magnitude.dtype):
        inverse = _pow2(-step, magnitude.dtype)
        return (magnitude * inverse).round_().div_(inverse)
    return _scale_pow2(torch.round(_scale_pow2(magnitude, -step)), step)


def _floor_log2(magnitude: Tensor, lowest: int, highest: int, offset: int = 0) -> Tensor:
    """clamp(floor(log2(m)) + offset, lowest, highest) exactly, for m >= 0 (0 gives lowest)."""
    int_dtype, mantissa_bits, bias = _LAYOUT[magnitude.dtype]
    if lowest - offset >= -bias:
        # The exponent field is exact for normal numbers; zero and subnormals read as -bias,
        # which the clamp lifts to `lowest` just as their true exponents would be.
        field = torch.bitwise_right_shift(magnitude.view(int_dtype), mantissa_bits)
        return field.add_(offset - bias).clamp_(lowest, highest)
    exponent = torch.frexp(magnitude).exponent + (offset - 1)  # m = f * 2^e, f in [0.5, 1)
    return torch.where(torch.isinf(magnitude), highest, exponent).clamp_(lowest, highest)


def _keep_nan(x: Tensor, q: Tensor) -> Tensor:
    """q, with NaN wherever x is NaN (sign- and comparison-based quantizers would hide it)."""
    # x.clamp(0, 0) is 0 except NaN; an add is ~10x cheaper than isnan + where on CPU.
    return q.add_(x.clamp(0, 0))


def default_exponent_bias(exponent_width: int) -> int:
    """IEEE-style default bias of an exponent field: 2^(e-1) - 1."""
    return 2 ** (exponent_width - 1) - 1


def _bias_or_default(exponent_bias: int | None, exponent_width: int) -> int:
    return default_exponent_bias(exponent_width) if exponent_bias is None else int(exponent_bias)


# --------------------------------------------------------------------------------------------
# Integer (fixed point)
# --------------------------------------------------------------------------------------------


def integer_range(width: int, is_signed: bool = True) -> tuple[int, int]:
    """Smallest and largest integer code of a width-bit (un)signed fixed-point number."""
    if is_signed:
        return -(2 ** (width - 1)), 2 ** (width - 1) - 1
    return 0, 2**width - 1


def _integer(x: Tensor, width: int, frac_width: int, is_signed: bool) -> Tensor:
    lo, hi = integer_range(width, is_signed)
    scale = 2.0**frac_width
    # x * 2^f and k / 2^f are exact in binary floating point; clamping before dividing keeps
    # the bounds exact integers.
    q = torch.mul(_in_compute_dtype(x), scale).round_().clamp_(lo, hi).div_(scale)
    return _back_to_input_dtype(q, x)


def channel_scales(frac_widths: Sequence[int], like: Tensor) -> Tensor:
    """2^f per output channel, shaped to broadcast along dim 0 of `like` (exact powers of two)."""
    y = _in_compute_dtype(like)
    if y.dim() == 0 or y.shape[0] != len(frac_widths):
        raise ValueError(f"per-channel frac widths: {len(frac_widths)} given for a tensor of shape "
                         f"{tuple(like.shape)}, whose dim 0 (output channels) must match")
    exponents = torch.tensor(list(frac_widths), dtype=_LAYOUT[y.dtype][0], device=y.device)
    return _pow2(exponents, y.dtype).view(-1, *([1] * (y.dim() - 1)))


def _integer_per_channel(x: Tensor, width: int, frac_width: tuple[int, ...], is_signed: bool) -> Tensor:
    lo, hi = integer_range(width, is_signed)
    # The same exact operations as the per-tensor path, with one 2^f per row of dim 0.
    scale = channel_scales(frac_width, x)
    q = torch.mul(_in_compute_dtype(x), scale).round_().clamp_(lo, hi).div_(scale)
    return _back_to_input_dtype(q, x)


@lru_cache(maxsize=1024)
def _grid_constants(dtype: torch.dtype, width: int, frac_width: int,
                    is_signed: bool) -> tuple[float, float, float, Tensor | float] | None:
    """(C, lowest, highest, C as a 0-dim CPU tensor) of the one-add rounding of `_on_grid`, or None
    where it does not apply.

    C = 1.5 * 2^(m - f) for a dtype with m fraction bits: x + C lands in the binade [2^(m-f),
    2^(m-f+1)), whose step is 2^-f, so the float addition itself rounds x half-to-even onto the
    grid of step 2^-f (the same rounding as round(x * 2^f) / 2^f) wherever |x * 2^f| <= 2^(m-1).
    Codes beyond that range are clamped anyway, so the result is exact for widths whose codes lie
    within +-2^(m-1); C and the shifted bounds are exact numbers of the dtype. On the CPU, C as a
    tensor of the input's dtype saves the conversion of a Python number at every add (~2 us).
    """
    if dtype not in _LAYOUT:
        return None
    _, mantissa_bits, bias = _LAYOUT[dtype]
    lo, hi = integer_range(width, is_signed)
    if lo < -(2 ** (mantissa_bits - 1)) or hi > 2 ** (mantissa_bits - 1) - 1 or abs(frac_width) > bias // 2:
        return None
    step = 2.0**-frac_width
    shift = 1.5 * 2.0 ** (mantissa_bits - frac_width)
    with torch.inference_mode(False):  # an ordinary tensor, even when first built in inference mode
        cpu_shift = torch.tensor(shift, dtype=dtype)
    if type(cpu_shift) is not Tensor:  # made under a mode that fakes tensors: keep the number
        cpu_shift = shift
    return shift, shift + lo * step, shift + hi * step, cpu_shift


def _on_grid(x: Tensor, constants: tuple[float, float, float, Tensor | float]) -> Tensor:
    """Fixed-point quantization in three element-wise passes (add, clamp, subtract), exactly equal to
    clamp(round_half_even(x * 2^f), lo, hi) / 2^f (up to the sign of a zero)."""
    shift, lowest, highest, cpu_shift = constants
    if x.is_cpu:
        shift = cpu_shift
    return torch.add(x, shift).clamp_(lowest, highest).sub_(shift)


# Attribute of a tensor made by a no-gradient integer quantizer: (version, f, lowest, highest), its
# values being multiples of 2^-f in [lowest, highest] (or NaN) while its version stays the same.
_GRID = "_machop_grid"


def _mark_grid(q: Tensor, frac_width: int, lowest: float, highest: float) -> None:
    if not torch.is_inference_mode_enabled():  # inference tensors have no version counter
        setattr(q, _GRID, (q._version, frac_width, lowest, highest))


def _clamp_on_grid(x: Tensor, grid: tuple[int, int, float, float], frac_width: int, lowest: float,
                   highest: float) -> Tensor:
    """Quantization onto a grid of step 2^-frac_width of an x already on a grid that this grid holds
    (a coarser or the same step): a clamp, or nothing where x lies within the bounds."""
    _, _, lowest_in, highest_in = grid
    if highest_in <= highest:
        if lowest <= lowest_in:
            return x
        q = torch.clamp_min(x, lowest)  # one bound is ~0.5 us cheaper than two on 16k elements
    elif lowest <= lowest_in:
        q = torch.clamp_max(x, highest)
    else:
        q = torch.clamp(x, lowest, highest)
    # The bounds lie on the finer grid only: the result's step is 2^-frac_width.
    _mark_grid(q, frac_width, min(max(lowest_in, lowest), highest), max(min(highest_in, highest), lowest))
    return q


@lru_cache(maxsize=1024)
def integer_no_grad_quantizer(width: int, frac_width: int, is_signed: bool, dtype: torch.dtype,
                              on_cpu: bool) -> Callable[[Tensor], Tensor] | None:
    """integer_quantize(x, width, frac_width, is_signed) for inputs that record no gradient, fastest
    for inputs of `dtype` on the CPU (or not); None where only integer_quantize applies.

    The function gives integer_quantize's values: the same three operations with the same
    constants, minus the per-call dispatch. Its results remember their grid while they are not
    modified in place (by their version counter, as autograd checks saved tensors), so quantizing
    one again onto a grid that holds it takes one clamp, or none: then x itself is returned.
    """
    if type(frac_width) is not int:  # one frac width per channel: integer_quantize's own path
        return None
    constants = _grid_constants(dtype, width, frac_width, is_signed)
    if constants is None:
        return None
    shift, lowest, highest, cpu_shift = constants
    added = cpu_shift if on_cpu else shift
    lo, hi = integer_range(width, is_signed)
    lowest_value, highest_value = lo * 2.0**-frac_width, hi * 2.0**-frac_width

    def quantize(x: Tensor) -> Tensor:
        if x.dtype is not dtype or x.is_cpu is not on_cpu:
            return integer_quantize(x, width, frac_width, is_signed)
        grid = getattr(x, _GRID, None)
        if grid is not None and grid[1] <= frac_width and grid[0] == x._version and \
                not x.requires_grad:
            return _clamp_on_grid(x, grid, frac_width, lowest_value, highest_value)
        q = torch.add(x, added).clamp_(lowest, highest).sub_(added)
        if not torch.is_inference_mode_enabled():  # (_mark_grid, inlined: this runs per activation)
            setattr(q, _GRID, (q._version, frac_width, lowest_value, highest_value))
        return q

    return quantize


def integer_quantize(x: Tensor, width: int, frac_width: int | Sequence[int] | None = None,
                     is_signed: bool = True) -> Tensor:
    """Fixed point: clamp(round_half_even(x * 2^f), lo, hi) / 2^f, f = width // 2 by default.

    A sequence of frac widths gives each output channel (each index of dim 0) its own f.
    """
    if frac_width is None or type(frac_width) is int:  # the common case, kept short: it runs per layer
        constants = _grid_constants(x.dtype, width, width // 2 if frac_width is None else frac_width, is_signed)
        if constants is not None:
            if x.requires_grad and torch.is_grad_enabled():
                return _StraightThrough.apply(x, partial(_on_grid, constants=constants))
            return _on_grid(x, constants)
    if frac_width is not None and not isinstance(frac_width, numbers.Integral):
        return _straight_through(x, partial(_integer_per_channel, width=width,
                                            frac_width=tuple(frac_width), is_signed=is_signed))
    frac = width // 2 if frac_width is None else frac_width
    return _straight_through(x, partial(_integer, width=width, frac_width=frac, is_signed=is_signed))


# --------------------------------------------------------------------------------------------
# Minifloat
# --------------------------------------------------------------------------------------------


def minifloat_ieee_range(width: int, exponent_width: int,
                         exponent_bias: int | None = None) -> tuple[float, float]:
    """(smallest positive subnormal, largest normal) of an IEEE-like minifloat."""
    mantissa = width - 1 - exponent_width
    bias = _bias_or_default(exponent_bias, exponent_width)
    top = 2**exponent_width - 1 - bias
    return 2.0 ** (1 - bias - mantissa), (2.0 - 2.0**-mantissa) * 2.0**top


def _round_minifloat(x: Tensor, mantissa: int, bottom: int, top: int, largest: float,
                     offset: int = 0) -> Tensor:
    """Round |x| to the step of its binade (clamped to [bottom, top]), saturate, keep the sign."""
    y = _in_compute_dtype(x)
    magnitude = y.abs()
    exponent = _floor_log2(magnitude, bottom, top, offset=offset)
    q = _round_to_step(magnitude, exponent.sub_(mantissa), bottom - mantissa, top - mantissa)
    q = q.clamp_(max=min(largest, torch.finfo(y.dtype).max))
    return _back_to_input_dtype(torch.copysign(q, y), x)


def _minifloat_ieee(x: Tensor, width: int, exponent_width: int, exponent_bias: int | None) -> Tensor:
    bias = _bias_or_default(exponent_bias, exponent_width)
    _, largest = minifloat_ieee_range(width, exponent_width, bias)
    # Below the smallest normal the step stays that of the subnormal range, 2^(1-bias-m).
    return _round_minifloat(x, width - 1 - exponent_width, 1 - bias,
                            2**exponent_width - 1 - bias, largest)


def minifloat_ieee_quantize(x: Tensor, width: int, exponent_width: int,
                            exponent_bias: int | None = None) -> Tensor:
    """IEEE-like minifloat with subnormals, no inf/NaN codes, saturating at the largest normal."""
    return _straight_through(x, partial(_minifloat_ieee, width=width, exponent_width=exponent_width,
                                        exponent_bias=exponent_bias))


def minifloat_denorm_range(width: int, exponent_width: int,
                           exponent_bias: int | None = None) -> tuple[float, float]:
    """(smallest positive value, largest value) of a minifloat without implicit leading bit."""
    mantissa = width - 1 - exponent_width
    bias = _bias_or_default(exponent_bias, exponent_width)
    top = 2**exponent_width - 1 - bias
    return 2.0 ** (-bias - mantissa), (1.0 - 2.0**-mantissa) * 2.0**top


def _minifloat_denorm(x: Tensor, width: int, exponent_width: int, exponent_bias: int | None) -> Tensor:
    bias = _bias_or_default(exponent_bias, exponent_width)
    _, largest = minifloat_denorm_range(width, exponent_width, bias)
    # Values are 0.m * 2^E; the finest exponent whose range holds |x| is floor(log2|x|) + 1.
    return _round_minifloat(x, width - 1 - exponent_width, -bias,
                            2**exponent_width - 1 - bias, largest, offset=1)


def minifloat_denorm_quantize(x: Tensor, width: int, exponent_width: int,
                              exponent_bias: int | None = None) -> Tensor:
    """MASE's denormal minifloat: sign * 0.mantissa * 2^(exp - bias), no implicit one, saturating."""
    return _straight_through(x, partial(_minifloat_denorm, width=width, exponent_width=exponent_width,
                                        exponent_bias=exponent_bias))


# --------------------------------------------------------------------------------------------
# Logarithmic
# --------------------------------------------------------------------------------------------


def _sqrt2_carry(mantissa_bits: int) -> int:
    """K such that adding K to a float's bits carries into the exponent iff significand >= sqrt(2)."""
    getcontext().prec = 60
    threshold = math.ceil((Decimal(2).sqrt() - 1) * 2**mantissa_bits)  # irrational: never a tie
    return 2**mantissa_bits - threshold


_SQRT2_CARRY = {dtype: _sqrt2_carry(bits) for dtype, (_, bits, _) in _LAYOUT.items()}


def default_log_exponent_bias(width: int) -> int:
    """Default bias of a width-bit log format (1 sign bit, width - 1 exponent bits)."""
    return default_exponent_bias(width - 1)


def log_exponent_range(width: int, exponent_bias: int | None = None) -> tuple[int, int]:
    """(smallest, largest) power-of-two exponent of a width-bit log format."""
    bias = default_log_exponent_bias(width) if exponent_bias is None else int(exponent_bias)
    return -bias, 2 ** (width - 1) - 1 - bias


def _round_log2(magnitude: Tensor, lowest: int, highest: int) -> Tensor:
    """clamp(round(log2(m)), lowest, highest) exactly, for m >= 0 (0 gives lowest)."""
    int_dtype, mantissa_bits, bias = _LAYOUT[magnitude.dtype]
    if _is_normal_exponent(lowest, highest, magnitude.dtype):
        # Values below the normal range round to at most 1 - bias <= lowest, as they should.
        carried = magnitude.view(int_dtype) + _SQRT2_CARRY[magnitude.dtype]
        return torch.bitwise_right_shift(carried, mantissa_bits).sub_(bias).clamp_(lowest, highest)
    fraction, exponent = torch.frexp(magnitude)  # m = f * 2^e, f in [0.5, 1): a normal number
    carried = fraction.view(int_dtype) + _SQRT2_CARRY[magnitude.dtype]
    rounded = exponent + torch.bitwise_right_shift(carried, mantissa_bits).sub_(bias)
    rounded = torch.where(magnitude == 0, lowest, rounded)
    return torch.where(torch.isinf(magnitude), highest, rounded).clamp_(lowest, highest)


def _log(x: Tensor, width: int, exponent_bias: int | None) -> Tensor:
    bottom, top = log_exponent_range(width, exponent_bias)
    y = _in_compute_dtype(x)
    # The format has no zero: like MASE, 0 becomes the smallest magnitude, with a + sign.
    exponent = _round_log2(y.abs(), bottom, top)
    if _is_normal_exponent(bottom, top, y.dtype):
        power = _pow2(exponent, y.dtype)
    else:  # powers below the normal range are subnormal numbers, which _pow2 cannot build
        power = _scale_pow2(torch.ones_like(y), exponent)
    # y + 0.0 turns -0.0 into +0.0, whose power is positive like MASE's.
    return _back_to_input_dtype(_keep_nan(y, torch.copysign(power, y + 0.0)), x)


def log_quantize(x: Tensor, width: int, exponent_bias: int | None = None) -> Tensor:
    """Sign and power of two: sign(x) * 2^clamp(round(log2|x|)); zero maps to +2^min (no zero)."""
    return _straight_through(x, partial(_log, width=width, exponent_bias=exponent_bias))


# --------------------------------------------------------------------------------------------
# Block floating point
# --------------------------------------------------------------------------------------------


def block_shape(shape: Sequence[int], block_size: int | Sequence[int]) -> tuple[int, ...]:
    """The block (tile) shape used for a tensor of `shape`.

    An int b means b consecutive elements along the last dimension. A list is right-aligned with
    the tensor's dimensions (as in MASE): [1, 16] on a (rows, cols) tensor means 1 x 16 tiles;
    dimensions the list does not reach get block size 1, extra leading entries are ignored, and an
    entry larger than its dimension covers the whole dimension.
    """
    sizes = [block_size] if isinstance(block_size, int) else list(block_size)
    sizes = sizes[-len(shape):] if shape else []
    tile = [1] * (len(shape) - len(sizes)) + sizes
    return tuple(min(t, s) for t, s in zip(tile, shape))


def _blocked_view(x: Tensor, tile: tuple[int, ...]) -> tuple[Tensor, tuple[int, ...]]:
    """x zero-padded to whole tiles, viewed as (n1, t1, n2, t2, ...); also the padded shape."""
    counts = [-(-s // t) for s, t in zip(x.shape, tile)]
    padded = tuple(n * t for n, t in zip(counts, tile))
    padding = []
    for size, full in zip(reversed(x.shape), reversed(padded)):
        padding += [0, full - size]
    if any(padding):
        x = F.pad(x, padding)
    interleaved = [d for n, t in zip(counts, tile) for d in (n, t)]
    return x.reshape(interleaved), padded


def _block_fp(x: Tensor, width: int, exponent_width: int, exponent_bias: int | None,
              block_size: int | Sequence[int]) -> Tensor:
    if x.numel() == 0:
        return _in_compute_dtype(x).clone()
    mantissa = width - 1
    bias = _bias_or_default(exponent_bias, exponent_width)
    bottom, top = -bias, 2**exponent_width - 1 - bias
    y = _in_compute_dtype(x)
    shape = y.shape
    flat = y.reshape(1) if y.dim() == 0 else y
    tile = block_shape(flat.shape, block_size)
    magnitude, padded = _blocked_view(flat.abs(), tile)
    within_block = tuple(range(1, 2 * flat.dim(), 2))
    block_max = magnitude.amax(dim=within_block, keepdim=True)
    # Shared exponent E with block max < 2^E, so every mantissa is below 1 (MASE's ceil(log2)
    # misses this when the max is an exact power of two).
    step = _floor_log2(block_max, bottom, top, offset=1).sub_(mantissa)
    lowest_step, highest_step = bottom - mantissa, top - mantissa
    if _is_normal_exponent(lowest_step, highest_step, y.dtype) and \
            _is_normal_exponent(-highest_step, -lowest_step, y.dtype):
        codes = (magnitude * _pow2(-step, y.dtype)).round_().clamp_(max=2**mantissa - 1)
        q = codes.mul_(_pow2(step, y.dtype)).reshape(padded)
    else:
        codes = torch.round(_scale_pow2(magnitude, -step)).clamp_(max=2**mantissa - 1)
        q = _scale_pow2(codes, step).reshape(padded)
    q = q[tuple(slice(0, s) for s in flat.shape)].reshape(shape)
    return _back_to_input_dtype(torch.copysign(q, y), x)


def block_fp_quantize(x: Tensor, width: int, exponent_width: int, exponent_bias: int | None = None,
                      block_size: int | Sequence[int] = 16) -> Tensor:
    """Block floating point: per block a shared exponent, per element sign + (width-1)-bit mantissa.

    Blocks follow `block_shape` (an int: consecutive elements of the last dimension); a tensor
    whose size is not a multiple of the block is zero-padded, which never changes a block's
    exponent. The shared exponent is clamped to [-bias, 2^exponent_width - 1 - bias].
    """
    return _straight_through(x, partial(_block_fp, width=width, exponent_width=exponent_width,
                                        exponent_bias=exponent_bias, block_size=block_size))


# --------------------------------------------------------------------------------------------
# Binary and ternary
# --------------------------------------------------------------------------------------------


def _binary(x: Tensor, stochastic: bool, bipolar: bool, generator: torch.Generator | None) -> Tensor:
    y = _in_compute_dtype(x)
    if stochastic:
        probability = ((y + 1) / 2).clamp_(0, 1)
        draw = torch.rand(y.shape, generator=generator, device=y.device, dtype=y.dtype)
        high = (draw < probability).to(y.dtype)
        q = high.mul_(2).sub_(1) if bipolar else high
    elif bipolar:
        q = torch.copysign(torch.ones_like(y), y + 0.0)  # +1 for x >= 0, including -0.0
    else:
        q = torch.sign(y).clamp_(min=0)
    return _back_to_input_dtype(_keep_nan(y, q), x)


def binary_quantize(x: Tensor, stochastic: bool = False, bipolar: bool = True,
                    generator: torch.Generator | None = None) -> Tensor:
    """Bipolar: +1 where x >= 0 else -1; unipolar: 1 where x > 0 else 0; stochastic: P(high) = (x+1)/2."""
    return _straight_through(x, partial(_binary, stochastic=stochastic, bipolar=bipolar,
                                        generator=generator))


def _ternary(x: Tensor, threshold: float, scaling_factor: bool) -> Tensor:
    if x.numel() == 0:
        return _in_compute_dtype(x).clone()
    y = _in_compute_dtype(x)
    magnitude = y.abs()
    # float64 sums make alpha exact to its final rounding, so quantizing twice changes nothing.
    mean = magnitude.sum(dtype=torch.float64) / magnitude.numel()
    delta = (threshold * mean).to(y.dtype)
    kept = torch.sign(magnitude - delta).clamp_(min=0)  # 1 where |x| > delta: a != b => a - b != 0
    q = torch.sign(y).mul_(kept)
    if scaling_factor:
        alpha = (magnitude * kept).sum(dtype=torch.float64) / kept.sum(dtype=torch.float64).clamp(min=1)
        q = q.mul_(alpha.to(y.dtype))
    return _back_to_input_dtype(_keep_nan(y, q), x)


def ternary_quantize(x: Tensor, threshold: float = 0.7, scaling_factor: bool = True) -> Tensor:
    """TWN: delta = threshold * mean|x|; sign(x) where |x| > delta else 0, times mean|x| over |x| > delta.

    Statistics are summed in float64; delta and alpha are then rounded to the input's precision.
    """
    return _straight_through(x, partial(_ternary, threshold=threshold, scaling_factor=scaling_factor))
