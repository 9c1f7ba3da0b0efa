"""Prediction-quality metrics computed from logits in one stateless call."""

from __future__ import annotations

import torch
from torch.nn import functional as F

CLASSIFICATION_METRICS = ("loss", "accuracy", "accuracy_macro", "precision", "recall", "f1")


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor,
                           num_classes: int) -> dict[str, float]:
    """Loss, micro accuracy and macro accuracy/precision/recall/F1 (fresh state every call)."""
    from torchmetrics.functional import classification as tmf

    logits = logits.float()
    preds = logits.argmax(dim=1)
    common = {"num_classes": num_classes, "validate_args": False}
    return {
        "loss": F.cross_entropy(logits, targets).item(),
        "accuracy": tmf.multiclass_accuracy(preds, targets, average="micro", **common).item(),
        "accuracy_macro": tmf.multiclass_accuracy(preds, targets, average="macro", **common).item(),
        "precision": tmf.multiclass_precision(preds, targets, average="macro", **common).item(),
        "recall": tmf.multiclass_recall(preds, targets, average="macro", **common).item(),
        "f1": tmf.multiclass_f1_score(preds, targets, average="macro", **common).item(),
    }
