"""Optimizers and learning-rate schedules by name."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from machop.errors import ConfigError, unknown_name

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter], learning_rate: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    """Optimizer by name; SGD uses momentum 0.9."""
    if name not in OPTIMIZERS:
        raise ConfigError(unknown_name("optimizer", name, OPTIMIZERS))
    extra = {"momentum": 0.9} if name == "sgd" else {}
    return OPTIMIZERS[name](params, lr=learning_rate, weight_decay=weight_decay, **extra)


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, t_max: int,
                    eta_min: float) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Per-epoch learning-rate schedule: cosine annealing (MASE's) or none."""
    if name == "none":
        return None
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max, eta_min=eta_min)
    raise ConfigError(unknown_name("lr_scheduler", name, ["cosine", "none"]))
