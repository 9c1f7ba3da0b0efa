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

import math
from collections import Counter
from typing import Any, ClassVar

from machop.graph.graph import Graph
from machop.search.space import Candidate, SearchSpace
from machop.search.spaces.channel_multiplier import ChannelMultiplier
from machop.search.spaces.common import (
    ROOT,
    check_keys,
    check_sample,
    choice_list,
    require_table,
    search_error,
    suggestion,
)
from machop.search.spaces.mixed_precision_ptq import MixedPrecisionPTQ
from machop.train.optim import OPTIMIZERS

NAMES = ("composite",)
SPACE_KEYS = ("name", "spaces", "hyperparameters")
SUB_SPACES: dict[str, type[SearchSpace]] = {
    name: cls for cls in (ChannelMultiplier, MixedPrecisionPTQ) for name in cls.registered_names}
ORDER = ("redefine", "quantize")
TRAIN = "train"


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _positive_integer(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value > 0


HYPERPARAMETERS: dict[str, tuple[Any, str]] = {
    "learning_rate": (lambda v: _number(v) and v > 0, "a positive number"),
    "batch_size": (_positive_integer, "a positive integer"),
    "max_epochs": (_positive_integer, "a positive integer"),
    "weight_decay": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "optimizer": (lambda v: v in OPTIMIZERS, f"one of {', '.join(OPTIMIZERS)}"),
}


def read_hyperparameters(value: Any, where: str) -> dict[str, list[Any]]:
    """`hyperparameters.<key> = [choices]`, each choice checked against what training accepts."""
    table = require_table(value, where)
    check_keys(table, HYPERPARAMETERS, where)
    parsed = {}
    for key, raw in table.items():
        choices = choice_list(raw, f"{where}.{key}")
        valid, what = HYPERPARAMETERS[key]
        for choice in choices:
            if not valid(choice):
                raise search_error(f"{where}.{key} choice {choice!r} must be {what}"
                                   f"{suggestion(choice, OPTIMIZERS) if key == 'optimizer' else ''}")
        parsed[key] = choices
    return parsed


def sub_space(table: Any, base: Graph, where: str) -> SearchSpace:
    """One entry of `spaces`: a redefine or quantize space table."""
    table = require_table(table, where)
    name = table.get("name")
    if name is None:
        raise search_error(f"{where}.name is missing (valid: {', '.join(SUB_SPACES)})")
    if name in NAMES:
        raise search_error(f"{where}.name = {name!r}: a composite space cannot contain another; "
                           "list its sub-spaces directly")
    if name not in SUB_SPACES:
        raise search_error(f"{where}.name = {name!r} is not a search space"
                           f"{suggestion(name, SUB_SPACES)} (valid: {', '.join(SUB_SPACES)})")
    return SUB_SPACES[name](table, base, where=where)


def check_order(parts: list[SearchSpace], where: str) -> None:
    """Redefine sub-spaces must precede quantize ones."""
    for i, part in enumerate(parts):
        later = [j for j in range(i) if ORDER.index(parts[j].kind) > ORDER.index(part.kind)]
        if later:
            raise search_error(f"{where}.spaces[{i}] ({part.name}) comes after the quantize space "
                               f"spaces[{later[0]}]: quantized layers cannot be redefined, so list "
                               "redefine spaces before quantize spaces")


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

    def build(self, sample: dict[str, Any], base: Graph) -> Candidate:
        """Apply the sub-spaces in order; `base` is untouched."""
        check_sample(sample, self._choices, self.name)
        graph, passes = base, []
        for prefix, part in zip(self.prefixes, self.parts):
            own = {param[len(prefix) + 1:]: value for param, value in sample.items()
                   if param.startswith(f"{prefix}:")}
            candidate = part.build(own, graph)
            graph, passes = candidate.graph, passes + candidate.passes
        # A candidate is trained in place; never hand out the base itself.
        graph = graph.copy() if graph is base else graph
        return Candidate(graph=graph, passes=passes, train_overrides=self.train_overrides(sample))
