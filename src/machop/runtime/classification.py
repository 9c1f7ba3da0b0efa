"""Prediction-quality metrics computed from logits in one stateless call.

Every number comes from one confusion matrix: torchmetrics' per-class statistics (true/false
positives and negatives) are read off it once, and torchmetrics' own reductions turn them into
micro accuracy, macro accuracy/precision/recall/F1 and the per-class report, so the values are
exactly those of the separate `multiclass_*` calls (tests/metrics/test_classification.py checks
this) at the cost of one pass over the predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

CLASSIFICATION_METRICS = ("loss", "accuracy", "accuracy_macro", "precision", "recall", "f1")


@dataclass(frozen=True)
class ClassStatistics:
    """The confusion matrix (rows: true class) and per-class tp/fp/tn/fn derived from it."""

    confusion: torch.Tensor
    tp: torch.Tensor
    fp: torch.Tensor
    tn: torch.Tensor
    fn: torch.Tensor

    @property
    def counts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(tp, fp, tn, fn), the arguments of torchmetrics' reductions."""
        return self.tp, self.fp, self.tn, self.fn


def class_statistics(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> ClassStatistics:
    """One bincount of (true, predicted) pairs, read as torchmetrics' multiclass stat scores."""
    pairs = targets.flatten().long() * num_classes + preds.flatten().long()
    confusion = torch.bincount(pairs, minlength=num_classes**2).reshape(num_classes, num_classes)
    tp = confusion.diag()
    fp = confusion.sum(0) - tp
    fn = confusion.sum(1) - tp
    tn = confusion.sum() - (fp + fn + tp)
    return ClassStatistics(confusion, tp, fp, tn, fn)


def _scores(stats: ClassStatistics, average: str) -> dict[str, torch.Tensor]:
    """Accuracy, precision, recall and F1 at one averaging, by torchmetrics' reductions."""
    from torchmetrics.functional.classification.accuracy import _accuracy_reduce
    from torchmetrics.functional.classification.f_beta import _fbeta_reduce
    from torchmetrics.functional.classification.precision_recall import _precision_recall_reduce

    counts = stats.counts
    return {"accuracy": _accuracy_reduce(*counts, average=average),
            "precision": _precision_recall_reduce("precision", *counts, average=average),
            "recall": _precision_recall_reduce("recall", *counts, average=average),
            "f1": _fbeta_reduce(*counts, beta=1.0, average=average)}


def metrics_from_statistics(stats: ClassStatistics) -> dict[str, float]:
    """Micro accuracy and macro accuracy/precision/recall/F1 (no loss: that needs the logits)."""
    from torchmetrics.functional.classification.accuracy import _accuracy_reduce

    macro = _scores(stats, "macro")
    return {"accuracy": _accuracy_reduce(*stats.counts, average="micro").item(),
            "accuracy_macro": macro["accuracy"].item(), "precision": macro["precision"].item(),
            "recall": macro["recall"].item(), "f1": macro["f1"].item()}


def report_from_statistics(stats: ClassStatistics, class_names: tuple[str, ...] = ()) -> dict:
    """Confusion matrix and per-class precision, recall, F1 and support."""
    num_classes = stats.confusion.shape[0]
    per_class = _scores(stats, "none")
    names = list(class_names) or [str(i) for i in range(num_classes)]
    support = stats.confusion.sum(1).tolist()
    precision, recall, f1 = (per_class[key].tolist() for key in ("precision", "recall", "f1"))
    rows = [{"class": names[i], "precision": precision[i], "recall": recall[i], "f1": f1[i],
             "support": int(support[i])} for i in range(num_classes)]
    return {"per_class": rows, "confusion_matrix": stats.confusion.tolist()}


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor,
                           num_classes: int) -> dict[str, float]:
    """Loss, micro accuracy and macro accuracy/precision/recall/F1 (fresh state every call)."""
    logits = logits.float()
    stats = class_statistics(logits.argmax(dim=1), targets, num_classes)
    return {"loss": F.cross_entropy(logits, targets).item(), **metrics_from_statistics(stats)}


def per_class_report(logits: torch.Tensor, targets: torch.Tensor, num_classes: int,
                     class_names: tuple[str, ...] = ()) -> dict:
    """Confusion matrix (rows: true class) and per-class precision, recall, F1 and support."""
    return report_from_statistics(class_statistics(logits.argmax(dim=1), targets, num_classes), class_names)


def classification_summary(logits: torch.Tensor, targets: torch.Tensor, num_classes: int,
                           class_names: tuple[str, ...] = ()) -> dict:
    """classification_metrics and per_class_report together, from one confusion matrix."""
    logits = logits.float()
    stats = class_statistics(logits.argmax(dim=1), targets, num_classes)
    return {"loss": F.cross_entropy(logits, targets).item(), **metrics_from_statistics(stats),
            **report_from_statistics(stats, class_names)}
