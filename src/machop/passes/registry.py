"""Pass registry: a `[passes.<name>]` table maps to one transform pass function.

Entries name their function as "module:function"; the function's docstring describes the pass.
The module is imported on first use, because pass modules import this package.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from machop.docstrings import summary_of
from machop.errors import PassError, unknown_name
from machop.graph.graph import Graph

PassFunction = Callable[[Graph, dict[str, Any]], tuple[Graph, dict[str, Any]]]


@dataclass(frozen=True)
class PassEntry:
    """A registered transform pass: where its function lives ("module:function")."""

    target: str

    @property
    def function_name(self) -> str:
        """The pass function's own name, e.g. quantize_transform_pass."""
        return self.target.partition(":")[2]

    @property
    def description(self) -> str:
        """The first line of the pass function's docstring."""
        return summary_of(self.target)

    def function(self) -> PassFunction:
        """The pass function, importing its module on first use."""
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)

    def __call__(self, graph: Graph, args: dict[str, Any]) -> tuple[Graph, dict[str, Any]]:
        return self.function()(graph, args)


TRANSFORM_PASSES: dict[str, PassEntry] = {
    "quantize": PassEntry("machop.passes.quantize:quantize_transform_pass"),
    "redefine": PassEntry("machop.passes.redefine:redefine_transform_pass"),
}


def apply_passes(graph: Graph, passes: list[tuple[str, dict[str, Any]]]) -> tuple[Graph, list[dict]]:
    """Run transform passes in order; returns the final graph and each pass's summary."""
    infos = []
    for name, args in passes:
        if name not in TRANSFORM_PASSES:
            raise PassError(unknown_name("pass", name, TRANSFORM_PASSES))
        graph, info = TRANSFORM_PASSES[name](graph, args)
        infos.append(info)
    return graph, infos
