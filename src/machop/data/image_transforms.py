"""Batched image transforms on (N, C, H, W) tensors: crop, flip, normalise; no per-sample loops."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch

from machop.data.dataset import BatchTransform


def random_crop_with_padding(x: torch.Tensor, padding: int,
                             generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad each image by `padding`, then cut a same-size window at a per-sample offset."""
    if padding <= 0:
        return x
    n, channels, height, width = x.shape
    padded = x.new_zeros(n, channels, height + 2 * padding, width + 2 * padding)
    padded[:, :, padding:padding + height, padding:padding + width] = x
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator,
                            device=random_device(generator)).to(x.device)
    rows = offsets[0, :, None] + torch.arange(height, device=x.device)
    cols = offsets[1, :, None] + torch.arange(width, device=x.device)
    samples = torch.arange(n, device=x.device)[:, None, None, None]
    planes = torch.arange(channels, device=x.device)[None, :, None, None]
    return padded[samples, planes, rows[:, None, :, None], cols[:, None, None, :]]


def random_horizontal_flip(x: torch.Tensor, generator: torch.Generator | None = None,
                           p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability `p`, drawing one uniform number per sample."""
    flip = torch.rand(len(x), generator=generator, device=random_device(generator)) < p
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)


def normalise(x_uint8: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 images to float32 in [0, 1], then (x - mean) / std per channel."""
    x = x_uint8.to(torch.float32).div_(255.0)
    shape = (1, -1, 1, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=x.device).view(shape)
    std_t = torch.tensor(std, dtype=torch.float32, device=x.device).view(shape)
    return x.sub_(mean_t).div_(std_t)


def make_image_transform(mean: Sequence[float], std: Sequence[float], *, augment: bool,
                         padding: int = 4, flip_p: float = 0.5) -> BatchTransform:
    """A picklable batch transform: optional crop + flip augmentation, then normalisation."""
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if augment:
        return partial(augment_and_normalise, mean=mean, std=std, padding=padding, flip_p=flip_p)
    return partial(normalise_only, mean=mean, std=std)


def augment_and_normalise(x: torch.Tensor, generator: torch.Generator | None, *,
                          mean: Sequence[float], std: Sequence[float], padding: int,
                          flip_p: float) -> torch.Tensor:
    """Random crop, then random flip, then normalise (the usual CIFAR training pipeline)."""
    x = random_crop_with_padding(x, padding, generator)
    x = random_horizontal_flip(x, generator, flip_p)
    return normalise(x, mean, std)


def normalise_only(x: torch.Tensor, generator: torch.Generator | None = None, *,
                   mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Evaluation transform: normalisation only; the generator is unused."""
    return normalise(x, mean, std)


def random_device(generator: torch.Generator | None) -> torch.device:
    """Where to draw random numbers: the generator's device, else the CPU."""
    return generator.device if generator is not None else torch.device("cpu")
