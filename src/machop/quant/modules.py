"""Fake-quantized modules: the float module's math on quantized operands, STE gradients."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from machop.graph.metadata import float_precision

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


class _QuantizedParameters:
    """Quantized weight and bias, cached while neither the weights nor the config change.

    The cache is used only when no gradient can flow to the weights (evaluation), so
    quantization-aware training still sees fresh straight-through quantization every step.
    """

    cache_weights = True

    def _init_quant(self, specs: OperandSpecs, config: dict[str, Any]) -> None:
        self.specs = dict(specs)
        self.quant_config = dict(config)
        self._cache_key: tuple | None = None
        self._cached: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def _version_key(self) -> tuple:
        bias = self.bias
        return (self.weight._version, self.weight.data_ptr(),
                None if bias is None else (bias._version, bias.data_ptr()))

    def quantized_parameters(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight, bias) as the quantized forward uses them."""
        if not self.cache_weights or (torch.is_grad_enabled() and self.weight.requires_grad):
            self._cached = None
            return _apply(self.specs, "weight", self.weight), _apply(self.specs, "bias", self.bias)
        key = self._version_key()
        if self._cached is None or key != self._cache_key:
            with torch.no_grad():
                self._cached = (_apply(self.specs, "weight", self.weight),
                                _apply(self.specs, "bias", self.bias))
            self._cache_key = key
        return self._cached

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


def _quantized_copy(cls: type, module: nn.Module, specs: OperandSpecs, config: dict[str, Any],
                    **shape: Any) -> Any:
    new = cls(**shape, bias=module.bias is not None, device=module.weight.device,
              dtype=module.weight.dtype)
    new.load_state_dict(module.state_dict())
    new.train(module.training)
    new._init_quant(specs, config)
    return new


class QuantLinear(_QuantizedParameters, nn.Linear):
    """nn.Linear with quantized input, weight, bias (and optionally output)."""

    machop_leaf = True
    machop_kind = "linear"

    @classmethod
    def from_float(cls, module: nn.Linear, specs: OperandSpecs, config: dict[str, Any]) -> QuantLinear:
        """Quantized copy of `module`, weights and bias copied."""
        return _quantized_copy(cls, module, specs, config, in_features=module.in_features,
                               out_features=module.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.quantized_parameters()
        out = F.linear(_apply(self.specs, "data_in", x), weight, bias)
        return _apply(self.specs, "data_out", out)


class _QuantConv(_QuantizedParameters):
    """Shared body of the quantized convolutions."""

    machop_leaf = True

    @classmethod
    def from_float(cls, module: nn.Module, specs: OperandSpecs, config: dict[str, Any]) -> nn.Module:
        """Quantized copy of `module`, weights and bias copied."""
        return _quantized_copy(cls, module, specs, config, in_channels=module.in_channels,
                               out_channels=module.out_channels, kernel_size=module.kernel_size,
                               stride=module.stride, padding=module.padding,
                               dilation=module.dilation, groups=module.groups,
                               padding_mode=module.padding_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.quantized_parameters()
        out = self._conv_forward(_apply(self.specs, "data_in", x), weight, bias)
        return _apply(self.specs, "data_out", out)


class QuantConv1d(_QuantConv, nn.Conv1d):
    """nn.Conv1d with quantized input, weight, bias (and optionally output)."""

    machop_kind = "conv1d"


class QuantConv2d(_QuantConv, nn.Conv2d):
    """nn.Conv2d with quantized input, weight, bias (and optionally output)."""

    machop_kind = "conv2d"


class QuantReLU(nn.Module):
    """ReLU on an unsigned-quantized input (the quantizer already clamps negatives to 0)."""

    machop_leaf = True
    machop_kind = "relu"

    def __init__(self, specs: OperandSpecs, config: dict[str, Any]) -> None:
        super().__init__()
        self.specs = dict(specs)
        self.quant_config = dict(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        quantized = _apply(self.specs, "data_in", x)
        # A fresh quantized tensor is ours to overwrite: saves allocating a second activation.
        out = F.relu(quantized, inplace=quantized is not x and not quantized.requires_grad)
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
        out = self.function(_apply(self.specs, "data_in", x), _apply(self.specs, "weight", weight),
                            _apply(self.specs, "bias", bias), *args, **kwargs)
        return _apply(self.specs, "data_out", out)

    def machop_precision(self) -> dict[str, dict[str, Any]]:
        """Precision of every operand."""
        return {op: _precision_of(self.specs, op, torch.float32) for op in OPERANDS}

    def extra_repr(self) -> str:
        return f"{self.machop_kind}, quant={self.quant_config.get('name')}"


QUANTIZED_MODULES = {"linear": QuantLinear, "conv1d": QuantConv1d, "conv2d": QuantConv2d}
