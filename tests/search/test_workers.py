"""Claims, liveness and re-queueing that let several workers share one study."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from machop.search import claims, records
from machop.search.claims import (
    Unclaimed,
    claim_budget_slot,
    claim_grid_point,
    claimed_trials,
    counted_trials,
)
from machop.search.study import requeue_dead
from machop.search.workers import is_dead, worker_id

CHOICES = {"a": [1, 2], "b": [3, 4]}


def _study() -> optuna.Study:
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))


def _dead_worker() -> str:
    """The worker id of a process that has exited (a killed or stopped worker, as seen by the others)."""
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True)
    return f"{os.uname().nodename}:{finished.stdout.strip()}:1"


def _take(study: optuna.Study, worker: str) -> optuna.Trial:
    """The next trial (a queued copy first), stamped by `worker`, its configuration drawn."""
    trial = study.ask()
    trial.set_user_attr(records.TRIAL_WORKER, worker)
    for name, choices in CHOICES.items():
        trial.suggest_categorical(name, choices)
    return trial


def test_the_lower_numbered_trial_holds_a_grid_point():
    study = _study()
    study.enqueue_trial({"a": 1, "b": 3})
    study.enqueue_trial({"a": 1, "b": 3})
    first, second = study.ask(), study.ask()
    for trial in (first, second):
        trial.suggest_categorical("a", CHOICES["a"])
        trial.suggest_categorical("b", CHOICES["b"])
    claim_grid_point(first, {"a": 1, "b": 3}, patience=1.0)
    with pytest.raises(Unclaimed, match="duplicate of trial 0"):
        claim_grid_point(second, {"a": 1, "b": 3}, patience=1.0)
    assert second.study.trials[1].user_attrs[records.TRIAL_UNCOUNTED] == "duplicate"


def test_a_point_still_being_sampled_below_is_waited_for_until_patience_runs_out(monkeypatch):
    study = _study()
    study.enqueue_trial({"a": 2, "b": 4})
    sampling, later = study.ask(), study.ask()
    sampling.suggest_categorical("a", CHOICES["a"])  # "b" not drawn yet: undecided
    later.suggest_categorical("a", CHOICES["a"])
    later.suggest_categorical("b", CHOICES["b"])
    polls = []
    monkeypatch.setattr(claims.time, "sleep", polls.append)
    claim_grid_point(later, dict(later.params), patience=0.05)  # gives up waiting, then holds it
    assert polls and set(polls) == {0.01}
    assert records.TRIAL_UNCOUNTED not in study.trials[1].user_attrs


def test_budget_slots_go_to_the_lowest_numbers():
    study = _study()
    trials = [study.ask() for _ in range(3)]
    claim_budget_slot(trials[0], 2)
    claim_budget_slot(trials[1], 2)
    with pytest.raises(Unclaimed, match="over budget"):
        claim_budget_slot(trials[2], 2)
    assert claimed_trials(study) == 2  # the over-budget trial does not count


def test_a_dead_workers_trial_is_failed_and_queued_again(tmp_path):
    study = _study()
    dead_worker = _dead_worker()
    dead, alive, elsewhere = study.ask(), study.ask(), study.ask()
    for trial, worker in ((dead, dead_worker), (alive, worker_id()), (elsewhere, "other-host:1:1")):
        trial.suggest_categorical("a", CHOICES["a"])
        trial.set_user_attr(records.TRIAL_WORKER, worker)
    assert requeue_dead(study) == 1
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING, TrialState.WAITING]
    copy = study.trials[3]
    assert copy.user_attrs[records.TRIAL_REQUEUE_OF] == 0
    assert copy.system_attrs["fixed_params"] == dead.params
    assert "interrupted" in study.trials[0].user_attrs[records.TRIAL_FAIL]
    assert requeue_dead(study) == 0  # nothing twice
    study.tell(alive, 1.0)
    assert counted_trials(study) == 1  # the dead trial gave its slot to its copy


def test_a_copy_whose_worker_dies_too_is_queued_again_and_the_last_copy_counts():
    """The copy of a dead trial can be taken by a worker that dies in turn: the chain ends in one copy."""
    study = _study()
    dead = _take(study, _dead_worker())
    assert requeue_dead(study) == 1
    copy = _take(study, _dead_worker())  # a worker picks up the copy, then dies (or hangs) too
    assert copy.number == 1 and copy.params == dead.params
    assert requeue_dead(study) == 1
    last = _take(study, worker_id())
    assert last.params == dead.params
    assert [t.user_attrs.get(records.TRIAL_REQUEUE_OF) for t in study.trials] == [None, 0, 1]
    claim_budget_slot(last, 1)  # neither failed link takes the only slot
    claim_grid_point(last, dict(last.params), patience=0.0)  # nor holds the configuration
    study.tell(last, 1.0)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert counted_trials(study) == claimed_trials(study) == 1
    assert requeue_dead(study) == 0


def test_a_trial_that_dies_before_winning_its_grid_point_leaves_it_to_the_lower_trial():
    """Drawing a point is not holding it: a dead trial's copy loses to a lower trial drawing the same."""
    study = _study()
    study.enqueue_trial({"a": 1, "b": 3})
    study.enqueue_trial({"a": 1, "b": 3})
    lower = study.ask()
    lower.set_user_attr(records.TRIAL_WORKER, worker_id())
    lower.suggest_categorical("a", CHOICES["a"])  # still drawing its configuration
    dead = _take(study, _dead_worker())  # drew the same point, died while its claim waited for `lower`
    lower.suggest_categorical("b", CHOICES["b"])
    assert requeue_dead(study) == 1
    claim_grid_point(lower, dict(lower.params), patience=0.0)
    copy = _take(study, worker_id())
    assert copy.params == dead.params == lower.params
    with pytest.raises(Unclaimed, match=f"duplicate of trial {lower.number}"):
        claim_grid_point(copy, dict(copy.params), patience=0.0)
    study.tell(lower, 1.0)
    study.tell(copy, state=TrialState.FAIL)
    assert counted_trials(study) == claimed_trials(study) == 1  # the configuration counts once


def test_liveness():
    assert not is_dead(worker_id())
    assert not is_dead("some-other-host:1:1")
    assert not is_dead(None)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert is_dead(f"{os.uname().nodename}:{child.pid}:")
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    while not Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
        pass
    assert is_dead(f"{os.uname().nodename}:{zombie.pid}:")
    zombie.wait()


@pytest.mark.slow
@pytest.mark.parametrize("explicit_storage", [False, True])
def test_two_local_workers_share_a_brute_force_study(cli, tmp_path, explicit_storage):
    from tests.search.test_postgres import write_config

    config = write_config(tmp_path, epochs=1)
    journal = tmp_path / "elsewhere.journal" if explicit_storage else tmp_path / "pair" / "search" / "study.journal"
    storage_flag = ["--storage", f"journal:{journal}"] if explicit_storage else []
    result = cli("search", "-c", config, "--workers", "2", *storage_flag, "--project-dir", tmp_path,
                 "--project", "pair")
    assert result.code == 0, result.stderr
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.load_study(study_name="pair", storage=storage)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    evaluated = [json.dumps(t.params, sort_keys=True) for t in complete]
    assert len(complete) == len(set(evaluated)) == 16
    assert "exited with status" not in result.stderr
