"""The `composite` space: sub-spaces applied in order, plus training hyperparameters.

```toml
[search.search_space]
name = "composite"

[[search.search_space.spaces]]
name = "graph/redefine/channel_multiplier"
setup.uniform = true
seed.default.config.channel_multiplier = [1, 2]

[[search.search_space.spaces]]
name = "graph/quantize/mixed_precision_ptq"
setup = { by = "type", share_by_type = true }
seed.default.config.name = ["NA"]
seed.linear.config = { name = ["integer"], data_in_width = [4, 8], weight_width = [4, 8] }

[search.search_space.hyperparameters]
learning_rate = [1e-3, 1e-2]
batch_size = [256]             # a single choice is a fixed override
```

Parameter names: a sub-space's own names prefixed by its kind and a colon,
`"redefine:seq_blocks_2/channel_multiplier"`, `"quantize:linear/data_in_width"`; a second
sub-space of the same kind is `"quantize2:..."`, a third `"quantize3:..."`. Hyperparameters are
`"train/<key>"` and land in `Candidate.train_overrides` under `<key>` (the names of
`train.settings.TrainSettings`). Redefine sub-spaces must come before quantize ones: the
redefine pass cannot resize quantized layers. Every sub-space is validated against the base
graph; redefine keeps node names and op kinds, so a later quantize space's seeds still apply.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

from machop.config.schema import accepts_setting, setting_choices, setting_values
from machop.errors import did_you_mean
from machop.graph.graph import Graph
from machop.passes.registry import PassData
from machop.search.space import Candidate, SearchSpace
from machop.search.spaces.common import (
    ROOT,
    check_keys,
    check_sample,
    choice_list,
    require_table,
    search_error,
)

NAMES = ("composite",)
SPACE_KEYS = ("name", "spaces", "hyperparameters")
TRAIN = "train"


# Training settings a composite space may search; RunConfig's fields say what each accepts.
HYPERPARAMETERS: dict[str, tuple[Callable[[Any], bool], str]] = {
    key: (partial(accepts_setting, key), setting_values(key))
    for key in ("learning_rate", "batch_size", "max_epochs", "weight_decay", "optimizer")}


def read_hyperparameters(value: Any, where: str) -> dict[str, list[Any]]:
    """`hyperparameters.<key> = [choices]`, each choice checked against what training accepts."""
    table = require_table(value, where)
    check_keys(table, HYPERPARAMETERS, where)
    parsed = {}
    for key, raw in table.items():
        choices = choice_list(raw, f"{where}.{key}")
        for choice in choices:
            if not accepts_setting(key, choice):
                raise search_error(f"{where}.{key} choice {choice!r} must be {setting_values(key)}"
                                   f"{did_you_mean(choice, setting_choices(key))}")
        parsed[key] = choices
    return parsed


def sub_spaces() -> dict[str, type[SearchSpace]]:
    """The registered spaces a composite may contain, by name, in the order they apply."""
    from machop.search.spaces.registry import SPACES  # the registry imports this module

    usable = [(name, cls) for name, cls in SPACES.items() if cls.composite_order is not None]
    return dict(sorted(usable, key=lambda item: item[1].composite_order))


def sub_space(table: Any, base: Graph, where: str) -> SearchSpace:
    """One entry of `spaces`: a table of a space that can be a sub-space (redefine, quantize)."""
    table = require_table(table, where)
    valid = sub_spaces()
    name = table.get("name")
    if name is None:
        raise search_error(f"{where}.name is missing (valid: {', '.join(valid)})")
    if name in NAMES:
        raise search_error(f"{where}.name = {name!r}: a composite space cannot contain another; "
                           "list its sub-spaces directly")
    if name not in valid:
        raise search_error(f"{where}.name = {name!r} is not a search space"
                           f"{did_you_mean(name, valid)} (valid: {', '.join(valid)})")
    return valid[name](table, base, where=where)


def check_order(parts: list[SearchSpace], where: str) -> None:
    """Sub-spaces must be listed in their composite order: redefine ones before quantize ones."""
    for i, part in enumerate(parts):
        later = [j for j in range(i) if parts[j].composite_order > part.composite_order]
        if later:
            # A kind is a verb ("redefine", "quantize"): "quantized layers cannot be redefined".
            first = parts[later[0]].kind
            raise search_error(f"{where}.spaces[{i}] ({part.name}) comes after the {first} space "
                               f"spaces[{later[0]}]: {first}d layers cannot be {part.kind}d, so list "
                               f"{part.kind} spaces before {first} spaces")


def prefixes(parts: list[SearchSpace]) -> list[str]:
    """Kind of each sub-space, numbered from the second of a kind: redefine, quantize, quantize2."""
    seen: Counter[str] = Counter()
    names = []
    for part in parts:
        seen[part.kind] += 1
        names.append(part.kind if seen[part.kind] == 1 else f"{part.kind}{seen[part.kind]}")
    return names


class Composite(SearchSpace):
    """Sub-spaces applied in order to successive graphs, plus training hyperparameters."""

    registered_names: ClassVar[tuple[str, ...]] = NAMES
    kind: ClassVar[str] = "composite"

    def __init__(self, config: dict[str, Any], base: Graph, *, where: str = ROOT) -> None:
        table = require_table(config, where)
        check_keys(table, SPACE_KEYS, where)
        self.where, self.name = where, NAMES[0]
        spaces = table.get("spaces", [])
        if not isinstance(spaces, list):
            raise search_error(f"{where}.spaces must be a list of space tables "
                               f"([[{where}.spaces]]), got {spaces!r}")
        self.parts = [sub_space(t, base, f"{where}.spaces[{i}]") for i, t in enumerate(spaces)]
        check_order(self.parts, where)
        self.prefixes = prefixes(self.parts)
        self.hyperparameters = read_hyperparameters(table.get("hyperparameters", {}),
                                                    f"{where}.hyperparameters")
        if not self.parts and not self.hyperparameters:
            raise search_error(f"{where} needs spaces, hyperparameters or both")
        self._choices = self._collect_choices()

    def _collect_choices(self) -> dict[str, list[Any]]:
        choices = {f"{prefix}:{param}": values
                   for prefix, part in zip(self.prefixes, self.parts)
                   for param, values in part.choices().items()}
        choices.update({f"{TRAIN}/{key}": list(values)
                        for key, values in self.hyperparameters.items() if len(values) > 1})
        return choices

    def choices(self) -> dict[str, list[Any]]:
        """Parameter name -> its choices: sub-spaces in order, then hyperparameters."""
        return {param: list(values) for param, values in self._choices.items()}

    def train_overrides(self, sample: dict[str, Any]) -> dict[str, Any]:
        """Training settings for `sample`: sampled hyperparameters and single-choice ones."""
        return {key: sample.get(f"{TRAIN}/{key}", values[0])
                for key, values in self.hyperparameters.items()}

    def use_data(self, data: PassData) -> None:
        """Give every sub-space the run's data."""
        for part in self.parts:
            part.use_data(data)

    def build(self, sample: dict[str, Any], base: Graph) -> Candidate:
        """Apply the sub-spaces in order; `base` is untouched."""
        check_sample(sample, self._choices, self.name)
        graph, passes, derived = base, [], {}
        for prefix, part in zip(self.prefixes, self.parts):
            own = {param[len(prefix) + 1:]: value for param, value in sample.items()
                   if param.startswith(f"{prefix}:")}
            candidate = part.build(own, graph)
            graph, passes = candidate.graph, passes + candidate.passes
            derived.update({f"{prefix}:{key}": value for key, value in candidate.derived.items()})
        # A candidate is trained in place; never hand out the base itself.
        graph = graph.copy() if graph is base else graph
        return Candidate(graph=graph, passes=passes, train_overrides=self.train_overrides(sample),
                         derived=derived)
