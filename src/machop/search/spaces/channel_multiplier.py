"""Channel-multiplier spaces: `graph/redefine/channel_multiplier` and MASE's lab variants.

```toml
[search.search_space]
name = "graph/redefine/channel_multiplier"  # or redefine/linear_channel_multiplier,
                                            #    redefine/conv2d_channel_multiplier
setup.by = "name"          # "name" (default) | "type" (seed keys: linear, conv2d)
setup.uniform = false      # true: one parameter `channel_multiplier` for every searched layer
setup.inherit = false      # passed to the redefine pass (Net2Net-style weight inheritance)

[search.search_space.seed.seq_blocks_2.config]
name = ["output_only"]     # optional, MASE's lab: output_only | both | input_only | "NA"
channel_multiplier = [1, 2, 3, 4]
[search.search_space.seed.seq_blocks_4.config]
name = ["both"]
channel_multiplier = [1, 2, 3, 4]
[search.search_space.seed.seq_blocks_6.config]
name = ["input_only"]      # follows seq_blocks_4: no parameter of its own
channel_multiplier = [1, 2, 3, 4]
```

Only layers whose OUTPUT width changes get a parameter `"<node>/channel_multiplier"` (a seed
without `name`, or with output_only / both); input widths follow their producer through the
redefine pass's propagation, so MASE's input_only entries (and "scale" on a BatchNorm) need no
parameter and no sample can pair mismatched widths. A `default` seed applies to every layer no
other seed names. The model's output layers keep their width: by type or default they are
skipped, and a by-name seed that would widen one is an error. `linear_`/`conv2d_` variants
search only that layer kind. Every choice is planned against the base graph before the first
trial (widths that round to 0, layers redefine cannot resize).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from machop.errors import PassError, did_you_mean
from machop.graph.graph import Graph
from machop.passes.redefine import redefine_transform_pass
from machop.passes.redefine_config import NORM_KINDS, output_layers, parse_redefine_config
from machop.passes.redefine_plan import plan_resizes
from machop.search.space import Candidate, SearchSpace
from machop.search.spaces.common import (
    ROOT,
    check_keys,
    check_sample,
    read_bool,
    read_option,
    read_seeds,
    read_space_name,
    require_table,
    search_error,
)

KINDS_BY_NAME = {
    "graph/redefine/channel_multiplier": ("linear", "conv2d"),
    "redefine/linear_channel_multiplier": ("linear",),
    "redefine/conv2d_channel_multiplier": ("conv2d",),
}
NAMES = tuple(KINDS_BY_NAME)
SPACE_KEYS = ("name", "setup", "seed")
SETUP_KEYS = ("by", "uniform", "inherit")
SEED_KEYS = ("channel_multiplier", "name")
BY = ("name", "type")
OUTPUT_NAMES = ("output_only", "both")
FOLLOW_NAMES = ("input_only", "scale")
DEFAULT = "default"
PARAM = "channel_multiplier"

Seed = dict[str, list[Any]]


@dataclass(frozen=True)
class Layer:
    """A searched layer: its node, the seed it came from and its multiplier choices."""

    node: str
    seed: str
    multipliers: list[float]


def seed_role(seed: Seed, where: str) -> str:
    """"search" (the output width changes), "follow" (input_only / scale) or "skip" ("NA")."""
    names = seed.get("name", [OUTPUT_NAMES[0]])
    for name in names:
        if name is not None and name not in OUTPUT_NAMES + FOLLOW_NAMES:
            valid = OUTPUT_NAMES + FOLLOW_NAMES
            raise search_error(f"{where}.name choice {name!r} is invalid{did_you_mean(name, valid)} "
                               f"(valid: {', '.join(valid)}, or \"NA\")")
    roles = {"skip" if n is None else "search" if n in OUTPUT_NAMES else "follow" for n in names}
    if len(roles) > 1:
        raise search_error(f"{where}.name mixes {names!r}: input widths always follow their "
                           "producer here, so give output_only/both (searched), input_only "
                           "(follows) or \"NA\" (left alone), not a mix")
    return roles.pop()


def positive_multipliers(seed: Seed, where: str) -> list[float]:
    """The seed's multiplier choices: each a positive finite number."""
    if PARAM not in seed:
        raise search_error(f"{where}.{PARAM} is missing; give the multipliers to search, "
                           "e.g. channel_multiplier = [1, 2, 3, 4]")
    for value in seed[PARAM]:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value <= 0:
            raise search_error(f"{where}.{PARAM} choice {value!r} must be a positive number "
                               "(e.g. 2 or 0.5)")
    return list(seed[PARAM])


class ChannelMultiplier(SearchSpace):
    """Per-layer (or uniform) channel multipliers; a sample builds a redefined graph."""

    registered_names: ClassVar[tuple[str, ...]] = NAMES
    kind: ClassVar[str] = "redefine"
    composite_order: ClassVar[int | None] = 0  # redefine before quantize: quantized layers cannot be resized

    def __init__(self, config: dict[str, Any], base: Graph, *, where: str = ROOT) -> None:
        table = require_table(config, where)
        check_keys(table, SPACE_KEYS, where)
        self.where = where
        self.name = read_space_name(table, NAMES, where)
        self.kinds = KINDS_BY_NAME[self.name]
        self.by, self.uniform, self.inherit = self._read_setup(table.get("setup", {}))
        seeds = read_seeds(table, where)
        for key, seed in seeds.items():
            check_keys(seed, SEED_KEYS, f"{where}.seed.{key}.config")
        self.layers = self._layers(seeds, base)
        if not self.layers:
            raise search_error(f"{where} searches no layer: every seed is input_only, \"NA\" or "
                               "names an output layer (whose width stays fixed)")
        self._choices = self._collect_choices()
        self._check_plans(base)

    def _read_setup(self, setup: Any) -> tuple[str, bool, bool]:
        where = f"{self.where}.setup"
        setup = require_table(setup, where)
        check_keys(setup, SETUP_KEYS, where)
        return (read_option(setup, "by", BY, where), read_bool(setup, "uniform", where),
                read_bool(setup, "inherit", where))

    def _layers(self, seeds: dict[str, Seed], base: Graph) -> list[Layer]:
        if self.by == "type":
            self._check_type_keys(seeds, base)
        named = self._named_layers(seeds, base) if self.by == "name" else []
        swept = self._swept_layers(seeds, base, taken=set(seeds))
        return sorted(named + swept, key=self._order(base))

    def _swept_layers(self, seeds: dict[str, Seed], base: Graph, taken: set[str]) -> list[Layer]:
        """Layers a type (or the default) seed reaches, output layers excepted."""
        outputs = output_layers(base)
        layers = []
        for node in base.compute_nodes():
            kind = base.meta[node.name].kind
            if kind not in self.kinds or node.name in taken or node.name in outputs:
                continue
            key = kind if self.by == "type" and kind in seeds else DEFAULT
            where = self._seed_where(key)
            if key in seeds and seed_role(seeds[key], where) == "search":
                layers.append(Layer(node.name, key, positive_multipliers(seeds[key], where)))
        return layers

    def _seed_where(self, key: str) -> str:
        return f"{self.where}.seed.{key}.config"

    @staticmethod
    def _order(base: Graph) -> Callable[[Layer], int]:
        position = {node.name: i for i, node in enumerate(base.nodes)}
        return lambda layer: position[layer.node]

    def _named_layers(self, seeds: dict[str, Seed], base: Graph) -> list[Layer]:
        outputs = output_layers(base)
        layers = []
        for key, seed in seeds.items():
            if key == DEFAULT:
                continue
            where = self._seed_where(key)
            kind = self._node_kind(key, base)
            role = seed_role(seed, where)
            allowed = self.kinds + NORM_KINDS if role == "follow" else self.kinds
            if role != "skip" and kind not in allowed:
                raise search_error(f"{self.where}.seed.{key}: node {key!r} is a {kind}; this "
                                   f"space resizes {', '.join(allowed)} nodes")
            if role == "search" and key in outputs:
                raise search_error(f"{self.where}.seed.{key}: node {key!r} produces the model's "
                                   "output, whose width (the classes) stays fixed; use name = "
                                   "[\"input_only\"] or drop this seed")
            if role == "search":
                layers.append(Layer(key, key, positive_multipliers(seed, where)))
        return layers

    def _node_kind(self, key: str, base: Graph) -> str:
        names = [n.name for n in base.compute_nodes()]
        if key not in names:
            layers = [n for n in names if base.meta[n].kind in self.kinds]
            raise search_error(f"{self.where}.seed.{key} is not a node of the model"
                               f"{did_you_mean(key, names)} ({' and '.join(self.kinds)} nodes: "
                               f"{', '.join(layers)})")
        return base.meta[key].kind

    def _check_type_keys(self, seeds: dict[str, Seed], base: Graph) -> None:
        present = [k for k in self.kinds if any(m.kind == k for m in base.meta.values())]
        for key in seeds:
            if key != DEFAULT and key not in present:
                raise search_error(f"{self.where}.seed.{key} is not a layer type of the model this "
                                   f"space resizes{did_you_mean(key, present)} (valid: "
                                   f"{', '.join(present + [DEFAULT])})")

    def _collect_choices(self) -> dict[str, list[Any]]:
        if not self.uniform:
            return {f"{layer.node}/{PARAM}": list(layer.multipliers) for layer in self.layers
                    if len(layer.multipliers) > 1}
        first = self.layers[0]
        for layer in self.layers[1:]:
            if layer.multipliers != first.multipliers:
                raise search_error(f"{self.where}.setup.uniform = true shares one multiplier, but "
                                   f"seed {first.seed!r} gives {first.multipliers!r} and seed "
                                   f"{layer.seed!r} gives {layer.multipliers!r}; give the same list")
        return {PARAM: list(first.multipliers)} if len(first.multipliers) > 1 else {}

    def _multiplier(self, layer: Layer, sample: dict[str, Any]) -> float:
        param = PARAM if self.uniform else f"{layer.node}/{PARAM}"
        return sample[param] if param in self._choices else layer.multipliers[0]

    def _config_of(self, multipliers: dict[str, float]) -> dict[str, Any]:
        config: dict[str, Any] = {"by": "name"}
        if self.inherit:
            config["inherit"] = True
        for node, multiplier in multipliers.items():
            config[node] = {"config": {PARAM: multiplier}}
        return config

    def _trial_configs(self) -> Iterator[tuple[Layer, float, dict[str, Any]]]:
        """(layer, multiplier, config) covering every choice: one layer varied, others first."""
        firsts = {layer.node: layer.multipliers[0] for layer in self.layers}
        for layer in self.layers[:1] if self.uniform else self.layers:
            for multiplier in layer.multipliers:
                varied = {node: multiplier for node in firsts} if self.uniform else \
                    {**firsts, layer.node: multiplier}
                yield layer, multiplier, self._config_of(varied)

    def _check_plans(self, base: Graph) -> None:
        """Plan (without building) every choice, so no trial meets a width that cannot be."""
        for layer, multiplier, config in self._trial_configs():
            try:
                plan_resizes(base, parse_redefine_config(base, config))
            except PassError as exc:
                raise search_error(f"{self._seed_where(layer.seed)}.{PARAM} choice {multiplier!r} "
                                   f"for node {layer.node!r}: {exc}") from None

    def choices(self) -> dict[str, list[Any]]:
        """Parameter name -> its multipliers, in graph order."""
        return {param: list(values) for param, values in self._choices.items()}

    def redefine_config(self, sample: dict[str, Any]) -> dict[str, Any]:
        """The redefine pass config (simple schema, by name) for one sample."""
        check_sample(sample, self._choices, self.name)
        return self._config_of({layer.node: self._multiplier(layer, sample) for layer in self.layers})

    def build(self, sample: dict[str, Any], base: Graph) -> Candidate:
        """The redefined candidate for `sample`; `base` is untouched."""
        config = self.redefine_config(sample)
        graph, _ = redefine_transform_pass(base, config)
        return Candidate(graph=graph, passes=[("redefine", config)])
