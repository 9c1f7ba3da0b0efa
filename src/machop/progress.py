"""The rich progress bar layout shared by training and search."""

from __future__ import annotations

from typing import Any


def new_progress(label: str, trailing: str, *, after_times: bool) -> Any:
    """A rich Progress: label, bar, M/N, then `trailing` text before or after elapsed/ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    times = [TimeElapsedColumn(), TimeRemainingColumn()]
    extra = [TextColumn(trailing)]
    columns = [TextColumn(label), BarColumn(), MofNCompleteColumn(),
               *(times + extra if after_times else extra + times)]
    return Progress(*columns, transient=False)
