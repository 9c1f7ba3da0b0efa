"""A rich progress bar for a search: trials done, best value, elapsed time and ETA."""

from __future__ import annotations

import time
from typing import Any

import optuna
from optuna.trial import TrialState

# The best value (a Pareto front: Optuna copies every trial to find it) is read at most this often:
# reading it after every trial cost more than the trial itself in long multi-objective searches.
BEST_REFRESH_S = 0.5


def _best_text(study: optuna.Study) -> str:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return "best -"
    if len(study.directions) > 1:
        return f"Pareto front {len(study.best_trials)} trial(s)"
    values = [t.value for t in complete if t.value is not None]
    best = max(values) if study.direction == optuna.study.StudyDirection.MAXIMIZE else min(values)
    return f"best {best:.5g}"


class SearchProgress:
    """Progress over the trial budget; a no-op when disabled."""

    def __init__(self, enabled: bool, budget: int, study: optuna.Study) -> None:
        self.enabled, self.budget, self.study = enabled, budget, study
        self._progress: Any = None
        self._task: Any = None
        self._best_read_at: float | None = None

    def __enter__(self) -> SearchProgress:
        if self.enabled:
            from machop.progress import new_progress

            self._progress = new_progress("[bold]trials", "{task.fields[best]}", after_times=False)
            self._progress.__enter__()
            self._task = self._progress.add_task("search", total=self.budget, best="")
            self.poll()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            if exc[0] is None:
                self.poll(every_field=True)  # the last trials' best, which the throttle may have skipped
            self._progress.__exit__(*exc)

    def poll(self, *, every_field: bool = False) -> None:
        """Refresh from the storage (other processes may have finished trials); the best value at
        most every BEST_REFRESH_S seconds unless `every_field`."""
        from machop.search.claims import counted_trials

        if self._progress is not None:
            fields: dict[str, Any] = {"completed": min(counted_trials(self.study), self.budget)}
            now = time.monotonic()
            if every_field or self._best_read_at is None or now - self._best_read_at >= BEST_REFRESH_S:
                fields["best"] = _best_text(self.study)
                self._best_read_at = now
            self._progress.update(self._task, **fields)

    def update(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Callback after each trial of this process."""
        self.poll()
