"""Dataset registry: a name in a config maps to one dataset module.

Each entry names its module, the loader in it and the other names it answers to; the module's
docstring describes the dataset. Listing the registry reads those docstrings from source, so it
imports neither torch nor the loaders. Every dataset module also declares `INFO`, its static
facts (input shape, classes, features), which hold whether or not its files exist.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from machop.docstrings import summary_of
from machop.errors import DataError, unknown_name

if TYPE_CHECKING:
    from machop.data.dataset import DataOptions, Dataset, DatasetInfo


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its module (which defines the loader and INFO) and its aliases."""

    module: str
    loader: str
    aliases: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        """The first line of the module's docstring."""
        return summary_of(self.module)

    def load(self, options: DataOptions) -> Dataset:
        """Load the dataset, importing its module on first use."""
        return getattr(importlib.import_module(self.module), self.loader)(options)

    def static_info(self) -> DatasetInfo:
        """The facts a model factory needs, known without reading any file."""
        return importlib.import_module(self.module).INFO


DATASETS: dict[str, DatasetEntry] = {
    "digits": DatasetEntry("machop.data.digits", "load_digits"),
    "jsc": DatasetEntry("machop.data.jsc", "load_jsc", aliases=("jsc-hlf",)),
    "cifar10": DatasetEntry("machop.data.cifar10", "load_cifar10", aliases=("cifar-10",)),
    "toy-tiny": DatasetEntry("machop.data.toy", "load_toy_tiny", aliases=("toy_tiny",)),
}

ALIASES = {alias: name for name, entry in DATASETS.items() for alias in entry.aliases}


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
