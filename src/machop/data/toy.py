"""Synthetic toy task: 4 features, label is whether their sum is positive."""

from __future__ import annotations

import torch

from machop.data.dataset import DataOptions, Dataset, DatasetInfo, Split

SIZES = {"train": 4096, "validation": 1024, "test": 1024}
NUM_FEATURES = 4
INFO = DatasetInfo(name="toy-tiny", num_classes=2, num_features=NUM_FEATURES,
                   class_names=("negative", "positive"))


def load_toy_tiny(options: DataOptions) -> Dataset:
    """Synthetic 4-feature task: class 1 when the features sum to more than 0."""
    generator = torch.Generator().manual_seed(options.seed)
    splits = {}
    for name, size in SIZES.items():
        x = torch.randn(size, NUM_FEATURES, generator=generator)
        splits[name] = Split(x, (x.sum(dim=1) > 0).long())
    return Dataset(info=INFO, **splits)
