"""The trial loop of one worker: Optuna's optimize with machop's budget and failure records."""

from __future__ import annotations

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


def _recording_failures(evaluate: TrialEvaluator) -> Callable[[optuna.Trial], list[float]]:
    def objective(trial: optuna.Trial) -> list[float]:
        try:
            return evaluate(trial)
        except optuna.TrialPruned:
            raise
        except BaseException as exc:  # recorded, then Optuna marks the trial FAIL
            trial.set_user_attr(records.TRIAL_FAIL, "interrupted by the user"
                                if isinstance(exc, KeyboardInterrupt) else _fail_reason(exc))
            raise
    return objective


def _running(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def run_trials(study: optuna.Study, evaluate: TrialEvaluator, budget: int, *,
               timeout: float | None = None, on_trial: TrialDone | None = None) -> int:
    """Evaluate trials until `budget` trials count in the study or `timeout` seconds pass."""
    before = counted_trials(study)
    if before >= budget:
        return 0

    def stop_at_budget(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_trial is not None:
            on_trial(study, trial)
        if counted_trials(study) + _running(study) >= budget:
            study.stop()

    study.optimize(_recording_failures(evaluate), timeout=timeout, catch=(Exception,),
                   callbacks=[stop_at_budget], gc_after_trial=False, show_progress_bar=False)
    return counted_trials(study) - before
