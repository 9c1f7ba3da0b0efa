"""Logits of a model over a split, in batches, on a device and at a precision."""

from __future__ import annotations

import torch
from torch import nn

from machop.data.batches import iterate_batches
from machop.data.dataset import Split
from machop.runtime.device import Precision


@torch.no_grad()
def predict(model: nn.Module, split: Split, *, batch_size: int = 1024,
            device: torch.device | None = None,
            precision: Precision | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and targets for every sample of `split`, in order."""
    device = device or next(model.parameters(), torch.empty(0)).device
    was_training = model.training
    model.eval()
    outputs = []
    autocast = precision.autocast(device) if precision else torch.autocast(device.type, enabled=False)
    dtype = precision.param_dtype if precision else None
    with autocast:
        for xb, _ in iterate_batches(split, batch_size):
            xb = xb.to(device, non_blocking=True)
            if dtype is not None and xb.is_floating_point():
                xb = xb.to(dtype)
            outputs.append(model(xb).float())
    model.train(was_training)
    logits = torch.cat(outputs)
    # the labels of the batches in order are the whole label tensor: one copy instead of one per batch
    targets = split.y.to(device, non_blocking=True, copy=True, memory_format=torch.contiguous_format)
    return logits, targets

