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

import functools
import math
import struct
from dataclasses import dataclass
from typing import NamedTuple

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
    scan = _scan(logits, targets)
    if scan is None:
        return _general_predictions(logits, targets)
    return Predictions(_classes(scan), scan.loss)


class _Scan(NamedTuple):
    """What one class-major pass over finite logits yields (see `_scan`)."""

    countdown: np.ndarray  # per sample, num_classes minus the index of its first maximal logit (uint8)
    target: np.ndarray  # per sample, its class (int64, in range)
    num_classes: int
    loss: float


_COUNTDOWN = np.arange(255, 0, -1, dtype=np.uint8).reshape(-1, 1)  # its last k rows count k down to 1


def _scan(logits: torch.Tensor, targets: torch.Tensor) -> _Scan | None:
    """Argmax, confusion counts and loss of 2-D CPU logits (1-255 classes, one target per sample).

    None where the general path decides: other shapes, devices or target dtypes, a target outside
    [0, classes) (the general path raises), and a loss that is not finite (a NaN or infinite logit
    somewhere: torch.argmax's NaN rules). Every value is the general path's, bit for bit: the same
    float32 operations on the same values (exp, the class sum and log on the same torch layout, the
    float64 sum of the same float32 terms); a sample's first maximum is the first logit equal to
    the row's maximum once that maximum is finite, whatever the sign of a zero maximum.
    """
    if (logits.dim() != 2 or logits.device.type != "cpu" or logits.requires_grad or targets.device.type != "cpu"
            or targets.dtype.is_floating_point or targets.dtype.is_complex):
        return None
    samples, classes = logits.shape
    if samples == 0 or not 0 < classes < 256 or targets.numel() != samples:
        return None
    target = (targets if targets.dtype == torch.int64 else targets.long()).reshape(-1).numpy()
    if target.view(np.uint64).max() >= classes:  # a negative target reads as a huge unsigned one
        return None
    by_sample = logits.float().numpy()
    by_class = np.ascontiguousarray(by_sample.T)  # numpy transposes faster than torch
    top = np.maximum.reduce(by_class, axis=0)
    shifted = torch.empty(classes, samples)
    terms = torch.empty(samples)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf or overflow: the general path decides
        np.subtract(by_class, top, out=shifted.numpy())
        # numpy compares against a broadcast row several times faster than torch; exact either way
        weighted = (by_class == top).view(np.uint8)
        weighted *= _COUNTDOWN[255 - classes:]
        countdown = np.maximum.reduce(weighted, axis=0)
        log_sum_exp = shifted.exp_().sum(0).log_()
        np.add(log_sum_exp.numpy(), top, out=log_sum_exp.numpy())
        np.subtract(log_sum_exp.numpy(), _picked(by_sample, by_class, target), out=terms.numpy())
    total = terms.sum(dtype=torch.float64).item()
    if not math.isfinite(total):  # some maximum is NaN or infinite
        return None
    return _Scan(countdown, target, classes, float(np.float32(total / samples)))


def _picked(by_sample: np.ndarray, by_class: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Each sample's logit of its target class (targets already checked to lie in range)."""
    samples, classes = by_sample.shape
    if by_sample.flags.c_contiguous:
        flat = target + _row_starts(samples, classes)
        return by_sample.ravel().take(flat)
    flat = target * samples
    flat += np.arange(samples)
    return by_class.ravel().take(flat)


@functools.lru_cache(maxsize=4)
def _row_starts(samples: int, classes: int) -> np.ndarray:
    """0, classes, 2 * classes, ...: where each sample's row starts (read-only)."""
    starts = np.arange(0, samples * classes, classes)
    starts.flags.writeable = False
    return starts


def _classes(scan: _Scan) -> torch.Tensor:
    """The predicted class per sample (int64)."""
    return torch.from_numpy(scan.num_classes - scan.countdown.astype(np.int64))


def _general_predictions(logits: torch.Tensor, targets: torch.Tensor) -> Predictions:
    """`predictions` for any input torch accepts: NaN and infinite logits, 1-D logits, any device."""
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


_FLOAT32 = struct.Struct("f")  # packing rounds a float64 to the nearest float32, ties to even


def ratio_float32(num: int, den: int) -> float:
    """num / den (non-negative integers, den > 0) rounded once to the nearest float32, ties to even."""
    if num <= den < 1 << 29:
        # Scaled so that float32's step is 1, a quotient of integers with den < 2**29 that is not a
        # float32 rounding midpoint lies more than 2**-30 from it, and float64's correctly rounded
        # quotient (Python divides integers exactly, then rounds) is within 2**-30: both round alike.
        return _FLOAT32.unpack(_FLOAT32.pack(num / den))[0]
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
    return _statistics_of(confusion)


def _statistics_of(confusion: list[list[int]]) -> ClassStatistics:
    """tp, fp and fn read off a confusion matrix (rows: true class)."""
    tp = [row[i] for i, row in enumerate(confusion)]
    fp = [sum(column) - t for column, t in zip(zip(*confusion), tp)]
    fn = [sum(row) - t for row, t in zip(confusion, tp)]
    return ClassStatistics(confusion, tp, fp, fn)


def _scan_statistics(scan: _Scan, num_classes: int) -> ClassStatistics:
    """The confusion matrix of a scan's predictions (num_classes >= the scan's)."""
    classes = scan.num_classes
    if classes < 16:  # pairs fit a byte: cheaper arithmetic
        pairs = scan.target.astype(np.uint8)
        pairs *= classes + 1
    else:
        pairs = scan.target * (classes + 1)
    pairs += scan.countdown
    pair_counts = np.bincount(pairs, minlength=classes * (classes + 1))  # pair: target, countdown
    counts = pair_counts.reshape(classes, classes + 1)[:, classes:0:-1]  # column c: countdown classes - c
    if num_classes > classes:  # classes that no logit column can predict
        counts = np.pad(counts, (0, num_classes - classes))
    return _statistics_of(counts.tolist())


def _loss_and_statistics(logits: torch.Tensor, targets: torch.Tensor,
                         num_classes: int) -> tuple[float, ClassStatistics]:
    """Mean cross-entropy and the confusion matrix of the predictions."""
    scan = _scan(logits, targets)
    if scan is None:
        predicted = _general_predictions(logits, targets)
        return predicted.loss, class_statistics(predicted.classes, targets, num_classes)
    if scan.num_classes > num_classes:  # predictions beyond the matrix: class_statistics decides
        return scan.loss, class_statistics(_classes(scan), targets, num_classes)
    return scan.loss, _scan_statistics(scan, num_classes)


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


def _macro(scores: list[tuple[int, int]], counted: list[bool]) -> float:
    """Exact mean over the counted classes (quotients in [0, 1]), correctly rounded to float32."""
    kept = [(num, den or 1) for (num, den), keep in zip(scores, counted) if keep]
    if not kept:
        return 0.0
    # The float64 mean is within (n + 1) roundings of the exact one, relative error below
    # (n + 1) * 2**-53: where widening it by twice that (n + 2) still rounds to one float32, the
    # exact mean rounds there too; otherwise (close to a rounding midpoint) it is computed exactly.
    mean = sum([num / den for num, den in kept]) / len(kept)
    slack = (len(kept) + 2) * 2.0**-52
    low = _FLOAT32.pack(mean * (1.0 - slack))
    if low == _FLOAT32.pack(mean * (1.0 + slack)):
        return _FLOAT32.unpack(low)[0]
    common = math.lcm(*(den for _, den in kept))
    return ratio_float32(sum(num * (common // den) for num, den in kept), common * len(kept))


def _metrics(stats: ClassStatistics, per_class: dict[str, list[tuple[int, int]]]) -> dict[str, float]:
    """Micro accuracy and the macro means over the classes that are present or predicted."""
    counted = [t + p + n > 0 for t, p, n in zip(stats.tp, stats.fp, stats.fn)]
    recall = _macro(per_class["recall"], counted)
    correct = sum(stats.tp)
    return {"accuracy": _quotient((correct, correct + sum(stats.fn))),
            "accuracy_macro": recall,
            "precision": _macro(per_class["precision"], counted),
            "recall": recall,
            "f1": _macro(per_class["f1"], counted)}


def _report(stats: ClassStatistics, per_class: dict[str, list[tuple[int, int]]],
            class_names: tuple[str, ...]) -> dict:
    """Per-class rows and the confusion matrix."""
    names = list(class_names) or [str(i) for i in range(stats.num_classes)]
    rows = [{"class": names[i], "precision": _quotient(precision), "recall": _quotient(recall), "f1": _quotient(f1),
             "support": support}
            for i, (precision, recall, f1, support) in enumerate(zip(per_class["precision"], per_class["recall"],
                                                                     per_class["f1"], stats.support))]
    return {"per_class": rows, "confusion_matrix": stats.confusion}


def metrics_from_statistics(stats: ClassStatistics) -> dict[str, float]:
    """Micro accuracy and macro accuracy/precision/recall/F1 (no loss: that needs the logits)."""
    return _metrics(stats, _per_class(stats))


def report_from_statistics(stats: ClassStatistics, class_names: tuple[str, ...] = ()) -> dict:
    """Confusion matrix and per-class precision, recall, F1 and support."""
    return _report(stats, _per_class(stats), class_names)


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor,
                           num_classes: int) -> dict[str, float]:
    """Loss, micro accuracy and macro accuracy/precision/recall/F1 (fresh state every call)."""
    loss, stats = _loss_and_statistics(logits, targets, num_classes)
    return {"loss": loss, **metrics_from_statistics(stats)}


def per_class_report(logits: torch.Tensor, targets: torch.Tensor, num_classes: int,
                     class_names: tuple[str, ...] = ()) -> dict:
    """Confusion matrix (rows: true class) and per-class precision, recall, F1 and support."""
    return report_from_statistics(class_statistics(logits.argmax(dim=1), targets, num_classes), class_names)


def classification_summary(logits: torch.Tensor, targets: torch.Tensor, num_classes: int,
                           class_names: tuple[str, ...] = ()) -> dict:
    """classification_metrics and per_class_report together, from one confusion matrix."""
    loss, stats = _loss_and_statistics(logits, targets, num_classes)
    per_class = _per_class(stats)
    return {"loss": loss, **_metrics(stats, per_class), **_report(stats, per_class, class_names)}
