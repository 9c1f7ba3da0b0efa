"""scikit-learn's bundled handwritten digits: 1797 real 8x8 images, 10 classes."""

from __future__ import annotations

import numpy as np
import torch

from machop.data.dataset import DataOptions, Dataset, DatasetInfo, Split
from machop.data.splits import standardise, three_way_split

IMAGE_SIZE = (1, 8, 8)
INFO = DatasetInfo(name="digits", num_classes=10, num_features=64, image_size=IMAGE_SIZE,
                   class_names=tuple(str(d) for d in range(10)))


def load_digits(options: DataOptions) -> Dataset:
    """Bundled sklearn digits (1797 8x8 images, 10 classes), standardised, stratified split."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = bunch.data.astype(np.float32)
    y = bunch.target.astype(np.int64)
    parts = standardise(three_way_split(x, y, stratify=True))
    splits = {name: Split(torch.from_numpy(px).reshape(-1, *IMAGE_SIZE), torch.from_numpy(py))
              for name, (px, py) in parts.items()}
    return Dataset(info=INFO, **splits)
