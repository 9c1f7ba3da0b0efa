"""quantize_transform_pass: swap linear/conv/relu/add/... nodes for fake-quantized versions."""

from __future__ import annotations

from collections import Counter
from typing import Any

from torch import fx

from machop.errors import PassError
from machop.graph.graph import Graph
from machop.graph.kinds import WEIGHTED_KINDS
from machop.passes.selection import Selection, parse_selection
from machop.quant.arithmetic import CHANNEL_OPERANDS, parse_node_config
from machop.quant.modules import (
    BINARY_FUNCTIONS,
    QUANTIZED_MODULES,
    QUANTIZED_NORMS,
    QuantBinaryOp,
    QuantFunctionalWeighted,
    QuantReLU,
)

QUANTIZABLE = (*WEIGHTED_KINDS, "relu", "add", "sub", "mul", "matmul", "bmm")
# Quantized only by an entry of their own (type key, node name or a regex matching them), never by
# `default`: configs (and search spaces) written before BatchNorm was quantizable keep their meaning.
EXPLICIT_ONLY = tuple(QUANTIZED_NORMS)
# Keys of [passes.quantize] that are no node entries: the calibration table of "auto" frac widths.
RESERVED = ("report", "calibration")


def _is_left_alone(config: dict[str, Any] | None) -> bool:
    return config is None or config.get("name") is None or bool(config.get("bypass", False))


def _unique_module_name(graph: Graph, base: str) -> str:
    name, index = f"{base}_quant", 1
    while hasattr(graph.module, name):
        name, index = f"{base}_quant{index}", index + 1
    return name


def _call_new_module(graph: Graph, node: fx.Node, module: Any) -> None:
    """Turn a function/method node into a call of `module` with the same operands."""
    name = _unique_module_name(graph, node.name)
    graph.module.add_submodule(name, module)
    node.op, node.target = "call_module", name


def _replace_node(graph: Graph, node: fx.Node, kind: str, specs: dict, config: dict) -> str:
    """Swap one node for its quantized form; returns the new type name."""
    if node.op == "call_module":
        old = graph.submodule(node)
        quantized = {**QUANTIZED_MODULES, **QUANTIZED_NORMS}
        new = quantized[kind].from_float(old, specs, config) if kind in quantized \
            else QuantReLU(specs, config)
        graph.module.set_submodule(node.target, new)
        return type(new).__name__
    if kind in WEIGHTED_KINDS:
        module = QuantFunctionalWeighted(kind, specs, config)
    elif kind == "relu":
        node.args, node.kwargs = node.args[:1], {}  # drop inplace: the quantized input is new
        module = QuantReLU(specs, config)
    elif kind in BINARY_FUNCTIONS and len(node.args) == 2 and not node.kwargs:
        module = QuantBinaryOp(kind, specs, config)
    else:
        raise PassError(f"node {node.name!r} ({kind} with arguments {node.args!r}) cannot be "
                        "quantized; leave it alone with name = \"NA\"")
    _call_new_module(graph, node, module)
    return type(module).__name__


def _output_channels(graph: Graph, node: fx.Node) -> int | None:
    """The output channels of a weighted node (dim 0 of its weight) or a BatchNorm."""
    meta = graph.meta[node.name]
    if meta.kind in EXPLICIT_ONLY:
        return getattr(graph.submodule(node), "num_features", None) if node.op == "call_module" else None
    shape = meta.param_shapes.get("weight") if node.op == "call_module" else \
        (meta.input_shapes[1] if len(meta.input_shapes) > 1 else None)
    return shape[0] if shape else None


def _check_channels(graph: Graph, node: fx.Node, specs: dict) -> None:
    """A per-channel frac list must give one frac width per output channel of the node."""
    for operand in CHANNEL_OPERANDS:
        spec = specs.get(operand)
        if spec is None or not isinstance(spec.frac_width, tuple):
            continue
        has_channels = graph.meta[node.name].kind in (*WEIGHTED_KINDS, *EXPLICIT_ONLY)
        channels = _output_channels(graph, node) if has_channels else None
        if channels is None:
            raise PassError(f"node {node.name!r}, key '{operand}_frac_width': a list gives one frac "
                            f"width per output channel, which a {graph.meta[node.name].kind} node does "
                            "not have; give one integer")
        if len(spec.frac_width) != channels:
            raise PassError(f"node {node.name!r}, key '{operand}_frac_width': {len(spec.frac_width)} "
                            f"frac widths for {channels} output channels; give one per channel")


def _frac_text(value: Any) -> str:
    if isinstance(value, list):  # per channel: the range, not dozens of numbers
        return f"{min(value)}..{max(value)} per channel" if min(value) != max(value) else f"{value[0]} per channel"
    return str(value)


def _describe(specs: dict) -> str:
    parts = []
    for operand, spec in specs.items():
        if spec is not None:
            record = spec.precision()
            extra = "".join(f" {k}={_frac_text(v) if k == 'frac_width' else v}"
                            for k, v in record.items() if k not in ("type", "width"))
            parts.append(f"{operand}: {record['type']}{record['width']}{extra}")
    return "; ".join(parts)


def quantize_selection(graph: Graph, args: dict[str, Any]) -> Selection:
    """The pass config's `by`, `default` and entries, each entry checked against the graph."""
    selection = parse_selection("quantize", args, require_default=True, reserved=RESERVED)
    selection.check_keys([n.name for n in graph.compute_nodes()], (*QUANTIZABLE, *EXPLICIT_ONLY))
    return selection


def node_config(selection: Selection, name: str, kind: str) -> dict[str, Any] | None:
    """The config entry of a quantizable node; None for a node the pass does not look at."""
    if kind in EXPLICIT_ONLY:
        key = selection.key_for(name, kind)
        return None if key is None else selection.entries[key]
    return selection.entry_for(name, kind) if kind in QUANTIZABLE else None


def looks_at(kind: str) -> bool:
    """Whether the pass considers nodes of this kind at all."""
    return kind in QUANTIZABLE or kind in EXPLICIT_ONLY


def quantize_transform_pass(graph: Graph, args: dict[str, Any]) -> tuple[Graph, dict[str, Any]]:
    """Quantize the nodes selected by `by`/`default`/entries; returns a new graph and a summary."""
    selection = quantize_selection(graph, args)
    new = graph.copy()
    rows, totals, changed, swapped, rewritten = [], Counter(), Counter(), [], False
    for node in new.compute_nodes():
        meta = new.meta[node.name]
        config = node_config(selection, node.name, meta.kind)
        if not looks_at(meta.kind) or (meta.kind in EXPLICIT_ONLY and config is None):
            continue
        totals[meta.kind] += 1
        row = {"node": node.name, "op": meta.kind, "original_type": meta.target,
               "new_type": meta.target, "precision": "float32"}
        if not _is_left_alone(config):
            specs = parse_node_config(config, node=node.name, unsigned_data_in=meta.kind == "relu")
            _check_channels(new, node, specs)
            rewritten = rewritten or node.op != "call_module"  # a function call becomes a module call
            row["new_type"] = _replace_node(new, node, meta.kind, specs, config)
            swapped.append(node.name)
            row["precision"] = _describe(specs)
            changed[meta.kind] += 1
        rows.append(row)
    new.record_pass("quantize", args)
    # A quantized module computes the shapes of the one it replaces: the metadata of the swapped
    # nodes is re-read from their modules, and the code regenerated only if the graph changed.
    if rewritten:
        new.recompile()
    new.restamp(swapped)
    histogram = {kind: {"total": totals[kind], "quantized": changed[kind]} for kind in totals}
    return new, {"rows": rows, "histogram": histogram}
