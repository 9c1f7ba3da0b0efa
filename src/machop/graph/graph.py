"""Graph: a traced fx GraphModule plus metadata for every node."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import fx, nn

from machop.errors import ModelError, exception_line
from machop.graph.metadata import NodeMeta, record_metadata
from machop.graph.trace import trace

PASSES_KEY = "machop_passes"


class Graph:
    """A model as a torch.fx graph whose nodes carry metadata; what passes take and return."""

    def __init__(self, model: nn.Module, example_input: torch.Tensor) -> None:
        self.module: fx.GraphModule = model if isinstance(model, fx.GraphModule) else trace(model)
        self.module.meta.setdefault(PASSES_KEY, [])
        self.example_input = example_input
        self.meta: dict[str, NodeMeta] = {}
        self.refresh()

    def refresh(self) -> Graph:
        """Recompile the module and re-record metadata after the graph or modules changed."""
        self.module.graph.lint()
        self.module.recompile()
        try:
            self.meta = record_metadata(self.module, self.example_input)
        except Exception as exc:  # a model's own forward may fail on a wrong-shaped input
            raise ModelError(f"running {type(self.module).__name__} on an example input of shape "
                             f"{tuple(self.example_input.shape)} failed: "
                             f"{exception_line(exc, 200)}") from exc
        return self

    def copy(self) -> Graph:
        """An independent deep copy (module, parameters and metadata)."""
        clone = Graph.__new__(Graph)
        clone.module = copy.deepcopy(self.module)
        clone.example_input = self.example_input
        clone.meta = copy.deepcopy(self.meta)
        return clone

    @property
    def nodes(self) -> Iterator[fx.Node]:
        """The fx nodes in execution order."""
        return iter(self.module.graph.nodes)

    def node(self, name: str) -> fx.Node:
        """The fx node called `name`."""
        for node in self.module.graph.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def submodule(self, node: fx.Node) -> nn.Module:
        """The module a call_module node runs."""
        return self.module.get_submodule(node.target)

    def compute_nodes(self) -> list[fx.Node]:
        """Nodes that compute something (no placeholders, outputs or attribute reads)."""
        return [n for n in self.module.graph.nodes if n.op.startswith("call_")]

    @property
    def passes(self) -> list[tuple[str, dict[str, Any]]]:
        """The transform passes applied so far, in order, with their configs."""
        return self.module.meta[PASSES_KEY]

    def record_pass(self, name: str, config: dict[str, Any]) -> None:
        """Remember that transform pass `name` ran with `config` (saved with the model)."""
        self.module.meta[PASSES_KEY] = [*self.passes, (name, copy.deepcopy(config))]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Graph({type(self.module).__name__}, {len(self.compute_nodes())} compute nodes)"


def applied_passes(model: nn.Module) -> list[tuple[str, dict[str, Any]]]:
    """The transform passes recorded on a (graph) module; empty for plain models."""
    meta = getattr(model, "meta", None)
    return list(meta.get(PASSES_KEY, [])) if isinstance(meta, dict) else []
