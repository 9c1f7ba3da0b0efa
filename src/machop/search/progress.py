"""A rich progress bar for a search: trials done, best value, elapsed time and ETA."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState


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
            self._progress.__exit__(*exc)

    def poll(self) -> None:
        """Refresh from the storage (other processes may have finished trials)."""
        from machop.search.claims import counted_trials

        if self._progress is not None:
            done = min(counted_trials(self.study), self.budget)
            self._progress.update(self._task, completed=done, best=_best_text(self.study))

    def update(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Callback after each trial of this process."""
        self.poll()
