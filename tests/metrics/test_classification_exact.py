"""Classification metrics against exact references: argmax, confusion counts, exactly rounded quotients."""

from __future__ import annotations

import math
import struct
from fractions import Fraction

import numpy as np
import pytest
import torch

from machop.runtime import classification as cls


def _float32(value: Fraction) -> float:
    """An exact fraction rounded once to the nearest float32, ties to even (independent of the module)."""
    guess = np.float32(float(value))
    candidates = {guess, np.nextafter(guess, np.float32(np.inf)), np.nextafter(guess, np.float32(-np.inf))}
    best = min(abs(Fraction(float(c)) - value) for c in candidates)
    closest = sorted(float(c) for c in candidates if abs(Fraction(float(c)) - value) == best)
    if len(closest) == 2:  # a tie: the even significand
        return next(c for c in closest if not struct.unpack("<I", struct.pack("<f", c))[0] & 1)
    return closest[0]


def _same(a: float, b: float) -> bool:
    """Equal bits (NaN equals NaN)."""
    return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))


def _reference(logits: torch.Tensor, targets: torch.Tensor, num_classes: int) -> dict:
    """Confusion matrix from torch.argmax and every quotient as an exact fraction rounded once."""
    preds = logits.float().argmax(1).numpy()
    y = targets.numpy()
    confusion = np.bincount(y * num_classes + preds, minlength=num_classes**2).reshape(num_classes, num_classes)
    tp = np.diag(confusion)
    fp, fn = confusion.sum(0) - tp, confusion.sum(1) - tp
    scores = {"precision": [Fraction(int(t), int(t + p)) if t + p else Fraction(0) for t, p in zip(tp, fp)],
              "recall": [Fraction(int(t), int(t + n)) if t + n else Fraction(0) for t, n in zip(tp, fn)],
              "f1": [Fraction(int(2 * t), int(2 * t + n + p)) if 2 * t + n + p else Fraction(0)
                     for t, n, p in zip(tp, fn, fp)]}
    counted = [i for i in range(num_classes) if tp[i] + fp[i] + fn[i]]
    macro = {key: _float32(sum(values[i] for i in counted) / len(counted)) for key, values in scores.items()}
    return {"accuracy": _float32(Fraction(int(tp.sum()), len(y))), "accuracy_macro": macro["recall"], **macro,
            "confusion_matrix": confusion.tolist(), "per_class_support": confusion.sum(1).tolist(),
            **{f"per_class_{key}": [_float32(v) for v in values] for key, values in scores.items()}}


def _logits(seed: int, samples: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(samples, classes, generator=generator) * 3
    if seed % 3 == 1:  # a coarse grid: many rows with several equal maxima
        logits = logits.round()
    if seed % 3 == 2:  # a float32 grid fine enough for near-equal maxima
        logits = (logits * 64).round() / 64
    targets = torch.randint(0, classes, (samples,), generator=generator)
    targets[: samples // 3] = logits[: samples // 3].argmax(1)
    return logits, targets


SHAPES = [(1, 1), (1, 3), (17, 2), (1000, 5), (10000, 5), (999, 7), (333, 15), (250, 16), (129, 40), (64, 255),
          (40, 256), (31, 300)]


@pytest.mark.parametrize("shape", SHAPES)
def test_summary_equals_exact_references_on_random_logits(shape):
    samples, classes = shape
    for seed in range(6):
        logits, targets = _logits(seed, samples, classes)
        got = cls.classification_summary(logits, targets, classes)
        want = _reference(logits, targets, classes)
        for key in ("accuracy", "accuracy_macro", "precision", "recall", "f1", "confusion_matrix"):
            assert got[key] == want[key], (seed, key)
        for field in ("precision", "recall", "f1", "support"):
            assert [row[field] for row in got["per_class"]] == want[f"per_class_{field}"], (seed, field)
        loss = torch.nn.functional.cross_entropy(logits.double(), targets).item()  # float32 terms, float64 sum
        assert abs(got["loss"] - loss) <= 1e-6 * max(1.0, abs(loss)), seed
        classes_got = cls.predictions(logits, targets).classes
        assert classes_got.dtype == torch.int64 and torch.equal(classes_got, logits.argmax(1)), seed


def _special_rows(seed: int, samples: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    logits, targets = _logits(seed, samples, classes)
    generator = torch.Generator().manual_seed(1000 + seed)
    rows = torch.randint(0, samples, (4,), generator=generator).tolist()
    columns = torch.randint(0, classes, (4,), generator=generator).tolist()
    logits[rows[0], columns[0]] = float("nan")
    logits[rows[1], columns[1]] = float("inf")
    logits[rows[2], :] = -float("inf")
    logits[rows[3], columns[3]] = -float("inf")
    return logits, targets


@pytest.mark.parametrize("case", ["plain", "nan", "inf", "all-minus-inf", "minus-inf", "finite-coarse", "huge"])
def test_every_path_returns_the_general_computation_bit_for_bit(case):
    """The one-pass scan returns exactly what the general (torch) formulation returns, NaN rules included."""
    for seed in range(8):
        samples, classes = [(1000, 5), (1001, 3), (17, 2), (300, 13), (1, 4), (4097, 5), (50, 1), (77, 200)][seed]
        logits, targets = _special_rows(seed, samples, classes) if case != "plain" else _logits(seed, samples, classes)
        if case == "plain" or case == "finite-coarse":
            logits = torch.nan_to_num(logits, nan=1.0, posinf=2.0, neginf=-2.0)
        if case == "huge":
            logits = torch.nan_to_num(logits, nan=1.0, posinf=2.0, neginf=-2.0) * 1e37
        if case == "nan":
            logits = torch.nan_to_num(logits, posinf=2.0, neginf=-2.0)
        general = cls._general_predictions(logits, targets)
        got = cls.predictions(logits, targets)
        assert torch.equal(got.classes, general.classes) and torch.equal(got.classes, logits.argmax(1))
        assert _same(got.loss, general.loss), (case, seed, got.loss, general.loss)
        summary = cls.classification_summary(logits, targets, classes)
        stats = cls.class_statistics(general.classes, targets, classes)
        want = {"loss": general.loss, **cls.metrics_from_statistics(stats), **cls.report_from_statistics(stats)}
        assert _same(summary.pop("loss"), want.pop("loss")) and summary == want, (case, seed)


def _old_summary(logits, targets, num_classes, names=()):
    general = cls._general_predictions(logits, targets)
    stats = cls.class_statistics(general.classes, targets, num_classes)
    return {"loss": general.loss, **cls.metrics_from_statistics(stats), **cls.report_from_statistics(stats, names)}


def test_unusual_inputs_take_the_general_path_with_the_same_results():
    logits, targets = _logits(4, 500, 5)
    cases = [
        (logits.double(), targets, 5), (logits.half(), targets, 5), (logits.T.contiguous().T, targets, 5),
        (logits[::2], targets[::2], 5), (logits, targets.int(), 5), (logits, targets.to(torch.uint8), 5),
        (logits, targets.reshape(-1, 1), 5), (logits, targets, 9), (logits, targets[:1], 5),
        (logits, targets.double(), 5), (logits[:, :3], targets.clamp(max=2), 3),
    ]
    for index, (x, y, num_classes) in enumerate(cases):
        got, want = cls.classification_summary(x, y, num_classes), _old_summary(x, y, num_classes)
        assert _same(got.pop("loss"), want.pop("loss")) and got == want, index
        assert cls.classification_metrics(x, y, num_classes) == {
            key: value for key, value in cls.classification_summary(x, y, num_classes).items()
            if key in cls.CLASSIFICATION_METRICS}, index
    with pytest.raises(IndexError):  # class names are indexed, as before
        cls.classification_summary(logits, targets, 5, ("a", "b"))
    for function in (_old_summary, cls.classification_summary):  # 1-D logits: torch's error, as before
        with pytest.raises(IndexError):
            function(logits.reshape(-1)[:5], targets[:1], 5)


@pytest.mark.parametrize("bad", [[0, 1, 5], [0, -1, 2], [0, 2**62, 1], [-(2**62), 0, 1]])
def test_targets_out_of_range_raise_as_the_general_path_does(bad):
    logits = torch.randn(3, 5)
    targets = torch.tensor(bad)
    with pytest.raises(RuntimeError):
        cls._general_predictions(logits, targets)
    with pytest.raises(RuntimeError):
        cls.predictions(logits, targets)
    with pytest.raises(RuntimeError):
        cls.classification_summary(logits, targets, 5)


def test_num_classes_below_the_logit_columns_behaves_as_before():
    logits = torch.tensor([[0.0, 1.0, 5.0], [3.0, 0.0, 1.0], [0.0, 2.0, 1.0]])
    targets = torch.tensor([0, 0, 1])
    assert cls.classification_summary(logits, targets, 2) == _old_summary(logits, targets, 2)  # pairs that fit
    for function in (_old_summary, cls.classification_summary):  # a pair beyond the matrix: its reshape fails
        with pytest.raises(RuntimeError):
            function(logits, torch.tensor([1, 1, 1]), 2)


def test_ratio_float32_near_rounding_midpoints_with_large_denominators():
    generator = np.random.default_rng(7)
    for den in [2**29 - 1, 2**29 - 3, 2**28 + 1, 3 * 2**27 - 1, 10**8 + 7, 2**24 + 1, 2**24 - 1, 12345]:
        for _ in range(300):  # quotients within a few units of 2**-60 of a float32 midpoint
            mid = Fraction(int(generator.integers(2**23, 2**24)) * 2 + 1, 2**25) / 2 ** int(generator.integers(0, 20))
            num = round(mid * den) + int(generator.integers(-2, 3))
            if 0 <= num <= den:
                assert cls.ratio_float32(num, den) == _float32(Fraction(num, den)), (num, den)
    assert cls.ratio_float32(2**24 + 1, 2**25 + 2) == 0.5 and cls.ratio_float32(0, 2**29 - 1) == 0.0
    for num, den in generator.integers(1, 2**29, size=(3000, 2)).tolist():
        num, den = min(num, den), max(num, den)
        assert cls.ratio_float32(num, den) == _float32(Fraction(num, den)), (num, den)


def test_macro_mean_rounds_exactly_near_and_at_midpoints():
    counted = [True, True]
    assert cls._macro([(1, 1), (2**24 - 1, 2**24)], counted) == 1.0  # exactly the midpoint below 1: to even
    assert cls._macro([(1, 1), (2**24 - 3, 2**24)], counted) == 1.0 - 2.0**-23  # exactly a midpoint: to even
    generator = np.random.default_rng(3)
    for _ in range(3000):
        n = int(generator.integers(1, 8))
        dens = generator.integers(1, 10**6, size=n).tolist()
        scores = [(int(generator.integers(0, den + 1)), den) for den in dens]
        keep = [bool(b) for b in generator.integers(0, 2, size=n)]
        kept = [Fraction(num, den) for (num, den), k in zip(scores, keep) if k]
        want = _float32(sum(kept) / len(kept)) if kept else 0.0
        assert cls._macro(scores, keep) == want, (scores, keep)
