"""CIFAR-10 python batches written in the real pickle format, with each image's index encoded."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from machop.data.cifar10 import CLASS_NAMES

PER_BATCH = 20
NUM_TRAIN = 5 * PER_BATCH


def images(first_index: int, count: int) -> np.ndarray:
    """Random uint8 rows of 3072 pixels whose first two bytes encode a global image index."""
    rng = np.random.default_rng(first_index)
    data = rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)
    index = np.arange(first_index, first_index + count)
    data[:, 0], data[:, 1] = index // 256, index % 256
    return data


def image_ids(x: torch.Tensor) -> list[int]:
    """Recover the encoded indices from (N, 3, 32, 32) images."""
    return (x[:, 0, 0, 0].long() * 256 + x[:, 0, 0, 1].long()).tolist()


def labels(first_index: int, count: int) -> list[int]:
    """Deterministic labels covering all 10 classes."""
    return [(i * 7 + 3) % 10 for i in range(first_index, first_index + count)]


def write_batch(path: Path, data: np.ndarray, label_list, **extra) -> None:
    """A batch pickled like the originals: bytes keys, uint8 data, list of int labels."""
    batch = {b"batch_label": b"synthetic", b"labels": label_list, b"data": data,
             b"filenames": [f"img_{i}.png".encode() for i in range(len(data))], **extra}
    path.write_bytes(pickle.dumps(batch, protocol=2))


def write_batches(folder: Path, *, meta: bool = True) -> Path:
    """Five training batches and a test batch of PER_BATCH images each (test ids start at 1000)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(5):
        start = i * PER_BATCH
        write_batch(folder / f"data_batch_{i + 1}", images(start, PER_BATCH),
                    labels(start, PER_BATCH))
    write_batch(folder / "test_batch", images(1000, PER_BATCH), labels(1000, PER_BATCH))
    if meta:
        names = {b"label_names": [n.encode() for n in CLASS_NAMES], b"num_vis": 3072,
                 b"num_cases_per_batch": PER_BATCH}
        (folder / "batches.meta").write_bytes(pickle.dumps(names, protocol=2))
    return folder
