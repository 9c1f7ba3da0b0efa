"""User models named as "path/to/file.py:Name" or "package.module:Name"."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from machop.data.dataset import DatasetInfo
from machop.errors import ModelError, exception_line


def is_user_model(name: str) -> bool:
    """True when `name` points at user code rather than a registry entry."""
    return ":" in name


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} does not exist "
                         "(expected 'path/to/file.py:ClassOrFactory')")
    module_name = f"machop_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ModelError(f"model file {str(path)!r} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # user code may raise anything while importing
        sys.modules.pop(module_name, None)
        raise ModelError(f"model file {str(path)!r} failed to import: {exception_line(exc)}") from exc
    return module


def _import_module(dotted: str) -> Any:
    try:
        return importlib.import_module(dotted)
    except Exception as exc:
        raise ModelError(f"model module {dotted!r} failed to import: {exception_line(exc)}") from exc


def _accepted_kwargs(factory: Any, info: DatasetInfo) -> dict[str, Any]:
    """Dataset facts the factory's signature asks for, by parameter name."""
    facts = {"info": info, "dataset_info": info, "num_classes": info.num_classes,
             "num_features": info.num_features, "image_size": info.image_size}
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    return {name: facts[name] for name in params if name in facts}


def build_user_model(spec: str, info: DatasetInfo, model_args: dict[str, Any]) -> nn.Module:
    """Import and call a user class or factory, passing the dataset facts it names."""
    location, _, attr = spec.rpartition(":")
    if not location or not attr:
        raise ModelError(f"model {spec!r} must look like 'path/to/file.py:Name' "
                         "or 'package.module:Name'")
    looks_like_file = location.endswith(".py") or "/" in location or "\\" in location
    module = _import_file(Path(location)) if looks_like_file else _import_module(location)
    factory = getattr(module, attr, None)
    if factory is None:
        names = sorted(n for n in vars(module) if not n.startswith("_"))
        raise ModelError(f"{location!r} defines no {attr!r} (it defines: {', '.join(names)})")
    if not callable(factory):
        raise ModelError(f"{spec!r} is not a class or function")
    try:
        model = factory(**_accepted_kwargs(factory, info), **model_args)
    except Exception as exc:  # user code may raise anything while building
        raise ModelError(f"could not build {spec!r}: {exception_line(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise ModelError(f"{spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    check_fits_dataset(model, info, f"model {spec!r}")
    return model


def check_fits_dataset(model: nn.Module, info: DatasetInfo, what: str) -> None:
    """Run `model` on a zero batch of the dataset's shape: it must give one score per class."""
    shape = (2, *(info.image_size or (info.num_features,)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(torch.zeros(shape))
    except Exception as exc:  # user code may raise anything
        raise ModelError(f"{what} does not run on dataset {info.name!r} (a batch of shape {shape}): "
                         f"{exception_line(exc, 200)}") from exc
    finally:
        model.train(was_training)
    expected = (shape[0], info.num_classes)
    if not isinstance(output, torch.Tensor) or not output.is_floating_point():
        raise ModelError(f"{what} returns {type(output).__name__}; it must return one tensor of "
                         f"class scores of shape (batch, {info.num_classes})")
    if tuple(output.shape) != expected:
        raise ModelError(f"{what} returns shape {tuple(output.shape)} for a batch of shape {shape}; "
                         f"dataset {info.name!r} needs {expected} (one score per class)")
