"""Metrics: prediction quality, cost, speed, memory, energy; a registry of them by name."""

from __future__ import annotations

import importlib
from typing import Any

from machop.metrics.measure import measure
from machop.metrics.registry import METRICS, Metric, MetricContext, compute_metrics, resolve_metric_names

# torchmetrics loads on first use: listing the registry must not import torch.
_LAZY = {
    "CLASSIFICATION_METRICS": "machop.runtime.classification",
    "classification_metrics": "machop.runtime.classification",
}

__all__ = ["CLASSIFICATION_METRICS", "METRICS", "Metric", "MetricContext", "classification_metrics",
           "compute_metrics", "measure", "resolve_metric_names"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'machop.metrics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
