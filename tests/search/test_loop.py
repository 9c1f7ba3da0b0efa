"""The worker loop: trials failed elsewhere while they ran, and Ctrl-C, leave the study consistent."""

from __future__ import annotations

import os
import signal
import time

import optuna
import pytest
from optuna.trial import TrialState

from machop.search import records
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


def _interrupt_me() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_during_an_evaluation_fails_that_trial_and_queues_it_again():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))

    def evaluate(trial: optuna.Trial) -> list[float]:
        x = trial.suggest_float("x", 0.0, 1.0)
        if trial.number == 2:
            _interrupt_me()
            time.sleep(5)  # not reached: the interrupt is raised here
        return [x]

    # what the process had before (Python's default handler, or SIG_IGN when started in the
    # background by a shell without job control)
    handler_before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        run_trials(study, evaluate, budget=10)
    trials = study.get_trials()
    assert [t.state for t in trials[:3]] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]
    assert trials[2].user_attrs[records.TRIAL_UNCOUNTED] == "interrupted"
    assert trials[3].state == TrialState.WAITING and trials[3].system_attrs["fixed_params"] == trials[2].params
    assert signal.getsignal(signal.SIGINT) is handler_before  # run_trials put it back


def test_ctrl_c_during_bookkeeping_waits_for_it_then_stops():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    recorded: list[int] = []

    def on_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.number == 1:
            _interrupt_me()
        recorded.append(trial.number)  # the callback finishes although Ctrl-C came first

    with pytest.raises(KeyboardInterrupt):
        run_trials(study, lambda trial: [trial.suggest_float("x", 0.0, 1.0)], budget=10, on_trial=on_trial)
    assert recorded == [0, 1]
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert [t.state for t in study.get_trials()][:2] == [TrialState.COMPLETE, TrialState.COMPLETE]
