"""Width propagation for the redefine pass: which modules get which new sizes.

Every tensor edge carries a `Flow`: its channel width (dim 1) in the new model and, for each
new channel, the old channel it descends from (so `inherit` can copy weights function-preservingly).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import fx

from machop.errors import PassError
from machop.graph.graph import Graph
from machop.passes.redefine_config import (
    LAYER_KINDS,
    NORM_KINDS,
    PREFIX,
    RESIZABLE,
    RedefineConfig,
    WidthRequest,
    resizable_module,
    widths_of,
)

MERGE_KINDS = ("add", "sub", "mul")
RESHAPE_KINDS = ("flatten", "view", "reshape")


@dataclass(frozen=True)
class Flow:
    """The channels a node outputs: new width, old width, origin of each new channel."""

    width: int
    old_width: int
    origin: tuple[int, ...]
    source: str  # the layer (or input) that set this width, for messages and `parent`

    @property
    def changed(self) -> bool:
        """Whether the new channels differ from the old ones."""
        return self.width != self.old_width or self.origin != tuple(range(self.old_width))


@dataclass(frozen=True)
class Resize:
    """New sizes of one module, with the old channel each new input/output channel copies."""

    node: str
    kind: str
    old_in: int
    new_in: int
    old_out: int
    new_out: int
    in_origin: tuple[int, ...]
    out_origin: tuple[int, ...]


def unchanged_flow(width: int, source: str) -> Flow:
    """A flow whose channels are the old ones."""
    return Flow(width, width, tuple(range(width)), source)


def replicate(old: int, new: int) -> tuple[int, ...]:
    """Old unit copied by each new unit: the first min(old, new) keep theirs, extras round-robin."""
    return tuple(j % old for j in range(new))


def channel_dim(shape: tuple[int, ...] | None) -> int | None:
    """The channel (dim 1) size of a shape, None for scalars and 1-D tensors."""
    return shape[1] if shape is not None and len(shape) >= 2 else None


def unit(kind: str) -> str:
    """What a width counts, for messages."""
    return "features" if kind in ("linear", "batch_norm1d") else "channels"


def tensor_inputs(node: fx.Node, flows: dict[str, Flow | None]) -> list[Flow]:
    """Flows of the node's tensor operands, in argument order."""
    return [flows[n.name] for n in node.all_input_nodes if flows.get(n.name) is not None]


def mismatch(node: str, expected: int, how: str, flow: Flow, what: str) -> PassError:
    """Error for a stated input width that disagrees with what the producer now outputs."""
    return PassError(f"{PREFIX} {flow.source!r} now outputs {flow.width} {what} but {node!r} takes "
                     f"{expected} ({how}); make the producer's output and the consumer's input agree")


def check_parent(request: WidthRequest, flow: Flow) -> None:
    """A lab entry's `parent` must be the node whose width reaches this one."""
    if request.parent is not None and request.parent != flow.source:
        raise PassError(f"{request.where} parent = {request.parent!r} but the width reaching "
                        f"{request.node!r} comes from {flow.source!r}")


def layer_input_width(node: str, kind: str, old_in: int, flow: Flow | None,
                      config: RedefineConfig) -> int:
    """A layer's new input width: stated and checked (lab schema), else what the producer outputs."""
    if flow is None:
        return old_in
    request = config.requests.get(node)
    if request is not None:
        check_parent(request, flow)
    if request is not None and request.new_in is not None:
        expected, how = request.new_in, request.how_in
    elif config.lab and request is None:
        expected, how = old_in, "unchanged: the config does not name it"
    else:
        return flow.width
    if expected != flow.width:
        raise mismatch(node, expected, how, flow, unit(kind))
    return expected


def checked_groups(graph: Graph, node: fx.Node, resize: Resize) -> Resize:
    """Only groups = 1 convolutions can change width (grouped ones tie in to out channels)."""
    groups = getattr(graph.submodule(node), "groups", 1)
    if groups != 1:
        raise PassError(f"{PREFIX} redefining needs conv2d node {node.name!r} resized "
                        f"({resize.old_in}->{resize.new_in} in, {resize.old_out}->{resize.new_out} "
                        f"out), but it has groups = {groups}; only groups = 1 can be redefined")
    return resize


def is_plain_module(graph: Graph, node: fx.Node, kind: str) -> bool:
    """Whether the node calls a module of exactly the class redefine rebuilds for its kind."""
    return node.op == "call_module" and type(graph.submodule(node)) is RESIZABLE[kind]


def acts_on_channels(graph: Graph, node: fx.Node, kind: str) -> bool:
    """Flows track dim 1; a Linear on a 3-D or larger input works on the last dim instead."""
    shapes = graph.meta[node.name].input_shapes
    return kind != "linear" or (bool(shapes) and len(shapes[0]) == 2)


def flow_through_layer(graph: Graph, node: fx.Node, kind: str, inputs: list[Flow],
                       config: RedefineConfig, resizes: dict[str, Resize]) -> Flow | None:
    """Linear/Conv2d: new input from the producer, new output from the config."""
    flow = inputs[0] if inputs else None
    request = config.requests.get(node.name)
    if not is_plain_module(graph, node, kind) or not acts_on_channels(graph, node, kind):
        if flow is not None and flow.changed:
            resizable_module(graph, node, kind, f"{PREFIX} the new width of {flow.source!r}:")
        if (flow is not None and flow.changed) or request is not None:
            raise PassError(f"{PREFIX} cannot resize {node.name!r}: redefine handles Linear layers "
                            "on (batch, features) inputs only")
        width = channel_dim(graph.meta[node.name].output_shape)
        return unchanged_flow(width, node.name) if width is not None else None
    old_in, old_out = widths_of(graph.submodule(node))
    new_in = layer_input_width(node.name, kind, old_in, flow, config)
    new_out = request.new_out if request is not None and request.new_out else old_out
    in_origin = flow.origin if flow is not None else tuple(range(old_in))
    if new_in != old_in or new_out != old_out or in_origin != tuple(range(old_in)):
        resize = Resize(node.name, kind, old_in, new_in, old_out, new_out, in_origin,
                        replicate(old_out, new_out))
        resizes[node.name] = checked_groups(graph, node, resize)
    return Flow(new_out, old_out, replicate(old_out, new_out), node.name)


def flow_through_norm(graph: Graph, node: fx.Node, kind: str, inputs: list[Flow],
                      config: RedefineConfig, resizes: dict[str, Resize]) -> Flow | None:
    """BatchNorm follows its producer; a lab "scale" entry is checked against it."""
    flow = inputs[0] if inputs else None
    request = config.requests.get(node.name)
    if flow is None:
        return None
    if request is not None:
        check_parent(request, flow)
        if request.new_in is not None and request.new_in != flow.width:
            raise mismatch(node.name, request.new_in, request.how_in, flow, unit(kind))
    if flow.changed:
        if not is_plain_module(graph, node, kind):
            resizable_module(graph, node, kind, f"{PREFIX} the new width of {flow.source!r}:")
        old = flow.old_width
        resizes[node.name] = Resize(node.name, kind, old, flow.width, old, flow.width,
                                    flow.origin, flow.origin)
    return flow


def flow_through_merge(node: fx.Node, inputs: list[Flow], out_width: int | None) -> Flow | None:
    """Elementwise joins (residual adds): every full-width operand must have the same width."""
    full = [flow for flow in inputs if flow.old_width == out_width]
    for other in full[1:]:
        if other.width != full[0].width:
            raise PassError(f"{PREFIX} {node.name!r} joins {full[0].source!r} (now {full[0].width} "
                            f"wide) and {other.source!r} (now {other.width} wide); give both "
                            "branches the same width")
    return full[0] if full else (unchanged_flow(out_width, node.name) if out_width else None)


def cat_operands(node: fx.Node, flows: dict[str, Flow | None]) -> tuple[list[Flow], int]:
    """The flows torch.cat joins, and its dim."""
    tensors = node.args[0] if node.args else node.kwargs.get("tensors", ())
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    operands = [flows.get(t.name) for t in tensors if isinstance(t, fx.Node)]
    return [f for f in operands if f is not None], dim


def flow_through_cat(graph: Graph, node: fx.Node, flows: dict[str, Flow | None]) -> Flow | None:
    """torch.cat along channels adds the widths; along other dims it is an elementwise join."""
    operands, dim = cat_operands(node, flows)
    shape = graph.meta[node.name].output_shape
    if shape is None or len(shape) < 2 or not isinstance(dim, int) or dim % len(shape) != 1:
        return flow_through_merge(node, operands, channel_dim(shape))
    origin: list[int] = []
    offset = 0
    for flow in operands:
        origin.extend(offset + o for o in flow.origin)
        offset += flow.old_width
    return Flow(len(origin), shape[1], tuple(origin), node.name)


def flow_through_reshape(graph: Graph, node: fx.Node, flow: Flow | None) -> Flow | None:
    """flatten/view: a flatten from dim 1 scales the width by the spatial size (conv -> linear)."""
    meta = graph.meta[node.name]
    out, inp = meta.output_shape, meta.input_shapes[0] if meta.input_shapes else None
    if flow is None or out is None or inp is None or len(out) < 2 or len(inp) < 2:
        return None
    if out[1] == inp[1] and len(out) <= len(inp):
        return flow
    spatial = math.prod(inp[2:])
    if len(out) == 2 and out[1] == inp[1] * spatial:
        origin = tuple(o * spatial + s for o in flow.origin for s in range(spatial))
        return Flow(flow.width * spatial, out[1], origin, flow.source)
    return flow_through_other(graph, node, meta.kind, flow)


def flow_through_other(graph: Graph, node: fx.Node, kind: str, flow: Flow | None) -> Flow | None:
    """Any other op: channels pass through when its recorded output keeps dim 1, else must be unchanged."""
    width = channel_dim(graph.meta[node.name].output_shape)
    if width is None:
        return None
    if flow is not None and flow.old_width == width:
        return flow
    if flow is not None and flow.changed:
        raise PassError(f"{PREFIX} cannot carry the new width of {flow.source!r} "
                        f"({flow.old_width} -> {flow.width}) through {node.name!r} ({kind}), which "
                        f"turns {flow.old_width} channels into {width}")
    return unchanged_flow(width, node.name)


def flow_of(graph: Graph, node: fx.Node, flows: dict[str, Flow | None], config: RedefineConfig,
            resizes: dict[str, Resize]) -> Flow | None:
    """The flow a node outputs, recording any module it needs resized."""
    meta = graph.meta[node.name]
    if node.op == "placeholder":
        width = channel_dim(meta.output_shape)
        return unchanged_flow(width, node.name) if width is not None else None
    if node.op in ("output", "get_attr"):
        return None
    inputs = tensor_inputs(node, flows)
    if meta.kind in LAYER_KINDS:
        return flow_through_layer(graph, node, meta.kind, inputs, config, resizes)
    if meta.kind in NORM_KINDS:
        return flow_through_norm(graph, node, meta.kind, inputs, config, resizes)
    if meta.kind in MERGE_KINDS:
        return flow_through_merge(node, inputs, channel_dim(meta.output_shape))
    if meta.kind == "cat":
        return flow_through_cat(graph, node, flows)
    first = inputs[0] if inputs else None
    if meta.kind in RESHAPE_KINDS:
        return flow_through_reshape(graph, node, first)
    return flow_through_other(graph, node, meta.kind, first)


def plan_resizes(graph: Graph, config: RedefineConfig) -> dict[str, Resize]:
    """Walk the graph in order, propagating widths; returns the modules to rebuild, by node."""
    flows: dict[str, Flow | None] = {}
    resizes: dict[str, Resize] = {}
    for node in graph.nodes:
        flows[node.name] = flow_of(graph, node, flows, config, resizes)
    return resizes
