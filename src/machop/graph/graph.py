"""Graph: a traced fx GraphModule plus metadata for every node."""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import fx, nn

from machop.errors import ModelError, exception_line
from machop.graph.lookups import use_direct_lookups
from machop.graph.metadata import NodeMeta, record_metadata, restamped
from machop.graph.trace import trace

PASSES_KEY = "machop_passes"


class Graph:
    """A model as a torch.fx graph whose nodes carry metadata; what passes take and return."""

    borrowed = False  # True for a graph made by derive(): its tensors (and perhaps fx graph) are another's

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
        """Regenerate the module's code from its fx graph (after nodes changed), with submodules
        looked up directly in their tables (machop.graph.lookups)."""
        use_direct_lookups(self.module)
        self.module.recompile()

    def restamp(self, names: Iterable[str]) -> None:
        """Re-read the metadata of nodes whose module or function was swapped for one computing the
        same shapes (precisions, kind, target, parameters), without running the model."""
        names = list(names)
        if names:
            nodes = {node.name: node for node in self.module.graph.nodes}
            for name in names:
                self.meta[name] = restamped(self.meta[name], nodes[name], self.module)

    def copy(self, replace: Mapping[str, nn.Module] | None = None) -> Graph:
        """An independent copy: its own modules, parameters, buffers, fx graph and metadata.

        Equal to a deep copy, built without copy.deepcopy's generic machinery and without
        regenerating the module's code (the copy starts with its original's compiled forward).
        `replace` maps qualified submodule names to modules the copy holds there instead of
        copies of the originals (they are not copied).
        """
        return self._clone(copy_graph_module(self.module, replace), borrowed=False)

    def derive(self, replace: Mapping[str, nn.Module] | None = None, *, own_fx_graph: bool = False,
               meta: Mapping[str, NodeMeta] | None = None) -> Graph:
        """A copy for evaluation: new module objects (with `replace` swapped in, as copy() does) whose
        parameters and buffers alias this graph's tensors, and this graph's fx graph unless
        `own_fx_graph`. Cheap, and as good as a copy for anything that only reads weights and
        graph; whatever changes either (training, a forward in training mode, which updates
        BatchNorm statistics, in-place edits) must call own() first. `meta` maps node names to
        metadata the copy holds (as given) instead of copies of this graph's.
        """
        clone = self._clone(borrow_graph_module(self.module, replace, own_fx_graph), borrowed=True, meta=meta)
        clone.module.meta[PASSES_KEY] = list(self.passes)  # its own list: record_pass replaces it anyway
        return clone

    def own(self) -> Graph:
        """Give a derived graph its own tensors and fx graph (a new `module`); no-op for copies."""
        if self.borrowed:
            self.module = copy_graph_module(self.module)
            self.borrowed = False
        return self

    def _clone(self, module: fx.GraphModule, *, borrowed: bool, meta: Mapping[str, NodeMeta] | None = None) -> Graph:
        clone = Graph.__new__(Graph)
        clone.module = module
        clone.example_input = self.example_input
        given = meta or {}
        clone.meta = {name: given[name] if name in given else own.copy() for name, own in self.meta.items()}
        clone.borrowed = borrowed
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
        module: nn.Module | None = self.module
        for name in node.target.split("."):  # the module tables, as the generated code reads them
            module = module._modules.get(name) if isinstance(module, nn.Module) else None
        return module if isinstance(module, nn.Module) else self.module.get_submodule(node.target)

    def compute_nodes(self) -> list[fx.Node]:
        """Nodes that compute something (no placeholders, outputs or attribute reads)."""
        return [n for n in self.module.graph.nodes if n.op.startswith("call_")]

    @property
    def passes(self) -> list[tuple[str, dict[str, Any]]]:
        """The transform passes applied so far, in order, with their configs."""
        return self.module.meta[PASSES_KEY]

    def record_pass(self, name: str, config: dict[str, Any]) -> None:
        """Remember that transform pass `name` ran with `config` (saved with the model)."""
        self.module.meta[PASSES_KEY] = [*self.passes, (name, config_copy(config))]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Graph({type(self.module).__name__}, {len(self.compute_nodes())} compute nodes)"


_SCALARS = frozenset((str, int, float, bool, type(None)))


def config_copy(value: Any) -> Any:
    """copy.deepcopy of a config, several times faster on plain data (dicts, lists, scalars)."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:  # scalars taken as they are, without a call each
        return {key: item if type(item) in _SCALARS else config_copy(item) for key, item in value.items()}
    if kind is list:
        return [item if type(item) in _SCALARS else config_copy(item) for item in value]
    return copy.deepcopy(value)


def _copy_value(value: Any, memo: dict[int, Any]) -> Any:
    if type(value) in (dict, OrderedDict) and not value:  # a module's many (usually empty) hook tables
        return type(value)()
    return copy.deepcopy(value, memo)


def _new_module(module: nn.Module) -> nn.Module:
    """An empty instance of `module`'s class (a GraphModule gets a class of its own, as each has)."""
    if isinstance(module, fx.GraphModule):
        new = fx.GraphModule.__new__(type(module))
        type(new).__name__ = type(module).__name__  # the traced model's name, as GraphModule sets it
        type(new).forward = type(module).forward  # the generated code: it reads everything from self
        return new
    return object.__new__(type(module))


def _copy_module(module: nn.Module, memo: dict[int, Any], replace: Mapping[str, nn.Module] | None = None,
                 prefix: str = "") -> nn.Module:
    """A deep copy of one module: what copy.deepcopy makes, with its modules copied by this function
    (except those `replace` names by qualified name, which are used as given)."""
    known = memo.get(id(module))
    if known is not None:
        return known
    new = _new_module(module)
    memo[id(module)] = new
    replace = replace or {}
    state: dict[str, Any] = {}
    for key, value in module.__dict__.items():
        if key == "_modules":
            state[key] = {name: replace[f"{prefix}{name}"] if f"{prefix}{name}" in replace
                          else None if child is None else _copy_module(child, memo, replace, f"{prefix}{name}.")
                          for name, child in value.items()}
        else:
            state[key] = _copy_value(value, memo)  # parameters and buffers: tensors, memo keeps ties
    new.__dict__.update(state)
    if isinstance(new, fx.GraphModule):
        new.graph.owning_module = new
    return new


def copy_graph_module(module: fx.GraphModule, replace: Mapping[str, nn.Module] | None = None) -> fx.GraphModule:
    """An independent copy of a GraphModule (modules, parameters, buffers, fx graph, meta), holding
    the modules of `replace` (qualified name -> module) instead of copies of the originals."""
    return _copy_module(module, {}, replace)


def alias_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """A new tensor object on the same storage (and version counter), of the same type and grad flag."""
    if tensor.__class__ is nn.Parameter or isinstance(tensor, nn.Parameter):  # the first test: no metaclass check
        alias = torch.Tensor._make_subclass(type(tensor), tensor, tensor.requires_grad)  # it detaches `tensor`
    else:
        alias = tensor.detach()
        if tensor.requires_grad:
            alias.requires_grad_()
    if tensor.__dict__:
        alias.__dict__.update(tensor.__dict__)
    return alias


# A module's own tables (hooks, non-persistent buffer names, GraphModule.meta): a borrower gets new
# ones, so registering something on it leaves the lender alone. Other attributes are shared.
_TABLES = frozenset((dict, OrderedDict, list, set))


def _borrow_module(module: nn.Module, memo: dict[int, Any], replace: Mapping[str, nn.Module],
                   prefix: str, own_fx_graph: bool) -> nn.Module:
    known = memo.get(id(module))
    if known is not None:
        return known
    new = memo[id(module)] = _new_module(module)
    state = module.__dict__.copy()
    for key, value in state.items():  # a plain loop: faster than a comprehension choosing per value
        if value.__class__ in _TABLES:
            state[key] = value.copy()
    parameters, buffers = module._parameters, module._buffers
    if parameters or parameters.__class__ is not dict:  # an empty dict's copy above is what it needs
        state["_parameters"] = {name: None if t is None else _borrowed_tensor(t, memo)
                                for name, t in parameters.items()}
    if buffers or buffers.__class__ is not dict:
        state["_buffers"] = {name: None if t is None else _borrowed_tensor(t, memo)
                             for name, t in buffers.items()}
    children = state["_modules"]
    for name, child in children.items():
        path = f"{prefix}{name}"
        if path in replace:
            children[name] = replace[path]
        elif child is not None:
            children[name] = _borrow_module(child, memo, replace, f"{path}.", own_fx_graph)
    own_graph = own_fx_graph and isinstance(module, fx.GraphModule)
    if own_graph:
        state["_graph"] = copy.deepcopy(module._graph)
    object.__setattr__(new, "__dict__", state)  # a new instance's empty __dict__, without __setattr__ hooks
    if own_graph:
        new.graph.owning_module = new
    return new


def _borrowed_tensor(tensor: torch.Tensor, memo: dict[int, Any]) -> torch.Tensor:
    known = memo.get(id(tensor))
    if known is None:
        known = memo[id(tensor)] = alias_tensor(tensor)  # tied tensors stay tied
    return known


def borrow_graph_module(module: fx.GraphModule, replace: Mapping[str, nn.Module] | None = None,
                        own_fx_graph: bool = False) -> fx.GraphModule:
    """New module objects over `module`'s tensors (aliased) and fx graph (shared unless `own_fx_graph`),
    holding the modules of `replace` (qualified name -> module, used as given) instead."""
    return _borrow_module(module, {}, replace or {}, "", own_fx_graph)


def borrow_module(module: nn.Module) -> nn.Module:
    """A new module (and submodules) computing what `module` does with the same tensors (aliased)."""
    return _borrow_module(module, {}, {}, "", False)


def applied_passes(model: nn.Module) -> list[tuple[str, dict[str, Any]]]:
    """The transform passes recorded on a (graph) module; empty for plain models."""
    meta = getattr(model, "meta", None)
    return list(meta.get(PASSES_KEY, [])) if isinstance(meta, dict) else []
