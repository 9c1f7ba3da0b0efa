"""Model registry: a name in a config maps to one factory taking the dataset's info.

Entries name their factory as "module:function" and the other names it answers to; the first
line of the factory's docstring describes the model. Listing the registry (`machop info models`)
reads those docstrings from source, so it imports no model code and no torch.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from machop.docstrings import summary_of
from machop.errors import ModelError, unknown_name

if TYPE_CHECKING:
    from torch import nn

    from machop.data.dataset import DatasetInfo

ModelFactory = Callable[..., "nn.Module"]


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: where its factory lives ("module:function") and its aliases."""

    target: str
    aliases: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        """The first line of the factory's docstring."""
        return summary_of(self.target)

    def factory(self) -> ModelFactory:
        """The factory function, importing its module on first use."""
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)


MODELS: dict[str, ModelEntry] = {
    "jsc-tiny": ModelEntry("machop.models.jsc:jsc_tiny", aliases=("jsc_tiny",)),
    "jsc-toy": ModelEntry("machop.models.jsc:jsc_toy", aliases=("jsc_toy",)),
    "jsc-s": ModelEntry("machop.models.jsc:jsc_s", aliases=("jsc_s",)),
    "jsc-three-linear-layers": ModelEntry("machop.models.jsc:jsc_three_linear_layers",
                                          aliases=("jsc_three_linear_layers",)),
    "vgg7": ModelEntry("machop.models.vgg:vgg7", aliases=("vgg7_cifar", "cifar_vgg7")),
    "toy": ModelEntry("machop.models.toy:toy"),
    "toy-tiny": ModelEntry("machop.models.toy:toy_tiny", aliases=("toy_tiny",)),
}

ALIASES = {alias: name for name, entry in MODELS.items() for alias in entry.aliases}


def describe(name: str) -> str:
    """One line on what a registered model builds."""
    return MODELS[name].description


def _is_user_spec(name: str) -> bool:
    """True when `name` points at user code ("file.py:Name" or "pkg.mod:Name"), not an entry."""
    return ":" in name


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
    if _is_user_spec(name):
        from machop.models.user import build_user_model

        return build_user_model(name, info, model_args)
    key = ALIASES.get(name, name)
    if key not in MODELS:
        raise ModelError(unknown_name("model", name, MODELS)
                         + " or 'path/to/file.py:Name'")
    factory = MODELS[key].factory()
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
    return name if _is_user_spec(name) else ALIASES.get(name, name)
