"""Seeds of the mixed-precision space: which seed a node takes, and up-front checks of its choices."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice, product
from typing import Any

from torch import fx

from machop.errors import PassError, did_you_mean
from machop.graph.graph import Graph
from machop.graph.kinds import WEIGHTED_KINDS
from machop.passes.quantize import QUANTIZABLE
from machop.passes.selection import matching_key
from machop.quant.arithmetic import OPERANDS, parse_node_config
from machop.search.spaces.common import TIE, search_error, tied_fields

DEFAULT = "default"
# Combinations of one operand's fields checked per seed; real seeds have a few dozen.
MAX_CHECKED = 4096

Seed = dict[str, list[Any]]


@dataclass(frozen=True)
class QuantNode:
    """A quantizable node of the base graph and the operands it really has."""

    name: str
    kind: str
    operands: frozenset[str]


def node_operands(node: fx.Node, graph: Graph) -> frozenset[str]:
    """Operands whose keys can change this node (no weight on a ReLU, no bias on bias=False)."""
    meta = graph.meta[node.name]
    if meta.kind not in WEIGHTED_KINDS:
        return frozenset({"data_in", "data_out"})
    if node.op == "call_module" and "bias" not in meta.param_shapes:
        return frozenset({"data_in", "weight", "data_out"})
    return frozenset(OPERANDS)


def quantizable_nodes(graph: Graph) -> list[QuantNode]:
    """The base graph's quantizable nodes in execution order."""
    return [QuantNode(n.name, graph.meta[n.name].kind, node_operands(n, graph))
            for n in graph.compute_nodes() if graph.meta[n.name].kind in QUANTIZABLE]


def key_operand(key: str) -> str | None:
    """The operand a config key belongs to (None for name, bypass, ...)."""
    return next((op for op in OPERANDS if key.startswith(f"{op}_")), None)


def compile_regex(pattern: str, where: str) -> re.Pattern:
    """A regex_name seed key must compile."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise search_error(f"{where}.seed.{pattern} is not a valid regular expression: {exc}") from None


def check_seed_key(key: str, by: str, nodes: list[QuantNode], graph: Graph, where: str) -> None:
    """A seed must name a quantizable node or op type of the model (or match one, by regex)."""
    names, kinds = [n.name for n in nodes], sorted({n.kind for n in nodes})
    # MASE's example configs carry seeds for both `by` modes; the unused ones are accepted.
    if key == DEFAULT or key in names or key in kinds:
        return
    if by == "regex_name" and any(compile_regex(key, where).fullmatch(n) for n in names):
        return
    if key in graph.meta and graph.meta[key].op.startswith("call_"):
        raise search_error(f"{where}.seed.{key}: node {key!r} is a {graph.meta[key].kind}, which "
                           f"cannot be quantized (quantizable op types: {', '.join(QUANTIZABLE)})")
    what = "matches no quantizable node and is" if by == "regex_name" else "is"
    raise search_error(f"{where}.seed.{key} {what} not a quantizable node or op type of the "
                       f"model{did_you_mean(key, names + kinds)} (op types: {', '.join(kinds)}; "
                       f"nodes: {', '.join(names)})")


def seed_key_for(node: QuantNode, by: str, seeds: dict[str, Seed]) -> str | None:
    """The seed a node takes: its own (by type, name or first matching regex), else default."""
    own = matching_key(by, [key for key in seeds if key != DEFAULT], node.name, node.kind)
    if own is not None:
        return own
    return DEFAULT if DEFAULT in seeds else None


def expand_tied(config: dict[str, Any]) -> dict[str, Any]:
    """A node config with every tied key ("a+b": (1, 2)) spread into its fields (a = 1, b = 2)."""
    expanded: dict[str, Any] = {}
    for key, value in config.items():
        if TIE in key:
            expanded.update(zip(tied_fields(key), value))
        else:
            expanded[key] = value
    return expanded


def check_tied_keys(key: str, seed: Seed, where: str) -> None:
    """Tied fields belong to one operand, and no field is set by two keys of a seed."""
    owner: dict[str, str] = {}
    for field in seed:
        parts = tied_fields(field)
        operands = {key_operand(part) for part in parts}
        if len(parts) > 1 and (len(operands) != 1 or None in operands):
            raise search_error(f"{where}.seed.{key}.config.{field}: tied fields must all belong to one "
                               "operand (data_in_*, weight_*, bias_* or data_out_*), e.g. "
                               f"\"weight_width{TIE}weight_frac_width\"")
        for part in parts:
            if part in owner:
                raise search_error(f"{where}.seed.{key}.config: {part!r} is set by both "
                                   f"{owner[part]!r} and {field!r}; give it once")
            owner[part] = field


def base_values(seed: Seed) -> dict[str, Any]:
    """Each key at its first choice, except bypass at False where that is a choice."""
    values = {key: choices[0] for key, choices in seed.items()}
    if any(choice is False for choice in seed.get("bypass", [])):
        values["bypass"] = False
    return values


def covering_configs(seed: Seed) -> Iterator[dict[str, Any]]:
    """Node configs that try every name with every combination of each operand's choices.

    parse_node_config checks operands independently, so these cover every sample of the seed.
    """
    base = base_values(seed)
    groups: dict[str, list[str]] = {}
    for key, choices in seed.items():
        if len(choices) > 1 and key != "name":
            groups.setdefault(key_operand(key) or key, []).append(key)
    for name in seed.get("name", [base.get("name")]):
        if name is None and "name" in seed:
            continue
        named = {**base, "name": name} if "name" in seed else base
        yield named
        for keys in groups.values():
            for combo in islice(product(*(seed[k] for k in keys)), MAX_CHECKED):
                yield {**named, **dict(zip(keys, combo))}


def stand_in_frac(operand: str, width: int, is_signed: bool) -> int:
    """A frac width standing in for a calibrated one while seeds are checked, before any data."""
    return width // 2


def validate_seed(key: str, seed: Seed, node: str, unsigned: bool, where: str) -> None:
    """Every choice of a seed must make a valid node config, before the first trial."""
    for config in covering_configs(seed):
        try:
            parse_node_config(expand_tied(config), node=node, unsigned_data_in=unsigned,
                              frac_for=stand_in_frac)
        except PassError as exc:
            raise search_error(f"{where}.seed.{key}.config: {exc}") from None


def seed_users(key: str, nodes: list[QuantNode], assigned: dict[str, str | None]) -> list[QuantNode]:
    """The nodes that take seed `key`; for an unused seed, the nodes it names by name or type."""
    users = [n for n in nodes if assigned[n.name] == key]
    return users or [n for n in nodes if key in (n.name, n.kind)][:1]


def validate_seeds(seeds: dict[str, Seed], nodes: list[QuantNode], assigned: dict[str, str | None],
                   where: str) -> None:
    """Validate each seed once per signedness of the nodes that take it."""
    for key, seed in seeds.items():
        check_tied_keys(key, seed, where)
        users = seed_users(key, nodes, assigned) or [QuantNode(key, "linear", frozenset(OPERANDS))]
        checked: set[bool] = set()
        for user in users:
            unsigned = user.kind == "relu"
            if unsigned not in checked:
                checked.add(unsigned)
                validate_seed(key, seed, user.name, unsigned, where)
