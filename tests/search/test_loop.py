"""The worker loop: a trial failed elsewhere while it ran does not stop the worker."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from machop.search.loop import run_trials


def test_a_trial_another_worker_failed_while_it_ran_is_skipped_and_the_worker_goes_on():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    evaluated: list[int] = []

    def evaluate(trial: optuna.Trial) -> list[float]:
        x = trial.suggest_float("x", 0.0, 1.0)
        evaluated.append(trial.number)
        if trial.number == 1:  # its heartbeat looked stale to another worker, which failed it
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        return [x]

    run_trials(study, evaluate, budget=4)
    assert [trial.state for trial in study.trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                                       TrialState.COMPLETE, TrialState.COMPLETE]
    assert evaluated == [0, 1, 2, 3]


def test_other_errors_of_optuna_still_surface():
    study = optuna.create_study()

    def evaluate(trial: optuna.Trial) -> list[float]:
        return [trial.suggest_float("x", 0.0, 1.0), 1.0]  # two values for one direction

    run_trials(study, evaluate, budget=1)
    assert study.trials[0].state == TrialState.FAIL
