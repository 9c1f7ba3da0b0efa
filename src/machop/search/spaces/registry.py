"""Search-space registry: `[search.search_space] name` -> the class that builds it.

Each class lists the names it answers to (`registered_names`); the composite space takes its
possible sub-spaces, and their order, from this registry.
"""

from __future__ import annotations

from typing import Any

from machop.errors import unknown_name
from machop.graph.graph import Graph
from machop.search.space import SearchSpace
from machop.search.spaces.channel_multiplier import ChannelMultiplier
from machop.search.spaces.common import ROOT, require_table, search_error
from machop.search.spaces.composite import Composite
from machop.search.spaces.mixed_precision_ptq import MixedPrecisionPTQ

# A new space: its class (which declares its names, kind and composite order) and one line here.
SPACE_CLASSES: tuple[type[SearchSpace], ...] = (
    MixedPrecisionPTQ,
    ChannelMultiplier,
    Composite,
)

SPACES: dict[str, type[SearchSpace]] = {
    name: cls for cls in SPACE_CLASSES for name in cls.registered_names}


def build_space(config: dict[str, Any], base: Graph) -> SearchSpace:
    """The search space a `[search.search_space]` table describes, validated against `base`."""
    table = require_table(config, ROOT)
    if "name" not in table:
        raise search_error(f"{ROOT}.name is missing (valid: {', '.join(sorted(SPACES))})")
    name = table["name"]
    if not isinstance(name, str) or name not in SPACES:
        raise search_error(f"{ROOT}.name: {unknown_name('search space', name, SPACES)}")
    return SPACES[name](table, base)
