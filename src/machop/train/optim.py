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
    """Optimizer by name; SGD uses momentum 0.9, Adam(W) the fused kernel where it exists."""
    if name not in OPTIMIZERS:
        raise ConfigError(unknown_name("optimizer", name, OPTIMIZERS))
    params = list(params)
    # The fused Adam kernel halves the optimizer's share of a small-model step on CPU.
    extra = {"momentum": 0.9} if name == "sgd" else {"fused": _fused_supported(params)}
    return OPTIMIZERS[name](params, lr=learning_rate, weight_decay=weight_decay, **extra)


def _fused_supported(params: list[torch.nn.Parameter]) -> bool:
    devices = {p.device.type for p in params}
    dtypes = {p.dtype for p in params}
    return len(devices) == 1 and devices <= {"cpu", "cuda"} and dtypes <= {
        torch.float32, torch.float64, torch.float16, torch.bfloat16}


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, t_max: int,
                    eta_min: float) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Per-epoch learning-rate schedule: cosine annealing (MASE's) or none."""
    if name == "none":
        return None
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max, eta_min=eta_min)
    raise ConfigError(unknown_name("lr_scheduler", name, ["cosine", "none"]))
