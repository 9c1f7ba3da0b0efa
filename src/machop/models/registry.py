"""Model registry: a name in a config maps to one factory taking the dataset's info."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from machop.data.dataset import DatasetInfo
from machop.errors import ModelError, unknown_name
from machop.models import jsc, toy, vgg
from machop.models.user import build_user_model, is_user_model

ModelFactory = Callable[..., nn.Module]

MODELS: dict[str, ModelFactory] = {
    "jsc-tiny": jsc.jsc_tiny,
    "jsc-toy": jsc.jsc_toy,
    "jsc-s": jsc.jsc_s,
    "jsc-three-linear-layers": jsc.jsc_three_linear_layers,
    "vgg7": vgg.vgg7,
    "toy": toy.toy,
    "toy-tiny": toy.toy_tiny,
}

ALIASES = {"jsc_tiny": "jsc-tiny", "jsc_toy": "jsc-toy", "jsc_s": "jsc-s",
           "jsc_three_linear_layers": "jsc-three-linear-layers", "toy_tiny": "toy-tiny",
           "vgg7_cifar": "vgg7", "cifar_vgg7": "vgg7"}


def describe(name: str) -> str:
    """First line of a registered model's docstring."""
    return (inspect.getdoc(MODELS[name]) or "").splitlines()[0]


def _check_model_args(name: str, factory: ModelFactory, model_args: dict[str, Any]) -> None:
    params = inspect.signature(factory).parameters
    accepted = [p for p in params if p != "info"]
    unknown = [key for key in model_args if key not in accepted]
    if unknown:
        valid = ", ".join(accepted) or "none"
        raise ModelError(f"model {name!r} takes no argument {unknown[0]!r} in model_args "
                         f"(valid: {valid})")


def build_model(name: str, info: DatasetInfo, model_args: dict[str, Any] | None = None) -> nn.Module:
    """Build a registered or user model for a dataset."""
    model_args = dict(model_args or {})
    if is_user_model(name):
        return build_user_model(name, info, model_args)
    key = ALIASES.get(name, name)
    if key not in MODELS:
        raise ModelError(unknown_name("model", name, MODELS)
                         + " or 'path/to/file.py:Name'")
    factory = MODELS[key]
    _check_model_args(key, factory, model_args)
    try:
        model = factory(info, **model_args)
    except (TypeError, ValueError, RuntimeError, MemoryError) as exc:
        # torch reports impossible sizes (negative, too large) as RuntimeError or MemoryError.
        raise ModelError(f"could not build model {key!r} with model_args {model_args}: "
                         f"{type(exc).__name__}: {exc}") from exc
    check_no_empty_parameters(model, f"model {key!r} with model_args {model_args}")
    return model


def check_no_empty_parameters(model: nn.Module, what: str) -> None:
    """A parameter with a zero-sized dimension means a layer of width 0, which cannot learn."""
    for name, parameter in model.named_parameters():
        if parameter.numel() == 0:
            raise ModelError(f"{what} has an empty parameter {name!r} of shape "
                             f"{tuple(parameter.shape)}; every width must be at least 1")


def canonical_name(name: str) -> str:
    """Registry key for a model name or alias (user specs are returned unchanged)."""
    return name if is_user_model(name) else ALIASES.get(name, name)
