"""The trial loop of one worker: ask, evaluate, tell, until the budget or the time runs out."""

from __future__ import annotations

import time
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from machop.search import records
from machop.search.evaluator import TrialEvaluator
from machop.search.study import counted_trials

TrialDone = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


def _fail_reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _evaluate_one(study: optuna.Study, evaluate: TrialEvaluator) -> optuna.trial.FrozenTrial:
    trial = study.ask()
    try:
        values = evaluate(trial)
    except optuna.TrialPruned:
        return study.tell(trial, state=TrialState.PRUNED)
    except KeyboardInterrupt:
        trial.set_user_attr(records.TRIAL_FAIL, "interrupted by the user")
        study.tell(trial, state=TrialState.FAIL)
        raise
    except Exception as exc:  # a trial that raises is recorded as failed; the search goes on
        trial.set_user_attr(records.TRIAL_FAIL, _fail_reason(exc))
        return study.tell(trial, state=TrialState.FAIL)
    return study.tell(trial, values)


def run_trials(study: optuna.Study, evaluate: TrialEvaluator, budget: int, *,
               timeout: float | None = None, on_trial: TrialDone | None = None) -> int:
    """Evaluate trials until `budget` trials count in the study or `timeout` seconds pass."""
    started, done = time.monotonic(), 0
    while counted_trials(study) + _running(study) < budget:
        if timeout is not None and time.monotonic() - started >= timeout:
            break
        frozen = _evaluate_one(study, evaluate)
        done += 1
        if on_trial is not None:
            on_trial(study, frozen)
    return done


def _running(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
