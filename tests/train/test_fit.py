"""The training loop: learns, is deterministic, honours its settings, fails loudly on NaN."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from machop.data import Dataset, DatasetInfo, Split, load_dataset
from machop.errors import TrainingError
from machop.models import build_model
from machop.train import TrainSettings, evaluate, fit

SETTINGS = TrainSettings(batch_size=64, learning_rate=1e-2, max_epochs=3, accelerator="cpu",
                         precision="32", lr_scheduler="none")


@pytest.fixture(scope="module")
def toy():
    return load_dataset("toy-tiny")


def trained(dataset, settings=SETTINGS, name="toy", seed=0):
    torch.manual_seed(seed)
    model = build_model(name, dataset.info)
    return model, fit(model, dataset, settings)


def test_training_learns_the_toy_task(toy):
    torch.manual_seed(0)
    model = build_model("toy", toy.info)
    before = evaluate(model, toy.test, 2)["accuracy"]
    result = fit(model, toy, SETTINGS)
    after = evaluate(model, toy.test, 2)["accuracy"]
    assert after > 0.95 > before
    assert len(result.history) == 3 and result.steps == 3 * 64
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_same_seed_same_weights(toy):
    a, _ = trained(toy)
    b, _ = trained(toy)
    c, _ = trained(toy, TrainSettings(**{**SETTINGS.__dict__, "seed": 5}))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters()))


def test_max_steps_stops_early(toy):
    _, result = trained(toy, TrainSettings(**{**SETTINGS.__dict__, "max_steps": 10}))
    assert result.steps == 10 and len(result.history) == 1


def test_gradient_accumulation_matches_a_bigger_batch():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=generator)
    data = Dataset(DatasetInfo("t", 2, 4), Split(x, (x[:, 0] > 0).long()),
                   Split(x[:8], (x[:8, 0] > 0).long()), Split(x[:8], (x[:8, 0] > 0).long()))
    base = dict(learning_rate=1e-2, max_epochs=1, accelerator="cpu", precision="32",
                lr_scheduler="none", optimizer="sgd")
    big, result_big = trained(data, TrainSettings(batch_size=32, **base))
    small, result_small = trained(data, TrainSettings(batch_size=16, accumulate_grad_batches=2, **base))
    assert result_big.steps == result_small.steps == 2
    for p, q in zip(big.parameters(), small.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_best_epoch_weights_are_restored(toy):
    seen = []
    torch.manual_seed(0)
    model = build_model("toy", toy.info)
    result = fit(model, toy, SETTINGS, on_epoch_end=lambda end: seen.append(
        (end.epoch, end.improved, {k: v.clone() for k, v in end.model.state_dict().items()})))
    best = next(state for epoch, _, state in seen if epoch == result.best_epoch)
    assert all(torch.equal(best[k], v) for k, v in model.state_dict().items())
    assert seen[0][1] is True


class Exploding(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x):
        return self.linear(x) * float("inf")


def test_divergence_is_a_training_error(toy):
    with pytest.raises(TrainingError, match="diverged"):
        fit(Exploding(), toy, SETTINGS)


def test_float64_precision(toy):
    model, _ = trained(toy, TrainSettings(**{**SETTINGS.__dict__, "precision": "64", "max_epochs": 1}))
    assert next(model.parameters()).dtype == torch.float64


def test_bf16_mixed_runs_on_cpu(toy):
    _, result = trained(toy, TrainSettings(**{**SETTINGS.__dict__, "precision": "bf16-mixed",
                                              "max_epochs": 1}))
    assert result.history[0]["val_accuracy"] > 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mixed_precision_on_cuda(toy):
    _, result = trained(toy, TrainSettings(**{**SETTINGS.__dict__, "precision": "16-mixed",
                                              "accelerator": "gpu"}))
    assert result.history[-1]["val_accuracy"] > 0.9


def test_checkpoint_monitor_rules():
    from machop.train.fit import is_better

    best = {"val_accuracy": 0.9, "val_loss": 0.30}
    higher_acc_higher_loss = {"val_accuracy": 0.95, "val_loss": 0.40}
    same_acc_lower_loss = {"val_accuracy": 0.9, "val_loss": 0.20}
    lower_acc_lower_loss = {"val_accuracy": 0.85, "val_loss": 0.10}
    same_loss_higher_acc = {"val_accuracy": 0.92, "val_loss": 0.30}
    assert is_better(higher_acc_higher_loss, best, "val_accuracy")
    assert is_better(same_acc_lower_loss, best, "val_accuracy")
    assert not is_better(lower_acc_lower_loss, best, "val_accuracy")
    assert not is_better(higher_acc_higher_loss, best, "val_loss")
    assert is_better(lower_acc_lower_loss, best, "val_loss")
    assert is_better(same_loss_higher_acc, best, "val_loss")
    assert not is_better(dict(best), best, "val_loss") and not is_better(dict(best), best, "val_accuracy")
    assert all(is_better(m, best, "last") for m in (lower_acc_lower_loss, dict(best)))
    assert all(is_better(best, {}, monitor) for monitor in ("val_accuracy", "val_loss", "last"))


def test_last_monitor_keeps_the_final_epoch(toy):
    settings = TrainSettings(**{**SETTINGS.__dict__, "checkpoint_monitor": "last"})
    seen = []
    torch.manual_seed(0)
    model = build_model("toy", toy.info)
    result = fit(model, toy, settings, on_epoch_end=lambda end: seen.append(end.improved))
    assert result.best_epoch == len(result.history) == 3 and seen == [True, True, True]
    assert result.best_metrics == result.history[-1]
    unrestored, _ = trained(toy, settings)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), unrestored.parameters()))


def test_val_loss_monitor_picks_the_lowest_loss_epoch(toy):
    # Validation labels are the training labels flipped, so validation loss grows as the
    # model learns: the lowest-loss epoch is an early one, not the last.
    flipped = Dataset(toy.info, toy.train, Split(toy.validation.x, 1 - toy.validation.y), toy.test)
    settings = TrainSettings(**{**SETTINGS.__dict__, "checkpoint_monitor": "val_loss", "max_epochs": 4})
    _, result = trained(flipped, settings)
    losses = [m["val_loss"] for m in result.history]
    assert result.best_epoch == losses.index(min(losses)) + 1 < len(losses)


def test_unknown_checkpoint_monitor_is_refused_before_training(toy):
    from machop.config import load_config
    from machop.errors import ConfigError

    seen = []
    model = build_model("toy", toy.info)
    settings = TrainSettings(**{**SETTINGS.__dict__, "checkpoint_monitor": "val_f1"})
    with pytest.raises(ConfigError, match="checkpoint_monitor 'val_f1'.*val_accuracy, val_loss, last"):
        fit(model, toy, settings, on_epoch_end=seen.append)
    assert seen == []
    with pytest.raises(ConfigError, match="checkpoint_monitor"):
        load_config(checkpoint_monitor="best")
    assert load_config(checkpoint_monitor="last").checkpoint_monitor == "last"
