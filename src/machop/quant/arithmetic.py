"""Arithmetic registry: MASE node configs -> one validated `OperandSpec` per operand.

A node config is MASE's: `name` picks the arithmetic, and each operand (data_in, weight, bias,
data_out) has keys `<operand>_<field>`, e.g. `weight_width = 8`, `weight_frac_width = 4`.

Rules (decisions; tests pin them):
- An operand none of whose keys is given stays in float (None). data_out is therefore quantized
  only when a `data_out_*` key is given, as in MASE.
- Missing bias keys leave the bias in float. MASE has no consistent rule here: its integer,
  minifloat, log and block_fp layers raise KeyError for a biased layer without bias keys, its
  binary and ternary layers never quantize the bias, and its unused helper would copy the
  weight's keys. A float bias is the one choice that never silently changes the model; model
  size and BitOPs then count it at 32 bits.
- An operand with some keys must have the arithmetic's required ones (integer: width;
  minifloat: width, exponent_width; ...); optional fields take defaults (frac_width = width // 2,
  exponent_bias = 2^(e-1) - 1, block_size = 16). "NA" or None means "default".
- `name` is case-insensitive; "fixed" is MASE's alias of "integer" and is recorded as "integer".
- binary and ternary have fixed widths (1 and 2 bits). MASE configs give them `<op>_width`,
  `<op>_frac_width` and (ternary) `<op>_mean/median/max` statistics; these are accepted and
  have no effect, exactly as in MASE where the quantizers ignore them.
- An integer frac_width lies in -32..width + 32 (`frac_width_range`): a binary point left of the
  word (negative) or right of it (beyond width) is what calibration picks for large activations
  and small weights, and every such grid value is still an exact float32 number. A list of frac
  widths gives weights and biases one per output channel; activations take one per tensor.
- `frac_width = "auto"` asks calibration (machop.passes.calibrate) to choose the frac width from
  data; `parse_node_config` resolves it through the `frac_for` chooser it is given, and refuses
  it without one, or for an arithmetic without a binary point.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, fields
from functools import partial
from typing import Any

import torch
from torch import Tensor

from machop.docstrings import summary
from machop.errors import PassError, did_you_mean, unknown_name
from machop.quant import quantizers as Q

OPERANDS = ("data_in", "weight", "bias", "data_out")
# Above 24 bits not every integer code is a float32 number, so widths 25..32 are simulated on
# float32's coarser grid near their bounds; wider formats would be simulated no better.
MAX_WIDTH = 32
NONE_STRINGS = ("NA", "na", "none", "None")
AUTO = "auto"  # frac_width chosen by calibration on data
# Operands quantized with one frac width per output channel when given a list.
CHANNEL_OPERANDS = ("weight", "bias")
# frac, per operand and signedness -> the calibrated frac width(s) of that operand
FracChooser = Callable[[str, int, bool], "int | tuple[int, ...]"]


class InvalidOperand(ValueError):
    """An operand parameter is invalid; `field` names it (e.g. "frac_width")."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


# --------------------------------------------------------------------------------------------
# Field types
# --------------------------------------------------------------------------------------------


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value in NONE_STRINGS)


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"must be an integer, got {value!r} ({type(value).__name__})")
    return int(value)


def _optional_integer(value: Any) -> int | None:
    return None if _is_none(value) else _integer(value)


def frac_width_range(width: int) -> tuple[int, int]:
    """Smallest and largest frac width of a width-bit integer format: -32 .. width + 32."""
    return -MAX_WIDTH, width + MAX_WIDTH


def _frac_width(value: Any) -> int | tuple[int, ...] | str | None:
    if _is_none(value):
        return None
    if isinstance(value, str) and value == AUTO:
        return AUTO
    if isinstance(value, (list, tuple)):
        if not value or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in value):
            raise ValueError(f"must be an integer, \"{AUTO}\", \"NA\" or a non-empty list of integers "
                             f"(one per output channel), got {value!r}")
        return tuple(int(v) for v in value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"must be an integer, \"{AUTO}\", \"NA\" or a list of integers (one per "
                         f"output channel), got {value!r} ({type(value).__name__})")
    return int(value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r} ({type(value).__name__})")
    return value


def _real(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value!r} ({type(value).__name__})")
    return float(value)


def _optional_real(value: Any) -> float | None:
    return None if _is_none(value) else _real(value)


def _block_size(value: Any) -> tuple[int, ...] | None:
    if _is_none(value):
        return None
    sizes = list(value) if isinstance(value, (list, tuple)) else [value]
    if not sizes or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1
                        for s in sizes):
        raise ValueError(f"must be a positive integer or a non-empty list of positive integers, "
                         f"got {value!r}")
    return tuple(int(s) for s in sizes)


FIELD_TYPES: dict[str, Callable[[Any], Any]] = {
    "width": _integer,
    "frac_width": _frac_width,
    "exponent_width": _integer,
    "exponent_bias": _optional_integer,
    "block_size": _block_size,
    "stochastic": _boolean,
    "bipolar": _boolean,
    "threshold": _real,
    "scaling_factor": _boolean,
    "is_signed": _boolean,
    # MASE keys accepted for compatibility and ignored (see module docstring).
    "mean": _optional_real,
    "median": _optional_real,
    "max": _optional_real,
}


# --------------------------------------------------------------------------------------------
# Operand spec
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OperandSpec:
    """The quantization of one operand: an arithmetic and its (default-resolved) parameters."""

    arithmetic: str
    width: int | None = None
    frac_width: int | tuple[int, ...] | None = None
    exponent_width: int | None = None
    exponent_bias: int | None = None
    block_size: tuple[int, ...] | None = None
    stochastic: bool = False
    bipolar: bool = True
    threshold: float = 0.7
    scaling_factor: bool = True
    is_signed: bool = True

    def __post_init__(self) -> None:
        key = str(self.arithmetic).lower()
        if key not in ARITHMETICS:
            raise InvalidOperand("arithmetic", unknown_name("arithmetic", self.arithmetic, ARITHMETICS))
        arith = ARITHMETICS[key]
        object.__setattr__(self, "arithmetic", arith.name)
        for name, default in _PARAMETER_DEFAULTS.items():
            value = getattr(self, name)
            if name not in arith.params and name != "width" and value != default:
                raise InvalidOperand(name, f"is not a parameter of {arith.name} "
                                           f"(parameters: {', '.join(arith.params)})")
            if value is not None:
                try:
                    object.__setattr__(self, name, FIELD_TYPES[name](value))
                except ValueError as error:
                    raise InvalidOperand(name, str(error)) from None
        for name, value in arith.defaults(self).items():
            object.__setattr__(self, name, value)
        arith.check(self)
        # Bound once: quantize() runs on every activation of every forward pass.
        object.__setattr__(self, "_bound_quantizer", partial(
            arith.quantizer, **{name: getattr(self, name) for name in arith.params}))

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.precision().items() if k != "type")
        return f"OperandSpec({self.arithmetic!r}, {params})"

    @property
    def _arith(self) -> Arithmetic:
        return ARITHMETICS[self.arithmetic]

    def quantize(self, x: Tensor) -> Tensor:
        """Fake-quantize `x` (straight-through gradient)."""
        return self._bound_quantizer(x)

    def no_grad_quantizer(self, dtype: torch.dtype, on_cpu: bool) -> Callable[[Tensor], Tensor]:
        """quantize() for inputs that record no gradient, fastest for `dtype` (on the CPU or not)."""
        specialise = self._arith.no_grad_quantizer
        if specialise is not None:
            function = specialise(**{name: getattr(self, name) for name in self._arith.params},
                                  dtype=dtype, on_cpu=on_cpu)
            if function is not None:
                return function
        return self._bound_quantizer

    def precision(self) -> dict[str, Any]:
        """Node-metadata form, e.g. {"type": "integer", "width": 8, "frac_width": 4}."""
        record: dict[str, Any] = {"type": self.arithmetic, "width": self.bits}
        for name in self._arith.params:
            value = getattr(self, name)
            if name == "width" or (name == "is_signed" and value):
                continue
            record[name] = list(value) if isinstance(value, tuple) else value
        return record

    @property
    def bits(self) -> int:
        """Storage bits per element (block_fp: the amortised shared exponent is not counted)."""
        return int(self.width)


_PARAMETER_DEFAULTS = {f.name: f.default for f in fields(OperandSpec)
                       if f.name != "arithmetic" and f.default is not MISSING}


# --------------------------------------------------------------------------------------------
# Arithmetics
# --------------------------------------------------------------------------------------------


def _check_width(spec: OperandSpec, smallest: int = 1) -> None:
    if not smallest <= spec.width <= MAX_WIDTH:
        raise InvalidOperand("width", f"must be an integer in {smallest}..{MAX_WIDTH}, got {spec.width}")


def _check_exponent_width(spec: OperandSpec, largest: int, why: str) -> None:
    if not 1 <= spec.exponent_width <= largest:
        raise InvalidOperand("exponent_width", f"must be an integer in 1..{largest} ({why}), "
                                               f"got {spec.exponent_width}")


def _check_exponent_span(spec: OperandSpec, lowest: int, top: int, *, lowest_limit: int = -149,
                         top_limit: int) -> None:
    # Fake quantization computes in float32: every grid value must be a float32 number.
    if lowest >= lowest_limit and top <= top_limit:
        return
    default_bias = (Q.default_log_exponent_bias(spec.width) if spec.arithmetic == "log"
                    else Q.default_exponent_bias(spec.exponent_width))
    blamed = "exponent_bias" if spec.exponent_bias != default_bias else \
        ("width" if spec.arithmetic == "log" else "exponent_width")
    raise InvalidOperand(blamed, f"gives values from 2^{lowest} to about 2^{top}, outside "
                                 "float32; use fewer exponent bits or another exponent_bias")


def _check_integer(spec: OperandSpec) -> None:
    _check_width(spec)
    if spec.frac_width == AUTO:
        raise InvalidOperand("frac_width", f"\"{AUTO}\" is chosen by calibration on data, which "
                                           "this call has none of (machop transform and search "
                                           "calibrate; in Python, apply_passes(..., data=PassData(...)))")
    lowest, highest = frac_width_range(spec.width)
    fracs = spec.frac_width if isinstance(spec.frac_width, tuple) else (spec.frac_width,)
    for frac in fracs:
        if not lowest <= frac <= highest:
            raise InvalidOperand("frac_width", f"must be an integer in {lowest}..width + {MAX_WIDTH} "
                                               f"({highest}), got {frac}")


def _check_minifloat_ieee(spec: OperandSpec) -> None:
    _check_width(spec, 2)
    _check_exponent_width(spec, min(8, spec.width - 1), "at most 8, below width")
    mantissa, bias = spec.width - 1 - spec.exponent_width, spec.exponent_bias
    _check_exponent_span(spec, 1 - bias - mantissa, 2**spec.exponent_width - 1 - bias, top_limit=127)


def _check_minifloat_denorm(spec: OperandSpec) -> None:
    _check_width(spec, 3)
    _check_exponent_width(spec, min(8, spec.width - 2), "at most 8, leaving a mantissa bit")
    mantissa, bias = spec.width - 1 - spec.exponent_width, spec.exponent_bias
    _check_exponent_span(spec, -bias - mantissa, 2**spec.exponent_width - 1 - bias, top_limit=128)


def _check_log(spec: OperandSpec) -> None:
    _check_width(spec, 2)
    bottom, top = Q.log_exponent_range(spec.width, spec.exponent_bias)
    _check_exponent_span(spec, bottom, top, top_limit=127)


def _check_block_fp(spec: OperandSpec) -> None:
    _check_width(spec, 2)
    _check_exponent_width(spec, 8, "at most 8")
    bias = spec.exponent_bias
    _check_exponent_span(spec, -bias - (spec.width - 1), 2**spec.exponent_width - 1 - bias,
                         top_limit=128)


def _check_ternary(spec: OperandSpec) -> None:
    if spec.threshold < 0:
        raise InvalidOperand("threshold", f"must be >= 0, got {spec.threshold}")


def _no_check(spec: OperandSpec) -> None:
    """Binary has nothing to validate beyond its field types."""


@dataclass(frozen=True)
class Arithmetic:
    """A registered number format: its quantizer, config fields and parameter validation.

    The quantizer's docstring describes the format; `aliases` are other config names for it.
    """

    name: str
    quantizer: Callable[..., Tensor]
    params: tuple[str, ...]                 # OperandSpec fields passed to the quantizer
    required: tuple[str, ...]               # fields an operand must give once it gives any
    optional: tuple[str, ...] = ()          # other fields an operand may give
    ignored: tuple[str, ...] = ()           # MASE keys accepted without effect
    fixed_width: int | None = None          # binary: 1, ternary: 2
    check: Callable[[OperandSpec], None] = _no_check
    aliases: tuple[str, ...] = ()
    # (params..., dtype, on_cpu) -> a faster quantizer for inputs without gradient, or None
    no_grad_quantizer: Callable[..., Callable[[Tensor], Tensor] | None] | None = None

    @property
    def description(self) -> str:
        """The first line of the quantizer's docstring."""
        return summary(self.quantizer)

    @property
    def fields(self) -> tuple[str, ...]:
        """Every `<operand>_<field>` suffix this arithmetic accepts."""
        return (*self.required, *self.optional, *self.ignored)

    def defaults(self, spec: OperandSpec) -> dict[str, Any]:
        """Values for the spec's unset optional fields (and the fixed width)."""
        values: dict[str, Any] = {}
        if self.fixed_width is not None:
            values["width"] = self.fixed_width
        elif spec.width is None:
            raise InvalidOperand("width", f"is required for {self.name}")
        if "frac_width" in self.params and spec.frac_width is None:
            values["frac_width"] = spec.width // 2
        if "exponent_width" in self.params and spec.exponent_width is None:
            raise InvalidOperand("exponent_width", f"is required for {self.name}")
        if "exponent_bias" in self.params and spec.exponent_bias is None:
            values["exponent_bias"] = (Q.default_log_exponent_bias(spec.width) if self.name == "log"
                                       else Q.default_exponent_bias(spec.exponent_width))
        if "block_size" in self.params and spec.block_size is None:
            values["block_size"] = (16,)
        return values


def _block_fp_quantizer(x: Tensor, *, block_size: tuple[int, ...], **kwargs: Any) -> Tensor:
    """Block floating point: per block a shared exponent, per element sign + (width-1)-bit mantissa."""
    return Q.block_fp_quantize(x, block_size=list(block_size), **kwargs)


_ARITHMETIC_LIST = (
    Arithmetic("integer", Q.integer_quantize, params=("width", "frac_width", "is_signed"),
               required=("width",), optional=("frac_width", "is_signed"), check=_check_integer,
               aliases=("fixed",),  # MASE's name for the same fixed-point format
               no_grad_quantizer=Q.integer_no_grad_quantizer),
    Arithmetic("minifloat_ieee", Q.minifloat_ieee_quantize,
               params=("width", "exponent_width", "exponent_bias"),
               required=("width", "exponent_width"), optional=("exponent_bias",),
               check=_check_minifloat_ieee),
    Arithmetic("minifloat_denorm", Q.minifloat_denorm_quantize,
               params=("width", "exponent_width", "exponent_bias"),
               required=("width", "exponent_width"), optional=("exponent_bias",),
               check=_check_minifloat_denorm),
    Arithmetic("log", Q.log_quantize, params=("width", "exponent_bias"), required=("width",),
               optional=("exponent_bias",), check=_check_log),
    Arithmetic("block_fp", _block_fp_quantizer,
               params=("width", "exponent_width", "exponent_bias", "block_size"),
               required=("width", "exponent_width"), optional=("exponent_bias", "block_size"),
               check=_check_block_fp),
    Arithmetic("binary", Q.binary_quantize, params=("stochastic", "bipolar"), required=(),
               optional=("stochastic", "bipolar"), ignored=("width", "frac_width"), fixed_width=1),
    Arithmetic("ternary", Q.ternary_quantize, params=("threshold", "scaling_factor"), required=(),
               optional=("threshold", "scaling_factor"),
               ignored=("width", "frac_width", "mean", "median", "max"), fixed_width=2,
               check=_check_ternary),
)

ARITHMETICS: dict[str, Arithmetic] = {**{a.name: a for a in _ARITHMETIC_LIST},
                                      **{alias: a for a in _ARITHMETIC_LIST for alias in a.aliases}}


# --------------------------------------------------------------------------------------------
# Node config parsing
# --------------------------------------------------------------------------------------------


def _fail(node: str, key: str, message: str) -> PassError:
    return PassError(f"node {node!r}, key {key!r}: {message}")


def _arithmetic_of(config: Mapping[str, Any], node: str) -> Arithmetic | None:
    valid = sorted(ARITHMETICS)
    if "name" not in config:
        raise _fail(node, "name", f"missing; the quantize config must name an arithmetic "
                                  f"(valid: {', '.join(valid)}, or \"NA\" to leave the node in float)")
    name = config["name"]
    if _is_none(name):
        return None
    if not isinstance(name, str):
        raise _fail(node, "name", f"must be a string, got {name!r} ({type(name).__name__})")
    if name.lower() not in ARITHMETICS:
        raise _fail(node, "name", unknown_name("arithmetic", name, valid))
    return ARITHMETICS[name.lower()]


def _is_bypassed(config: Mapping[str, Any], node: str) -> bool:
    bypass = config.get("bypass", False)
    if not isinstance(bypass, bool):
        raise _fail(node, "bypass", f"must be true or false, got {bypass!r}")
    return bypass


def _without_binary_point(node: str, key: str, arith: Arithmetic) -> PassError:
    with_point = sorted(name for name, a in ARITHMETICS.items() if "frac_width" in a.params)
    return _fail(node, key, f"\"{AUTO}\" calibrates a binary point, which the {arith.name} "
                            f"arithmetic does not have (\"{AUTO}\" is valid for: {', '.join(with_point)})")


def _check_known_keys(config: Mapping[str, Any], arith: Arithmetic, operands: Iterable[str],
                      node: str) -> None:
    valid = {"name", "bypass"} | {f"{op}_{f}" for op in operands for f in arith.fields}
    for key in config:
        if str(key).endswith("_frac_width") and config[key] == AUTO and "frac_width" not in arith.params:
            raise _without_binary_point(node, str(key), arith)
        if key not in valid:
            raise _fail(node, str(key), f"unknown key for the {arith.name} arithmetic"
                                        f"{did_you_mean(key, valid)} "
                                        f"(valid: {', '.join(sorted(valid))})")


def _operand_values(config: Mapping[str, Any], arith: Arithmetic, operand: str,
                    node: str) -> dict[str, Any] | None:
    given = {f: config[f"{operand}_{f}"] for f in arith.fields if f"{operand}_{f}" in config}
    if not given:
        return None
    for f in arith.required:
        if f not in given:
            needed = ", ".join(f"{operand}_{r}" for r in arith.required)
            raise _fail(node, f"{operand}_{f}", f"missing; {arith.name} needs {needed} once any "
                                                f"{operand}_* key is given")
    values = {}
    for f, raw in given.items():
        try:
            value = FIELD_TYPES[f](raw)
        except ValueError as error:
            raise _fail(node, f"{operand}_{f}", str(error)) from None
        if f == "frac_width" and value == AUTO and "frac_width" not in arith.params:
            raise _without_binary_point(node, f"{operand}_{f}", arith)
        if f == "frac_width" and isinstance(value, tuple) and operand not in CHANNEL_OPERANDS:
            raise _fail(node, f"{operand}_{f}", "a list gives one frac width per output channel, "
                                                f"which only {' and '.join(CHANNEL_OPERANDS)} have; "
                                                f"{operand} takes one integer (or \"{AUTO}\")")
        if f not in arith.ignored and value is not None:
            values[f] = value
    return values


def _calibrated(values: dict[str, Any], arith: Arithmetic, operand: str,
                frac_for: FracChooser | None) -> dict[str, Any]:
    """`values` with frac_width "auto" replaced by the chooser's frac width(s)."""
    if values.get("frac_width") != AUTO:
        return values
    if frac_for is None:
        return values  # OperandSpec refuses "auto" with a message saying how to calibrate
    spec = OperandSpec(arith.name, **{k: v for k, v in values.items() if k != "frac_width"})
    return {**values, "frac_width": frac_for(operand, spec.width, spec.is_signed)}


def _operand_spec(config: Mapping[str, Any], arith: Arithmetic, operand: str, node: str,
                  unsigned: bool, frac_for: FracChooser | None = None) -> OperandSpec | None:
    values = _operand_values(config, arith, operand, node)
    if values is None:
        return None
    if unsigned and "is_signed" in arith.params:
        values.setdefault("is_signed", False)
    try:
        return OperandSpec(arith.name, **_calibrated(values, arith, operand, frac_for))
    except InvalidOperand as error:
        raise _fail(node, f"{operand}_{error.field}", error.message) from None


def parse_node_config(config: Mapping[str, Any], *, node: str, operands: Iterable[str] = OPERANDS,
                      unsigned_data_in: bool = False,
                      frac_for: FracChooser | None = None) -> dict[str, OperandSpec | None]:
    """Per operand, the OperandSpec a MASE node config asks for (None: the operand stays float).

    `frac_for(operand, width, is_signed)` gives the frac width(s) of an operand whose
    frac_width is "auto"; without it "auto" is an error.
    """
    operands = tuple(operands)
    if not isinstance(config, Mapping):
        raise PassError(f"node {node!r}: the quantize config must be a table, "
                        f"got {type(config).__name__}")
    left_alone = {op: None for op in operands}
    if _is_bypassed(config, node):
        return left_alone
    arith = _arithmetic_of(config, node)
    if arith is None:
        return left_alone
    known = tuple(dict.fromkeys((*OPERANDS, *operands)))
    _check_known_keys(config, arith, known, node)
    specs = {op: _operand_spec(config, arith, op, node, unsigned_data_in and op == "data_in", frac_for)
             for op in known}
    if all(spec is None for spec in specs.values()):
        example = ", ".join(f"data_in_{f}" for f in arith.required) or "data_in_stochastic"
        raise _fail(node, "name", f"{arith.name} config gives no operand keys, so nothing would be "
                                  f"quantized (e.g. {example})")
    return {op: specs[op] for op in operands}


__all__ = ["ARITHMETICS", "AUTO", "CHANNEL_OPERANDS", "OPERANDS", "Arithmetic", "FracChooser",
           "InvalidOperand", "OperandSpec", "frac_width_range", "parse_node_config"]
