"""machop: quantize, resize, measure and search neural networks for cheap inference."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Heavy modules (torch, sklearn) load on first use so that `machop --help` stays fast.
_LAZY = {
    "MachopError": "machop.errors",
    "ConfigError": "machop.errors",
    "DataError": "machop.errors",
    "ModelError": "machop.errors",
    "PassError": "machop.errors",
    "SearchError": "machop.errors",
    "load_config": "machop.config",
    "RunConfig": "machop.config",
    "build_model": "machop.models",
    "load_dataset": "machop.data",
    "fit": "machop.train",
    "TrainSettings": "machop.train",
    "evaluate": "machop.train",
    "load_checkpoint": "machop.train",
    "save_checkpoint": "machop.train",
    "Graph": "machop.graph",
    "export_trial": "machop.search.trial_export",
}
_SUBMODULES = ("api", "config", "data", "graph", "metrics", "models", "passes", "quant", "train")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"machop.{name}")
    raise AttributeError(f"module 'machop' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, *_SUBMODULES])
