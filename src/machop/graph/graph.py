"""Graph: a traced fx GraphModule plus metadata for every node."""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import fx, nn

from machop.errors import ModelError, exception_line
from machop.graph.metadata import NodeMeta, record_metadata, restamped
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
        self.recompile()
        try:
            self.meta = record_metadata(self.module, self.example_input)
        except Exception as exc:  # a model's own forward may fail on a wrong-shaped input
            raise ModelError(f"running {type(self.module).__name__} on an example input of shape "
                             f"{tuple(self.example_input.shape)} failed: "
                             f"{exception_line(exc, 200)}") from exc
        return self

    def recompile(self) -> None:
        """Regenerate the module's code from its fx graph (after nodes changed)."""
        self.module.recompile()

    def restamp(self, names: Iterable[str]) -> None:
        """Re-read the metadata of nodes whose module or function was swapped for one computing the
        same shapes (precisions, kind, target, parameters), without running the model."""
        for name in names:
            self.meta[name] = restamped(self.meta[name], self.node(name), self.module)

    def copy(self) -> Graph:
        """An independent copy: its own modules, parameters, buffers, fx graph and metadata.

        Equal to a deep copy, built without copy.deepcopy's generic machinery and without
        regenerating the module's code (the copy starts with its original's compiled forward).
        """
        clone = Graph.__new__(Graph)
        clone.module = copy_graph_module(self.module)
        clone.example_input = self.example_input
        clone.meta = {name: meta.copy() for name, meta in self.meta.items()}
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


def _copy_value(value: Any, memo: dict[int, Any]) -> Any:
    if type(value) in (dict, OrderedDict) and not value:  # a module's many (usually empty) hook tables
        return type(value)()
    return copy.deepcopy(value, memo)


def _copy_module(module: nn.Module, memo: dict[int, Any]) -> nn.Module:
    """A deep copy of one module: what copy.deepcopy makes, with its modules copied by this function."""
    known = memo.get(id(module))
    if known is not None:
        return known
    if isinstance(module, fx.GraphModule):
        new = fx.GraphModule.__new__(type(module))  # a class of its own, as every GraphModule has
        type(new).__name__ = type(module).__name__  # the traced model's name, as GraphModule sets it
        type(new).forward = type(module).forward  # the generated code: it reads everything from self
    else:
        new = object.__new__(type(module))
    memo[id(module)] = new
    state: dict[str, Any] = {}
    for key, value in module.__dict__.items():
        if key == "_modules":
            state[key] = {name: None if child is None else _copy_module(child, memo)
                          for name, child in value.items()}
        else:
            state[key] = _copy_value(value, memo)  # parameters and buffers: tensors, memo keeps ties
    new.__dict__.update(state)
    if isinstance(new, fx.GraphModule):
        new.graph.owning_module = new
    return new


def copy_graph_module(module: fx.GraphModule) -> fx.GraphModule:
    """An independent copy of a GraphModule (modules, parameters, buffers, fx graph, meta)."""
    return _copy_module(module, {})


def applied_passes(model: nn.Module) -> list[tuple[str, dict[str, Any]]]:
    """The transform passes recorded on a (graph) module; empty for plain models."""
    meta = getattr(model, "meta", None)
    return list(meta.get(PASSES_KEY, [])) if isinstance(meta, dict) else []
