"""Datasets: registry, in-memory splits and fast batching."""

from __future__ import annotations

import importlib
from typing import Any

# Submodules load on first use: listing the registry must not import torch.
_LAZY = {
    "DATASETS": "machop.data.registry",
    "load_dataset": "machop.data.registry",
    "static_info": "machop.data.registry",
    "DataOptions": "machop.data.dataset",
    "Dataset": "machop.data.dataset",
    "DatasetInfo": "machop.data.dataset",
    "Split": "machop.data.dataset",
    "example_batch": "machop.data.batches",
    "iterate_batches": "machop.data.batches",
    "num_batches": "machop.data.batches",
    "static_example": "machop.data.batches",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'machop.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
