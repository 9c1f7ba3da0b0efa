"""ap_fixed types for hls4ml: machop's fixed-point operands and exact sums as HLS type strings.

machop's integer quantizer (round half to even on ties, saturate, power-of-two scale) is
`ap_fixed<W, W - F, AP_RND_CONV, AP_SAT>` (`ap_ufixed` when unsigned): a cast into that type
rounds and saturates exactly as the quantizer does. Weights and biases already lie on their
grid, so they take the plain type that holds every channel's values; sums take a type wide
enough that nothing rounds or wraps (machop.quant.exact).
"""

from __future__ import annotations

from dataclasses import dataclass

from machop.quant.exact import FixedOperand, SumFormat

# Float (unquantized) tensors and parameters: FPGAs have no float path in hls4ml, so they get
# this wide fixed-point type (16 integer bits, 16 frac bits), and the export warns.
FLOAT_DEFAULT_WIDTH, FLOAT_DEFAULT_INT = 32, 16


@dataclass(frozen=True)
class FixedType:
    """One ap_fixed / ap_ufixed type: total width, frac bits, sign, and whether a cast rounds."""

    width: int
    frac: int
    signed: bool = True
    quantizer: bool = False  # AP_RND_CONV, AP_SAT: a cast into it is machop's quantizer

    @property
    def integer(self) -> int:
        """Integer bits I of ap_fixed<W, I> (sign included when signed)."""
        return self.width - self.frac

    def text(self) -> str:
        """The HLS type string, e.g. ap_fixed<8,4,AP_RND_CONV,AP_SAT>."""
        base = "ap_fixed" if self.signed else "ap_ufixed"
        modes = ",AP_RND_CONV,AP_SAT" if self.quantizer else ""
        return f"{base}<{self.width},{self.integer}{modes}>"

    def holds(self, other: FixedType) -> bool:
        """Whether every value of `other` is a value of this type (a cast leaves it unchanged)."""
        if other.frac > self.frac:
            return False
        shift = self.frac - other.frac
        lo, hi = _code_range(other)
        my_lo, my_hi = _code_range(self)
        return my_lo <= lo << shift and hi << shift <= my_hi


def compose(first: FixedType, then: FixedType) -> FixedType | None:
    """One type whose cast equals casting into `first` and then into `then`; None when none exists.

    When `then`'s grid holds `first`'s (frac at least as large), the second cast only saturates,
    so the two are one cast onto `first`'s grid with the intersected range, whenever `then`'s
    bounds that bite lie on `first`'s grid and the range is a whole signed or unsigned width. A
    coarser second grid would round twice, which no single cast does.
    """
    if then.frac < first.frac:
        return None
    shift = then.frac - first.frac
    lo1, hi1 = _code_range(first)
    lo2, hi2 = _code_range(then)
    # The second cast saturates first's values to its bounds: those must lie on first's grid too.
    lo, hi = max(lo1 << shift, lo2), min(hi1 << shift, hi2)
    step = 1 << shift
    if lo % step or hi % step or lo > hi:
        return None
    lo, hi = lo // step, hi // step
    for signed in (lo < 0, lo >= 0):
        width = hi.bit_length() + (1 if signed else 0)
        candidate = FixedType(max(width, 1), first.frac, signed, quantizer=True)
        if _code_range(candidate) == (lo, hi):
            return candidate
    return None


def _code_range(t: FixedType) -> tuple[int, int]:
    if t.signed:
        return -(1 << (t.width - 1)), (1 << (t.width - 1)) - 1
    return 0, (1 << t.width) - 1


def quantizer_type(operand: FixedOperand) -> FixedType:
    """The type whose cast is machop's quantizer of an activation (one frac width)."""
    return FixedType(operand.width, operand.fracs[0], operand.is_signed, quantizer=True)


def parameter_type(operand: FixedOperand) -> FixedType:
    """A type holding every channel's grid values of a weight or bias (per-channel fracs included)."""
    frac = operand.frac_bits
    return FixedType(operand.int_bits + frac, frac, operand.is_signed)


def sum_type(form: SumFormat) -> FixedType:
    """A signed type holding every partial sum of a layer exactly."""
    width, integer = form.ap_fixed()
    return FixedType(width, width - integer)


def add_type(first: FixedType, second: FixedType) -> FixedType:
    """The smallest type holding every sum of a value of `first` and one of `second` (nothing rounds)."""
    frac = max(first.frac, second.frac)
    (lo1, hi1), (lo2, hi2) = _code_range(first), _code_range(second)
    lo = (lo1 << (frac - first.frac)) + (lo2 << (frac - second.frac))
    hi = (hi1 << (frac - first.frac)) + (hi2 << (frac - second.frac))
    signed = lo < 0
    width = max(hi.bit_length(), (-lo - 1).bit_length() if signed else 0) + (1 if signed else 0)
    return FixedType(max(width, 1), frac, signed)


def plain(kind: FixedType) -> FixedType:
    """The same grid and range without rounding or saturation modes (for values already on it)."""
    return FixedType(kind.width, kind.frac, kind.signed)


def float_default() -> FixedType:
    """The documented wide type for float tensors and parameters (not exact)."""
    return FixedType(FLOAT_DEFAULT_WIDTH, FLOAT_DEFAULT_WIDTH - FLOAT_DEFAULT_INT, True, quantizer=True)


__all__ = ["FLOAT_DEFAULT_INT", "FLOAT_DEFAULT_WIDTH", "FixedType", "add_type", "compose", "float_default",
           "parameter_type", "plain", "quantizer_type", "sum_type"]
