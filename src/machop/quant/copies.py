"""Quantized copies of float modules, without running the constructor's weight initialisation.

`float_copy(cls, module, **construct)` makes what `cls(**construct)`, then
`load_state_dict(module.state_dict())` and `train(module.training)` make: a new instance with
copies of `module`'s tensors. Constructing initialises weights at random only to overwrite them
(two thirds of a copy's time for a small layer; a search builds such copies in every trial), so
the instance is instead cloned from one constructed the ordinary way per class and arguments,
and given copies of the float tensors.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

MAX_TEMPLATES = 256  # distinct (class, arguments) pairs kept; a model has a handful of layer shapes
_TABLES = (dict, OrderedDict, list, set)  # a module's own tables: each instance gets new ones
_templates: dict[tuple, tuple[nn.Module, frozenset[str]]] = {}


def _template(cls: type, construct: dict[str, Any]) -> tuple[nn.Module, frozenset[str]]:
    """An instance constructed the ordinary way, and its state dict's keys (made once per key)."""
    key = (cls, tuple(sorted(construct.items(), key=lambda item: item[0])))
    known = _templates.get(key)
    if known is None:
        if len(_templates) >= MAX_TEMPLATES:
            _templates.clear()
        template = cls(**construct)
        known = _templates[key] = (template, frozenset(template.state_dict()))
    return known


def _instance_like(template: nn.Module) -> nn.Module:
    """A new instance with the template's attributes and its own copies of every table."""
    new = object.__new__(type(template))
    state = template.__dict__.copy()
    for name, value in state.items():
        if value.__class__ in _TABLES:
            state[name] = value.copy()
    new.__dict__.update(state)
    return new


def _loadable(template: nn.Module, keys: frozenset[str], source: dict[str, torch.Tensor]) -> bool:
    """Whether `source` fits the template exactly as load_state_dict needs (same keys and shapes)."""
    if keys != source.keys() or template._modules:
        return False
    own = {**template._parameters, **template._buffers}
    return all(own[name] is not None and own[name].shape == tensor.shape for name, tensor in source.items())


def float_copy(cls: type, module: nn.Module, **construct: Any) -> Any:
    """cls(**construct) holding copies of `module`'s state dict, in `module`'s train/eval mode."""
    try:
        template, keys = _template(cls, construct)
    except TypeError:  # unhashable arguments: construct as usual
        template, keys = None, frozenset()
    source = module.state_dict()
    if template is None or not _loadable(template, keys, source):
        new = cls(**construct)
        new.load_state_dict(source)  # raises load_state_dict's own errors on a mismatch
        new.train(module.training)
        return new
    new = _instance_like(template)
    with torch.no_grad():
        for table in (new._parameters, new._buffers):
            for name, tensor in table.items():
                if tensor is None:
                    continue
                loaded = source.get(name)
                value = tensor.detach().clone() if loaded is None else torch.empty_like(tensor).copy_(loaded)
                table[name] = nn.Parameter(value, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else value
    new.train(module.training)
    return new


__all__ = ["MAX_TEMPLATES", "float_copy"]
