"""What the per-trial checks read of a study (budget counts, claims, duplicates), kept up to date
by reading only the trials that can still change.

Optuna numbers a study's trials 0, 1, 2, ... in creation order, and every storage refuses to
update a finished trial (COMPLETE, PRUNED or FAIL: state, attributes and values are final). So the
leading run of finished trials is read once and folded into counters; each check reads only the
trials after it (the running and waiting ones and the newest). Over a long search that turns the
checks' scan of every trial, at every trial, into a scan of the few unfinished ones.

A trial marked `TRIAL_REQUEUE_OF` (a queued copy) removes the trial it copies from the count
whenever it appears, finished or not, exactly as `claims.counting` does over a full list.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from machop.search import records


def _counts(trial: FrozenTrial, requeued: set[int]) -> bool:
    return trial.number not in requeued and not trial.user_attrs.get(records.TRIAL_UNCOUNTED)


class TrialIndex:
    """Counts over a study's finished prefix, and its unfinished tail read afresh at every check."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        self.settled = 0  # trials numbered below this one are finished and folded in
        self.requeued: set[int] = set()  # numbers some queued copy replaces (TRIAL_REQUEUE_OF)
        self._settled_counting: set[int] = set()  # settled trials not marked uncounted
        self._settled_live = 0  # ... of which no copy replaces them: each takes a budget slot
        self._completed_keys: dict[str, FrozenTrial] = {}  # TRIAL_CONFIG_KEY -> first settled COMPLETE trial

    def _requeue(self, number: Any) -> None:
        if number in self.requeued:
            return
        self.requeued.add(number)
        if number in self._settled_counting:
            self._settled_live -= 1

    def _fold(self, trial: FrozenTrial) -> None:
        if not trial.user_attrs.get(records.TRIAL_UNCOUNTED):
            self._settled_counting.add(trial.number)
            if trial.number not in self.requeued:
                self._settled_live += 1
        key = trial.user_attrs.get(records.TRIAL_CONFIG_KEY)
        if trial.state == TrialState.COMPLETE and isinstance(key, str):
            self._completed_keys.setdefault(key, trial)
        self.settled += 1

    def _tail(self, study: optuna.Study) -> list[FrozenTrial]:
        """The trials from the first unfinished one on, after folding in those finished since."""
        trials = study.get_trials(deepcopy=False)
        if not _numbered_in_order(trials, self.settled):
            self._clear()  # not a list this index can follow (never seen with Optuna's storages)
        rest = trials[self.settled:]
        for trial in rest:
            copied = trial.user_attrs.get(records.TRIAL_REQUEUE_OF)
            if copied is not None:
                self._requeue(copied)
        for trial in rest:
            if not trial.state.is_finished():
                break
            self._fold(trial)
        return trials[self.settled:]

    def counting(self, study: optuna.Study, *, running: bool) -> int:
        """How many counting trials (claims.counting) are finished, or finished or running."""
        with self._lock:
            tail = self._tail(study)
            return self._settled_live + sum(1 for t in tail if (t.state.is_finished() or (
                running and t.state == TrialState.RUNNING)) and _counts(t, self.requeued))

    def counting_below(self, study: optuna.Study, number: int) -> int | None:
        """How many counting trials (any state) are numbered below `number`; None if `number` is settled."""
        with self._lock:
            tail = self._tail(study)
            if number < self.settled:
                return None
            return self._settled_live + sum(1 for t in tail if t.number < number and _counts(t, self.requeued))

    def completed_with_key(self, study: optuna.Study, key: str) -> FrozenTrial | None:
        """The lowest-numbered COMPLETE trial whose TRIAL_CONFIG_KEY is `key`."""
        with self._lock:
            tail = self._tail(study)
            found = self._completed_keys.get(key)
            if found is not None:
                return found
            return next((t for t in tail if t.state == TrialState.COMPLETE
                         and t.user_attrs.get(records.TRIAL_CONFIG_KEY) == key), None)


def _numbered_in_order(trials: list[FrozenTrial], settled: int) -> bool:
    """Whether the list is numbered 0, 1, ... at the places the index reads (the fold point on)."""
    if len(trials) < settled or (settled and trials[settled - 1].number != settled - 1):
        return False
    return all(trial.number == index for index, trial in enumerate(trials[settled:], start=settled))


_INDEXES: weakref.WeakKeyDictionary[Any, dict[int, TrialIndex]] = weakref.WeakKeyDictionary()
_INDEXES_LOCK = threading.Lock()


def trial_index(study: optuna.Study) -> TrialIndex:
    """The index of `study` (one per storage and study, shared by every Study object on them)."""
    storage = study._storage
    with _INDEXES_LOCK:
        try:
            per_study = _INDEXES.setdefault(storage, {})
        except TypeError:  # a storage that cannot be a weak key: a fresh index reads every trial
            return TrialIndex()
        index = per_study.get(study._study_id)
        if index is None:
            index = per_study[study._study_id] = TrialIndex()
        return index
