"""Model registry: a name in a config maps to one factory taking the dataset's info.

Entries name their factory as "module:function" and carry its description, so listing the
registry (`machop info models`) imports no model code and no torch.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from machop.errors import ModelError, unknown_name

if TYPE_CHECKING:
    from torch import nn

    from machop.data.dataset import DatasetInfo

ModelFactory = Callable[..., "nn.Module"]


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: where its factory lives and the first line of its docstring."""

    target: str
    description: str

    def factory(self) -> ModelFactory:
        """The factory function, importing its module on first use."""
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)


MODELS: dict[str, ModelEntry] = {
    "jsc-tiny": ModelEntry("machop.models.jsc:jsc_tiny",
                           "BatchNorm, ReLU, one Linear to the classes, ReLU (117 parameters on JSC)."),
    "jsc-toy": ModelEntry("machop.models.jsc:jsc_toy",
                          "Three Linear layers (f->8->8->c), each preceded by BatchNorm and ReLU "
                          "(327 on JSC)."),
    "jsc-s": ModelEntry("machop.models.jsc:jsc_s",
                        "MASE's jsc-s: f->64->32->32->32->c with BatchNorm on the input and first "
                        "hidden layer."),
    "jsc-three-linear-layers": ModelEntry(
        "machop.models.jsc:jsc_three_linear_layers",
        "BatchNorm, ReLU, then three Linear+ReLU (f->16->16->c); linears are seq_blocks_2/4/6."),
    "vgg7": ModelEntry("machop.models.vgg:vgg7",
                       "VGG7 (14,029,450 parameters on CIFAR-10); needs an image dataset of at "
                       "least 8x8."),
    "toy": ModelEntry("machop.models.toy:toy", "MLP f->8->8->c with ReLUs (4->8->8->2 on toy-tiny)."),
    "toy-tiny": ModelEntry("machop.models.toy:toy_tiny",
                           "Two Linear layers f->f->c with a ReLU between (30 parameters on "
                           "toy-tiny)."),
}

ALIASES = {"jsc_tiny": "jsc-tiny", "jsc_toy": "jsc-toy", "jsc_s": "jsc-s",
           "jsc_three_linear_layers": "jsc-three-linear-layers", "toy_tiny": "toy-tiny",
           "vgg7_cifar": "vgg7", "cifar_vgg7": "vgg7"}


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
