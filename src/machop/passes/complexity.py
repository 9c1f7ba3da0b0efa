"""complexity_analysis_pass: parameters, MACs, FLOPs, elementwise work, BitOPs, size, bit-widths.

All counts are per sample (batch 1). FLOPs follow torch.utils.flop_counter.FlopCounterMode,
which counts 2 FLOPs per multiply-accumulate of matmul/linear/conv and nothing else; the
elementwise work it ignores (BatchNorm, ReLU, pooling, adds) is reported separately as
`elementwise_ops`: 1 op per output element for ReLU/add/sub/mul, 2 for BatchNorm (scale and
shift), the window size per output element for pooling.

BitOPs = sum over linear/conv/matmul/bmm nodes of MACs x weight bits x activation bits, from the
precisions in node metadata (float32 counts as 32; matmul/bmm use both inputs' data_in width).
Model size counts every parameter at its configured width. `average_bitwidth` is MASE's: the
size-weighted weight width over *quantized* linear layers, 32 when none is quantized;
`average_bitwidth_all` is the corrected variant over the weights of every linear and conv layer,
float ones at 32. `memory_density` = 32 / average_bitwidth.

MACs, FLOPs, element-wise work and parameter counts depend on the architecture only, never on
the precisions, so they are counted once per architecture (node kinds, shapes and parameter
shapes: what a redefine pass changes) and kept in a small cache; each candidate then costs only
the arithmetic from its precisions (BitOPs, size, bit-width averages). `flop_counter_costs` is
the reference the cache is checked against: a full FlopCounterMode forward of the graph itself.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from machop.graph.graph import Graph
from machop.graph.kinds import GENERIC, WEIGHTED_KINDS
from machop.graph.metadata import NodeMeta

MATMULS = ("matmul", "bmm")
ONE_OP = ("relu", "add", "sub", "mul")
NORMS = ("batch_norm1d", "batch_norm2d", "layer_norm")
POOLS = ("max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d")
REFERENCE_WIDTH = 32
ARCHITECTURES_KEPT = 256  # architectures whose counts are cached (least recently used dropped)


def _per_sample(shape: tuple[int, ...] | None) -> int:
    return math.prod(shape[1:]) if shape else 0


def _width(meta: NodeMeta, operand: str) -> int:
    return int(meta.precision.get(operand, {}).get("width", REFERENCE_WIDTH))


def _is_quantized(meta: NodeMeta, operand: str) -> bool:
    return meta.precision.get(operand, {}).get("type", "float") != "float"


def _macs(meta: NodeMeta, module: nn.Module | None) -> int:
    out = _per_sample(meta.output_shape)
    if meta.kind == "linear":
        return out * meta.input_shapes[1][-1] if module is None else out * module.in_features
    if meta.kind in ("conv1d", "conv2d"):
        if module is None:
            weight = meta.input_shapes[1]
            return out * math.prod(weight[1:])
        return out * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if meta.kind in MATMULS:
        return out * meta.input_shapes[0][-1]
    return 0


def _window(module: nn.Module | None) -> int:
    size = getattr(module, "kernel_size", 1)
    if isinstance(size, int):
        size = (size,) * (2 if "2d" in type(module).__name__ else 1)
    return math.prod(size)


def _elementwise(meta: NodeMeta, module: nn.Module | None) -> int:
    out = _per_sample(meta.output_shape)
    if meta.kind in ONE_OP:
        return out
    if meta.kind in NORMS:
        return 2 * out
    if meta.kind in POOLS:
        return out * _window(module)
    if meta.kind.startswith("adaptive_avg_pool") and meta.input_shapes:
        return _per_sample(meta.input_shapes[0])
    return 0


def _bitops(meta: NodeMeta, macs: int) -> int:
    if meta.kind in WEIGHTED_KINDS:
        return macs * _width(meta, "weight") * _width(meta, "data_in")
    if meta.kind in MATMULS:
        return macs * _width(meta, "data_in") ** 2
    return 0


def _node_counts(graph: Graph, meta: NodeMeta, node) -> dict[str, int]:
    """What a node costs whatever its precisions: parameters, MACs, FLOPs, element-wise work."""
    module = graph.submodule(node) if node.op == "call_module" else None
    macs = _macs(meta, module)
    params = sum(p.numel() for p in module.parameters()) if module is not None else 0
    return {"params": params, "macs": macs, "flops": 2 * macs, "elementwise_ops": _elementwise(meta, module)}


@dataclass(frozen=True)
class ArchitectureCounts:
    """The precision-free counts of one architecture: per node, and FlopCounterMode's total."""

    nodes: dict[str, dict[str, int]]
    flops: int


_ARCHITECTURES: OrderedDict[tuple, ArchitectureCounts] = OrderedDict()
# Module settings that change a node's work without showing in its shapes (a pool's window).
_SETTINGS_MATTER = (*POOLS, "adaptive_avg_pool1d", "adaptive_avg_pool2d", GENERIC)


def _node_signature(graph: Graph, node) -> tuple:
    meta = graph.meta[node.name]
    settings = ""
    if meta.kind in _SETTINGS_MATTER:
        settings = graph.submodule(node).extra_repr() if node.op == "call_module" else repr(node.target)
        settings = f"{meta.target}:{settings}"
    return (node.name, meta.kind, settings, tuple(meta.input_shapes), meta.output_shape,
            tuple(sorted(meta.param_shapes.items())))


def architecture_key(graph: Graph) -> tuple:
    """What the counts depend on: the model, and every compute node's kind, shapes and parameter
    shapes (a quantized node keeps its float node's key; a redefined width changes it)."""
    return (type(graph.module).__name__, tuple(graph.example_input.shape),
            tuple(_node_signature(graph, node) for node in graph.compute_nodes()))


def architecture_counts(graph: Graph) -> ArchitectureCounts:
    """The counts of `graph`'s architecture: cached, measured on the first graph that has it."""
    key = architecture_key(graph)
    counts = _ARCHITECTURES.get(key)
    if counts is None:
        nodes = {node.name: _node_counts(graph, graph.meta[node.name], node) for node in graph.compute_nodes()}
        counts = ArchitectureCounts(nodes=nodes, flops=flop_counter_flops(graph))
        _ARCHITECTURES[key] = counts
        while len(_ARCHITECTURES) > ARCHITECTURES_KEPT:
            _ARCHITECTURES.popitem(last=False)
    else:
        _ARCHITECTURES.move_to_end(key)
    return counts


def _node_analysis(counts: dict[str, int], meta: NodeMeta) -> dict[str, Any]:
    return {**counts, "bitops": _bitops(meta, counts["macs"])}


def _parameter_bits(graph: Graph) -> dict[str, int]:
    """Configured width of every parameter, by its state_dict name."""
    owners = {node.target: graph.meta[node.name] for node in graph.compute_nodes()
              if node.op == "call_module"}
    widths = {}
    for name, param in graph.module.named_parameters():
        owner, _, attr = name.rpartition(".")
        meta = owners.get(owner)
        if meta is not None and attr in meta.precision:
            widths[name] = _width(meta, attr)
        else:
            widths[name] = torch.finfo(param.dtype).bits if param.is_floating_point() else 32
    return widths


def _bitwidth_averages(graph: Graph) -> tuple[float, float]:
    quantized = everything = quantized_size = everything_size = 0
    for node in graph.compute_nodes():
        meta = graph.meta[node.name]
        if meta.kind not in WEIGHTED_KINDS or "weight" not in meta.param_shapes:
            continue
        numel, bits = math.prod(meta.param_shapes["weight"]), _width(meta, "weight")
        everything, everything_size = everything + numel * bits, everything_size + numel
        if meta.kind == "linear" and _is_quantized(meta, "weight"):
            quantized, quantized_size = quantized + numel * bits, quantized_size + numel
    mase = quantized / quantized_size if quantized_size else float(REFERENCE_WIDTH)
    corrected = everything / everything_size if everything_size else float(REFERENCE_WIDTH)
    return mase, corrected


def _flop_counter(graph: Graph) -> Any:
    """A FlopCounterMode that has counted one evaluation-mode forward of one sample."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = graph.module.training
    graph.module.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            graph.module(graph.example_input[:1])
    finally:
        graph.module.train(was_training)
    return counter


def flop_counter_flops(graph: Graph) -> int:
    """FLOPs of one sample as torch.utils.flop_counter.FlopCounterMode counts them."""
    return int(_flop_counter(graph).get_total_flops())


def flop_counter_costs(graph: Graph) -> dict[str, Any]:
    """The reference: one FlopCounterMode forward of `graph`, FLOPs in total and per module node, and
    BitOPs = sum over weighted module nodes of their counted MACs x weight bits x input bits."""
    counter = _flop_counter(graph)
    by_module = counter.get_flop_counts()
    root = type(graph.module).__name__
    nodes, bitops = {}, 0
    for node in graph.compute_nodes():
        meta = graph.meta[node.name]
        if node.op != "call_module":
            continue
        flops = int(sum(by_module.get(f"{root}.{node.target}", {}).values()))
        nodes[node.name] = flops
        if meta.kind in WEIGHTED_KINDS:
            bitops += flops // 2 * _width(meta, "weight") * _width(meta, "data_in")
    return {"flops": int(counter.get_total_flops()), "node_flops": nodes, "bitops": bitops}


def node_costs(graph: Graph) -> dict[str, dict[str, Any]]:
    """Per compute node: params, MACs, FLOPs, element-wise ops and BitOPs (architecture counts cached)."""
    counts = architecture_counts(graph).nodes
    return {node.name: _node_analysis(counts[node.name], graph.meta[node.name]) for node in graph.compute_nodes()}


def complexity_analysis_pass(graph: Graph, args: dict[str, Any] | None = None) -> tuple[Graph, dict[str, Any]]:
    """Annotate every node with its cost and return the per-node rows and the totals."""
    counts = architecture_counts(graph)
    rows = []
    for node in graph.compute_nodes():
        meta = graph.meta[node.name]
        meta.analysis = _node_analysis(counts.nodes[node.name], meta)
        rows.append({"node": node.name, "op": meta.kind, "target": meta.target,
                     "input_shapes": meta.input_shapes, "output_shape": meta.output_shape,
                     **meta.analysis, "precision": meta.precision})
    widths = _parameter_bits(graph)
    size_bits = sum(p.numel() * widths[name] for name, p in graph.module.named_parameters())
    average, average_all = _bitwidth_averages(graph)
    totals = {
        "params": sum(p.numel() for p in graph.module.parameters()),
        "macs": sum(r["macs"] for r in rows),
        "flops": counts.flops,
        "elementwise_ops": sum(r["elementwise_ops"] for r in rows),
        "bitops": sum(r["bitops"] for r in rows),
        "model_size_bits": size_bits,
        "model_size_bytes": size_bits / 8,
        "average_bitwidth": average,
        "average_bitwidth_all": average_all,
        "memory_density": REFERENCE_WIDTH / average,
    }
    return graph, {"per_node": rows, "totals": totals}
