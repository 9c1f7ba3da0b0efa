"""MASE's `graph/quantize/mixed_precision_ptq` space: quantizer choices per node or per op type.

```toml
[search.search_space]
name = "graph/quantize/mixed_precision_ptq"
setup.by = "name"                  # "name" (default) | "type" | "regex_name"
setup.share_by_type = false        # by = "type" only: one parameter per op type and key

[search.search_space.seed.default.config]
name = ["NA"]                      # nodes without a seed of their own stay in float

[search.search_space.seed.seq_blocks_2.config]
name = ["integer"]
data_in_width = [4, 8]
data_in_frac_width = ["NA"]        # NA: width // 2
weight_width = [2, 4, 8]
"bias_width+bias_frac_width" = [[8, 4], [16, 8]]   # tied: one parameter, choices "8,4" and "16,8"
weight_frac_width = ["auto"]       # calibrated on data (see [passes.quantize.calibration])

[search.search_space.calibration]  # optional: how "auto" frac widths are calibrated
method = "mse"
granularity = "channel"
```

Every quantizable node (op kinds in `passes.quantize.QUANTIZABLE`) takes the seed matching it
(by type: its op kind; by name: its node name; by regex_name: the first pattern that
re.fullmatch-es its name) else `default` (no default: the node stays in float). A key with more
than one choice is a categorical parameter `"<node>/<key>"` (`"<type>/<key>"` with
`share_by_type`); a single choice is a fixed value. A tied key joins fields of one operand with "+" and lists
one value per field in each choice, so (width, frac) pairs are searched as one parameter whose
categorical choices are labels such as "8,4". Keys of operands a node does not have
(weight/bias keys on a ReLU or add, bias keys on a Linear without bias) are fixed to their first
choice: they could not change the candidate. Seeds for the other `by` modes (a node name under
by = "type", an op type under by = "name") are accepted and unused, as in MASE's example
configs. Every choice is checked against the arithmetic before the first trial, so every sample
builds.

`build` runs quantize_transform_pass with a per-node (`by = "name"`) config, so `by = "type"`
really quantizes every node of that type.

A frac width choice "auto" is calibrated (machop.passes.calibrate): the statistics of the
operands that may be "auto" are collected once, on the float base model at the first build, and
every candidate's frac widths are chosen from them (remembered per node, operand and width); the
candidate records its choices in `Candidate.derived`. A base whose weights change (a trained base
loaded in place) is observed again; inside a composite space after a redefine space each
candidate's resized graph is observed anew.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from machop.graph.graph import Graph
from machop.passes.calibrate import (
    Calibration,
    calibration_settings,
    collect_statistics,
    needs_calibration,
    resolve_config,
)
from machop.passes.quantize import QuantizedForms, quantize_transform_pass
from machop.passes.registry import PassData
from machop.quant.arithmetic import AUTO
from machop.search.space import Candidate, SearchSpace
from machop.search.spaces.common import (
    ROOT,
    TIE,
    check_keys,
    check_sample,
    read_bool,
    read_option,
    read_seeds,
    read_space_name,
    require_table,
    search_error,
    tie_label,
)
from machop.search.spaces.quantize_seeds import (
    QuantNode,
    Seed,
    check_seed_key,
    expand_tied,
    key_operand,
    quantizable_nodes,
    seed_key_for,
    validate_seeds,
)

NAMES = ("graph/quantize/mixed_precision_ptq",)
SPACE_KEYS = ("name", "setup", "seed", "calibration")
SETUP_KEYS = ("by", "share_by_type")
BY = ("name", "type", "regex_name")


@dataclass(frozen=True)
class KeyChoice:
    """One config key of one node: a fixed value, or the parameter that picks it.

    A tied key ("a+b") takes tuples; its parameter's categorical choices are their labels ("8,4").
    """

    key: str
    fixed: Any
    param: str | None
    options: tuple[Any, ...] = ()

    def labels(self) -> list[Any]:
        """The parameter's categorical choices."""
        return [tie_label(o) if TIE in self.key else o for o in self.options]

    def value(self, sample: dict[str, Any]) -> Any:
        """This key's value (a tuple for a tied key) in `sample`."""
        if self.param is None:
            return self.fixed
        if TIE in self.key:
            return self.options[self.labels().index(sample[self.param])]
        return sample[self.param]


@dataclass(frozen=True)
class NodePlan:
    """How one node's quantize config is made from a sample."""

    node: str
    keys: tuple[KeyChoice, ...]

    def config(self, sample: dict[str, Any]) -> dict[str, Any]:
        """This node's quantize config for `sample`."""
        return expand_tied({c.key: c.value(sample) for c in self.keys})

    def may_quantize(self) -> bool:
        """Whether some sample quantizes this node (its name is searched or not None)."""
        return any(c.key == "name" and (c.param or c.fixed is not None) for c in self.keys)

    def auto_operands(self) -> set[str]:
        """The operands whose frac_width some sample sets to "auto"."""
        operands = set()
        for choice in self.keys:
            for position, field in enumerate(choice.key.split(TIE)):
                if not field.endswith("_frac_width"):
                    continue
                values = [o[position] if TIE in choice.key else o for o in choice.options]
                if AUTO in values:
                    operands.add(field.removesuffix("_frac_width"))
        return operands


def plan_node(node: QuantNode, seed: Seed, prefix: str, operands: frozenset[str]) -> NodePlan:
    """Parameters for the keys with several choices that can change the node; fixed values else."""
    keys = []
    for key, choices in seed.items():
        operand = key_operand(key)
        searched = len(choices) > 1 and (operand is None or operand in operands)
        keys.append(KeyChoice(key, choices[0], f"{prefix}/{key}" if searched else None, tuple(choices)))
    return NodePlan(node.name, tuple(keys))


def operands_by_kind(nodes: list[QuantNode]) -> dict[str, frozenset[str]]:
    """Union of the operands of every node of each op type (for shared parameters)."""
    union: dict[str, frozenset[str]] = {}
    for node in nodes:
        union[node.kind] = union.get(node.kind, frozenset()) | node.operands
    return union


class MixedPrecisionPTQ(SearchSpace):
    """Per-node (or per-type) quantizer choices; a sample builds a quantized graph."""

    registered_names: ClassVar[tuple[str, ...]] = NAMES
    kind: ClassVar[str] = "quantize"
    composite_order: ClassVar[int | None] = 1

    def __init__(self, config: dict[str, Any], base: Graph, *, where: str = ROOT) -> None:
        table = require_table(config, where)
        check_keys(table, SPACE_KEYS, where)
        self.where = where
        self.name = read_space_name(table, NAMES, where)
        self.by, self.share_by_type = self._read_setup(table.get("setup", {}))
        seeds = read_seeds(table, where, tie=True)
        nodes = quantizable_nodes(base)
        for key in seeds:
            check_seed_key(key, self.by, nodes, base, where)
        assigned = {n.name: seed_key_for(n, self.by, seeds) for n in nodes}
        validate_seeds(seeds, nodes, assigned, where)
        self.plans = self._plan(nodes, seeds, assigned)
        self._choices = self._collect_choices(seeds, assigned)
        self.calibration = calibration_settings(table.get("calibration"), f"{where}.calibration",
                                                search_error)
        self.watched = {plan.node: plan.auto_operands() for plan in self.plans if plan.auto_operands()}
        self._data: PassData | None = None
        self._statistics: tuple[tuple, Calibration] | None = None
        self._forms = QuantizedForms(base)  # quantized modules of the base, reused across candidates
        if not any(plan.may_quantize() for plan in self.plans):
            raise search_error(f"{where} quantizes no node: every quantizable node takes a seed "
                               f"with name = \"NA\" (by = {self.by!r}; a seed named after an op "
                               "type applies only with by = \"type\")")

    def _read_setup(self, setup: Any) -> tuple[str, bool]:
        where = f"{self.where}.setup"
        setup = require_table(setup, where)
        check_keys(setup, SETUP_KEYS, where)
        by = read_option(setup, "by", BY, where)
        share = read_bool(setup, "share_by_type", where)
        if share and by != "type":
            raise search_error(f"{where}.share_by_type = true needs by = \"type\" (got by = {by!r})")
        return by, share

    def _prefix(self, node: QuantNode) -> str:
        return node.kind if self.share_by_type else node.name

    def _plan(self, nodes: list[QuantNode], seeds: dict[str, Seed],
              assigned: dict[str, str | None]) -> list[NodePlan]:
        shared = operands_by_kind(nodes)
        return [plan_node(n, seeds[assigned[n.name]], self._prefix(n),
                          shared[n.kind] if self.share_by_type else n.operands)
                for n in nodes if assigned[n.name] is not None]

    def _collect_choices(self, seeds: dict[str, Seed],
                         assigned: dict[str, str | None]) -> dict[str, list[Any]]:
        # Under share_by_type every node of a type takes the same seed, so the lists agree.
        choices: dict[str, list[Any]] = {}
        for plan in self.plans:
            for choice in plan.keys:
                if choice.param is not None:
                    choices.setdefault(choice.param, choice.labels())
        return choices

    def choices(self) -> dict[str, list[Any]]:
        """Parameter name -> its choices, in graph order then seed-key order."""
        return {param: list(values) for param, values in self._choices.items()}

    def quantize_config(self, sample: dict[str, Any]) -> dict[str, Any]:
        """The quantize pass config (by name, default left alone) for one sample."""
        check_sample(sample, self._choices, self.name)
        config: dict[str, Any] = {"by": "name", "default": {"config": {"name": None}}}
        for plan in self.plans:
            node_config = plan.config(sample)
            if node_config.get("name") is not None:
                config[plan.node] = {"config": node_config}
        return config

    def use_data(self, data: PassData) -> None:
        """Keep the data "auto" frac widths are calibrated on, checked against the calibration table."""
        if self.watched:
            self.calibration.check_data(data, search_error)
        self._data = data

    def statistics(self, base: Graph) -> Calibration:
        """The calibration statistics of `base`, collected on first use and while its weights stay."""
        if self._data is None:
            raise search_error(f"{self.where}: frac_width = \"{AUTO}\" is calibrated on data, and the "
                               "space was given none (SearchSetup gives it the run's dataset; in "
                               "Python, call space.use_data(PassData(dataset)) first)")
        key = (id(base.module), tuple((p.data_ptr(), p._version) for p in base.module.parameters()))
        if self._statistics is None or self._statistics[0] != key:
            self._statistics = (key, collect_statistics(base, self.watched, self.calibration, self._data))
        return self._statistics[1]

    def build(self, sample: dict[str, Any], base: Graph) -> Candidate:
        """The quantized candidate for `sample`; `base` is untouched.

        Built from the space's own base, the candidate borrows its tensors (Graph.derive): training
        it needs `candidate.graph.own()` first, which the basic_train runner does.
        """
        config, derived = self.quantize_config(sample), {}
        if needs_calibration(config):
            config, derived = resolve_config(base, config, self.statistics(base))
        graph, _ = quantize_transform_pass(base, config, reuse=self._forms)
        return Candidate(graph=graph, passes=[("quantize", config)], derived=derived)
