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
