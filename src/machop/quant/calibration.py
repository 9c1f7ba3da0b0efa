"""Calibration of fixed-point formats: power-of-two frac widths chosen from observed values.

The scale of a calibrated operand stays 2^-f, so the quantizer is still
`clamp(round_half_even(x * 2^f), lo, hi) / 2^f` and every value an exact integer code. With
`hi` the largest code (2^(w-1) - 1 signed, 2^w - 1 unsigned; 1 for the 1-bit signed format,
whose only nonzero code is -1) and "magnitudes" |x| (signed) or max(x, 0) (unsigned: negative
values become 0 whatever f is):

- max: the largest f with max magnitude * 2^f <= hi, so no value is clipped.
- percentile: the same rule with the p-th percentile of the magnitudes (NumPy's default linear
  interpolation) in place of the max; the top (100 - p) % may be clipped. A percentile of 0
  falls back to the max.
- mse: the f that minimises the summed squared error sum((x - q_f(x))^2) over the values, among
  every f from max's choice up to the largest the width allows (a smaller f only coarsens the
  grid without reducing clipping, so its error is never smaller). Ties (errors within a relative
  1e-9) go to the smaller f, the wider range. The search stops where every nonzero value is
  clipped: from there on each error only grows.

Every choice is clamped to `frac_width_range(width)`; values that are all zero give width // 2
(MASE's default). Per-channel calibration applies the same rule to each index of dim 0.
Activations are observed batch by batch: an `Observer` keeps their exact extremes and a
bounded uniform sample (seeded), so memory stays bounded whatever the calibration set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from machop.quant.arithmetic import frac_width_range
from machop.quant.quantizers import integer_range

METHODS = ("max", "percentile", "mse")
DEFAULT_PERCENTILE = 99.99
TIE_TOLERANCE = 1e-9  # relative: summation order alone may move an error this far
DEFAULT_SAMPLE_SIZE = 65536


def largest_code(width: int, is_signed: bool) -> int:
    """The code magnitude a calibrated range must fit under: hi, or 1 for the 1-bit signed format."""
    return max(integer_range(width, is_signed)[1], 1)


def magnitudes(values: Tensor, is_signed: bool) -> Tensor:
    """|x| for a signed format; max(x, 0) for an unsigned one (negatives are 0 at every f)."""
    return values.abs() if is_signed else values.clamp(min=0)


def fitting_frac(statistic: float, width: int, is_signed: bool) -> int:
    """The largest f (in the width's range) with statistic * 2^f <= hi; width // 2 for 0."""
    lowest, highest = frac_width_range(width)
    if math.isnan(statistic) or statistic <= 0:
        return width // 2
    if math.isinf(statistic):
        return lowest
    cap = largest_code(width, is_signed)
    frac = math.floor(math.log2(cap / statistic))
    # log2 may be off by one near powers of two; ldexp is exact.
    while math.ldexp(statistic, frac + 1) <= cap:
        frac += 1
    while math.ldexp(statistic, frac) > cap:
        frac -= 1
    return min(max(frac, lowest), highest)


def _all_clipped_frac(smallest_nonzero: float, width: int, is_signed: bool) -> int:
    """The smallest f at which hi * 2^-f <= the smallest nonzero magnitude: everything clips."""
    cap = largest_code(width, is_signed)
    frac = math.ceil(math.log2(cap / smallest_nonzero))
    while math.ldexp(cap, -(frac - 1)) <= smallest_nonzero:
        frac -= 1
    while math.ldexp(cap, -frac) > smallest_nonzero:
        frac += 1
    return frac


def percentile_of_rows(rows: Tensor, percentile: float) -> Tensor:
    """The p-th percentile of each row (float64), interpolated exactly as numpy.percentile."""
    ordered = rows.double().sort(dim=1).values
    count = ordered.shape[1]
    position = percentile / 100 * (count - 1)
    below = math.floor(position)
    above = min(below + 1, count - 1)
    t = position - below
    a, b = ordered[:, below], ordered[:, above]
    difference = b - a
    # NumPy's lerp: from the nearer end, so t = 1 gives b exactly.
    return b - difference * (1 - t) if t >= 0.5 else a + difference * t


def squared_errors(rows: Tensor, frac: int, width: int, is_signed: bool) -> Tensor:
    """Per row, sum((x - q_f(x))^2) in float64 (unsigned: of max(x, 0))."""
    lo, hi = integer_range(width, is_signed)
    values = rows.double() if is_signed else rows.double().clamp(min=0)
    scale = math.ldexp(1.0, frac)
    quantized = (values * scale).round_().clamp_(lo, hi).div_(scale)
    return (values - quantized).square_().sum(dim=1)


def _clipping_bounds(rows: Tensor, frac: int, width: int, is_signed: bool) -> Tensor:
    """Per row, a lower bound of squared_errors at `frac` and every larger frac: the clipping alone."""
    lo, hi = integer_range(width, is_signed)
    reach = math.ldexp(max(hi, -lo), -frac)  # no code lies farther from 0
    return (magnitudes(rows, is_signed) - reach).clamp_(min=0).square_().sum(dim=1)


def _mse_fracs(rows: Tensor, largest: list[float], width: int, is_signed: bool) -> list[int]:
    """mse's choice per row: the error-minimising f from max's choice up.

    The search of a row stops at the first f whose clipping error alone exceeds the best error
    so far (clipping only grows with f, so no larger f can win), or where every value is clipped.
    """
    _, highest = frac_width_range(width)
    rows = rows.double()
    lows, highs = [], []
    for row, peak in zip(magnitudes(rows, is_signed), largest):
        nonzero = row[row > 0]
        low = fitting_frac(peak, width, is_signed)
        high = highest if nonzero.numel() == 0 else \
            min(highest, max(low, _all_clipped_frac(float(nonzero.min()), width, is_signed)))
        lows.append(low)
        highs.append(high if peak > 0 else low)
    errors: list[list[tuple[float, int]]] = [[] for _ in lows]
    best = [math.inf] * len(lows)
    active = set(range(len(lows)))
    for frac in range(min(lows), max(highs) + 1):
        indices = [i for i in sorted(active) if lows[i] <= frac]
        if not indices:
            continue
        subset = rows[indices]
        found = squared_errors(subset, frac, width, is_signed).tolist()
        bounds = _clipping_bounds(subset, frac + 1, width, is_signed).tolist()
        for i, error, bound in zip(indices, found, bounds):
            errors[i].append((error, frac))
            best[i] = min(best[i], error)
            if frac >= highs[i] or bound > best[i] * (1 + TIE_TOLERANCE):
                active.discard(i)
        if not active:
            break
    return [next(frac for error, frac in row if error <= low * (1 + TIE_TOLERANCE))
            for row, low in zip(errors, best)]


def choose_fracs(rows: Tensor, width: int, is_signed: bool, method: str,
                 percentile: float = DEFAULT_PERCENTILE,
                 largest: list[float] | None = None) -> list[int]:
    """One frac width per row of `rows` (channels x values) by `method`.

    `largest` gives each row's exact max magnitude when the rows hold only a sample of the
    values (activations); by default it is the rows' own.
    """
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r} (valid: {', '.join(METHODS)})")
    rows = rows.detach().reshape(rows.shape[0], -1) if rows.dim() else rows.reshape(1, 1)
    if largest is None:
        largest = [float(v) for v in magnitudes(rows.double(), is_signed).amax(dim=1)] \
            if rows.shape[1] else [0.0] * rows.shape[0]
    if method == "max" or rows.shape[1] == 0:
        return [fitting_frac(peak, width, is_signed) for peak in largest]
    if method == "percentile":
        levels = percentile_of_rows(magnitudes(rows.double(), is_signed), percentile)
        return [fitting_frac(float(level) if level > 0 else peak, width, is_signed)
                for level, peak in zip(levels, largest)]
    return _mse_fracs(rows, largest, width, is_signed)


def choose_frac(values: Tensor, width: int, is_signed: bool, method: str,
                percentile: float = DEFAULT_PERCENTILE, largest: float | None = None) -> int:
    """The frac width of one tensor (every value in one row) by `method`."""
    peak = None if largest is None else [largest]
    return choose_fracs(values.detach().reshape(1, -1), width, is_signed, method, percentile, peak)[0]


def choose_channel_fracs(values: Tensor, width: int, is_signed: bool, method: str,
                         percentile: float = DEFAULT_PERCENTILE) -> tuple[int, ...]:
    """One frac width per output channel (index of dim 0) of a weight or bias."""
    return tuple(choose_fracs(values.detach().reshape(values.shape[0], -1), width, is_signed,
                              method, percentile))


@dataclass
class Observer:
    """The running extremes of an activation and a uniform sample of at most `capacity` values.

    The sample is a bottom-k sketch: every value has a uniform key and the `capacity` values with
    the smallest keys are kept, a uniform sample without replacement of all values seen. Once the
    sample is full only keys below its largest kept key t can enter, so only those are drawn:
    which values enter is a Bernoulli(t) pattern (drawn as geometric gaps) and their keys are
    uniform below t, the same distribution as drawing every key at a fraction of the cost. While
    no more than `capacity` values were seen it holds all of them. Non-finite values are left out.
    """

    capacity: int = DEFAULT_SAMPLE_SIZE
    generator: torch.Generator = field(default_factory=torch.Generator)
    count: int = field(default=0, init=False)
    high: float = field(default=-math.inf, init=False)
    low: float = field(default=math.inf, init=False)
    _values: Tensor = field(default_factory=lambda: torch.empty(0), init=False, repr=False)
    _keys: Tensor = field(default_factory=lambda: torch.empty(0), init=False, repr=False)

    def update(self, x: Tensor) -> None:
        """Record every value of `x`."""
        flat = x.detach().reshape(-1).float().cpu()
        if flat.numel() == 0:
            return
        low, high = (float(v) for v in torch.aminmax(flat))
        if not (math.isfinite(low) and math.isfinite(high)):  # NaN and inf show in the extremes
            flat = flat[torch.isfinite(flat)]
            if flat.numel() == 0:
                return
            low, high = (float(v) for v in torch.aminmax(flat))
        self.count += flat.numel()
        self.high, self.low = max(self.high, high), min(self.low, low)
        values, keys = self._entering(flat)
        values, keys = torch.cat([self._values, values]), torch.cat([self._keys, keys])
        if keys.numel() > self.capacity:
            chosen = keys.topk(self.capacity, largest=False).indices
            values, keys = values[chosen], keys[chosen]
        self._values, self._keys = values, keys

    def _entering(self, flat: Tensor) -> tuple[Tensor, Tensor]:
        """The values of `flat` whose keys may be among the `capacity` smallest, and their keys."""
        kept = self._keys.numel()
        if kept + flat.numel() <= self.capacity:
            return flat, torch.rand(flat.numel(), generator=self.generator)
        # Keys at or above a cut t cannot be kept once `capacity` keys lie below it: the largest
        # kept key when full, else a cut below which about twice the room is expected.
        full = kept >= self.capacity
        cut = float(self._keys.max()) if full else min(1.0, 2 * self.capacity / (kept + flat.numel()))
        values = flat[self._bernoulli_positions(flat.numel(), cut)]
        if not full and int((self._keys < cut).sum()) + values.numel() < self.capacity:
            return flat, torch.rand(flat.numel(), generator=self.generator)  # rare: a fresh full draw
        return values, torch.rand(values.numel(), generator=self.generator).mul_(cut)

    def _bernoulli_positions(self, count: int, probability: float) -> Tensor:
        """The indices of successes among `count` Bernoulli(probability) trials."""
        if probability >= 1:
            return torch.arange(count)
        log_miss = math.log1p(-probability)
        found, last = [], -1
        while last < count - 1:
            draws = int((count - 1 - last) * probability * 1.1) + 64
            uniform = torch.rand(draws, generator=self.generator, dtype=torch.float64)
            # Failures before each success are Geometric(p): floor(log(1 - U) / log(1 - p)).
            gaps = torch.floor(torch.log1p(-uniform) / log_miss)
            positions = last + torch.cumsum(gaps + 1, 0)
            found.append(positions[positions < count])
            last = int(positions[-1].item()) if positions[-1] < count else count
        return torch.cat(found).long()

    @property
    def sample(self) -> Tensor:
        """The kept values (all of them while count <= capacity)."""
        return self._values

    def largest(self, is_signed: bool) -> float:
        """The exact max magnitude seen: max |x| (signed) or max(x, 0) (unsigned)."""
        if self.count == 0:
            return 0.0
        return max(self.high, -self.low) if is_signed else max(self.high, 0.0)

    def choose(self, width: int, is_signed: bool, method: str,
               percentile: float = DEFAULT_PERCENTILE) -> int:
        """The frac width of this activation by `method`."""
        if self.count == 0:
            return width // 2
        return choose_frac(self.sample, width, is_signed, method, percentile,
                           largest=self.largest(is_signed))


__all__ = ["DEFAULT_PERCENTILE", "DEFAULT_SAMPLE_SIZE", "METHODS", "Observer", "choose_channel_fracs",
           "choose_frac", "choose_fracs", "fitting_frac", "largest_code", "magnitudes",
           "percentile_of_rows", "squared_errors"]
