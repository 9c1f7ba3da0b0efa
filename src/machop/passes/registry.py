"""Pass registry: a `[passes.<name>]` table maps to one transform pass function.

Entries name their function as "module:function"; the function's docstring describes the pass.
The module is imported on first use, because pass modules import this package. A pass whose
config may depend on data (quantize's frac_width = "auto") also names a `resolve` function,
`(graph, args, data: PassData | None) -> args`, which `apply_passes` runs first: it turns the
data-dependent values into explicit ones, so the pass itself and the config it records (and
that a checkpoint re-applies) need no data.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from machop.data.dataset import Dataset
from machop.docstrings import summary_of
from machop.errors import PassError, unknown_name
from machop.graph.graph import Graph

PassFunction = Callable[[Graph, dict[str, Any]], tuple[Graph, dict[str, Any]]]


@dataclass(frozen=True)
class PassData:
    """What a pass may learn from: the run's dataset, batch size and seed (calibration)."""

    dataset: Dataset
    batch_size: int = 128
    seed: int = 0


def _imported(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class PassEntry:
    """A registered transform pass: where its function lives ("module:function")."""

    target: str
    resolve_target: str | None = None  # "module:function" resolving data-dependent args

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
        return _imported(self.target)

    def resolve(self, graph: Graph, args: dict[str, Any], data: PassData | None) -> dict[str, Any]:
        """`args` with data-dependent values made explicit (unchanged for most passes)."""
        return args if self.resolve_target is None else _imported(self.resolve_target)(graph, args, data)

    def __call__(self, graph: Graph, args: dict[str, Any]) -> tuple[Graph, dict[str, Any]]:
        return self.function()(graph, args)


TRANSFORM_PASSES: dict[str, PassEntry] = {
    "quantize": PassEntry("machop.passes.quantize:quantize_transform_pass",
                          resolve_target="machop.passes.calibrate:calibrated_quantize_args"),
    "redefine": PassEntry("machop.passes.redefine:redefine_transform_pass"),
}


def apply_passes(graph: Graph, passes: list[tuple[str, dict[str, Any]]],
                 data: PassData | None = None) -> tuple[Graph, list[dict]]:
    """Run transform passes in order; returns the final graph and each pass's summary.

    `data` lets a pass calibrate on the graph as the passes before it left it.
    """
    infos = []
    for name, args in passes:
        if name not in TRANSFORM_PASSES:
            raise PassError(unknown_name("pass", name, TRANSFORM_PASSES))
        entry = TRANSFORM_PASSES[name]
        graph, info = entry(graph, entry.resolve(graph, args, data))
        infos.append(info)
    return graph, infos
