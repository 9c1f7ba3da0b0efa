"""Train/validation/test splitting and scaling shared by the tabular loaders."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

TEST_FRACTION = 0.2
VALIDATION_FRACTION_OF_TRAIN = 0.125
SPLIT_SEED = 42


def three_way_split(x: np.ndarray, y: np.ndarray, *, stratify: bool = True,
                    random_state: int = SPLIT_SEED) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """80/20 train/test split, then validation carved from the training 80%."""
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=random_state,
        stratify=y if stratify else None)
    x_train, x_val, y_train, y_val = train_test_split(
        x_train, y_train, test_size=VALIDATION_FRACTION_OF_TRAIN, random_state=random_state,
        stratify=y_train if stratify else None)
    return {"train": (x_train, y_train), "validation": (x_val, y_val), "test": (x_test, y_test)}


def standardise(parts: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Scale every split with a StandardScaler fit on the training split only."""
    scaler = StandardScaler().fit(parts["train"][0])
    return {name: (scaler.transform(x).astype(np.float32), y) for name, (x, y) in parts.items()}
