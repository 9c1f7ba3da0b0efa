"""Per-node metadata recorded by running the traced graph once on an example batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from machop.graph.kinds import WEIGHTED_KINDS, module_kind, node_kind, target_name


def float_precision(dtype: torch.dtype) -> dict[str, Any]:
    """Precision record of an unquantized floating-point (or integer) tensor."""
    if dtype.is_floating_point:
        return {"type": "float", "width": torch.finfo(dtype).bits}
    if dtype.is_complex:
        return {"type": "complex", "width": dtype.itemsize * 8}
    return {"type": str(dtype).removeprefix("torch."), "width": torch.iinfo(dtype).bits
            if dtype != torch.bool else 1}


@dataclass
class NodeMeta:
    """What one node does and on what: op kind, shapes, dtypes, parameters, precisions."""

    name: str
    op: str
    kind: str
    target: str
    input_shapes: list[tuple[int, ...]] = field(default_factory=list)
    input_dtypes: list[str] = field(default_factory=list)
    output_shape: tuple[int, ...] | None = None
    output_dtype: str | None = None
    param_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    precision: dict[str, dict[str, Any]] = field(default_factory=dict)
    analysis: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON and tables."""
        return {"name": self.name, "op": self.op, "kind": self.kind, "target": self.target,
                "input_shapes": [list(s) for s in self.input_shapes],
                "input_dtypes": self.input_dtypes,
                "output_shape": list(self.output_shape) if self.output_shape is not None else None,
                "output_dtype": self.output_dtype,
                "param_shapes": {k: list(v) for k, v in self.param_shapes.items()},
                "precision": self.precision, "analysis": self.analysis}

    def copy(self) -> NodeMeta:
        """An independent copy (its dicts and lists are new; tuples and strings are shared)."""
        return _copy_with(self, self.op, self.kind, self.target, self.param_shapes, self.precision)


def _copy_with(meta: NodeMeta, op: str, kind: str, target: str, param_shapes: dict[str, tuple[int, ...]],
               precision: dict[str, dict[str, Any]]) -> NodeMeta:
    """An independent copy of `meta` holding copies of the given op, kind, target, parameter
    shapes and precisions (the fields set directly: a third of __init__'s cost)."""
    new = NodeMeta.__new__(NodeMeta)
    new.__dict__.update(
        name=meta.name, op=op, kind=kind, target=target,
        input_shapes=list(meta.input_shapes), input_dtypes=list(meta.input_dtypes),
        output_shape=meta.output_shape, output_dtype=meta.output_dtype,
        param_shapes=dict(param_shapes), precision=copy_records(precision),
        analysis=plain_copy(meta.analysis) if meta.analysis else {})
    return new


_SCALARS = frozenset((str, int, float, bool, type(None), tuple))


def plain_copy(value: Any) -> Any:
    """A deep copy of plain data (dicts, lists, scalars); much cheaper than copy.deepcopy."""
    if isinstance(value, dict):
        return {key: plain_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_copy(item) for item in value]
    return value


def copy_records(precision: dict[str, Any]) -> dict[str, Any]:
    """plain_copy of a precision table (operand -> record of scalars), a few times faster on it."""
    if precision.__class__ is not dict:
        return plain_copy(precision)
    copied = {}
    for operand, record in precision.items():
        if record.__class__ is dict:
            new = record.copy()
            for key, item in record.items():
                if item.__class__ not in _SCALARS:  # a list of per-channel frac widths, say
                    new[key] = plain_copy(item)
            copied[operand] = new
        else:
            copied[operand] = plain_copy(record)
    return copied


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return []


def _precision(node: fx.Node, root: nn.Module, kind: str, input_dtype: torch.dtype | None,
               output_dtype: torch.dtype | None) -> dict[str, dict[str, Any]]:
    module = root.get_submodule(node.target) if node.op == "call_module" else None
    own = getattr(module, "machop_precision", None) or getattr(node.target, "machop_precision", None)
    if own is not None:
        return own(node) if node.op == "call_function" else own()
    return _float_records(module, kind, input_dtype, output_dtype)


def _float_records(module: nn.Module | None, kind: str, input_dtype: torch.dtype | None,
                   output_dtype: torch.dtype | None) -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    if input_dtype is not None:
        records["data_in"] = float_precision(input_dtype)
    if module is not None and kind in WEIGHTED_KINDS:
        for name in ("weight", "bias"):
            param = getattr(module, name, None)
            if isinstance(param, torch.Tensor):
                records[name] = float_precision(param.dtype)
    if output_dtype is not None:
        records["data_out"] = float_precision(output_dtype)
    return records


def _dtype(name: str | None) -> torch.dtype | None:
    return None if name is None else getattr(torch, name)


def _own_parameter_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in module.named_parameters(recurse=False)}


def _form_parameter_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    """_own_parameter_shapes read from the parameter table (as named_parameters does, each tensor
    once) unless the module's class lists its parameters its own way."""
    if type(module).named_parameters is not nn.Module.named_parameters:
        return _own_parameter_shapes(module)
    shapes: dict[str, tuple[int, ...]] = {}
    seen: set[int] = set()
    for name, tensor in module._parameters.items():
        if tensor is not None and id(tensor) not in seen:
            seen.add(id(tensor))
            shapes[name] = tuple(tensor.shape)
    return shapes


def _parameter_shapes(node: fx.Node, root: nn.Module) -> dict[str, tuple[int, ...]]:
    if node.op != "call_module":
        return {}
    return _own_parameter_shapes(root.get_submodule(node.target))


def restamped(meta: NodeMeta, node: fx.Node, root: nn.Module) -> NodeMeta:
    """`meta` after the node's module or function was swapped for one that computes the same shapes
    (a quantized form): op, kind, target, parameters and precisions are read again from the new
    module, shapes and dtypes kept, so nothing runs."""
    kind = node_kind(node, root)
    new = meta.copy()
    new.op, new.kind, new.target = node.op, kind, target_name(node, root)
    new.param_shapes = _parameter_shapes(node, root)
    new.precision = _precision(node, root, kind, _dtype(meta.input_dtypes[0]) if meta.input_dtypes else None,
                               _dtype(meta.output_dtype))
    return new


@dataclass(frozen=True)
class Stamp:
    """What a node's metadata says of the module it calls: what `restamped` reads from it."""

    op: str
    kind: str
    target: str
    param_shapes: dict[str, tuple[int, ...]]
    precision: dict[str, dict[str, Any]]


def module_stamp(meta: NodeMeta, module: nn.Module) -> Stamp:
    """The stamp `restamped` gives the node of `meta` once it calls `module` (a quantized form of
    what it called), read from the module alone: made once per form, not per graph holding it."""
    kind = module_kind(module)
    own = getattr(module, "machop_precision", None)
    precision = own() if own is not None else _float_records(
        module, kind, _dtype(meta.input_dtypes[0]) if meta.input_dtypes else None, _dtype(meta.output_dtype))
    return Stamp("call_module", kind, type(module).__name__, _form_parameter_shapes(module), precision)


def stamped(meta: NodeMeta, stamp: Stamp) -> NodeMeta:
    """A copy of `meta` with the op, kind, target, parameters and precisions of `stamp` (copies of
    its tables: the stamp stays as it is whatever the new metadata goes through)."""
    return _copy_with(meta, stamp.op, stamp.kind, stamp.target, stamp.param_shapes, stamp.precision)


class _Recorder(fx.Interpreter):
    def __init__(self, module: fx.GraphModule) -> None:
        super().__init__(module)
        self.meta: dict[str, NodeMeta] = {}

    def run_node(self, node: fx.Node) -> Any:
        args, kwargs = self.fetch_args_kwargs_from_env(node)
        inputs = _tensors((args, kwargs))
        shapes = [tuple(t.shape) for t in inputs]
        dtypes = [str(t.dtype).removeprefix("torch.") for t in inputs]
        result = super().run_node(node)
        outputs = _tensors(result)
        kind = node_kind(node, self.module)
        self.meta[node.name] = NodeMeta(
            name=node.name, op=node.op, kind=kind, target=target_name(node, self.module),
            input_shapes=shapes, input_dtypes=dtypes,
            output_shape=tuple(outputs[0].shape) if outputs else None,
            output_dtype=str(outputs[0].dtype).removeprefix("torch.") if outputs else None,
            param_shapes=_parameter_shapes(node, self.module),
            precision=_precision(node, self.module, kind, inputs[0].dtype if inputs else None,
                                 outputs[0].dtype if outputs else None))
        return result


def record_metadata(module: fx.GraphModule, example_input: torch.Tensor) -> dict[str, NodeMeta]:
    """Run the graph once (eval mode, no grad) and return metadata for every node."""
    was_training = module.training
    module.eval()
    recorder = _Recorder(module)
    try:
        with torch.no_grad():
            recorder.run(example_input)
    finally:
        module.train(was_training)
    return recorder.meta
