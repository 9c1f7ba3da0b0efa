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


def per_class_report(logits: torch.Tensor, targets: torch.Tensor, num_classes: int,
                     class_names: tuple[str, ...] = ()) -> dict:
    """Confusion matrix (rows: true class) and per-class precision, recall, F1 and support."""
    from torchmetrics.functional import classification as tmf

    preds = logits.argmax(dim=1)
    common = {"num_classes": num_classes, "validate_args": False, "average": "none"}
    precision = tmf.multiclass_precision(preds, targets, **common)
    recall = tmf.multiclass_recall(preds, targets, **common)
    f1 = tmf.multiclass_f1_score(preds, targets, **common)
    confusion = tmf.multiclass_confusion_matrix(preds, targets, num_classes=num_classes,
                                                validate_args=False)
    names = list(class_names) or [str(i) for i in range(num_classes)]
    support = torch.bincount(targets, minlength=num_classes)
    rows = [{"class": names[i], "precision": precision[i].item(), "recall": recall[i].item(),
             "f1": f1[i].item(), "support": int(support[i])} for i in range(num_classes)]
    return {"per_class": rows, "confusion_matrix": confusion.tolist()}
