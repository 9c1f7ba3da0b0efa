"""Classification metrics: torchmetrics' definitions, exact quotients rounded once to float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from machop.metrics import classification_metrics


def test_metrics_match_sklearn():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(500, 5, generator=generator)
    targets = torch.randint(0, 5, (500,), generator=generator)
    targets[:200] = logits[:200].argmax(1)  # make it better than chance
    got = classification_metrics(logits, targets, 5)
    preds = logits.argmax(1).numpy()
    y = targets.numpy()
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(y, preds), abs=1e-6)
    assert got["accuracy_macro"] == pytest.approx(sk.balanced_accuracy_score(y, preds), abs=1e-6)
    assert got["precision"] == pytest.approx(sk.precision_score(y, preds, average="macro"), abs=1e-6)
    assert got["recall"] == pytest.approx(sk.recall_score(y, preds, average="macro"), abs=1e-6)
    assert got["f1"] == pytest.approx(sk.f1_score(y, preds, average="macro"), abs=1e-6)
    assert got["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, targets).item())


def test_micro_and_macro_accuracy_differ_on_imbalanced_data():
    targets = torch.tensor([0] * 9 + [1])
    logits = torch.tensor([[1.0, 0.0]] * 10)  # always predicts class 0
    got = classification_metrics(logits, targets, 2)
    assert got["accuracy"] == pytest.approx(0.9)
    assert got["accuracy_macro"] == pytest.approx(0.5)


def _separate_torchmetrics_calls(logits, targets, num_classes):
    """Every metric by its own torchmetrics call, as the one-pass summary replaces them."""
    from torchmetrics.functional import classification as tmf

    preds = logits.argmax(dim=1)
    common = {"num_classes": num_classes, "validate_args": False}
    none = {**common, "average": "none"}
    return {
        "loss": torch.nn.functional.cross_entropy(logits, targets).item(),
        "accuracy": tmf.multiclass_accuracy(preds, targets, average="micro", **common).item(),
        "accuracy_macro": tmf.multiclass_accuracy(preds, targets, average="macro", **common).item(),
        "precision": tmf.multiclass_precision(preds, targets, average="macro", **common).item(),
        "recall": tmf.multiclass_recall(preds, targets, average="macro", **common).item(),
        "f1": tmf.multiclass_f1_score(preds, targets, average="macro", **common).item(),
        "per_class_precision": tmf.multiclass_precision(preds, targets, **none).tolist(),
        "per_class_recall": tmf.multiclass_recall(preds, targets, **none).tolist(),
        "per_class_f1": tmf.multiclass_f1_score(preds, targets, **none).tolist(),
        "confusion_matrix": tmf.multiclass_confusion_matrix(preds, targets, num_classes=num_classes,
                                                            validate_args=False).tolist(),
        "support": torch.bincount(targets, minlength=num_classes).tolist(),
    }


def _cases():
    for seed in range(6):
        generator = torch.Generator().manual_seed(seed)
        num_classes = [2, 3, 5, 7, 10, 4][seed]
        samples = [1, 17, 300, 1000, 64, 50][seed]
        logits = torch.randn(samples, num_classes, generator=generator)
        targets = torch.randint(0, num_classes, (samples,), generator=generator)
        if seed == 5:  # classes that are never predicted nor present: torchmetrics leaves them out of macro means
            logits[:, 2:] -= 100.0
            targets = targets.clamp(max=1)
        targets[: samples // 3] = logits[: samples // 3].argmax(1)
        yield logits, targets, num_classes


CASES = list(_cases())


def _half_float32_step(value: float) -> float:
    return float(np.spacing(np.float32(abs(value)))) / 2


@pytest.mark.parametrize("case", range(len(CASES)))
def test_one_pass_summary_equals_the_separate_torchmetrics_calls(case):
    from machop.runtime.classification import classification_summary

    logits, targets, num_classes = CASES[case]
    names = tuple(f"c{i}" for i in range(num_classes))
    got = classification_summary(logits, targets, num_classes, names)
    want = _separate_torchmetrics_calls(logits, targets, num_classes)
    assert got["accuracy"] == want["accuracy"]  # one quotient of counts: bit for bit
    for key in ("accuracy_macro", "precision", "recall", "f1"):  # exact mean vs torchmetrics' float32 sum
        assert abs(got[key] - want[key]) <= 2 * _half_float32_step(want[key]), key
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-6)
    assert got["confusion_matrix"] == want["confusion_matrix"]
    assert [row["class"] for row in got["per_class"]] == list(names)
    for field in ("precision", "recall", "f1"):
        assert [row[field] for row in got["per_class"]] == want[f"per_class_{field}"], field
    assert [row["support"] for row in got["per_class"]] == want["support"]
    assert classification_metrics(logits, targets, num_classes) == {k: got[k] for k in CLASSIFICATION_KEYS}


@pytest.mark.parametrize("case", range(len(CASES)))
def test_macro_means_are_the_exact_values_rounded_once_to_float32(case):
    logits, targets, num_classes = CASES[case]
    got = classification_metrics(logits, targets, num_classes)
    preds, y = logits.argmax(1).numpy(), targets.numpy()
    labels = sorted(set(preds) | set(y))  # torchmetrics' macro means: present or predicted classes
    want = {"accuracy_macro": sk.recall_score(y, preds, labels=labels, average="macro", zero_division=0),
            "precision": sk.precision_score(y, preds, labels=labels, average="macro", zero_division=0),
            "recall": sk.recall_score(y, preds, labels=labels, average="macro", zero_division=0),
            "f1": sk.f1_score(y, preds, labels=labels, average="macro", zero_division=0)}
    for key, value in want.items():
        assert abs(got[key] - value) <= _half_float32_step(value) * (1 + 1e-6), key
    loss = torch.nn.functional.cross_entropy(logits.double(), targets).item()  # float32 terms, float64 sum
    assert abs(got["loss"] - loss) <= 4 * _half_float32_step(loss)


def test_argmax_keeps_torchs_first_maximum_and_nan_rules():
    from machop.runtime.classification import predictions

    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [0.0, float("nan"), 5.0, float("nan")],
                           [-float("inf"), -1.0, -float("inf"), -1.0], [float("inf"), 0.0, float("inf"), 1.0]])
    targets = torch.tensor([1, 0, 2, 3, 0])
    assert predictions(logits, targets).classes.tolist() == logits.argmax(1).tolist() == [1, 0, 1, 1, 0]
    finite = logits[:2]
    assert predictions(finite, targets[:2]).classes.tolist() == [1, 0]


@pytest.mark.parametrize("num_classes", [2, 5, 255, 300])
def test_argmax_of_coarse_logits_full_of_ties_is_torchs(num_classes):
    from machop.runtime.classification import predictions

    generator = torch.Generator().manual_seed(num_classes)
    logits = torch.randint(-2, 3, (2000, num_classes), generator=generator).float()  # many equal maxima
    logits[::7, num_classes // 2] = float("inf")
    logits[::11, 0] = -float("inf")
    targets = torch.randint(0, num_classes, (2000,), generator=generator)
    classes = predictions(logits, targets).classes
    assert classes.dtype == torch.int64 and torch.equal(classes, logits.argmax(1))


def test_ratio_float32_rounds_once_to_nearest_even():
    from fractions import Fraction

    from machop.runtime.classification import ratio_float32

    above_a_tie = Fraction(1) + Fraction(1, 2**24) + Fraction(1, 2**60)  # float64 rounds it onto the tie
    num, den = above_a_tie.numerator, above_a_tie.denominator
    assert float(np.float32(num / den)) == 1.0  # rounding twice goes down
    assert ratio_float32(num, den) == 1.0 + 2.0**-23  # rounding once goes up
    assert ratio_float32(2**24 + 1, 2**24) == 1.0  # a tie: to even
    assert ratio_float32(2**24 + 3, 2**24) == 1.0 + 2.0**-22  # a tie: to even, upwards
    generator = np.random.default_rng(0)
    for num, den in generator.integers(1, 2**40, size=(2000, 2)).tolist():
        assert ratio_float32(num, den) == float(np.float32(num / den)), (num, den)  # one division: rounded once
    assert ratio_float32(0, 7) == 0.0 and ratio_float32(5, 5) == 1.0 and ratio_float32(2**30, 3) == float(np.float32(2**30 / 3))


CLASSIFICATION_KEYS = ("loss", "accuracy", "accuracy_macro", "precision", "recall", "f1")
