"""Dataset registry: a name in a config maps to one dataset module.

Each entry names its module, the loader in it and one line on the data, so listing the
registry imports neither torch nor the loaders. Every dataset module also declares `INFO`,
its static facts (input shape, classes, features), which hold whether or not its files exist.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from machop.errors import DataError, unknown_name

if TYPE_CHECKING:
    from machop.data.dataset import DataOptions, Dataset, DatasetInfo


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its module (which defines the loader and INFO) and a description."""

    module: str
    loader: str
    description: str

    def load(self, options: DataOptions) -> Dataset:
        """Load the dataset, importing its module on first use."""
        return getattr(importlib.import_module(self.module), self.loader)(options)

    def static_info(self) -> DatasetInfo:
        """The facts a model factory needs, known without reading any file."""
        return importlib.import_module(self.module).INFO


DATASETS: dict[str, DatasetEntry] = {
    "digits": DatasetEntry("machop.data.digits", "load_digits",
                           "scikit-learn's bundled handwritten digits, 1797 8x8 images, 10 classes "
                           "(default)"),
    "jsc": DatasetEntry("machop.data.jsc", "load_jsc",
                        "jet substructure classification (OpenML hls4ml_lhc_jets_hlf), 16 features, "
                        "5 classes"),
    "cifar10": DatasetEntry("machop.data.cifar10", "load_cifar10",
                            "CIFAR-10 python pickle batches, 32x32x3 images, 10 classes"),
    "toy-tiny": DatasetEntry("machop.data.toy", "load_toy_tiny",
                             "synthetic 4-feature task, class = sum of features > 0"),
}

DESCRIPTIONS = {name: entry.description for name, entry in DATASETS.items()}

ALIASES = {"toy_tiny": "toy-tiny", "cifar-10": "cifar10", "jsc-hlf": "jsc"}


def default_data_dir() -> Path:
    """`$MACHOP_DATA_DIR` when set, else ./data."""
    return Path(os.environ.get("MACHOP_DATA_DIR", "data"))


def downloads_allowed() -> bool:
    """Loaders fetch missing files unless `MACHOP_OFFLINE` is set."""
    return os.environ.get("MACHOP_OFFLINE", "") in ("", "0", "false")


def dataset_entry(name: str) -> DatasetEntry:
    """The registry entry for a dataset name or alias."""
    key = ALIASES.get(name, name)
    if key not in DATASETS:
        raise DataError(unknown_name("dataset", name, DATASETS))
    return DATASETS[key]


def static_info(name: str) -> DatasetInfo:
    """A dataset's input shape, classes and features, without reading its files."""
    return dataset_entry(name).static_info()


def load_dataset(name: str, *, data_dir: str | Path | None = None, seed: int = 0,
                 cache: bool = True, download: bool | None = None) -> Dataset:
    """Load a registered dataset by name (`download=None` follows MACHOP_OFFLINE)."""
    from machop.data.dataset import DataOptions

    entry = dataset_entry(name)
    options = DataOptions(data_dir=Path(data_dir) if data_dir else default_data_dir(), seed=seed,
                          download=downloads_allowed() if download is None else download,
                          cache=cache)
    return entry.load(options)
