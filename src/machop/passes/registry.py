"""Pass registry: a `[passes.<name>]` table maps to one transform pass function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from machop.errors import PassError, unknown_name
from machop.graph.graph import Graph

PassFunction = Callable[[Graph, dict[str, Any]], tuple[Graph, dict[str, Any]]]


def _quantize(graph: Graph, args: dict[str, Any]) -> tuple[Graph, dict[str, Any]]:
    from machop.passes.quantize import quantize_transform_pass
    return quantize_transform_pass(graph, args)


def _redefine(graph: Graph, args: dict[str, Any]) -> tuple[Graph, dict[str, Any]]:
    from machop.passes.redefine import redefine_transform_pass
    return redefine_transform_pass(graph, args)


TRANSFORM_PASSES: dict[str, PassFunction] = {
    "quantize": _quantize,
    "redefine": _redefine,
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
