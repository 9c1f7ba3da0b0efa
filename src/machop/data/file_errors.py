"""Turn whatever a file parser raises into one DataError that names the file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from machop.errors import DataError, exception_line


class DataNotFound(DataError):
    """A dataset's files are absent (and were not downloaded); the message says where to get them."""


@contextmanager
def reading(path: Path, what: str) -> Iterator[None]:
    """Re-raise any failure inside the block as a DataError naming `what` and `path`."""
    try:
        yield
    except (DataError, MemoryError):
        raise
    except Exception as exc:  # parsers raise anything from OSError to KeyError on bad bytes
        raise DataError(f"cannot read {what} {path}: {exception_line(exc)}") from exc
