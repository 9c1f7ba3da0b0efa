"""Dataset registry: a name in a config maps to one loader function."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from machop.data.dataset import DataOptions, Dataset
from machop.errors import DataError, unknown_name

DatasetLoader = Callable[[DataOptions], Dataset]


def _digits(options: DataOptions) -> Dataset:
    from machop.data.digits import load_digits
    return load_digits(options)


def _jsc(options: DataOptions) -> Dataset:
    from machop.data.jsc import load_jsc
    return load_jsc(options)


def _cifar10(options: DataOptions) -> Dataset:
    from machop.data.cifar10 import load_cifar10
    return load_cifar10(options)


def _toy_tiny(options: DataOptions) -> Dataset:
    from machop.data.toy import load_toy_tiny
    return load_toy_tiny(options)


DATASETS: dict[str, DatasetLoader] = {
    "digits": _digits,
    "jsc": _jsc,
    "cifar10": _cifar10,
    "toy-tiny": _toy_tiny,
}

DESCRIPTIONS = {
    "digits": "scikit-learn's bundled handwritten digits, 1797 8x8 images, 10 classes (default)",
    "jsc": "jet substructure classification (OpenML hls4ml_lhc_jets_hlf), 16 features, 5 classes",
    "cifar10": "CIFAR-10 python pickle batches, 32x32x3 images, 10 classes",
    "toy-tiny": "synthetic 4-feature task, class = sum of features > 0",
}

ALIASES = {"toy_tiny": "toy-tiny", "cifar-10": "cifar10", "jsc-hlf": "jsc"}


def default_data_dir() -> Path:
    """`$MACHOP_DATA_DIR` when set, else ./data."""
    return Path(os.environ.get("MACHOP_DATA_DIR", "data"))


def downloads_allowed() -> bool:
    """Loaders fetch missing files unless `MACHOP_OFFLINE` is set."""
    return os.environ.get("MACHOP_OFFLINE", "") in ("", "0", "false")


def load_dataset(name: str, *, data_dir: str | Path | None = None, seed: int = 0,
                 cache: bool = True) -> Dataset:
    """Load a registered dataset by name."""
    key = ALIASES.get(name, name)
    if key not in DATASETS:
        raise DataError(unknown_name("dataset", name, DATASETS))
    options = DataOptions(data_dir=Path(data_dir) if data_dir else default_data_dir(),
                          seed=seed, download=downloads_allowed(), cache=cache)
    return DATASETS[key](options)
