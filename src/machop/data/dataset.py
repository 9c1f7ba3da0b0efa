"""In-memory datasets: tensors per split plus the facts a model factory needs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from machop.errors import DataError

BatchTransform = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]
SPLIT_NAMES = ("train", "validation", "test")
_SPLIT_ALIASES = {"val": "validation", "valid": "validation", "validation": "validation",
                  "train": "train", "test": "test"}


@dataclass(frozen=True)
class DatasetInfo:
    """What a model factory needs to know about its data."""

    name: str
    num_classes: int
    num_features: int
    image_size: tuple[int, int, int] | None = None
    class_names: tuple[str, ...] = ()

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample: the image size for image data, else (num_features,)."""
        return tuple(self.image_size) if self.image_size else (self.num_features,)

    def as_dict(self) -> dict:
        """Plain-data form, stored in checkpoints."""
        return {"name": self.name, "num_classes": self.num_classes,
                "num_features": self.num_features,
                "image_size": list(self.image_size) if self.image_size else None,
                "class_names": list(self.class_names)}

    @classmethod
    def from_dict(cls, data: dict) -> DatasetInfo:
        """Inverse of `as_dict`."""
        image_size = data.get("image_size")
        return cls(name=data["name"], num_classes=int(data["num_classes"]),
                   num_features=int(data["num_features"]),
                   image_size=tuple(image_size) if image_size else None,
                   class_names=tuple(data.get("class_names") or ()))


@dataclass
class Split:
    """One split: inputs, integer labels, and an optional batched transform (augmentation)."""

    x: torch.Tensor
    y: torch.Tensor
    transform: BatchTransform | None = None

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise DataError(f"split has {len(self.x)} inputs but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> Split:
        """The same split with its tensors on `device`."""
        return replace(self, x=self.x.to(device), y=self.y.to(device))

    def head(self, n: int | None) -> Split:
        """The first `n` samples (all when n is None)."""
        if n is None or n >= len(self):
            return self
        return replace(self, x=self.x[:n], y=self.y[:n])


def split_key(name: str) -> str:
    """The canonical name of a split (train, validation or test); val and valid are aliases."""
    key = _SPLIT_ALIASES.get(name)
    if key is None:
        raise DataError(f"unknown split {name!r} (valid: train, validation, test)")
    return key


@dataclass
class Dataset:
    """A dataset held in memory as tensors."""

    info: DatasetInfo
    train: Split
    validation: Split
    test: Split
    eval_transform: BatchTransform | None = field(default=None, repr=False)

    def split(self, name: str) -> Split:
        """Split by name: train, validation (or val), test."""
        return getattr(self, split_key(name))

    def evaluation_split(self, name: str) -> Split:
        """A split for evaluation: the training split without its augmentation."""
        split = self.split(name)
        if split is self.train and self.eval_transform is not None:
            return replace(split, transform=self.eval_transform)
        return split

    def sizes(self) -> dict[str, int]:
        """Number of samples per split."""
        return {name: len(getattr(self, name)) for name in SPLIT_NAMES}


@dataclass(frozen=True)
class DataOptions:
    """Where and how loaders find their files."""

    data_dir: Path = Path("data")
    seed: int = 0
    download: bool = True
    cache: bool = True
