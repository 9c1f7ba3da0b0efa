"""The training loop: in-memory batches, optional AMP on CUDA, validation every epoch."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from machop.config.schema import CHECKPOINT_MONITORS
from machop.data.batches import iterate_batches, num_batches
from machop.data.dataset import Dataset, Split
from machop.errors import ConfigError, ModelError, TrainingError
from machop.runtime.device import Precision, resolve_device, resolve_precision
from machop.train.distributed import Ranks, shard_bounds
from machop.train.evaluate import evaluate
from machop.train.optim import build_optimizer, build_scheduler
from machop.train.progress import EpochProgress
from machop.train.settings import TrainSettings

EpochCallback = Callable[["EpochEnd"], None]


@dataclass
class EpochEnd:
    """What an epoch-end callback sees."""

    epoch: int
    metrics: dict[str, float]
    model: nn.Module
    improved: bool


@dataclass
class FitResult:
    """Per-epoch history and the best epoch by the settings' checkpoint monitor."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_metrics: dict[str, float] = field(default_factory=dict)
    steps: int = 0


def is_better(metrics: dict[str, float], best: dict[str, float], monitor: str = "val_accuracy") -> bool:
    """Whether an epoch's metrics beat the best so far under a checkpoint monitor.

    val_accuracy: higher accuracy, ties broken by lower loss; val_loss: lower loss, ties broken
    by higher accuracy; last: every epoch beats the one before it.
    """
    if not best or monitor == "last":
        return True
    if monitor == "val_loss":
        if metrics["val_loss"] != best["val_loss"]:
            return metrics["val_loss"] < best["val_loss"]
        return metrics["val_accuracy"] > best["val_accuracy"]
    if metrics["val_accuracy"] != best["val_accuracy"]:
        return metrics["val_accuracy"] > best["val_accuracy"]
    return metrics["val_loss"] < best["val_loss"]


def check_monitor(monitor: str) -> None:
    """Refuse a checkpoint monitor the loop does not know, before any training."""
    if monitor not in CHECKPOINT_MONITORS:
        raise ConfigError(f"unknown checkpoint_monitor {monitor!r} "
                          f"(valid: {', '.join(CHECKPOINT_MONITORS)})")


class _Stepper:
    """One optimizer step per `accumulate` batches, with a gradient scaler when needed."""

    def __init__(self, model: nn.Module, settings: TrainSettings, precision: Precision,
                 device: torch.device) -> None:
        self.optimizer = build_optimizer(settings.optimizer, model.parameters(),
                                         settings.learning_rate, settings.weight_decay)
        self.scaler = torch.amp.GradScaler(device.type) if precision.uses_grad_scaler else None
        self.accumulate = settings.accumulate_grad_batches
        self.pending = 0
        self.steps = 0

    def backward(self, loss: torch.Tensor) -> None:
        loss = loss / self.accumulate if self.accumulate > 1 else loss
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()
        self.pending += 1
        if self.pending == self.accumulate:
            self.step()

    def step(self) -> None:
        if self.pending == 0:
            return
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.pending = 0
        self.steps += 1


def _check_finite(value: float, epoch: int) -> None:
    if not math.isfinite(value):
        raise TrainingError(f"training diverged: loss became {value} in epoch {epoch + 1}; "
                            "lower the learning rate")


class _RunningStats:
    """Per-batch loss and hits kept on the device; folded into totals only when read."""

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.sizes: list[int] = []
        self.hits: list[torch.Tensor] = []
        self.loss_total = 0.0
        self.hit_total = 0
        self.seen = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        self.losses.append(loss.detach())
        self.sizes.append(len(targets))
        self.hits.append(logits.detach().argmax(dim=1) == targets)

    def summary(self, ranks: Ranks | None = None) -> tuple[float, float]:
        """Mean loss and accuracy over every sample seen so far (by every rank)."""
        if self.losses or ranks is not None:
            sums = torch.zeros(3, dtype=torch.float64, device=ranks.device if ranks else "cpu")
            if self.losses:
                weights = torch.tensor(self.sizes, dtype=torch.float32, device=self.losses[0].device)
                sums[0] = (torch.stack(self.losses).float() * weights).sum().to(sums)
                sums[1] = torch.cat(self.hits).sum().to(sums)
                sums[2] = sum(self.sizes)
            if ranks is not None:  # every rank calls this at the same step, so all agree
                sums = ranks.all_sum(sums)
            loss_sum, hits, seen = sums.tolist()
            self.loss_total += loss_sum
            self.hit_total += int(hits)
            self.seen += int(seen)
            self.losses, self.sizes, self.hits = [], [], []
        if self.seen == 0:
            return float("nan"), float("nan")
        return self.loss_total / self.seen, self.hit_total / self.seen


def _my_batches(split: Split, settings: TrainSettings, generator: torch.Generator,
                ranks: Ranks | None) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
    """This rank's share of each batch, and the factor that turns its mean loss into its share
    of the whole batch's mean loss (DDP then averages gradients over ranks).

    Every rank draws the same seeded permutation and slices the same global batch of
    batch_size × world samples, so N processes step exactly like one process with an N times
    larger batch.
    """
    if ranks is None:
        for xb, yb in iterate_batches(split, settings.batch_size, shuffle=True, generator=generator):
            yield xb, yb, 1.0
        return
    world = ranks.world_size
    for xb, yb in iterate_batches(split, settings.batch_size * world, shuffle=True,
                                  generator=generator):
        if len(yb) < world:  # a rank would get no sample; every rank skips this last batch
            continue
        lo, hi = shard_bounds(len(yb), world, ranks.rank)
        yield xb[lo:hi], yb[lo:hi], (hi - lo) * world / len(yb)


def _train_epoch(model: nn.Module, split: Split, settings: TrainSettings, stepper: _Stepper,
                 precision: Precision, device: torch.device, generator: torch.Generator,
                 progress: EpochProgress, epoch: int, ranks: Ranks | None = None) -> dict[str, float]:
    model.train()
    stats = _RunningStats()
    since_log = 0
    for xb, yb, share in _my_batches(split, settings, generator, ranks):
        if precision.param_dtype != torch.float32 and xb.is_floating_point():
            xb = xb.to(precision.param_dtype)
        with precision.autocast(device):
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
        stepper.backward(loss * share if share != 1.0 else loss)
        stats.add(loss, logits, yb)
        since_log += 1
        if since_log == settings.log_every_n_steps:
            running_loss, running_accuracy = stats.summary(ranks)
            _check_finite(running_loss, epoch)
            progress.advance(since_log, loss=running_loss, acc=running_accuracy)
            since_log = 0
        if 0 <= settings.max_steps <= stepper.steps:
            break
    stepper.step()
    train_loss, train_accuracy = stats.summary(ranks)
    _check_finite(train_loss, epoch)
    progress.advance(since_log, loss=train_loss, acc=train_accuracy)
    return {"train_loss": train_loss, "train_accuracy": train_accuracy}


def check_trainable(model: nn.Module) -> None:
    """Refuse a model the optimizer could not update (no parameter that requires a gradient)."""
    if not any(parameter.requires_grad for parameter in model.parameters()):
        raise ModelError(f"model {type(model).__name__} has no trainable parameters, so there is nothing "
                         "to train; give it parameters (e.g. an nn.Linear) or use `machop test`")


def fit(model: nn.Module, dataset: Dataset, settings: TrainSettings, *,
        on_epoch_end: EpochCallback | None = None, progress: bool = False,
        restore_best: bool = True, ranks: Ranks | None = None) -> FitResult:
    """Train `model` on the dataset's train split, validating after every epoch.

    With `ranks` (a process group), every rank trains its share of each batch through DDP;
    rank 0 alone validates the plain model and broadcasts the metrics, so the history is the
    same on every rank and `on_epoch_end` sees the unwrapped model.
    """
    check_trainable(model)
    check_monitor(settings.checkpoint_monitor)
    device = ranks.device if ranks is not None else resolve_device(settings.accelerator)
    precision = resolve_precision(settings.precision, device)
    model.to(device=device, dtype=precision.param_dtype)
    train_model = ranks.wrap(model) if ranks is not None else model
    train_split = dataset.train.to(device)
    val_split = dataset.validation.to(device)
    generator = torch.Generator().manual_seed(settings.seed)
    stepper = _Stepper(model, settings, precision, device)
    scheduler = build_scheduler(settings.lr_scheduler, stepper.optimizer, settings.t_max,
                                settings.eta_min)
    result = FitResult()
    best_state: dict[str, Any] | None = None
    world = ranks.world_size if ranks is not None else 1
    steps_per_epoch = num_batches(train_split, settings.batch_size * world)
    with EpochProgress(progress, settings.max_epochs) as bar:
        for epoch in range(settings.max_epochs):
            bar.start_epoch(epoch, steps_per_epoch)
            metrics = _train_epoch(train_model, train_split, settings, stepper, precision, device,
                                   generator, bar, epoch, ranks)
            val: dict[str, float] | None = None
            if ranks is None or ranks.is_zero:
                val = evaluate(model, val_split, dataset.info.num_classes,
                               batch_size=max(settings.batch_size, 1024), device=device,
                               precision=precision)
            if ranks is not None:
                val = ranks.broadcast(val)
            metrics.update({f"val_{k}": v for k, v in val.items()})
            metrics.update(epoch=epoch + 1, lr=stepper.optimizer.param_groups[0]["lr"])
            if scheduler is not None:
                scheduler.step()
            improved = is_better(metrics, result.best_metrics, settings.checkpoint_monitor)
            if improved:
                result.best_epoch, result.best_metrics = epoch + 1, metrics
                best_state = copy.deepcopy(model.state_dict())
            result.history.append(metrics)
            bar.end_epoch(epoch, metrics)
            if on_epoch_end is not None:
                on_epoch_end(EpochEnd(epoch + 1, metrics, model, improved))
            if 0 <= settings.max_steps <= stepper.steps:
                break
    result.steps = stepper.steps
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
    return result
