"""The model as ONNX will compute it: float modules on quantized values, marked where QDQ goes.

Every quantized module of the simulated graph is replaced by a float module whose constant
operands are already on their grid (weights as integer codes times their scale) and whose
integer activations pass through a `machop::Mark` node when exported. `qdq.py` turns each mark
into QuantizeLinear/DequantizeLinear nodes (or removes it). A BatchNorm right after a quantized
conv or linear is folded into it: the weight codes stay, their per-channel scale takes the
BatchNorm's factor, so the int8 kernel computes BatchNorm(conv) exactly up to float rounding.
Outside export the replacement modules compute what the simulation computes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import fx, nn
from torch.nn import functional as F

from machop.errors import ModelError
from machop.quant.modules import (
    QuantBinaryOp,
    QuantConv1d,
    QuantConv2d,
    QuantFunctionalWeighted,
    QuantLinear,
    QuantReLU,
)

MAX_QDQ_WIDTH = 16


class Mark(torch.autograd.Function):
    """Identity that exports as one `machop::Mark` node carrying a tag (replaced after export)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, tag: str) -> torch.Tensor:  # noqa: D102
        return x

    @staticmethod
    def symbolic(g: Any, x: Any, tag: str) -> Any:  # noqa: D102
        out = g.op("machop::Mark", x, tag_s=tag)
        out.setType(x.type())
        return out


def qdq_bits(spec: Any) -> int | None:
    """8 or 16: the QDQ integer type an operand exports as; None for the float path."""
    if spec is None or spec.arithmetic != "integer":
        return None
    return 8 if spec.width <= 8 else 16


@dataclass
class Site:
    """One marked operand: which node and operand, its spec, and the codes of a constant."""

    tag: str
    node: str
    operand: str
    spec: Any = None
    codes: np.ndarray | None = None  # integer codes of a constant weight
    scales: np.ndarray | None = None  # dequantization scale per output channel (or one)
    data_in: str | None = None  # bias sites: the tag of the node's input (its scale sets the bias grid)
    weight: str | None = None  # bias sites: the tag of the node's weight


@dataclass
class ExportPlan:
    """The export copy of a graph and what its marks mean."""

    module: nn.Module
    sites: dict[str, Site] = field(default_factory=dict)
    layers: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    folded: dict[str, str] = field(default_factory=dict)  # BatchNorm node -> the node it folded into


def _marked(x: torch.Tensor, tag: str | None) -> torch.Tensor:
    if tag is None or not torch.onnx.is_in_onnx_export():
        return x
    return Mark.apply(x, tag)


class _Operands(nn.Module):
    """Quantizes activations as the simulation does, and marks the integer ones when exported."""

    def __init__(self, specs: dict[str, Any], tags: dict[str, str]) -> None:
        super().__init__()
        self.specs = specs
        self.tags = tags

    def activation(self, x: Any, operand: str) -> Any:
        spec = self.specs.get(operand)
        if spec is None or not isinstance(x, torch.Tensor):
            return x
        if qdq_bits(spec) is not None and torch.onnx.is_in_onnx_export():
            return _marked(x, self.tags[operand])
        return spec.quantize(x)  # float path: the quantizer's own ops (or the simulation outside export)

    def output(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(x, "data_out")


class ExportWeighted(_Operands):
    """linear/conv1d/conv2d on a quantized input with weights already on their grid."""

    def __init__(self, kind: str, weight: torch.Tensor, bias: torch.Tensor | None, conv: dict[str, Any],
                 specs: dict[str, Any], tags: dict[str, str]) -> None:
        super().__init__(specs, tags)
        self.kind = kind
        self.conv = conv
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(x, "data_in")
        weight = _marked(self.weight, self.tags.get("weight"))
        bias = None if self.bias is None else _marked(self.bias, self.tags.get("bias"))
        if self.kind == "linear":
            out = F.linear(x, weight, bias)
        elif self.kind == "conv1d":
            out = F.conv1d(x, weight, bias, **self.conv)
        else:
            out = F.conv2d(x, weight, bias, **self.conv)
        return self.output(out)


class ExportReLU(_Operands):
    """ReLU on its (unsigned) quantized input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(torch.relu(self.activation(x, "data_in")))


class ExportBinary(_Operands):
    """add/sub/mul/matmul/bmm with both tensor operands quantized."""

    def __init__(self, function: Any, specs: dict[str, Any], tags: dict[str, str]) -> None:
        super().__init__(specs, tags)
        self.function = function

    def forward(self, a: Any, b: Any) -> torch.Tensor:
        spec = self.specs.get("data_in")
        if spec is not None and isinstance(a, torch.Tensor):
            a = self._input(a, "data_in")
        if spec is not None and isinstance(b, torch.Tensor):
            b = self._input(b, "data_in_b")
        return self.output(self.function(a, b))

    def _input(self, x: torch.Tensor, tag_key: str) -> torch.Tensor:
        spec = self.specs["data_in"]
        if qdq_bits(spec) is not None and torch.onnx.is_in_onnx_export():
            return _marked(x, self.tags[tag_key])
        return spec.quantize(x)


class ExportScaleShift(_Operands):
    """A quantized BatchNorm in evaluation: q(x)·q(scale) + q(shift) per channel, in float."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor, specs: dict[str, Any],
                 tags: dict[str, str]) -> None:
        super().__init__(specs, tags)
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        x = self.activation(x, "data_in")
        return self.output(x * self.scale.reshape(shape) + self.shift.reshape(shape))


def _check_width(node: str, operand: str, spec: Any) -> None:
    if spec is not None and spec.arithmetic == "integer" and spec.width > MAX_QDQ_WIDTH:
        raise ModelError(f"node {node!r}: {operand} is a {spec.width}-bit integer; ONNX export supports "
                         f"integer widths up to {MAX_QDQ_WIDTH} (int8 and int16 QDQ); quantize it to "
                         f"<= {MAX_QDQ_WIDTH} bits or leave it in float")


def _fracs(spec: Any, channels: int) -> np.ndarray:
    frac = spec.frac_width
    return np.asarray(frac if isinstance(frac, tuple) else [frac] * channels, dtype=np.float64)


def _weight_codes(weight: torch.Tensor, spec: Any) -> tuple[np.ndarray, np.ndarray]:
    """(integer codes, per-channel scale 2^-f) of a weight quantized by an integer spec."""
    quantized = spec.quantize(weight.detach().float()).double().numpy()
    scales = np.exp2(-_fracs(spec, weight.shape[0]))
    codes = np.rint(quantized / scales.reshape((-1,) + (1,) * (weight.dim() - 1)))
    return codes.astype(np.int64), scales


def _batch_norm_factors(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of a float BatchNorm in evaluation: y = x·scale + shift per channel."""
    var, mean = module.running_var.double(), module.running_mean.double()
    scale = torch.rsqrt(var + module.eps)
    if module.weight is not None:
        scale = module.weight.detach().double() * scale
    shift = -mean * scale
    if module.bias is not None:
        shift = module.bias.detach().double() + shift
    return scale, shift


def _is_float_batch_norm(module: nn.Module) -> bool:
    return (isinstance(module, nn.modules.batchnorm._BatchNorm) and not hasattr(module, "specs")
            and module.running_mean is not None)


def _foldable_batch_norm(gm: fx.GraphModule, node: fx.Node) -> fx.Node | None:
    """The float BatchNorm node that alone consumes `node`'s output, if there is one."""
    users = list(node.users)
    if len(users) != 1 or users[0].op != "call_module":
        return None
    module = gm.get_submodule(users[0].target)
    return users[0] if _is_float_batch_norm(module) else None


class _Planner:
    """Builds the export copy node by node."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.plan = ExportPlan(module=gm)

    def site(self, node: str, operand: str, spec: Any, **extra: Any) -> str:
        tag = f"{node}/{operand}"
        self.plan.sites[tag] = Site(tag=tag, node=node, operand=operand, spec=spec, **extra)
        return tag

    def activation_tags(self, node: str, specs: dict[str, Any], operands: tuple[str, ...]) -> dict[str, str]:
        tags = {}
        for operand in operands:
            spec = specs.get(operand.removesuffix("_b"))
            _check_width(node, operand, spec)
            if qdq_bits(spec) is not None:
                tags[operand] = self.site(node, operand, spec)
        return tags

    def layer(self, node: str, kind: str, specs: dict[str, Any], how: str) -> None:
        self.plan.layers.append({"node": node, "kind": kind, "exported": how,
                                 "precision": _precision_text(specs)})

    def weighted(self, node: fx.Node, module: nn.Module, kind: str) -> None:
        specs = dict(module.specs)
        for operand, spec in specs.items():
            _check_width(node.name, operand, spec)
        tags = self.activation_tags(node.name, specs, ("data_in", "data_out"))
        weight = module.weight.detach().float()
        channels = weight.shape[0]
        factor = torch.ones(channels, dtype=torch.float64)
        shift = torch.zeros(channels, dtype=torch.float64)
        bn_node = _foldable_batch_norm(self.gm, node) if specs.get("data_out") is None else None
        if bn_node is not None:
            factor, shift = _batch_norm_factors(self.gm.get_submodule(bn_node.target))
        w_spec, b_spec = specs.get("weight"), specs.get("bias")
        view = (-1,) + (1,) * (weight.dim() - 1)
        if qdq_bits(w_spec) is not None:
            codes, scales = _weight_codes(weight, w_spec)
            scales = scales * factor.numpy()
            tags["weight"] = self.site(node.name, "weight", w_spec, codes=codes, scales=scales)
            exported_weight = torch.from_numpy(codes * scales.reshape(view)).float()
        else:
            values = w_spec.quantize(weight) if w_spec is not None else weight
            exported_weight = (values.double() * factor.reshape(view)).float()
        bias = module.bias
        bias_values = None
        if bias is not None:
            bias_values = (b_spec.quantize(bias.detach().float()) if b_spec is not None else bias.detach()).double()
        if bias_values is not None or bn_node is not None:
            base = bias_values if bias_values is not None else torch.zeros(channels, dtype=torch.float64)
            bias_values = base * factor + shift
        exported_bias = None if bias_values is None else bias_values.float()
        if exported_bias is not None and "weight" in tags:
            tags["bias"] = self.site(node.name, "bias", b_spec, data_in=tags.get("data_in"),
                                     weight=tags["weight"])
        conv = {} if kind == "linear" else {"stride": module.stride, "padding": module.padding,
                                           "dilation": module.dilation, "groups": module.groups}
        if kind != "linear" and module.padding_mode != "zeros":
            raise ModelError(f"node {node.name!r}: padding_mode {module.padding_mode!r} cannot be "
                             "exported to ONNX here (valid: zeros)")
        replacement = ExportWeighted(kind, exported_weight, exported_bias, conv, specs, tags)
        self.gm.add_submodule(node.target, replacement)
        how = _how(specs)
        if bn_node is not None:
            self.plan.folded[bn_node.name] = node.name
            bn_node.replace_all_uses_with(node)
            self.gm.graph.erase_node(bn_node)
            how += f", {bn_node.name} folded in"
        self.layer(node.name, kind, specs, how)

    def relu(self, node: fx.Node, module: nn.Module) -> None:
        specs = dict(module.specs)
        tags = self.activation_tags(node.name, specs, ("data_in", "data_out"))
        self.gm.add_submodule(node.target, ExportReLU(specs, tags))
        self.layer(node.name, "relu", specs, _how(specs))

    def binary(self, node: fx.Node, module: nn.Module) -> None:
        specs = dict(module.specs)
        tags = self.activation_tags(node.name, specs, ("data_in", "data_in_b", "data_out"))
        self.gm.add_submodule(node.target, ExportBinary(module.function, specs, tags))
        self.layer(node.name, module.machop_kind, specs, _how(specs))

    def scale_shift(self, node: fx.Node, module: nn.Module) -> None:
        specs = dict(module.specs)
        scale, shift = _batch_norm_factors(module)
        scale, shift = scale.float(), shift.float()
        if specs.get("weight") is not None:
            scale = specs["weight"].quantize(scale)
        if specs.get("bias") is not None:
            shift = specs["bias"].quantize(shift)
        for operand in ("weight", "bias"):
            _check_width(node.name, operand, specs.get(operand))
        tags = self.activation_tags(node.name, specs, ("data_in", "data_out"))
        self.gm.add_submodule(node.target, ExportScaleShift(scale, shift, specs, tags))
        self.layer(node.name, "batch_norm", specs, "float (scale and shift on their grid)")

    def run(self) -> ExportPlan:
        for node in list(self.gm.graph.nodes):
            if node.op != "call_module" or node.graph is None:
                continue
            module = self.gm.get_submodule(node.target)
            if isinstance(module, QuantLinear):
                self.weighted(node, module, "linear")
            elif isinstance(module, (QuantConv1d, QuantConv2d)):
                self.weighted(node, module, module.machop_kind)
            elif isinstance(module, QuantReLU):
                self.relu(node, module)
            elif isinstance(module, QuantBinaryOp):
                self.binary(node, module)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm) and hasattr(module, "specs"):
                self.scale_shift(node, module)
            elif isinstance(module, QuantFunctionalWeighted) or hasattr(module, "specs"):
                self.plan.layers.append({"node": node.name, "kind": getattr(module, "machop_kind", "?"),
                                         "exported": "float (the quantizers' own ops)",
                                         "precision": _precision_text(dict(module.specs))})
        self.gm.graph.lint()
        self.gm.recompile()
        return self.plan


def _how(specs: dict[str, Any]) -> str:
    bits = {qdq_bits(spec) for spec in specs.values() if spec is not None}
    others = sorted({spec.arithmetic for spec in specs.values()
                     if spec is not None and qdq_bits(spec) is None})
    parts = [f"int{b} QDQ" for b in sorted(b for b in bits if b is not None)]
    parts += [f"float ({name} values on grid)" for name in others]
    return ", ".join(parts) or "float"


def _precision_text(specs: dict[str, Any]) -> str:
    short = {"data_in": "in", "weight": "w", "bias": "b", "data_out": "out"}
    parts = []
    for operand, spec in specs.items():
        if spec is None:
            continue
        if spec.arithmetic == "integer":
            sign = "" if spec.is_signed else "u"
            frac = spec.frac_width
            shown = f"{min(frac)}..{max(frac)}" if isinstance(frac, tuple) and len(set(frac)) > 1 else \
                (frac[0] if isinstance(frac, tuple) else frac)
            parts.append(f"{short.get(operand, operand)}:{sign}{spec.width}.{shown}")
        else:
            parts.append(f"{short.get(operand, operand)}:{spec.arithmetic}{spec.width}")
    return " ".join(parts) or "float"


def export_plan(module: nn.Module) -> ExportPlan:
    """A copy of `module` (an fx GraphModule) with every quantized module replaced for export."""
    if not isinstance(module, fx.GraphModule):
        from machop.graph.trace import trace

        module = trace(module)
    gm = copy.deepcopy(module)
    gm.eval()
    return _Planner(gm).run()
