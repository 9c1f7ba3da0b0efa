"""Exactness of fixed-point sums: how many bits a quantized layer's accumulation needs.

A quantized Linear, Conv or BatchNorm computes Σ x·w + b on operands that are integer codes
times powers of two. Every partial sum is then an integer multiple of 2^-F, F = max(fx + fw, fb),
bounded by M = K·max|x|·max|w| + max|b| (in units of 2^-F, K the reduction length). A float
format with p mantissa bits holds every such partial sum exactly when M < 2^p, so the layer's
float result is the exact fixed-point result in any summation order. `sum_format` gives F and
the bits of M; `simulation_dtype` picks float32 where 24 bits suffice and float64 (53 bits)
otherwise. The same numbers size hls4ml's accumulator (`ap_fixed<bits + 1, bits + 1 - F>`).
Once the quantized weights are known, `float32_sums_are_exact` bounds the sums by the actual
weight codes instead, so a layer whose weights are far from the largest code stays in float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from machop.quant.quantizers import integer_range

FLOAT32_BITS = 24
FLOAT64_BITS = 53
# Smallest unit 2^-F that is a normal number (no flush-to-zero worries on any backend).
FLOAT32_MAX_FRAC = 126
FLOAT64_MAX_FRAC = 1022


@dataclass(frozen=True)
class FixedOperand:
    """An integer-quantized operand: width, frac width(s) (one per channel or one), signedness."""

    width: int
    fracs: tuple[int, ...]
    is_signed: bool = True

    @property
    def largest_code(self) -> int:
        """The largest magnitude of a code."""
        lo, hi = integer_range(self.width, self.is_signed)
        return max(-lo, hi)

    @property
    def int_bits(self) -> int:
        """Integer bits (sign included) of one ap_fixed type holding every channel's values."""
        return max(self.width - f for f in self.fracs)

    @property
    def frac_bits(self) -> int:
        """Frac bits of one ap_fixed type holding every channel's values."""
        return max(self.fracs)


def fixed_operand(spec: Any) -> FixedOperand | None:
    """The fixed-point layout of an OperandSpec, None when it is not integer (or absent)."""
    if spec is None or getattr(spec, "arithmetic", None) != "integer":
        return None
    fracs = spec.frac_width if isinstance(spec.frac_width, tuple) else (spec.frac_width,)
    return FixedOperand(int(spec.width), tuple(int(f) for f in fracs), bool(spec.is_signed))


@dataclass(frozen=True)
class SumFormat:
    """The exact range of a fixed-point sum: integers below 2^magnitude_bits in size, times 2^-frac."""

    frac: int
    magnitude_bits: int

    def fits(self, mantissa_bits: int, max_frac: int) -> bool:
        """Whether a float with this many mantissa bits holds every partial sum exactly."""
        return self.magnitude_bits <= mantissa_bits and self.frac <= max_frac

    def ap_fixed(self) -> tuple[int, int]:
        """(W, I) of the signed ap_fixed that holds every partial sum without rounding or overflow."""
        width = self.magnitude_bits + 1
        return width, width - self.frac


def _channel_count(*operands: FixedOperand | None) -> int:
    return max((len(op.fracs) for op in operands if op is not None), default=1)


def _frac_at(op: FixedOperand, channel: int) -> int:
    return op.fracs[channel] if len(op.fracs) > 1 else op.fracs[0]


def sum_format(data_in: FixedOperand, weight: FixedOperand, bias: FixedOperand | None,
               reduction: int) -> SumFormat:
    """Common frac and magnitude bits of Σ_k x_k·w_k + b over `reduction` terms, every channel."""
    channels = _channel_count(weight, bias)
    frac = max(data_in.fracs[0] + max(weight.fracs), bias.frac_bits if bias is not None else -10**6)
    bound = 0
    for c in range(channels):
        product_frac = data_in.fracs[0] + _frac_at(weight, c)
        total = reduction * data_in.largest_code * weight.largest_code << (frac - product_frac)
        if bias is not None:
            total += bias.largest_code << (frac - _frac_at(bias, c))
        bound = max(bound, total)
    return SumFormat(frac, max(1, bound.bit_length()))


def simulation_dtype(specs: dict[str, Any], reduction: int) -> torch.dtype | None:
    """float64 when float32 cannot hold the layer's fixed-point sum exactly; None: keep float32.

    Only layers whose input and weight are both integer-quantized are fixed point; any other
    layer computes in float as before.
    """
    data_in, weight = fixed_operand(specs.get("data_in")), fixed_operand(specs.get("weight"))
    if data_in is None or weight is None:
        return None
    bias_spec = specs.get("bias")
    bias = fixed_operand(bias_spec)
    if bias_spec is not None and bias is None:
        return None  # a non-integer bias: the sum is not fixed point
    form = sum_format(data_in, weight, bias, reduction)
    return None if form.fits(FLOAT32_BITS, FLOAT32_MAX_FRAC) else torch.float64


def _per_channel_fracs(op: FixedOperand, channels: int) -> torch.Tensor:
    fracs = op.fracs if len(op.fracs) > 1 else op.fracs * channels
    return torch.tensor(fracs, dtype=torch.float64)


def float32_sums_are_exact(specs: dict[str, Any], weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether float32 holds every partial sum of Σ x·w + b exactly, for these quantized weight and bias.

    Sharper than `sum_format`'s worst case, which assumes every weight code is the largest: per
    output channel c (dim 0 of `weight`), every product and the bias are multiples of 2^-F_c,
    F_c = max(fx + fw_c, fb_c), and every partial sum is at most Σ_j |w_cj|·max|x| + |b_c|. A
    float32 holds all of them exactly when that bound is below 2^(24 - F_c). The data_out
    quantizer must be a fixed-point grid that float32 holds too (then it rounds the same exact
    sum in float32 as in float64). False where any of this is unknown.
    """
    data_in, weight_op = fixed_operand(specs.get("data_in")), fixed_operand(specs.get("weight"))
    bias_op, out_spec = fixed_operand(specs.get("bias")), specs.get("data_out")
    if data_in is None or weight_op is None or (bias is not None and bias_op is None):
        return False
    if out_spec is not None:
        data_out = fixed_operand(out_spec)
        if data_out is None or data_out.largest_code >= 2**FLOAT32_BITS:
            return False
    channels = weight.shape[0] if weight.dim() > 0 else 1
    frac = data_in.fracs[0] + _per_channel_fracs(weight_op, channels)
    largest_x = data_in.largest_code * 2.0 ** -data_in.fracs[0]
    bound = weight.detach().to(torch.float64).reshape(channels, -1).abs().sum(1) * largest_x
    if bias is not None:
        frac = torch.maximum(frac, _per_channel_fracs(bias_op, channels))
        bound = bound + bias.detach().to(torch.float64).reshape(channels).abs()
    if int(frac.max()) > FLOAT32_MAX_FRAC:
        return False
    return bool((bound < torch.pow(2.0, FLOAT32_BITS - frac)).all())


def is_exact_in_float64(specs: dict[str, Any], reduction: int) -> bool:
    """Whether float64 holds the layer's fixed-point sum exactly (False also for non-fixed layers)."""
    data_in, weight = fixed_operand(specs.get("data_in")), fixed_operand(specs.get("weight"))
    if data_in is None or weight is None:
        return False
    bias = fixed_operand(specs.get("bias"))
    if specs.get("bias") is not None and bias is None:
        return False
    return sum_format(data_in, weight, bias, reduction).fits(FLOAT64_BITS, FLOAT64_MAX_FRAC)


__all__ = ["FixedOperand", "SumFormat", "fixed_operand", "float32_sums_are_exact", "is_exact_in_float64",
           "simulation_dtype", "sum_format"]
