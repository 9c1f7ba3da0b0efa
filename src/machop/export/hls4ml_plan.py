"""Plan of an hls4ml export: one hls4ml layer per machop node, with the ap_fixed type of every tensor.

hls4ml gives each layer one output type (`result`), and a layer reads its input in the type its
producer wrote it. machop quantizes a tensor where it is consumed (a Linear's or BatchNorm's
`data_in`) and where it is produced (`data_out`); a ReLU's unsigned `data_in` quantizer commutes
with the ReLU, so it becomes the ReLU's own result type. So every tensor's chain of quantizers
(the producer's own, its data_out, then its consumers' data_in) must reduce to one type: a later
quantizer that holds every value of an earlier one leaves it unchanged; anything else, or two
consumers that see the tensor at different precisions, is refused with the node named. Tensors
no quantizer rounds take a type wide enough to hold them exactly (quant.exact), so hls4ml rounds
exactly where machop does.

BatchNorm is exported as hls4ml's BatchNormalization layer with machop's quantized scale and
shift (not folded: the JSC models start with BatchNorm, with no layer before it to fold into).

Convolutions, MaxPool, flatten and residual adds: hls4ml computes in channels-last order and
permutes the weights of a Linear after a flatten to match PyTorch's channels-first flatten, so the
planned types (per tensor, not per element) carry over unchanged. A flatten is a view in hls4ml
(io_parallel): it keeps its input's type, so the quantizers of a flatten's readers apply at the
layer before it. A max commutes with machop's (monotone) quantizer, so a MaxPool's result type
is its readers' quantizer and its accumulator its input's type. An add (hls4ml's Merge) sums in
full precision and casts once into its result type: a quantized add's `data_in` becomes its
operands' producers' type, its `data_out` its own; an add no quantizer rounds gets a type that
holds every sum. An average pool divides, which hls4ml truncates in its accumulator type while
machop divides in float: refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from machop.errors import ModelError
from machop.export.hls4ml_types import (
    FixedType,
    add_type,
    compose,
    float_default,
    parameter_type,
    plain,
    quantizer_type,
    sum_type,
)
from machop.graph.graph import Graph
from machop.graph.kinds import WEIGHTED_KINDS
from machop.quant.arithmetic import MAX_WIDTH
from machop.quant.exact import FLOAT32_BITS, FixedOperand, fixed_operand, sum_format
from machop.quant.modules import (
    QuantBatchNorm1d,
    QuantBatchNorm2d,
    QuantBinaryOp,
    QuantConv1d,
    QuantConv2d,
    QuantLinear,
    QuantReLU,
    batch_norm_scale_shift,
)

PASS_THROUGH = ("dropout", "identity")
CONVS = {"conv1d": nn.Conv1d, "conv2d": nn.Conv2d}
NORMS = {"batch_norm1d": nn.BatchNorm1d, "batch_norm2d": nn.BatchNorm2d}
MAX_POOLS = {"max_pool1d": nn.MaxPool1d, "max_pool2d": nn.MaxPool2d}
AVERAGES = ("avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d")
FLATTENS = ("flatten", "view", "reshape")
SUPPORTED = (*WEIGHTED_KINDS, *NORMS, "relu", *MAX_POOLS, "flatten", "add (of two tensors)", *PASS_THROUGH)


class ResidualAdd(nn.Module):
    """a + b: the module an add node becomes in the model handed to hls4ml's frontend."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


@dataclass
class LayerPlan:
    """One hls4ml layer: its name (the fx node's), machop kind, types and float operands."""

    name: str
    kind: str
    inputs: list[str]
    module: nn.Module | None = None  # the plain torch module the hls4ml frontend converts
    precision: dict[str, FixedType] = field(default_factory=dict)
    float_operands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        """JSON/README row: name, kind and every type as text."""
        return {"name": self.name, "kind": self.kind,
                "precision": {key: value.text() for key, value in self.precision.items()},
                "float_operands": self.float_operands}


@dataclass
class ExportPlan:
    """The layers in order, the input layer's name and flattened shape, the output layer."""

    layers: list[LayerPlan]
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    flatten_input: bool
    quantized: bool  # whether any operand is fixed point
    channels_last: set[str] = field(default_factory=set)  # layers whose output hls4ml holds as (..., C)

    @property
    def float_layers(self) -> list[LayerPlan]:
        """Layers with at least one float operand (they get the wide default type)."""
        return [layer for layer in self.layers if layer.float_operands]

    def export_module(self, add: type[nn.Module] = ResidualAdd) -> fx.GraphModule:
        """A plain torch model of the planned layers, named as the nodes, for hls4ml's frontend.

        `add` is the module class an add node becomes (hls4ml needs one it converts as a Merge).
        """
        root = nn.Module()
        graph = fx.Graph()
        values: dict[str, fx.Node] = {self.input_name: graph.placeholder(self.input_name)}
        for layer in self.layers[1:]:
            root.add_module(layer.name, add() if layer.kind == "add" else layer.module)
            values[layer.name] = graph.call_module(layer.name, tuple(values[i] for i in layer.inputs))
        graph.output(values[self.output_name])
        return fx.GraphModule(root, graph, "MachopHls4mlExport")

    def hls_input(self, x: torch.Tensor) -> torch.Tensor:
        """The model's input as the export takes it (flattened to (batch, features) when planned)."""
        return x.flatten(1) if self.flatten_input else x


def _fail(node: str, message: str) -> ModelError:
    return ModelError(f"hls4ml export: node {node!r}: {message}")


def _fixed(spec: Any, node: str, operand: str) -> FixedOperand | None:
    """The fixed-point operand of a spec (None: float); other arithmetics are refused."""
    if spec is None:
        return None
    layout = fixed_operand(spec)
    if layout is None:
        raise _fail(node, f"{operand} is {spec.arithmetic}, which ap_fixed cannot represent; hls4ml "
                          "export needs integer (fixed) operands or float ones (--allow-float)")
    if layout.width > MAX_WIDTH:
        raise _fail(node, f"{operand} is {layout.width} bits wide; at most {MAX_WIDTH}")
    return layout


class _Planner:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.aliases: dict[str, str] = {}
        self.layers: dict[str, LayerPlan] = {}
        self.internal: dict[str, FixedType | None] = {}  # the producer's own rounding of its output
        self.data_out: dict[str, FixedType | None] = {}
        self.consumed: dict[str, FixedType | None] = {}  # the data_in quantizer a consumer applies
        self.sums: dict[str, FixedType | None] = {}  # exact type of a fixed-point layer's sum
        self.sum_bits: dict[str, int] = {}
        self.flatten_input = False
        self.any_fixed = False

    def source(self, node: Any) -> str:
        if not isinstance(node, fx.Node):
            raise _fail("?", f"takes a constant argument {node!r}, which hls4ml layers do not")
        return self.aliases.get(node.name, node.name)

    def plan(self) -> ExportPlan:
        placeholders = [n for n in self.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise ModelError(f"hls4ml export: the model takes {len(placeholders)} inputs; it needs one")
        inp = placeholders[0]
        self.layers[inp.name] = LayerPlan(inp.name, "input", [])
        self.internal[inp.name] = self.data_out[inp.name] = None
        output = None
        for node in self.graph.nodes:
            if node.op == "output":
                output = node.args[0]
            elif node.op.startswith("call_"):
                self.node(node, inp)
            elif node.op == "get_attr":
                raise _fail(node.name, "reads a tensor attribute directly; hls4ml export supports "
                                       f"modules of these kinds: {', '.join(SUPPORTED)}")
        if not isinstance(output, fx.Node):
            raise ModelError("hls4ml export: the model must return one tensor")
        shape = tuple(self.graph.example_input.flatten(1).shape[1:]) if self.flatten_input \
            else tuple(self.graph.example_input.shape[1:])
        if not 1 <= len(shape) <= 3:
            raise ModelError(f"hls4ml export: inputs of shape {shape} are not supported; machop exports "
                             "models on (batch, features), (batch, C, L) or (batch, C, H, W) inputs")
        output_name = self.source(output)
        out_shape = self.graph.meta[output.name].output_shape if output.op != "placeholder" else None
        if out_shape is not None and len(out_shape) != 2:
            raise ModelError(f"hls4ml export: the model's output has shape {tuple(out_shape)}; hls4ml export "
                             "needs (batch, features) outputs (end with a flatten or a Linear)")
        self.assign_types(output_name)
        channels_last = {name for name, meta in self.graph.meta.items()
                         if name in self.layers and meta.output_shape is not None and len(meta.output_shape) > 2}
        if len(shape) > 1:
            channels_last.add(inp.name)
        return ExportPlan(list(self.layers.values()), inp.name, shape, output_name, self.flatten_input,
                          self.any_fixed, channels_last)

    def node(self, node: fx.Node, inp: fx.Node) -> None:
        meta = self.graph.meta[node.name]
        kind = meta.kind
        module = self.graph.submodule(node) if node.op == "call_module" else None
        if kind == "size":
            return  # x.size(0) of a view(x.size(0), -1): the flatten using it is checked
        flattens = kind in FLATTENS and self.is_flatten(node)
        if kind in PASS_THROUGH or (flattens and node.args and node.args[0] is inp):
            self.flatten_input |= flattens
            self.aliases[node.name] = self.source(node.args[0])
            return
        if kind == "linear" and isinstance(module, nn.Linear):
            self.check_features(node, "a Linear")
            self.linear(node, module)
        elif kind in CONVS and isinstance(module, CONVS[kind]):
            self.conv(node, module)
        elif kind in NORMS and isinstance(module, NORMS[kind]):
            self.batch_norm(node, module)
        elif kind == "relu" and len(node.args) >= 1:
            self.relu(node, module)
        elif kind in MAX_POOLS and isinstance(module, MAX_POOLS[kind]):
            self.max_pool(node, module)
        elif flattens:
            self.layers[node.name] = LayerPlan(node.name, "flatten", [self.source(node.args[0])],
                                               module=nn.Flatten())
            self.internal[node.name] = self.data_out[node.name] = None
        elif kind == "add" and self.is_tensor_add(node, module):
            self.add(node, module)
        elif kind in CONVS or kind in MAX_POOLS:  # not the module: a functional call
            raise _fail(node.name, f"a functional {kind} call; hls4ml's PyTorch frontend converts the module "
                                   f"(nn.{(CONVS | MAX_POOLS)[kind].__name__}): use it in the model")
        elif kind in AVERAGES:
            raise _fail(node.name, f"{kind} divides by its window size, which hls4ml truncates in its "
                                   "accumulator type while machop divides in float, so it cannot be bit-exact; "
                                   "use MaxPool (or a strided convolution) for an FPGA export")
        else:
            raise _fail(node.name, f"{kind} ({meta.target}) has no hls4ml export in machop "
                                   f"(supported: {', '.join(SUPPORTED)})")

    def is_flatten(self, node: fx.Node) -> bool:
        """Whether a flatten/view/reshape node makes (batch, features) of a (batch, ...) tensor."""
        meta = self.graph.meta[node.name]
        shapes = meta.input_shapes
        return (meta.output_shape is not None and len(meta.output_shape) == 2 and bool(shapes)
                and len(shapes[0]) >= 2 and meta.output_shape[0] == shapes[0][0])

    def is_tensor_add(self, node: fx.Node, module: nn.Module | None) -> bool:
        """Whether an add node sums two tensors of one shape (what hls4ml's Merge layer does)."""
        if module is not None and not isinstance(module, QuantBinaryOp):
            return False
        shapes = self.graph.meta[node.name].input_shapes
        return (len(node.args) == 2 and not node.kwargs and all(isinstance(a, fx.Node) for a in node.args)
                and len(shapes) == 2 and shapes[0] == shapes[1])

    def check_features(self, node: fx.Node, what: str) -> None:
        """A Linear (a Dense in hls4ml) must read (batch, features)."""
        shapes = self.graph.meta[node.name].input_shapes
        if shapes and len(shapes[0]) != 2:
            raise _fail(node.name, f"{what} on a tensor of shape {tuple(shapes[0])}; hls4ml export needs "
                                   "(batch, features) there: flatten first")

    def _specs(self, module: nn.Module | None) -> dict[str, Any]:
        specs = dict(getattr(module, "specs", {}) or {})
        self.any_fixed |= any(spec is not None for spec in specs.values())
        return specs

    def _consumes(self, name: str, spec: Any) -> FixedType | None:
        fixed = _fixed(spec, name, "data_in")
        self.consumed[name] = None if fixed is None else quantizer_type(fixed)
        return self.consumed[name]

    def _data_out(self, name: str, specs: dict[str, Any]) -> None:
        fixed = _fixed(specs.get("data_out"), name, "data_out")
        self.data_out[name] = None if fixed is None else quantizer_type(fixed)
        self.internal.setdefault(name, None)

    def _weighted(self, node: fx.Node, specs: dict[str, Any], reduction: int, weight: torch.Tensor,
                  bias: torch.Tensor | None, weight_key: str) -> LayerPlan:
        name = node.name
        layer = LayerPlan(name, self.graph.meta[name].kind, [self.source(node.args[0])])
        data_in = _fixed(specs.get("data_in"), name, "data_in")
        fixed = {op: _fixed(specs.get(op), name, op) for op in ("weight", "bias")}
        self._consumes(name, specs.get("data_in"))
        self._data_out(name, specs)
        for op, key in (("weight", weight_key), ("bias", "bias")):
            if op == "bias" and bias is None:
                continue
            layer.precision[key] = float_default() if fixed[op] is None else parameter_type(fixed[op])
            if fixed[op] is None:
                layer.float_operands.append(op)
        if data_in is None:
            layer.float_operands.insert(0, "data_in")
        exact = data_in is not None and fixed["weight"] is not None and (bias is None or fixed["bias"] is not None)
        if exact:
            form = sum_format(data_in, fixed["weight"], fixed["bias"] if bias is not None else None, reduction)
            self.sums[name], self.sum_bits[name] = sum_type(form), form.magnitude_bits
        else:
            self.sums[name] = None
        return layer

    def linear(self, node: fx.Node, module: nn.Linear) -> None:
        specs = self._specs(module)
        with torch.no_grad():
            weight, bias = module.quantized_parameters() if isinstance(module, QuantLinear) \
                else (module.weight, module.bias)
            plain = nn.Linear(module.in_features, module.out_features, bias=bias is not None)
            plain.weight.copy_(weight.detach().float())
            if bias is not None:
                plain.bias.copy_(bias.detach().float())
        layer = self._weighted(node, specs, module.in_features, weight, bias, "weight")
        layer.module = plain.eval()
        if "accum" not in layer.precision:
            layer.precision["accum"] = self.sums[node.name] or float_default()
        self.layers[node.name] = layer

    def conv(self, node: fx.Node, module: nn.Conv1d | nn.Conv2d) -> None:
        kind = self.graph.meta[node.name].kind
        padding = module.padding
        if module.groups != 1 or module.padding_mode != "zeros" or isinstance(padding, str) \
                or any(d != 1 for d in module.dilation):
            raise _fail(node.name, f"{kind} with groups={module.groups}, padding={padding!r}, "
                                   f"padding_mode={module.padding_mode!r}, dilation={module.dilation}; hls4ml's "
                                   "PyTorch frontend converts groups=1, integer zero padding and dilation 1")
        specs = self._specs(module)
        with torch.no_grad():
            weight, bias = module.quantized_parameters() if isinstance(module, QuantConv1d | QuantConv2d) \
                else (module.weight, module.bias)
            plain = CONVS[kind](module.in_channels, module.out_channels, module.kernel_size, stride=module.stride,
                                padding=padding, bias=bias is not None)
            plain.weight.copy_(weight.detach().float())
            if bias is not None:
                plain.bias.copy_(bias.detach().float())
        reduction = int(weight[0].numel())  # in_channels × kernel size terms per output value
        layer = self._weighted(node, specs, reduction, weight, bias, "weight")
        layer.module = plain.eval()
        layer.precision["accum"] = self.sums[node.name] or float_default()
        self.layers[node.name] = layer

    def max_pool(self, node: fx.Node, module: nn.MaxPool1d | nn.MaxPool2d) -> None:
        kind = self.graph.meta[node.name].kind
        dilation = module.dilation if isinstance(module.dilation, tuple) else (module.dilation,)
        if module.ceil_mode or module.return_indices or any(d != 1 for d in dilation):
            raise _fail(node.name, f"{kind} with ceil_mode, return_indices or dilation; hls4ml converts "
                                   "plain max pooling (kernel, stride, padding)")
        copy = MAX_POOLS[kind](module.kernel_size, stride=module.stride, padding=module.padding)
        self.layers[node.name] = LayerPlan(node.name, kind, [self.source(node.args[0])], module=copy)
        self.internal[node.name] = self.data_out[node.name] = None

    def add(self, node: fx.Node, module: nn.Module | None) -> None:
        name = node.name
        specs = self._specs(module) if isinstance(module, QuantBinaryOp) else {}
        self._consumes(name, specs.get("data_in"))
        self._data_out(name, specs)
        self.layers[name] = LayerPlan(name, "add", [self.source(a) for a in node.args])

    def batch_norm(self, node: fx.Node, module: nn.BatchNorm1d | nn.BatchNorm2d) -> None:
        specs = self._specs(module)
        quantized = isinstance(module, QuantBatchNorm1d | QuantBatchNorm2d)
        with torch.no_grad():
            if quantized:
                scale, shift = module.quantized_scale_shift()
            else:
                scale, shift = batch_norm_scale_shift(module)
            # eps = 0, mean 0, variance 1: hls4ml's scale γ / sqrt(var + eps) and shift β - mean·scale
            # are then machop's own scale and shift, bit for bit.
            plain = NORMS[self.graph.meta[node.name].kind](module.num_features, eps=0.0)
            plain.weight.copy_(scale.detach().float())
            plain.bias.copy_(shift.detach().float())
        layer = self._weighted(node, specs, 1, scale, shift, "scale")
        if not quantized:
            layer.notes.append("a float BatchNorm: its scale and shift are rounded to the wide default "
                               "type, so the C simulation can differ from machop's float32 math")
        layer.module = plain.eval()
        self.layers[node.name] = layer

    def relu(self, node: fx.Node, module: nn.Module | None) -> None:
        name = node.name
        specs = self._specs(module) if isinstance(module, QuantReLU) else {}
        layer = LayerPlan(name, "relu", [self.source(node.args[0])], module=nn.ReLU())
        data_in = _fixed(specs.get("data_in"), name, "data_in")
        self.consumed[name] = None  # the ReLU's own result type applies its quantizer
        self.internal[name] = None if data_in is None else quantizer_type(data_in)
        self._data_out(name, specs)
        if data_in is None:
            layer.float_operands.append("data_in")
        self.layers[name] = layer

    def consumers(self, name: str, output_name: str) -> list[str | None]:
        """The layers that read `name`'s output (None: the model output), seen through flattens."""
        readers: list[str | None] = [None] if name == output_name else []
        for layer in self.layers.values():
            if name in layer.inputs:
                readers += self.consumers(layer.name, output_name) if layer.kind == "flatten" else [layer.name]
        return readers

    def assign_types(self, output_name: str) -> None:
        for name, layer in self.layers.items():
            if layer.kind == "flatten":  # a view in hls4ml: its input's type
                layer.precision["result"] = self.layers[layer.inputs[0]].precision["result"]
                continue
            if layer.kind in MAX_POOLS:  # the max of its input's values, held exactly
                layer.precision["accum"] = plain(self.layers[layer.inputs[0]].precision["result"])
            chains = {}
            consumers = self.consumers(name, output_name)
            for consumer in dict.fromkeys(consumers) or [None]:
                steps = [self.internal[name], self.data_out[name]]
                steps.append(self.consumed.get(consumer) if consumer is not None else None)
                chains[consumer] = self.reduce(name, consumer, steps)
            distinct = set(chains.values())
            if len(distinct) > 1:
                shown = "; ".join(f"{c or 'the model output'} reads it as "
                                  f"{t.text() if t else 'exact'}" for c, t in chains.items())
                raise _fail(name, f"its output is consumed at different precisions ({shown}); hls4ml "
                                  "holds one type per tensor: give its consumers the same data_in precision")
            result = distinct.pop()
            layer.precision["result"] = result if result is not None else self.exact_result(layer)

    def reduce(self, name: str, consumer: str | None, steps: list[FixedType | None]) -> FixedType | None:
        current: FixedType | None = None
        for step in steps:
            if step is None:
                continue
            if current is None:
                current = step
                continue
            composed = compose(current, step)
            if composed is None:
                raise _fail(name, f"its output is rounded to {current.text()} and then again to "
                                  f"{step.text()} (by {consumer or 'its data_out'}), a coarser grid; "
                                  "hls4ml rounds a tensor once: give the later quantizer at least as "
                                  "many frac bits as the earlier one, or drop one of them")
            current = composed
        return current

    def exact_result(self, layer: LayerPlan) -> FixedType:
        if layer.kind == "input":
            layer.float_operands.append("data_in")
            return float_default()
        if layer.kind == "relu" or layer.kind in MAX_POOLS:
            return self.layers[layer.inputs[0]].precision["result"]
        if layer.kind == "add":
            first, second = (self.layers[i].precision["result"] for i in layer.inputs)
            total = add_type(first, second)
            magnitude_bits = total.width - 1 if total.signed else total.width
            if magnitude_bits > FLOAT32_BITS:
                layer.notes.append(f"its exact sum needs {total.width} bits, which machop rounds to float32 "
                                   "and the C simulation keeps")
            return total
        exact = self.sums.get(layer.name)
        if exact is None:
            return float_default()
        if self.sum_bits[layer.name] > FLOAT32_BITS:
            layer.notes.append(f"its exact output needs {self.sum_bits[layer.name]} bits, which machop "
                               "rounds to float32 and the C simulation keeps")
        return exact


def plan_export(model: nn.Module, example_input: torch.Tensor) -> ExportPlan:
    """Check a machop model against what hls4ml expresses exactly and type every layer."""
    was_training = model.training
    model.eval()
    try:
        graph = Graph(model, example_input)
        return _Planner(graph).plan()
    finally:
        model.train(was_training)


__all__ = ["ExportPlan", "LayerPlan", "SUPPORTED", "plan_export"]
