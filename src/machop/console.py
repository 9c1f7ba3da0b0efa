"""Where machop talks to people: the stdout and stderr consoles, one-line errors, log set-up.

Every layer may print through these; the command line adds its tables on top (cli/console.py).
"""

from __future__ import annotations

import logging
import sys

from rich.markup import escape

from machop.progress import new_console, stdout_console

# $COLUMNS or 120 columns wide when stdout/stderr is a file or a pipe (machop.progress); `out`
# is also the console of the progress bars.
out = stdout_console()
err = new_console(stderr=True)


def print_error(message: str) -> None:
    """One line on stderr."""
    line = " ".join(str(message).split())
    err.print(f"[bold red]error:[/bold red] {escape(line)}", soft_wrap=True)
    sys.stderr.flush()


class _OncePerRun(logging.Filter):
    """Drops a machop warning whose text this run has already shown.

    Every stage of a run resolves its device, so a fallback such as "accelerator 'gpu'
    requested but no CUDA device is available" would otherwise repeat.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or not record.name.startswith("machop"):
            return True
        text = record.getMessage()
        if text in self.seen:
            return False
        self.seen.add(text)
        return True


def configure_logging(level: str) -> None:
    """Log machop messages to stderr at `level`, each warning once per run."""
    logging.basicConfig(format="%(levelname)s: %(message)s", force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_OncePerRun())
    logging.getLogger("machop").setLevel(level.upper())
