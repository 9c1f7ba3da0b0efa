"""The brute-force sampler after a trial that ended before drawing any parameter."""

from __future__ import annotations

import optuna
import pytest

from machop.search.samplers import build_sampler


def _objective(trial: optuna.Trial) -> float:
    return trial.suggest_categorical("a", [1, 2]) * 10 + trial.suggest_categorical("b", [1, 2])


def _study_with_a_failed_trial_without_parameters(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=sampler)
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    return study


def test_optuna_brute_force_alone_stops_at_a_trial_without_parameters() -> None:
    study = _study_with_a_failed_trial_without_parameters(optuna.samplers.BruteForceSampler(seed=0))
    with pytest.raises(ValueError, match="param_name mismatch"):
        study.optimize(_objective, n_trials=4)


def test_machop_brute_force_visits_every_configuration_once_after_it() -> None:
    study = _study_with_a_failed_trial_without_parameters(build_sampler("bruteforce", 0, {}))
    study.optimize(_objective, n_trials=10)  # stops by itself once the space is exhausted
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.value for t in complete) == [11, 12, 21, 22]


def test_a_running_trial_without_parameters_failing_does_not_stop_the_search() -> None:
    study = optuna.create_study(sampler=build_sampler("bruteforce", 0, {}))
    empty = study.ask()
    study.tell(empty, state=optuna.trial.TrialState.FAIL)
    study.optimize(_objective, n_trials=10)
    assert sorted(t.value for t in study.trials if t.value is not None) == [11, 12, 21, 22]
