"""Which trials count towards the budget, and the claims that keep concurrent workers inside it.

Trial numbers are handed out by the storage in creation order (Optuna's RDB storage locks the
study row to number a trial; the journal numbers trials in log order), so "the trials numbered
below mine" is the same set for every worker. A trial takes a budget slot only if fewer than
`budget` counting trials are numbered below it, and takes a grid point only if no counting trial
numbered below it holds the same point; a trial that loses either claim is recorded FAIL, marked
uncounted, and evaluates nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from machop.search import records
from machop.search.trial_index import trial_index
from machop.search.workers import is_dead

COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
CLAIMING_STATES = (TrialState.RUNNING, *COUNTED_STATES)


class Unclaimed(Exception):
    """The trial lost a claim to another worker; it does not count and evaluated nothing."""


def requeued_numbers(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers of dead or interrupted trials whose configuration was queued again."""
    return {t.user_attrs[records.TRIAL_REQUEUE_OF] for t in trials
            if records.TRIAL_REQUEUE_OF in t.user_attrs}


def counting(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that count towards the budget (whatever their state)."""
    requeued = requeued_numbers(trials)
    return [t for t in trials if t.number not in requeued and not t.user_attrs.get(records.TRIAL_UNCOUNTED)]


def counted_trials(study: optuna.Study) -> int:
    """Finished trials that count towards the budget."""
    return trial_index(study).counting(study, running=False)


def claimed_trials(study: optuna.Study) -> int:
    """Counting trials that are finished or running: the budget slots already taken."""
    return trial_index(study).counting(study, running=True)


def _lower(trial: optuna.Trial) -> list[FrozenTrial]:
    return [t for t in counting(trial.study.get_trials(deepcopy=False)) if t.number < trial.number]


def _mark_unclaimed(trial: optuna.Trial, kind: str, reason: str) -> Unclaimed:
    trial.set_user_attr(records.TRIAL_UNCOUNTED, kind)
    return Unclaimed(reason)


def claim_budget_slot(trial: optuna.Trial, budget: int) -> None:
    """Raise Unclaimed if the trials numbered below this one already fill the budget."""
    taken = trial_index(trial.study).counting_below(trial.study, trial.number)
    if taken is None:  # the trial has finished: nothing incremental to read
        taken = len(_lower(trial))
    if taken >= budget:
        raise _mark_unclaimed(trial, "over budget", f"over budget: {taken} earlier trials already fill "
                                                    f"the budget of {budget}; not evaluated")


def _params(trial: FrozenTrial) -> dict[str, Any]:
    if trial.state == TrialState.WAITING:
        return dict(trial.system_attrs.get("fixed_params") or {})
    return trial.params


def claim_grid_point(trial: optuna.Trial, sample: dict[str, Any], *, patience: float,
                     poll: float = 0.01) -> None:
    """Raise Unclaimed if a trial numbered below this one holds the same configuration.

    Waits (at most `patience` seconds) for lower-numbered trials still sampling, so that two
    workers that drew the same point at the same moment agree on which one evaluates it.
    """
    deadline = time.monotonic() + patience
    while True:
        lower = _lower(trial)
        holder = next((t for t in lower if _params(t) == sample), None)
        if holder is not None:
            raise _mark_unclaimed(trial, "duplicate", f"duplicate of trial {holder.number}, which holds "
                                                      "this configuration; not evaluated")
        sampling = [t for t in lower if t.state == TrialState.RUNNING and not sample.keys() <= t.params.keys()
                    and not is_dead(t.user_attrs.get(records.TRIAL_WORKER))]
        if not sampling or time.monotonic() > deadline:
            return
        time.sleep(poll)
