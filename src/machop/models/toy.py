"""Toy MLPs for quick experiments and tests."""

from __future__ import annotations

from torch import nn

from machop.data.dataset import DatasetInfo
from machop.models.jsc import SequentialMLP


def toy(info: DatasetInfo) -> nn.Module:
    """MLP f->8->8->c with ReLUs (4->8->8->2 on toy-tiny)."""
    f, c = info.num_features, info.num_classes
    return SequentialMLP([nn.Linear(f, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, c)])


def toy_tiny(info: DatasetInfo) -> nn.Module:
    """Two Linear layers f->f->c with a ReLU between (30 parameters on toy-tiny)."""
    f, c = info.num_features, info.num_classes
    return SequentialMLP([nn.Linear(f, f), nn.ReLU(), nn.Linear(f, c)])
