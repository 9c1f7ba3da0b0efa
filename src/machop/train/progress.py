"""A rich progress bar per epoch that can be switched off (tests, workers, non-terminals)."""

from __future__ import annotations

from typing import Any

SHOWN = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


class EpochProgress:
    """Shows steps of the current epoch with loss and accuracy; a no-op when disabled.

    On a terminal a bar runs during each epoch and is replaced by the epoch's summary line;
    in a file or pipe (a CI or SLURM log) only the summary lines are written.
    """

    def __init__(self, enabled: bool, total_epochs: int) -> None:
        self.enabled = enabled
        self.total_epochs = total_epochs
        self._console: Any = None
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> EpochProgress:
        if self.enabled:
            from machop.progress import new_progress, stdout_console

            self._console = stdout_console()
            # A bar in a file is never seen, and rich ends it with an empty line.
            if self._console.is_interactive:
                # Transient: every finished bar has been replaced by its summary line already.
                self._progress = new_progress("[bold]{task.description}", "{task.fields[stats]}",
                                              after_times=True, transient=True, console=self._console)
                self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def start_epoch(self, epoch: int, steps: int) -> None:
        """Begin a bar for epoch `epoch` (0-based) of `steps` batches."""
        if self._progress is not None:
            self._task = self._progress.add_task(
                f"epoch {epoch + 1}/{self.total_epochs}", total=steps, stats="")

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """Replace the finished bar by one summary line."""
        if self._console is None:
            return
        if self._progress is not None and self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        text = "  ".join(f"{k} {metrics[k]:.4f}" for k in SHOWN if k in metrics)
        # One line per epoch however narrow the console: a log is read (and grepped) by line.
        self._console.print(f"epoch {epoch + 1}/{self.total_epochs}  {text}", soft_wrap=True, markup=False)

    def advance(self, steps: int, **stats: float) -> None:
        """Move the bar on and show the latest statistics."""
        if self._progress is not None and self._task is not None:
            text = "  ".join(f"{k} {v:.4g}" for k, v in stats.items())
            self._progress.update(self._task, advance=steps, stats=text)
