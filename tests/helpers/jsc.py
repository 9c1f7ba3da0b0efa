"""JSC tables written as OpenML exports them: unprefixed feature columns and a class letter."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from machop.data.jsc import FEATURES

OPENML_FEATURES = [name.removeprefix("j_") for name in FEATURES]


def number(value: np.float32) -> str:
    """Shortest text that reads back as exactly this float32."""
    return repr(float(value))


def write_csv(path: Path, x: np.ndarray, letters: np.ndarray, *, names=OPENML_FEATURES) -> Path:
    """CSV with a header row and a string class column."""
    rows = [",".join([*names, "class"])]
    rows += [",".join([*map(number, row), str(c)]) for row, c in zip(x, letters)]
    path.write_text("\n".join(rows) + "\n")
    return path
