"""Config of the redefine pass: both schemas parsed into one width request per node."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

from torch import fx, nn

from machop.errors import PassError, did_you_mean
from machop.graph.graph import Graph
from machop.passes.selection import Selection, parse_selection

PASS = "redefine"
PREFIX = f"[passes.{PASS}]"
LAYER_KINDS = ("linear", "conv2d")
NORM_KINDS = ("batch_norm1d", "batch_norm2d")
TYPE_KEYS = LAYER_KINDS + NORM_KINDS
FLAGS = ("inherit", "allow_output_change")
LAB_NAMES = ("output_only", "both", "input_only", "scale")
SIMPLE_KEYS = ("name", "channel_multiplier", "out_features", "out_channels")
LAB_KEYS = ("name", "channel_multiplier", "channel_multiplier_in", "channel_multiplier_out",
            "parent")
WIDTH_KEYS = {"linear": "out_features", "conv2d": "out_channels"}
# The classes whose constructor arguments we know; subclasses (e.g. quantized layers) are refused.
RESIZABLE = {"linear": nn.Linear, "conv2d": nn.Conv2d, "batch_norm1d": nn.BatchNorm1d,
             "batch_norm2d": nn.BatchNorm2d}


@dataclass(frozen=True)
class Entry:
    """One config entry as it applies to one node."""

    key: str
    config: dict[str, Any]
    explicit: bool  # named by `by = "name"`, not swept in by type, regex or default

    @property
    def where(self) -> str:
        """The entry's config path, for messages."""
        return f"[passes.{PASS}.{self.key}.config]"


@dataclass(frozen=True)
class WidthRequest:
    """What the config asks of one node: new widths, or None where they follow the graph."""

    node: str
    where: str
    new_out: int | None = None
    new_in: int | None = None  # lab schema: the stated input width, checked against the producer
    parent: str | None = None  # lab schema: the input follows this node's output
    how_in: str = ""  # how new_in was stated, for messages
    absolute: bool = False


@dataclass(frozen=True)
class RedefineConfig:
    """A parsed redefine config."""

    lab: bool
    inherit: bool
    allow_output_change: bool
    requests: dict[str, WidthRequest]


def unwrap_mase_config(args: Any) -> Any:
    """MASE's lab calls the pass with pass_args={"config": {...}}; accept that wrapper too."""
    if not isinstance(args, dict) or not isinstance(args.get("config"), dict):
        return args
    return {**args["config"], **{k: v for k, v in args.items() if k != "config"}}


def read_flag(args: dict[str, Any], name: str) -> bool:
    """A top-level true/false switch."""
    value = args.get(name, False)
    if not isinstance(value, bool):
        raise PassError(f"{PREFIX} {name} = {value!r} must be true or false")
    return value


def config_name(config: dict[str, Any]) -> Any:
    """The entry's `name`, with MASE's "NA" read as None."""
    name = config.get("name")
    return None if name == "NA" else name


def uses_lab_schema(selection: Selection) -> bool:
    """MASE's lab schema is in use when any entry sets a name (output_only, both, ...)."""
    configs = [*selection.entries.values(), *([selection.default] if selection.default else [])]
    return any(config_name(config) is not None for config in configs)


def widths_of(module: nn.Module) -> tuple[int, int]:
    """(input width, output width) of a Linear, Conv2d or BatchNorm module."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, nn.Conv2d):
        return module.in_channels, module.out_channels
    return module.num_features, module.num_features


# A wider layer could not be allocated on any machine machop targets; refuse it up front.
MAX_WIDTH = 1 << 20


def positive_multiplier(value: Any, where: str, key: str) -> float:
    """A multiplier must be a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise PassError(f"{where} {key} = {value!r} must be a positive number (e.g. 2 or 0.5)")
    return float(value)


def scaled_width(old: int, multiplier: float, where: str, key: str) -> int:
    """old × multiplier rounded half up; it must stay in 1..MAX_WIDTH."""
    width = math.floor(old * multiplier + 0.5)
    if width < 1:
        raise PassError(f"{where} {key} = {multiplier:g} turns width {old} into {old * multiplier:g}, "
                        f"which rounds to 0; use a multiplier of at least {1 / old:g}")
    if width > MAX_WIDTH:
        raise PassError(f"{where} {key} = {multiplier:g} turns width {old} into {width}, above the "
                        f"largest width {MAX_WIDTH}")
    return width


def positive_width(value: Any, where: str, key: str) -> int:
    """An absolute width must be a positive integer."""
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral or value < 1 or value > MAX_WIDTH:
        raise PassError(f"{where} {key} = {value!r} must be a positive integer (at most {MAX_WIDTH})")
    return int(value)


def check_config_keys(entry: Entry, lab: bool) -> None:
    """Unknown keys, and keys of the other schema, are errors that say what is valid."""
    valid, other = (LAB_KEYS, SIMPLE_KEYS) if lab else (SIMPLE_KEYS, LAB_KEYS)
    for key in entry.config:
        if key in valid:
            continue
        if key in other and lab:
            raise PassError(f"{entry.where} {key!r} belongs to the simple schema, but this config "
                            "uses MASE's lab schema (an entry sets name = output_only/both/"
                            "input_only/scale); use channel_multiplier_out there, or drop the names")
        if key in other:
            raise PassError(f"{entry.where} {key!r} belongs to MASE's lab schema: add name = "
                            "\"input_only\" or \"both\" (and state every width), or give only output "
                            "widths (channel_multiplier, out_features, out_channels)")
        raise PassError(f"{entry.where} unknown key {key!r}{did_you_mean(key, valid)} "
                        f"(valid: {', '.join(valid)})")


def resizable_module(graph: Graph, node: fx.Node, kind: str, where: str) -> nn.Module:
    """The node's module when redefine knows how to rebuild it, else a PassError."""
    module = graph.submodule(node) if node.op == "call_module" else None
    if module is None:
        raise PassError(f"{where} node {node.name!r} is a functional {kind} call; redefine resizes "
                        "nn.Linear/nn.Conv2d/nn.BatchNorm modules")
    if type(module) is not RESIZABLE[kind]:
        raise PassError(f"{where} node {node.name!r} is a {type(module).__name__}, not a plain "
                        f"{RESIZABLE[kind].__name__}; run redefine before quantize")
    return module


def simple_request(node: str, kind: str, module: nn.Module, entry: Entry) -> WidthRequest:
    """Simple schema: one output width (multiplier or absolute); inputs follow the graph."""
    given = [k for k in ("channel_multiplier", "out_features", "out_channels") if k in entry.config]
    if not given:
        raise PassError(f"{entry.where} missing key: give channel_multiplier or "
                        f"{WIDTH_KEYS[kind]} for {kind} node {node!r}")
    if len(given) > 1:
        raise PassError(f"{entry.where} {given[0]} and {given[1]} both set the width of {node!r}; "
                        "keep one")
    key, value = given[0], entry.config[given[0]]
    old = widths_of(module)[1]
    if key == "channel_multiplier":
        width = scaled_width(old, positive_multiplier(value, entry.where, key), entry.where, key)
        return WidthRequest(node, entry.where, new_out=width)
    if key != WIDTH_KEYS[kind]:
        raise PassError(f"{entry.where} {key} does not apply to {kind} node {node!r}; "
                        f"use {WIDTH_KEYS[kind]}")
    return WidthRequest(node, entry.where, new_out=positive_width(value, entry.where, key),
                        absolute=True)


def lab_multiplier(entry: Entry, side: str) -> tuple[str, float] | None:
    """(key, value) of the multiplier for one side ("in" or "out"), if the entry gives one."""
    for key in (f"channel_multiplier_{side}", "channel_multiplier"):
        if key in entry.config:
            return key, positive_multiplier(entry.config[key], entry.where, key)
    return None


def check_lab_sides(entry: Entry, name: str) -> None:
    """Keys that would have no effect under this name are errors, not silent no-ops."""
    config = entry.config
    useless = {"output_only": ("channel_multiplier_in", "parent"),
               "input_only": ("channel_multiplier_out",),
               "scale": ("channel_multiplier_in", "channel_multiplier_out"), "both": ()}[name]
    for key in useless:
        if key in config:
            raise PassError(f"{entry.where} {key} has no effect with name = {name!r}")
    if "channel_multiplier_in" in config and "parent" in config:
        raise PassError(f"{entry.where} channel_multiplier_in and parent both set the input width; "
                        "keep one")


def lab_output(node: str, old_out: int, entry: Entry, name: str) -> int:
    """The output width stated by a lab entry."""
    if name == "input_only":
        return old_out
    found = lab_multiplier(entry, "out")
    if found is None:
        raise PassError(f"{entry.where} missing key: name = {name!r} needs channel_multiplier "
                        f"(or channel_multiplier_out) for {node!r}")
    return scaled_width(old_out, found[1], entry.where, found[0])


def lab_input(node: str, old_in: int, entry: Entry, name: str) -> tuple[int | None, str]:
    """The input width stated by a lab entry (None: follows `parent`) and how it was stated."""
    if name == "output_only":
        return old_in, f"unchanged by name = {name!r}"
    if "parent" in entry.config:
        return None, ""
    found = lab_multiplier(entry, "in")
    if found is None:
        needs = "parent or channel_multiplier" if name == "scale" else \
            "channel_multiplier (or channel_multiplier_in, or parent)"
        raise PassError(f"{entry.where} missing key: name = {name!r} needs {needs} for {node!r}")
    width = scaled_width(old_in, found[1], entry.where, found[0])
    return width, f"{old_in} × {found[1]:g} from name = {name!r}"


def lab_request(graph: Graph, node: str, module: nn.Module, entry: Entry) -> WidthRequest:
    """MASE's lab schema: the entry states the input and output multipliers itself."""
    name = config_name(entry.config)
    check_lab_sides(entry, name)
    parent = entry.config.get("parent")
    names = [n.name for n in graph.nodes]
    if parent is not None and parent not in names:
        raise PassError(f"{entry.where} parent = {parent!r} is not a node of the model"
                        f"{did_you_mean(parent, names)}")
    old_in, old_out = widths_of(module)
    new_in, how_in = lab_input(node, old_in, entry, name)
    new_out = new_in if name == "scale" else lab_output(node, old_out, entry, name)
    return WidthRequest(node, entry.where, new_out=new_out, new_in=new_in, parent=parent,
                        how_in=how_in)


def applicable_kinds(config: dict[str, Any], lab: bool) -> tuple[str, ...]:
    """Node kinds an entry can apply to: BatchNorm for the lab's "scale", else Linear/Conv2d."""
    return NORM_KINDS if lab and config_name(config) == "scale" else LAYER_KINDS


def check_lab_name(entry: Entry) -> None:
    """A lab entry's name must be one of MASE's (or "scale")."""
    name = config_name(entry.config)
    if name is None and "name" not in entry.config:
        raise PassError(f"{entry.where} missing key 'name': this config uses MASE's lab schema "
                        "(another entry sets a name), where every entry needs name = output_only, "
                        "both, input_only, scale, or \"NA\" to leave the node alone")
    if name is not None and name not in LAB_NAMES:
        raise PassError(f"{entry.where} name = {name!r} is invalid{did_you_mean(name, LAB_NAMES)} "
                        f"(valid: {', '.join(LAB_NAMES)}, or \"NA\")")


def node_request(graph: Graph, node: fx.Node, entry: Entry, lab: bool) -> WidthRequest | None:
    """The width request of one node under its entry (None: the entry leaves it alone)."""
    check_config_keys(entry, lab)
    if lab:
        check_lab_name(entry)
    if "name" in entry.config and config_name(entry.config) is None:
        return None
    kind = graph.meta[node.name].kind
    wanted = applicable_kinds(entry.config, lab)
    if kind not in wanted:
        if entry.explicit:
            raise PassError(f"{entry.where} node {node.name!r} is a {kind}; this entry applies to "
                            f"{' and '.join(wanted)} nodes")
        return None
    module = resizable_module(graph, node, kind, entry.where)
    if lab:
        return lab_request(graph, node.name, module, entry)
    return simple_request(node.name, kind, module, entry)


def output_layers(graph: Graph) -> set[str]:
    """Linear/Conv2d nodes whose output reaches the model output without another such layer."""
    found: set[str] = set()
    seen: set[str] = set()
    stack = [node for node in graph.nodes if node.op == "output"]
    while stack:
        for parent in stack.pop().all_input_nodes:
            if parent.name in seen:
                continue
            seen.add(parent.name)
            if graph.meta[parent.name].kind in LAYER_KINDS:
                found.add(parent.name)
            else:
                stack.append(parent)
    return found


def guard_output_layer(request: WidthRequest, entry: Entry, kind: str, old_out: int,
                       allow: bool) -> WidthRequest:
    """The classifier keeps its width unless named with an absolute width or allowed."""
    if allow or request.new_out == old_out or (entry.explicit and request.absolute):
        return request
    if not entry.explicit:
        return replace(request, new_out=old_out)
    fix = "set allow_output_change = true" if config_name(entry.config) is not None else \
        f"name an absolute width ({WIDTH_KEYS[kind]} = N) or set allow_output_change = true"
    raise PassError(f"{entry.where} would change the output width of {request.node!r} from "
                    f"{old_out} to {request.new_out}, but it produces the model's output (the "
                    f"{old_out} classes the loss expects); {fix}")


def matching_entry(selection: Selection, name: str, kind: str) -> Entry | None:
    """The entry that applies to a node: its own (first matching regex), else the default."""
    key = selection.key_for(name, kind)
    if key is not None:
        return Entry(key, selection.entries[key], explicit=selection.by == "name")
    if selection.default is not None:
        return Entry("default", selection.default, explicit=False)
    return None


def check_entry_keys(selection: Selection, graph: Graph) -> None:
    """Every entry must name a node, a resizable type, or be a regex matching such a node."""
    nodes = graph.compute_nodes()
    if selection.by == "name":
        selection.check_keys([n.name for n in nodes], TYPE_KEYS)
    for key in selection.entries:
        if selection.by == "type" and key not in TYPE_KEYS:
            raise PassError(f"{PREFIX} type {key!r} cannot be redefined{did_you_mean(key, TYPE_KEYS)} "
                            f"(valid: {', '.join(TYPE_KEYS)})")
        if selection.by == "regex_name":
            check_regex(key, [n.name for n in nodes if graph.meta[n.name].kind in TYPE_KEYS])


def check_regex(pattern: str, names: list[str]) -> None:
    """A regex key must compile and match at least one resizable node."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise PassError(f"{PREFIX} regex {pattern!r} is invalid: {exc}") from None
    if not any(compiled.fullmatch(name) for name in names):
        raise PassError(f"{PREFIX} regex {pattern!r} matches no Linear/Conv2d/BatchNorm node "
                        f"(those are: {', '.join(names)})")


def parse_redefine_config(graph: Graph, args: dict[str, Any]) -> RedefineConfig:
    """Validate a redefine config against the graph and turn it into per-node width requests."""
    args = unwrap_mase_config(args)
    selection = parse_selection(PASS, args, require_default=False, reserved=FLAGS)
    inherit, allow = read_flag(args, "inherit"), read_flag(args, "allow_output_change")
    check_entry_keys(selection, graph)
    lab = uses_lab_schema(selection)
    outputs = output_layers(graph)
    requests: dict[str, WidthRequest] = {}
    for node in graph.compute_nodes():
        entry = matching_entry(selection, node.name, graph.meta[node.name].kind)
        request = node_request(graph, node, entry, lab) if entry is not None else None
        if request is None:
            continue
        if node.name in outputs:
            old_out = widths_of(graph.submodule(node))[1]
            kind = graph.meta[node.name].kind
            request = guard_output_layer(request, entry, kind, old_out, allow)
        requests[node.name] = request
    return RedefineConfig(lab=lab, inherit=inherit, allow_output_change=allow, requests=requests)
