"""Rebuilding resized Linear/Conv2d/BatchNorm modules, freshly initialised or inherited."""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from machop.passes.redefine_plan import Resize


def new_linear(old: nn.Linear, in_features: int, out_features: int) -> nn.Linear:
    """A default-initialised Linear with the old bias flag, dtype and device."""
    return nn.Linear(in_features, out_features, bias=old.bias is not None,
                     device=old.weight.device, dtype=old.weight.dtype)


def new_conv2d(old: nn.Conv2d, in_channels: int, out_channels: int) -> nn.Conv2d:
    """A default-initialised Conv2d with the old hyperparameters, dtype and device."""
    return nn.Conv2d(in_channels, out_channels, old.kernel_size, stride=old.stride,
                     padding=old.padding, dilation=old.dilation, groups=1,
                     bias=old.bias is not None, padding_mode=old.padding_mode,
                     device=old.weight.device, dtype=old.weight.dtype)


def new_batch_norm(old: nn.modules.batchnorm._BatchNorm, num_features: int) -> nn.Module:
    """A fresh BatchNorm of the same class and settings with `num_features` channels."""
    reference = old.weight if old.weight is not None else old.running_mean
    factory = {"device": reference.device, "dtype": reference.dtype} if reference is not None else {}
    return type(old)(num_features, eps=old.eps, momentum=old.momentum, affine=old.affine,
                     track_running_stats=old.track_running_stats, **factory)


def fresh_module(old: nn.Module, resize: Resize) -> nn.Module:
    """A new module of the resized shape with PyTorch's default initialisation."""
    if isinstance(old, nn.Linear):
        return new_linear(old, resize.new_in, resize.new_out)
    if isinstance(old, nn.Conv2d):
        return new_conv2d(old, resize.new_in, resize.new_out)
    return new_batch_norm(old, resize.new_out)


def replication_divisor(origin: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """For each new input channel, how many new channels copy the same old one."""
    counts = Counter(origin)
    return torch.tensor([counts[o] for o in origin], dtype=like.dtype, device=like.device)


@torch.no_grad()
def inherit_layer(old: nn.Module, new: nn.Module, resize: Resize) -> None:
    """Net2Net widening: rows copy their origin unit; inputs copied k times are divided by k."""
    rows = torch.tensor(resize.out_origin, device=old.weight.device)
    cols = torch.tensor(resize.in_origin, device=old.weight.device)
    weight = old.weight.index_select(0, rows).index_select(1, cols)
    divisor = replication_divisor(resize.in_origin, weight)
    new.weight.copy_(weight / divisor.view(1, -1, *[1] * (weight.dim() - 2)))
    if old.bias is not None:
        new.bias.copy_(old.bias.index_select(0, rows))


@torch.no_grad()
def inherit_batch_norm(old: nn.Module, new: nn.Module, resize: Resize) -> None:
    """Each new channel takes the affine parameters and running statistics of its origin."""
    for name in ("weight", "bias", "running_mean", "running_var"):
        source = getattr(old, name)
        if source is not None:
            index = torch.tensor(resize.out_origin, device=source.device)
            getattr(new, name).copy_(source.index_select(0, index))
    if old.num_batches_tracked is not None:
        new.num_batches_tracked.copy_(old.num_batches_tracked)


def resized_module(old: nn.Module, resize: Resize, inherit: bool) -> nn.Module:
    """The replacement for `old`: fresh weights, or inherited ones when `inherit` is set."""
    new = fresh_module(old, resize)
    if inherit and isinstance(old, (nn.Linear, nn.Conv2d)):
        inherit_layer(old, new, resize)
    elif inherit:
        inherit_batch_norm(old, new, resize)
    for name, param in new.named_parameters():
        param.requires_grad_(getattr(old, name).requires_grad)
    return new.train(old.training)
