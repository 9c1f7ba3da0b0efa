"""A rich progress bar per epoch that can be switched off (tests, workers, non-terminals)."""

from __future__ import annotations

from typing import Any


class EpochProgress:
    """Shows steps of the current epoch with loss and accuracy; a no-op when disabled."""

    def __init__(self, enabled: bool, total_epochs: int) -> None:
        self.enabled = enabled
        self.total_epochs = total_epochs
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> EpochProgress:
        if self.enabled:
            from machop.progress import new_progress

            self._progress = new_progress("[bold]{task.description}", "{task.fields[stats]}",
                                          after_times=True)
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
        if self._progress is None or self._task is None:
            return
        self._progress.remove_task(self._task)
        self._task = None
        shown = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
        text = "  ".join(f"{k} {metrics[k]:.4f}" for k in shown if k in metrics)
        self._progress.console.print(f"epoch {epoch + 1}/{self.total_epochs}  {text}")

    def advance(self, steps: int, **stats: float) -> None:
        """Move the bar on and show the latest statistics."""
        if self._progress is not None and self._task is not None:
            text = "  ".join(f"{k} {v:.4g}" for k, v in stats.items())
            self._progress.update(self._task, advance=steps, stats=text)
