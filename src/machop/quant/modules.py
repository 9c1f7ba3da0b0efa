"""Fake-quantized modules: the float module's math on quantized operands, STE gradients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from machop.graph.metadata import float_precision
from machop.quant.copies import float_copy, float_share
from machop.quant.exact import fixed_operand, float32_sums_are_exact, simulation_dtype
from machop.quant.plans import Planned, relu_of_quantized, relu_plan, weighted_plan

OperandSpecs = dict[str, Any]  # operand name -> OperandSpec or None (left in float)
OPERANDS = ("data_in", "weight", "bias", "data_out")


def _apply(specs: OperandSpecs, operand: str, value: torch.Tensor | None) -> torch.Tensor | None:
    spec = specs.get(operand)
    if spec is None or value is None:
        return value
    return spec.quantize(value)


def _precision_of(specs: OperandSpecs, operand: str, dtype: torch.dtype) -> dict[str, Any]:
    spec = specs.get(operand)
    return spec.precision() if spec is not None else float_precision(dtype)


class _QuantizedParameters(Planned):
    """Quantized weight and bias, cached while neither the weights nor the config change.

    The cache is used only when no gradient can flow to the weights (evaluation), so
    quantization-aware training still sees fresh straight-through quantization every step.
    `exact_dtype` is the worst case of the widths; with cached weights `sum_dtype` refines it
    from the actual weight codes (float32 where it holds every partial sum exactly). Without
    gradients the forward runs a plan (machop.quant.plans) made from the cached weights.
    """

    cache_weights = True
    _cached_float32_exact = False

    def _init_quant(self, specs: OperandSpecs, config: dict[str, Any]) -> None:
        _set_plain(self, specs=dict(specs), quant_config=dict(config))
        # Decided once: widths and shapes are fixed. No cached weights yet (_cache_key, _cached),
        # nor whether float32 sums them exactly (_cached_float32_exact).
        _set_plain(self, exact_dtype=self.simulation_dtype, _cache_key=None, _cached=None,
                   _cached_float32_exact=False)

    def _version_key(self) -> tuple:
        bias = self.bias
        return (self.weight._version, self.weight.data_ptr(),
                None if bias is None else (bias._version, bias.data_ptr()))

    def quantized_parameters(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight, bias) as the quantized forward uses them."""
        if not self.cache_weights or (torch.is_grad_enabled() and self.weight.requires_grad):
            self._cached, self._cached_float32_exact = None, False
            return _apply(self.specs, "weight", self.weight), _apply(self.specs, "bias", self.bias)
        key = self._version_key()
        if self._cached is None or key != self._cache_key:
            with torch.no_grad():
                self._cached = (_apply(self.specs, "weight", self.weight),
                                _apply(self.specs, "bias", self.bias))
                self._cached_float32_exact = self.exact_dtype is not None and \
                    float32_sums_are_exact(self.specs, *self._cached)
            self._cache_key = key
        return self._cached

    def sum_dtype(self) -> torch.dtype | None:
        """The dtype of the next sum (None: float32), after quantized_parameters() gave its weights."""
        return None if self._cached_float32_exact else self.exact_dtype

    def _planned_forward(self, function: Callable[..., torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """exact_call(function, ...) on the quantized operands; without gradients through the plan."""
        if not torch.is_grad_enabled():
            plan = self.eval_plan
            out = None if plan is None else plan(self._parameters, function, x)
            if out is None and self._can_plan(x):
                quantized = self.quantized_parameters()
                plan = self.eval_plan = weighted_plan(self.specs, self.weight, self.bias, quantized,
                                                      self.sum_dtype(), x)
                out = plan(self._parameters, function, x)
            if out is not None:
                return out
        weight, bias = self.quantized_parameters()
        return exact_call(function, self.sum_dtype(), self.specs, _apply(self.specs, "data_in", x),
                          weight, bias)

    def _can_plan(self, x: torch.Tensor) -> bool:
        """Whether a plan can serve `x`: cached weights, a float input, parameters not parametrized."""
        parameters = self._parameters
        return self.cache_weights and x.is_floating_point() and \
            isinstance(parameters.get("weight"), torch.Tensor) and "bias" in parameters

    def machop_precision(self) -> dict[str, dict[str, Any]]:
        """Precision of every operand, for node metadata."""
        dtype = self.weight.dtype
        records = {op: _precision_of(self.specs, op, dtype) for op in ("data_in", "weight")}
        if self.bias is not None:
            records["bias"] = _precision_of(self.specs, "bias", dtype)
        records["data_out"] = _precision_of(self.specs, "data_out", dtype)
        return records

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[misc]
        return f"{base}, quant={self.quant_config.get('name')}"


def exact_call(function: Any, dtype: torch.dtype | None, specs: OperandSpecs, x: torch.Tensor,
               weight: torch.Tensor, bias: torch.Tensor | None, *args: Any, **kwargs: Any) -> torch.Tensor:
    """function(x, weight, bias, ...) then data_out, in `dtype` when float32 would round the sum.

    The result returns in x's dtype: rounded once from the exact sum (or exact, when data_out
    quantizes it to a grid that dtype holds).
    """
    if dtype is None or x.dtype != torch.float32:
        return _apply(specs, "data_out", function(x, weight, bias, *args, **kwargs))
    out = function(x.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype), *args, **kwargs)
    return _apply(specs, "data_out", out).to(x.dtype)


def _reduction_length(weight_shape: torch.Size | tuple[int, ...]) -> int:
    """Terms summed per output value: in_features, or in_channels / groups × kernel size."""
    return int(torch.Size(weight_shape)[1:].numel()) if len(weight_shape) > 1 else 1


def _set_plain(module: nn.Module, **values: Any) -> None:
    """Set attributes that hold no parameter, buffer or module, as nn.Module.__setattr__ and
    Planned.__setattr__ would (dropping any plan), without their checks: several times cheaper."""
    state = module.__dict__
    state.update(values)
    state["eval_plan"] = None


def _float_module(cls: type, module: nn.Module, share: bool, **construct: Any) -> Any:
    """float_copy of `module`, or with `share` float_share (its own tensors wherever a copy would equal them)."""
    return (float_share if share else float_copy)(cls, module, **construct)


def _quantized_copy(cls: type, module: nn.Module, specs: OperandSpecs, config: dict[str, Any],
                    share: bool, **shape: Any) -> Any:
    new = _float_module(cls, module, share, **shape, bias=module.bias is not None,
                        device=module.weight.device, dtype=module.weight.dtype)
    new._init_quant(specs, config)
    return new


class QuantLinear(_QuantizedParameters, nn.Linear):
    """nn.Linear with quantized input, weight, bias (and optionally output)."""

    machop_leaf = True
    machop_kind = "linear"

    @classmethod
    def from_float(cls, module: nn.Linear, specs: OperandSpecs, config: dict[str, Any], *,
                   share: bool = False) -> QuantLinear:
        """Quantized copy of `module`, weights and bias copied (with `share`: its own, see float_share)."""
        return _quantized_copy(cls, module, specs, config, share, in_features=module.in_features,
                               out_features=module.out_features)

    @property
    def simulation_dtype(self) -> torch.dtype | None:
        """float64 where float32 would round the fixed-point sum, else None (float32)."""
        return simulation_dtype(self.specs, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = self.eval_plan  # the plan's path first, inlined: one call less per layer (P3)
        if plan is not None and not torch.is_grad_enabled():
            out = plan(self._parameters, F.linear, x)
            if out is not None:
                return out
        return self._planned_forward(F.linear, x)


class _QuantConv(_QuantizedParameters):
    """Shared body of the quantized convolutions."""

    machop_leaf = True

    @classmethod
    def from_float(cls, module: nn.Module, specs: OperandSpecs, config: dict[str, Any], *,
                   share: bool = False) -> nn.Module:
        """Quantized copy of `module`, weights and bias copied (with `share`: its own, see float_share)."""
        return _quantized_copy(cls, module, specs, config, share, in_channels=module.in_channels,
                               out_channels=module.out_channels, kernel_size=module.kernel_size,
                               stride=module.stride, padding=module.padding,
                               dilation=module.dilation, groups=module.groups,
                               padding_mode=module.padding_mode)

    @property
    def simulation_dtype(self) -> torch.dtype | None:
        """float64 where float32 would round the fixed-point sum, else None (float32)."""
        return simulation_dtype(self.specs, _reduction_length(self.weight.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = self.eval_plan  # the plan's path first, inlined: one call less per layer (P3)
        if plan is not None and not torch.is_grad_enabled():
            out = plan(self._parameters, self._conv_forward, x)
            if out is not None:
                return out
        return self._planned_forward(self._conv_forward, x)


class QuantConv1d(_QuantConv, nn.Conv1d):
    """nn.Conv1d with quantized input, weight, bias (and optionally output)."""

    machop_kind = "conv1d"


class QuantConv2d(_QuantConv, nn.Conv2d):
    """nn.Conv2d with quantized input, weight, bias (and optionally output)."""

    machop_kind = "conv2d"


class QuantReLU(Planned, nn.Module):
    """ReLU on an unsigned-quantized input (the quantizer already clamps negatives to 0)."""

    machop_leaf = True
    machop_kind = "relu"
    quantizer_clamps = False  # set per instance: True when data_in is unsigned fixed point

    def __init__(self, specs: OperandSpecs, config: dict[str, Any]) -> None:
        super().__init__()
        self.specs = dict(specs)
        self.quant_config = dict(config)
        data_in = fixed_operand(self.specs.get("data_in"))
        # An unsigned fixed-point input has no negative code: the quantizer already did the ReLU.
        self.quantizer_clamps = data_in is not None and not data_in.is_signed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            plan = self.eval_plan
            if plan is None:
                plan = self.eval_plan = relu_plan(self.specs, self.quantizer_clamps, x)
            return plan(x)
        out = relu_of_quantized(_apply(self.specs, "data_in", x), x, self.quantizer_clamps)
        return _apply(self.specs, "data_out", out)

    def machop_precision(self) -> dict[str, dict[str, Any]]:
        """Precision of the input and output."""
        return {op: _precision_of(self.specs, op, torch.float32) for op in ("data_in", "data_out")}

    def extra_repr(self) -> str:
        return f"quant={self.quant_config.get('name')}"


BINARY_FUNCTIONS = {"add": torch.add, "sub": torch.sub, "mul": torch.mul,
                    "matmul": torch.matmul, "bmm": torch.bmm}


class QuantBinaryOp(nn.Module):
    """add, sub, mul, matmul or bmm with both operands quantized by the data_in spec."""

    machop_leaf = True

    def __init__(self, kind: str, specs: OperandSpecs, config: dict[str, Any]) -> None:
        super().__init__()
        self.machop_kind = kind
        self.function = BINARY_FUNCTIONS[kind]
        self.specs = dict(specs)
        self.quant_config = dict(config)

    def forward(self, a: Any, b: Any) -> torch.Tensor:
        a = _apply(self.specs, "data_in", a) if isinstance(a, torch.Tensor) else a
        b = _apply(self.specs, "data_in", b) if isinstance(b, torch.Tensor) else b
        return _apply(self.specs, "data_out", self.function(a, b))

    def machop_precision(self) -> dict[str, dict[str, Any]]:
        """Precision of the inputs and output."""
        return {op: _precision_of(self.specs, op, torch.float32) for op in ("data_in", "data_out")}

    def extra_repr(self) -> str:
        return f"{self.machop_kind}, quant={self.quant_config.get('name')}"


class QuantFunctionalWeighted(nn.Module):
    """F.linear / F.conv1d / F.conv2d called with quantized input, weight and bias."""

    machop_leaf = True
    FUNCTIONS = {"linear": F.linear, "conv1d": F.conv1d, "conv2d": F.conv2d}

    def __init__(self, kind: str, specs: OperandSpecs, config: dict[str, Any]) -> None:
        super().__init__()
        self.machop_kind = kind
        self.function = self.FUNCTIONS[kind]
        self.specs = dict(specs)
        self.quant_config = dict(config)

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                *args: Any, **kwargs: Any) -> torch.Tensor:
        dtype = simulation_dtype(self.specs, _reduction_length(weight.shape))
        return exact_call(self.function, dtype, self.specs, _apply(self.specs, "data_in", x),
                          _apply(self.specs, "weight", weight), _apply(self.specs, "bias", bias),
                          *args, **kwargs)

    def machop_precision(self) -> dict[str, dict[str, Any]]:
        """Precision of every operand."""
        return {op: _precision_of(self.specs, op, torch.float32) for op in OPERANDS}

    def extra_repr(self) -> str:
        return f"{self.machop_kind}, quant={self.quant_config.get('name')}"


def batch_norm_scale_shift(module: nn.modules.batchnorm._BatchNorm,
                           x: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BatchNorm as y = x·scale + shift per channel: from running statistics, or from batch `x`.

    scale = γ / sqrt(var + ε), shift = β - mean·scale (γ = 1, β = 0 without affine). With `x`
    (training, or no running statistics) the batch's mean and biased variance are used and the
    running statistics are updated as nn.BatchNorm does.
    """
    if x is None:
        mean, var = module.running_mean, module.running_var
    else:
        dims = [d for d in range(x.dim()) if d != 1]
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        if module.training and module.track_running_stats and module.running_mean is not None:
            _update_running_stats(module, mean, var, x.numel() // x.shape[1])
    scale = torch.rsqrt(var + module.eps)
    if module.weight is not None:
        scale = module.weight * scale
    shift = -mean * scale
    if module.bias is not None:
        shift = module.bias + shift
    return scale, shift


@torch.no_grad()
def _update_running_stats(module: nn.modules.batchnorm._BatchNorm, mean: torch.Tensor,
                          var: torch.Tensor, count: int) -> None:
    module.num_batches_tracked.add_(1)
    momentum = module.momentum if module.momentum is not None else 1.0 / float(module.num_batches_tracked)
    unbiased = var * (count / max(count - 1, 1))
    module.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
    module.running_var.mul_(1 - momentum).add_(unbiased.detach(), alpha=momentum)


class _QuantBatchNorm(Planned):
    """Shared body of the quantized BatchNorms: y = q(x)·q(scale) + q(shift) per channel.

    Operands: data_in (x), weight (the scale γ/sqrt(var + ε)), bias (the shift β - mean·scale),
    data_out. In evaluation the scale and shift come from the running statistics and are
    quantized once per change of the parameters or statistics; in training from the batch.
    """

    machop_leaf = True

    @classmethod
    def from_float(cls, module: nn.Module, specs: OperandSpecs, config: dict[str, Any], *,
                   share: bool = False) -> nn.Module:
        """Quantized copy of `module`, parameters and running statistics copied (with `share`: its
        own, see float_share)."""
        new = _float_module(cls, module, share, num_features=module.num_features, eps=module.eps,
                            momentum=module.momentum, affine=module.affine,
                            track_running_stats=module.track_running_stats, device=_device_of(module),
                            dtype=_dtype_of(module))
        specs = dict(specs)
        # One term per channel: the sum x·scale + shift, at the widths given.
        _set_plain(new, specs=specs, quant_config=dict(config), _cache_key=None, _cached=None,
                   exact_dtype=simulation_dtype(specs, 1))
        return new

    _cached_float32_exact = False  # whether float32 sums the cached scale and shift exactly

    def _version_key(self) -> tuple:
        tensors = (self.weight, self.bias, self.running_mean, self.running_var)
        return tuple(None if t is None else (t._version, t.data_ptr()) for t in tensors)

    def quantized_scale_shift(self, x: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift) as the quantized forward uses them (`x`: a training batch)."""
        if x is not None:
            scale, shift = batch_norm_scale_shift(self, x)
            self._cached_float32_exact = False
            return _apply(self.specs, "weight", scale), _apply(self.specs, "bias", shift)
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            self._cached_float32_exact = False
            scale, shift = batch_norm_scale_shift(self)
            return _apply(self.specs, "weight", scale), _apply(self.specs, "bias", shift)
        key = self._version_key()
        if self._cached is None or key != self._cache_key:
            with torch.no_grad():
                scale, shift = batch_norm_scale_shift(self)
                self._cached = (_apply(self.specs, "weight", scale), _apply(self.specs, "bias", shift))
                self._cached_float32_exact = self.exact_dtype is not None and \
                    float32_sums_are_exact(self.specs, *self._cached)
            self._cache_key = key
        return self._cached

    def sum_dtype(self) -> torch.dtype | None:
        """The dtype of the next sum (None: float32), after quantized_scale_shift() gave its operands."""
        return None if self._cached_float32_exact else self.exact_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        x = _apply(self.specs, "data_in", x)
        batch_stats = self.training or self.running_mean is None
        scale, shift = self.quantized_scale_shift(x if batch_stats else None)
        shape = (1, -1, *([1] * (x.dim() - 2)))
        exact = self.sum_dtype()
        dtype = exact if exact is not None and x.dtype == torch.float32 else x.dtype
        out = x.to(dtype) * scale.to(dtype).view(shape) + shift.to(dtype).view(shape)
        return _apply(self.specs, "data_out", out).to(x.dtype)

    def machop_precision(self) -> dict[str, dict[str, Any]]:
        """Precision of the input, scale (weight), shift (bias) and output."""
        return {op: _precision_of(self.specs, op, torch.float32) for op in OPERANDS}

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[misc]
        return f"{base}, quant={self.quant_config.get('name')}"


def _device_of(module: nn.Module) -> torch.device | None:
    tensor = next(iter([*module.parameters(), *module.buffers()]), None)
    return None if tensor is None else tensor.device


def _dtype_of(module: nn.Module) -> torch.dtype | None:
    tensor = next(iter(module.parameters()), None)
    if tensor is None:
        tensor = getattr(module, "running_mean", None)
    return None if tensor is None else tensor.dtype


class QuantBatchNorm1d(_QuantBatchNorm, nn.BatchNorm1d):
    """nn.BatchNorm1d as fixed-point scale and shift: quantized input, scale, shift (and output)."""

    machop_kind = "batch_norm1d"


class QuantBatchNorm2d(_QuantBatchNorm, nn.BatchNorm2d):
    """nn.BatchNorm2d as fixed-point scale and shift: quantized input, scale, shift (and output)."""

    machop_kind = "batch_norm2d"


QUANTIZED_MODULES = {"linear": QuantLinear, "conv1d": QuantConv1d, "conv2d": QuantConv2d}
QUANTIZED_NORMS = {"batch_norm1d": QuantBatchNorm1d, "batch_norm2d": QuantBatchNorm2d}
