"""Classification metrics agree exactly with scikit-learn's definitions."""

from __future__ import annotations

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


@pytest.mark.parametrize("seed", range(6))
def test_one_pass_summary_equals_the_separate_torchmetrics_calls(seed):
    from machop.runtime.classification import classification_summary

    generator = torch.Generator().manual_seed(seed)
    num_classes = [2, 3, 5, 7, 10, 4][seed]
    samples = [1, 17, 300, 1000, 64, 50][seed]
    logits = torch.randn(samples, num_classes, generator=generator)
    targets = torch.randint(0, num_classes, (samples,), generator=generator)
    if seed == 5:  # classes that are never predicted nor present: torchmetrics leaves them out of macro means
        logits[:, 2:] -= 100.0
        targets = targets.clamp(max=1)
    targets[: samples // 3] = logits[: samples // 3].argmax(1)
    names = tuple(f"c{i}" for i in range(num_classes))
    got = classification_summary(logits, targets, num_classes, names)
    want = _separate_torchmetrics_calls(logits, targets, num_classes)
    for key in ("loss", "accuracy", "accuracy_macro", "precision", "recall", "f1"):
        assert got[key] == want[key], key  # bit for bit, not approximately
    assert got["confusion_matrix"] == want["confusion_matrix"]
    assert [row["class"] for row in got["per_class"]] == list(names)
    for field in ("precision", "recall", "f1"):
        assert [row[field] for row in got["per_class"]] == want[f"per_class_{field}"], field
    assert [row["support"] for row in got["per_class"]] == want["support"]
    assert classification_metrics(logits, targets, num_classes) == {k: got[k] for k in CLASSIFICATION_KEYS}


CLASSIFICATION_KEYS = ("loss", "accuracy", "accuracy_macro", "precision", "recall", "f1")
