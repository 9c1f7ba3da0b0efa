"""Quantized copies of float modules, without running the constructor's weight initialisation.

`float_copy(cls, module, **construct)` makes what `cls(**construct)`, then
`load_state_dict(module.state_dict())` and `train(module.training)` make: a new instance with
copies of `module`'s tensors. Constructing initialises weights at random only to overwrite them
(two thirds of a copy's time for a small layer; a search builds such copies in every trial), so
the instance is instead cloned from one constructed the ordinary way per class and arguments,
and given copies of the float tensors.

`float_share(cls, module, **construct)` makes the same instance over `module`'s own tensors
instead (aliases: new tensor objects on the same storage) wherever a copy would equal them, as
quantized forms reused across search candidates hold them.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from machop.graph.graph import alias_tensor

MAX_TEMPLATES = 256  # distinct (class, arguments) pairs kept; a model has a handful of layer shapes
# Templates hold real tensors: only layers this small get one (a template of every conv of a large
# net would keep its weights' size in memory for good; there the initialisation is not what costs).
MAX_TEMPLATE_ELEMENTS = 1 << 16
_TABLES = frozenset((dict, OrderedDict, list, set))  # a module's own tables: each instance gets new ones
_templates: dict[tuple, tuple[nn.Module, frozenset[str]]] = {}


def _template(cls: type, construct: dict[str, Any]) -> tuple[nn.Module, frozenset[str]]:
    """An instance constructed the ordinary way, and its state dict's keys (made once per key)."""
    key = (cls, tuple(sorted(construct.items())))  # distinct names: values are never compared
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
    object.__setattr__(new, "__dict__", state)  # its empty __dict__, without __setattr__ hooks
    return new


def _loadable(template: nn.Module, keys: frozenset[str], source: dict[str, torch.Tensor]) -> bool:
    """Whether `source` fits the template exactly as load_state_dict needs (same keys and shapes)."""
    if keys != source.keys() or template._modules:
        return False
    own = {**template._parameters, **template._buffers}
    return all(own[name] is not None and own[name].shape == tensor.shape for name, tensor in source.items())


def _same_view(loaded: torch.Tensor, original: torch.Tensor) -> bool:
    """Whether a state dict entry is `original`'s memory as it is (so a copy of it equals `original`)."""
    return loaded.data_ptr() == original.data_ptr() and loaded.dtype == original.dtype and \
        loaded.shape == original.shape and loaded.stride() == original.stride() and \
        loaded.device == original.device


def _fits_as_is(tensor: torch.Tensor, parameter: bool, original: torch.Tensor | None) -> bool:
    """Whether the copy made into the template's `tensor` would have `original`'s type, shape,
    dtype, device and grad flag (then, holding equal values, the copy may be `original` itself)."""
    return original is not None and type(original) is (nn.Parameter if parameter else torch.Tensor) and \
        original.requires_grad == (tensor.requires_grad and parameter) and original.shape == tensor.shape and \
        original.dtype == tensor.dtype and original.device == tensor.device


def _filled(template: nn.Module, module: nn.Module, source: dict[str, torch.Tensor], share: bool) -> nn.Module:
    """A new instance like `template` holding copies of `source` (a state dict of `module`), or with
    `share` aliases of `module`'s own tensors wherever such a copy would equal them."""
    new = _instance_like(template)
    with torch.no_grad():
        for table, originals in ((new._parameters, module._parameters), (new._buffers, module._buffers)):
            for name, tensor in table.items():
                if tensor is None:
                    continue
                loaded = source.get(name)
                parameter = tensor.__class__ is nn.Parameter or isinstance(tensor, nn.Parameter)
                original = originals.get(name) if share else None
                fits = _fits_as_is(tensor, parameter, original)
                if fits and loaded is not None and _same_view(loaded, original):
                    table[name] = alias_tensor(original)
                    continue
                value = tensor.detach().clone() if loaded is None else torch.empty_like(tensor).copy_(loaded)
                if fits and torch.equal(value, original):
                    table[name] = alias_tensor(original)
                    continue
                table[name] = nn.Parameter(value, tensor.requires_grad) if parameter else value
    new.train(module.training)
    return new


def _made(cls: type, module: nn.Module, construct: dict[str, Any], share: bool) -> Any:
    source = module.state_dict()
    template, keys = None, frozenset()
    if sum(tensor.numel() for tensor in source.values()) <= MAX_TEMPLATE_ELEMENTS:
        try:
            template, keys = _template(cls, construct)
        except TypeError:  # unhashable arguments: construct as usual
            pass
    if template is not None and _loadable(template, keys, source):
        return _filled(template, module, source, share)
    new = cls(**construct)
    new.load_state_dict(source)  # raises load_state_dict's own errors on a mismatch
    new.train(module.training)
    if share:
        share_equal_tensors(new, module)
    return new


def float_copy(cls: type, module: nn.Module, **construct: Any) -> Any:
    """cls(**construct) holding copies of `module`'s state dict, in `module`'s train/eval mode."""
    return _made(cls, module, construct, share=False)


def float_share(cls: type, module: nn.Module, **construct: Any) -> Any:
    """float_copy(cls, module, **construct), holding `module`'s own tensors (aliases) wherever the
    copy would equal them: same values, type, shape, dtype, device and grad flag."""
    return _made(cls, module, construct, share=True)


def share_equal_tensors(new: nn.Module, old: nn.Module) -> None:
    """Point `new`'s own parameters and buffers at `old`'s (aliases) where they are equal copies."""
    for table, originals in ((new._parameters, old._parameters), (new._buffers, old._buffers)):
        for name, tensor in table.items():
            original = originals.get(name)
            if tensor is not None and original is not None and type(tensor) is type(original) and \
                    tensor.shape == original.shape and tensor.dtype == original.dtype and \
                    tensor.device == original.device and tensor.requires_grad == original.requires_grad and \
                    torch.equal(tensor, original):
                table[name] = alias_tensor(original)


__all__ = ["MAX_TEMPLATES", "MAX_TEMPLATE_ELEMENTS", "float_copy", "float_share", "share_equal_tensors"]
