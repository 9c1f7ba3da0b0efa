"""Batching by slicing a permuted in-memory tensor: no per-sample DataLoader."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from machop.data.dataset import DatasetInfo, Split


def iterate_batches(split: Split, batch_size: int, *, shuffle: bool = False,
                    generator: torch.Generator | None = None,
                    drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (inputs, labels) batches; one gather per epoch, then contiguous views."""
    x, y = split.x, split.y
    if shuffle:
        order = torch.randperm(len(y), generator=generator).to(y.device)
        x, y = x.index_select(0, order), y.index_select(0, order)
    stop = len(y) - (len(y) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        xb = x[start:start + batch_size]
        if split.transform is not None:
            xb = split.transform(xb, generator)
        yield xb, y[start:start + batch_size]


def num_batches(split: Split, batch_size: int, drop_last: bool = False) -> int:
    """How many batches `iterate_batches` yields."""
    full, rest = divmod(len(split), batch_size)
    return full if drop_last or rest == 0 else full + 1


def example_batch(split: Split, size: int = 8) -> torch.Tensor:
    """The first `size` inputs of a split, transformed as evaluation sees them."""
    return next(iterate_batches(split.head(size), size))[0]


def static_example(info: DatasetInfo, size: int = 8) -> torch.Tensor:
    """`size` zero inputs of the dataset's shape: enough to trace a model without its data."""
    return torch.zeros(size, *info.input_shape)
