"""Rich consoles sized for terminals and log files; the progress bars of training and search."""

from __future__ import annotations

import functools
import os
from typing import Any

from rich.console import Console, ConsoleDimensions

# Rich falls back to 80 columns when its output is not a terminal (a file, CI, a SLURM log),
# which folds every table; a log file has no width, so use a roomier one.
FILE_WIDTH = 120


def _columns_from_environment() -> int | None:
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else None


class MachopConsole(Console):
    """A rich Console that is $COLUMNS or FILE_WIDTH columns wide when it writes to no terminal."""

    @property
    def size(self) -> ConsoleDimensions:
        """The terminal's size, or (COLUMNS or FILE_WIDTH) × height for files and pipes."""
        size = super().size
        # Checked at every use: tests and callers swap sys.stdout after the console is made.
        if self._width is None and not self.is_terminal and not self.is_jupyter:
            return ConsoleDimensions(_columns_from_environment() or FILE_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


def new_console(**kwargs: Any) -> Console:
    """A MachopConsole (no syntax highlighting unless asked); kwargs go to rich's Console."""
    kwargs.setdefault("highlight", False)
    return MachopConsole(**kwargs)


@functools.cache
def stdout_console() -> Console:
    """The one console for machop's stdout: tables, plain lines and progress bars.

    One console, so that a bar inside a bar (a trial's epochs under the search's trials) nests
    instead of fighting over the terminal, and lines printed meanwhile appear above the bars.
    """
    return new_console()


def new_progress(label: str, trailing: str, *, after_times: bool, transient: bool = False,
                 console: Console | None = None) -> Any:
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
    return Progress(*columns, console=console or stdout_console(), transient=transient)
