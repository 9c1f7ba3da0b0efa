"""Prediction-quality metrics computed from logits in one stateless call.

Every number comes from one confusion matrix, built from the predictions in one pass, with the
definitions of torchmetrics' `multiclass_*` functions (macro means leave out classes that are
neither present nor predicted; a zero denominator counts as 0):

* micro accuracy and every per-class precision, recall and F1 are one quotient of two counts,
  correctly rounded to float32: bit for bit torchmetrics' values.
* macro accuracy, precision, recall and F1 are the exact mean of those quotients (fractions, no
  rounding), correctly rounded to float32; torchmetrics sums rounded float32 quotients and can
  be one unit in the last place away.
* the loss is the mean cross-entropy, summed in float64 and rounded to float32.

The per-sample work (argmax, log-sum-exp) runs on the logits laid out class-major, where each
step is one vectorised pass over the samples; on the sample-major layout, reductions over a
handful of classes cost as much as the model's forward (tests/metrics/test_classification.py
checks the values against torchmetrics, scikit-learn and F.cross_entropy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

CLASSIFICATION_METRICS = ("loss", "accuracy", "accuracy_macro", "precision", "recall", "f1")


@dataclass(frozen=True)
class Predictions:
    """Predicted class per sample and the mean cross-entropy of the logits."""

    classes: torch.Tensor
    loss: float


def predictions(logits: torch.Tensor, targets: torch.Tensor) -> Predictions:
    """Argmax (first maximal class, as torch.argmax) and mean cross-entropy, in class-major passes."""
    logits = logits.float()
    if logits.dim() != 2 or logits.shape[0] == 0:
        return Predictions(logits.argmax(dim=1), float(np.float32(F.cross_entropy(logits.double(), targets).item())))
    by_class = _class_major(logits)
    top = by_class.amax(0)
    if bool(top.sum().isnan()):  # a NaN logit (torch.argmax picks the first NaN), or both infinities
        classes = logits.argmax(dim=1)
    else:
        classes = _first_index_of(by_class, top)
    log_sum_exp = (by_class - top).exp_().sum(0).log_().add_(top)
    picked = by_class.gather(0, targets.reshape(1, -1).long())[0]
    loss = (log_sum_exp - picked).sum(dtype=torch.float64).item() / logits.shape[0]
    return Predictions(classes, float(np.float32(loss)))


def _class_major(logits: torch.Tensor) -> torch.Tensor:
    """The (classes, samples) copy of (samples, classes) logits."""
    if logits.device.type == "cpu" and not logits.requires_grad:
        return torch.from_numpy(np.ascontiguousarray(logits.numpy().T))  # numpy transposes faster
    return logits.T.contiguous()


def _first_index_of(by_class: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """Per sample, the first class whose logit equals the maximum."""
    num_classes = by_class.shape[0]
    if by_class.device.type == "cpu" and num_classes < 256:
        # numpy compares against a broadcast row several times faster than torch (whose bool
        # output path dominates this function); comparisons are exact either way.
        equal = (by_class.detach().numpy() == top.detach().numpy()).view(np.uint8)
        countdown = np.arange(num_classes, 0, -1, dtype=np.uint8).reshape(-1, 1)
        first = (equal * countdown).max(axis=0)  # num_classes - index of the first maximum
        return torch.from_numpy(num_classes - first.astype(np.int64))
    dtype = torch.uint8 if num_classes < 256 else torch.int32
    countdown = torch.arange(num_classes, 0, -1, device=by_class.device, dtype=dtype).reshape(-1, 1)
    first = ((by_class == top).to(dtype) * countdown).amax(0)  # num_classes - index of the first maximum
    return num_classes - first.long()


def ratio_float32(num: int, den: int) -> float:
    """num / den (non-negative integers, den > 0) rounded once to the nearest float32, ties to even."""
    if num == 0:
        return 0.0
    shift = 24 - (num.bit_length() - den.bit_length())  # num / den * 2**shift lies in [2**23, 2**25)
    dividend, divisor = (num << shift, den) if shift >= 0 else (num, den << -shift)
    quotient, remainder = divmod(dividend, divisor)
    if quotient >> 24:  # 25 bits: the lowest one moves into the remainder
        remainder += (quotient & 1) * divisor
        quotient, divisor, shift = quotient >> 1, 2 * divisor, shift - 1
    if 2 * remainder > divisor or (2 * remainder == divisor and quotient & 1):
        quotient += 1
    return math.ldexp(quotient, -shift)


@dataclass(frozen=True)
class ClassStatistics:
    """The confusion matrix (rows: true class) as Python ints, and per-class tp/fp/fn read off it."""

    confusion: list[list[int]]
    tp: list[int]
    fp: list[int]
    fn: list[int]

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.tp)

    @property
    def support(self) -> list[int]:
        """Samples per true class."""
        return [sum(row) for row in self.confusion]


def class_statistics(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> ClassStatistics:
    """One bincount of (true, predicted) pairs."""
    pairs = targets.flatten().long() * num_classes + preds.flatten().long()
    confusion = torch.bincount(pairs, minlength=num_classes**2).reshape(num_classes, num_classes).tolist()
    tp = [confusion[i][i] for i in range(num_classes)]
    fp = [sum(confusion[r][c] for r in range(num_classes)) - tp[c] for c in range(num_classes)]
    fn = [sum(confusion[c]) - tp[c] for c in range(num_classes)]
    return ClassStatistics(confusion, tp, fp, fn)


def _per_class(stats: ClassStatistics) -> dict[str, list[tuple[int, int]]]:
    """Per-class recall (= per-class accuracy), precision and F1 as (numerator, denominator) counts."""
    tp, fp, fn = stats.tp, stats.fp, stats.fn
    return {"recall": [(t, t + n) for t, n in zip(tp, fn)],
            "precision": [(t, t + p) for t, p in zip(tp, fp)],
            "f1": [(2 * t, 2 * t + n + p) for t, n, p in zip(tp, fn, fp)]}


def _quotient(counts: tuple[int, int]) -> float:
    """One quotient of counts rounded to float32, 0 for 0/0."""
    num, den = counts
    return ratio_float32(num, den) if den else 0.0


def _macro(stats: ClassStatistics, scores: list[tuple[int, int]]) -> float:
    """Exact mean over the classes that are present or predicted, correctly rounded to float32."""
    counted = [(num, den or 1) for (num, den), t, p, n in zip(scores, stats.tp, stats.fp, stats.fn) if t + p + n]
    if not counted:
        return 0.0
    common = math.lcm(*(den for _, den in counted))
    return ratio_float32(sum(num * (common // den) for num, den in counted), common * len(counted))


def metrics_from_statistics(stats: ClassStatistics) -> dict[str, float]:
    """Micro accuracy and macro accuracy/precision/recall/F1 (no loss: that needs the logits)."""
    per_class = _per_class(stats)
    return {"accuracy": _quotient((sum(stats.tp), sum(stats.tp) + sum(stats.fn))),
            "accuracy_macro": _macro(stats, per_class["recall"]),
            "precision": _macro(stats, per_class["precision"]),
            "recall": _macro(stats, per_class["recall"]),
            "f1": _macro(stats, per_class["f1"])}


def report_from_statistics(stats: ClassStatistics, class_names: tuple[str, ...] = ()) -> dict:
    """Confusion matrix and per-class precision, recall, F1 and support."""
    per_class = _per_class(stats)
    names = list(class_names) or [str(i) for i in range(stats.num_classes)]
    support = stats.support
    rows = [{"class": names[i], "precision": _quotient(per_class["precision"][i]),
             "recall": _quotient(per_class["recall"][i]), "f1": _quotient(per_class["f1"][i]),
             "support": support[i]} for i in range(stats.num_classes)]
    return {"per_class": rows, "confusion_matrix": stats.confusion}


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor,
                           num_classes: int) -> dict[str, float]:
    """Loss, micro accuracy and macro accuracy/precision/recall/F1 (fresh state every call)."""
    predicted = predictions(logits, targets)
    stats = class_statistics(predicted.classes, targets, num_classes)
    return {"loss": predicted.loss, **metrics_from_statistics(stats)}


def per_class_report(logits: torch.Tensor, targets: torch.Tensor, num_classes: int,
                     class_names: tuple[str, ...] = ()) -> dict:
    """Confusion matrix (rows: true class) and per-class precision, recall, F1 and support."""
    return report_from_statistics(class_statistics(logits.argmax(dim=1), targets, num_classes), class_names)


def classification_summary(logits: torch.Tensor, targets: torch.Tensor, num_classes: int,
                           class_names: tuple[str, ...] = ()) -> dict:
    """classification_metrics and per_class_report together, from one confusion matrix."""
    predicted = predictions(logits, targets)
    stats = class_statistics(predicted.classes, targets, num_classes)
    return {"loss": predicted.loss, **metrics_from_statistics(stats), **report_from_statistics(stats, class_names)}
