"""Evaluate a model on a split: logits in batches, then metrics in one call."""

from __future__ import annotations

import torch
from torch import nn

from machop.data.dataset import Split
from machop.runtime.classification import classification_metrics
from machop.runtime.device import Precision
from machop.runtime.predict import predict


def evaluate(model: nn.Module, split: Split, num_classes: int, *, batch_size: int = 1024,
             device: torch.device | None = None, num_samples: int | None = None,
             precision: Precision | None = None) -> dict[str, float]:
    """Loss, accuracy and macro precision/recall/F1 over a split (or its first num_samples)."""
    logits, targets = predict(model, split.head(num_samples), batch_size=batch_size,
                              device=device, precision=precision)
    return classification_metrics(logits, targets, num_classes)
