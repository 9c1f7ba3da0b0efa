"""quantize_transform_pass: swap linear/conv/relu/add/... nodes for fake-quantized versions.

Called again and again on one graph (a search space's base), the pass can reuse what it built for
a node and config before (QuantizedForms): the candidate then borrows the base's tensors
(Graph.derive) and costs module objects and metadata, not weights.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import chain
from typing import Any

from torch import fx, nn

from machop.errors import PassError
from machop.graph.graph import Graph, borrow_module
from machop.graph.kinds import WEIGHTED_KINDS
from machop.graph.metadata import NodeMeta, Stamp, module_stamp, stamped
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
# Module kinds whose quantized form is made from the float module (its tensors and mode copied).
FROM_FLOAT = {**QUANTIZED_MODULES, **QUANTIZED_NORMS}
ConfigKey = str | tuple  # what _config_key makes of a node config


def _is_left_alone(config: dict[str, Any] | None) -> bool:
    return config is None or config.get("name") is None or bool(config.get("bypass", False))


def _unique_module_name(graph: Graph, base: str) -> str:
    name, index = f"{base}_quant", 1
    while hasattr(graph.module, name):
        name, index = f"{base}_quant{index}", index + 1
    return name


def _call_new_module(graph: Graph, node: fx.Node, module: nn.Module) -> None:
    """Turn a function/method node into a call of `module` with the same operands."""
    name = _unique_module_name(graph, node.name)
    graph.module.add_submodule(name, module)
    node.op, node.target = "call_module", name


def _quantized_module(graph: Graph, node: fx.Node, kind: str, specs: dict, config: dict,
                      share: bool = False) -> nn.Module:
    """The quantized module that replaces (or, for a function call, is called by) one node; with
    `share`, one made from a float module holds its tensors wherever a copy would equal them."""
    if node.op == "call_module":
        old = graph.submodule(node)
        return FROM_FLOAT[kind].from_float(old, specs, config, share=share) if kind in FROM_FLOAT \
            else QuantReLU(specs, config)
    if kind in WEIGHTED_KINDS:
        return QuantFunctionalWeighted(kind, specs, config)
    if kind == "relu":
        return QuantReLU(specs, config)
    if kind in BINARY_FUNCTIONS and len(node.args) == 2 and not node.kwargs:
        return QuantBinaryOp(kind, specs, config)
    raise PassError(f"node {node.name!r} ({kind} with arguments {node.args!r}) cannot be "
                    "quantized; leave it alone with name = \"NA\"")


def _rewrite_call(graph: Graph, node: fx.Node, kind: str, module: nn.Module) -> None:
    """Make a function/method node call its quantized module."""
    if kind == "relu":
        node.args, node.kwargs = node.args[:1], {}  # drop inplace: the quantized input is new
    _call_new_module(graph, node, module)


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


def quantize_selection(graph: Graph, args: dict[str, Any], nodes: list[fx.Node] | None = None) -> Selection:
    """The pass config's `by`, `default` and entries, each entry checked against the graph (whose
    compute nodes are `nodes` when the caller has them already)."""
    selection = parse_selection("quantize", args, require_default=True, reserved=RESERVED)
    names = [n.name for n in (graph.compute_nodes() if nodes is None else nodes)]
    selection.check_keys(names, (*QUANTIZABLE, *EXPLICIT_ONLY))
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


@dataclass
class _Form:
    """One node's quantized form: its module, and what the summary and metadata say of it."""

    module: nn.Module
    precision: str
    follows_mode: bool  # made from_float: train/eval mode is the float module's
    stamp: Stamp | None = None  # what the node's metadata says of the module (reused forms)


def _state_of(graph: Graph) -> tuple:
    """What the forms built from `graph` depend on: its module, metadata and every tensor's version
    (read from the module tables directly: module.parameters() costs several times more)."""
    state: list[Any] = [id(graph.module), id(graph.meta)]
    append, stack = state.append, [graph.module]
    while stack:
        module = stack.pop()
        for tensor in chain(module._parameters.values(), module._buffers.values()):
            append(None if tensor is None else (id(tensor), tensor.data_ptr(), tensor._version))
        for child in module._modules.values():
            if child is not None:
                stack.append(child)
    return tuple(state)


class QuantizedForms:
    """Quantized forms of one graph's nodes, built once per node and config and reused by
    quantize_transform_pass(graph, args, reuse=forms); dropped when a tensor of the graph changes.

    The forms' modules hold the graph's own tensors (aliases), so keeping them costs no memory for
    weights. A graph quantized with them borrows its input's tensors (Graph.derive): evaluate it
    as is, and call its own() before training it or editing it in place.
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self._state: tuple = ()
        self._forms: dict[tuple[str, ConfigKey], _Form] = {}
        # (config key, unsigned data_in) -> the parsed specs and their summary text: a config
        # chosen for one node is often chosen for another, and parsing it costs as much as a
        # third of building a form. The specs are frozen and read only, so nodes share them.
        self.parsed: dict[tuple[ConfigKey, bool], tuple[dict, str]] = {}

    def forms_for(self, graph: Graph) -> dict[tuple[str, ConfigKey], _Form] | None:
        """The forms to use for `graph` (None: another graph); all dropped if its tensors changed."""
        if graph is not self.graph:
            return None
        state = _state_of(graph)
        if state != self._state:
            self._forms.clear()
            self._state = state
        return self._forms

    def __len__(self) -> int:
        return len(self._forms)


def _parse(config: dict[str, Any], node: fx.Node, kind: str,
           parsed: dict[tuple[ConfigKey, bool], tuple[dict, str]] | None, key: ConfigKey | None) -> tuple[dict, str]:
    """The operand specs of a node config and their summary text (from `parsed` when it has them)."""
    unsigned = kind == "relu"
    if parsed is not None and key is not None:
        known = parsed.get((key, unsigned))
        if known is not None:
            return known
    specs = parse_node_config(config, node=node.name, unsigned_data_in=unsigned)
    result = (specs, _describe(specs))
    if parsed is not None and key is not None:
        parsed[(key, unsigned)] = result
    return result


def _form(graph: Graph, node: fx.Node, kind: str, config: dict[str, Any], borrow: bool,
          parsed: dict[tuple[ConfigKey, bool], tuple[dict, str]] | None = None, key: ConfigKey | None = None) -> _Form:
    """Parse and check one node's config and build its quantized module from `graph`'s; a form
    to `borrow` (reuse) holds the graph's tensors and the stamp of the node's metadata."""
    specs, described = _parse(config, node, kind, parsed, key)
    _check_channels(graph, node, specs)
    module = _quantized_module(graph, node, kind, specs, config, share=borrow)
    follows_mode = node.op == "call_module" and kind in FROM_FLOAT
    stamp = module_stamp(graph.meta[node.name], module) if borrow else None
    return _Form(module, described, follows_mode, stamp)


_KEY_SCALARS = frozenset((str, int, float, bool, type(None)))


def _config_key(config: dict[str, Any]) -> ConfigKey:
    """A key equal for equal configs; 1, 1.0 and True are different widths, so types are part of it."""
    types = tuple(map(type, config.values()))
    if _KEY_SCALARS.issuperset(types):  # the usual case: a tuple, a third of the repr's cost
        return tuple(config), types, tuple(config.values())
    return repr(sorted(config.items()))  # lists (per-channel frac widths): their repr


def quantize_transform_pass(graph: Graph, args: dict[str, Any], *,
                            reuse: QuantizedForms | None = None) -> tuple[Graph, dict[str, Any]]:
    """Quantize the nodes selected by `by`/`default`/entries; returns a new graph and a summary.

    With `reuse` (forms of this same graph), modules built before for a node and config are reused
    and the new graph borrows the input's tensors (see QuantizedForms).
    """
    nodes = graph.compute_nodes()
    selection = quantize_selection(graph, args, nodes)
    forms = reuse.forms_for(graph) if reuse is not None else None
    rows: list[dict[str, Any]] = []
    totals: dict[str, int] = {}
    changed: dict[str, int] = {}
    swaps: list[tuple[fx.Node, str, _Form, Any]] = []  # node, kind, form, key of a reused form
    for node in nodes:
        meta = graph.meta[node.name]
        config = node_config(selection, node.name, meta.kind)
        if not looks_at(meta.kind) or (meta.kind in EXPLICIT_ONLY and config is None):
            continue
        totals[meta.kind] = totals.get(meta.kind, 0) + 1
        row = {"node": node.name, "op": meta.kind, "original_type": meta.target,
               "new_type": meta.target, "precision": "float32"}
        if not _is_left_alone(config):
            key = (node.name, _config_key(config)) if forms is not None else None
            form = forms.get(key) if key is not None else None
            if form is None:
                form = _form(graph, node, meta.kind, config, borrow=key is not None,
                             parsed=None if key is None else reuse.parsed, key=None if key is None else key[1])
                if key is not None:
                    forms[key] = form
            swaps.append((node, meta.kind, form, key))
            row["new_type"], row["precision"] = type(form.module).__name__, form.precision
            changed[meta.kind] = changed.get(meta.kind, 0) + 1
        rows.append(row)
    new = _install(graph, swaps, derived=forms is not None)
    new.record_pass("quantize", args)
    histogram = {kind: {"total": totals[kind], "quantized": changed.get(kind, 0)} for kind in totals}
    return new, {"rows": rows, "histogram": histogram}


def _install(graph: Graph, swaps: list[tuple[fx.Node, str, _Form, Any]], *, derived: bool) -> Graph:
    """A new graph with every swap made: a copy, or a derived graph over reused forms.

    A quantized module computes the shapes of the one it replaces: the metadata of the swapped
    nodes is re-read from their modules (or, for a reused form, from the stamp it read from its
    module when it was made), and the code regenerated only if the graph changed (a function
    call became a module call).
    """
    modules: dict[int, nn.Module] = {}  # id(form) -> the module this graph holds for it
    replace: dict[str, nn.Module] = {}
    rewritten: list[tuple[fx.Node, str, _Form]] = []
    for node, kind, form, _ in swaps:
        module = modules[id(form)] = borrow_module(form.module) if derived else form.module
        if node.op != "call_module":
            rewritten.append((node, kind, form))
            continue
        if derived and form.follows_mode:
            mode = graph.submodule(node).training  # as from_float would copy it now
            if module.training != mode:
                module.train(mode)
        replace[node.target] = module  # a module called at two nodes takes the later node's form
    # A reused form's metadata is its stamp, unless its module is also called at another swapped
    # node (then that node's form is what both call: they are restamped from the new graph).
    stamps: dict[str, NodeMeta] = {}
    if derived:
        targets = [node.target for node, _, _, _ in swaps if node.op == "call_module"]
        called = Counter(targets) if len(set(targets)) < len(targets) else dict.fromkeys(targets, 1)
        stamps = {node.name: stamped(graph.meta[node.name], form.stamp) for node, _, form, key in swaps
                  if key is not None and form.stamp is not None
                  and not (node.op == "call_module" and called[node.target] > 1)}
    new = graph.derive(replace, own_fx_graph=bool(rewritten), meta=stamps) if derived else graph.copy(replace)
    if rewritten:
        nodes = {node.name: node for node in new.nodes}
        for node, kind, form in rewritten:
            _rewrite_call(new, nodes[node.name], kind, modules[id(form)])
        new.recompile()
    new.restamp(node.name for node, _, _, _ in swaps if node.name not in stamps)
    return new
