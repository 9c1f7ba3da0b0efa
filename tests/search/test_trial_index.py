"""The incremental trial index agrees with a full scan of the study after every change."""

from __future__ import annotations

import random

import optuna
import pytest
from optuna.trial import TrialState

from machop.search import records
from machop.search.claims import (
    CLAIMING_STATES,
    COUNTED_STATES,
    claim_budget_slot,
    claimed_trials,
    counted_trials,
    counting,
)
from machop.search.journal import TrialDurableJournalBackend
from machop.search.study import requeue
from machop.search.trial_index import trial_index

CHOICES = [1, 2, 3]


def _full_scan(study: optuna.Study) -> dict:
    """What the checks read, computed over every trial as the definitions in claims.py say."""
    trials = study.get_trials(deepcopy=False)
    live = counting(trials)
    keys = [t.user_attrs.get(records.TRIAL_CONFIG_KEY) for t in trials if t.state == TrialState.COMPLETE]
    first = {}
    for trial, key in zip([t for t in trials if t.state == TrialState.COMPLETE], keys):
        first.setdefault(key, trial.number)
    return {"counted": sum(1 for t in live if t.state in COUNTED_STATES),
            "claimed": sum(1 for t in live if t.state in CLAIMING_STATES),
            "below": {t.number: sum(1 for c in live if c.number < t.number)
                      for t in trials if not t.state.is_finished()},
            "first_complete": first}


def _indexed(study: optuna.Study, keys: list[str]) -> dict:
    index = trial_index(study)
    below = {t.number: index.counting_below(study, t.number)
             for t in study.get_trials(deepcopy=False) if not t.state.is_finished()}
    first = {}
    for key in keys:
        found = index.completed_with_key(study, key)
        if found is not None:
            first[key] = found.number
    return {"counted": counted_trials(study), "claimed": claimed_trials(study), "below": below,
            "first_complete": first}


def _random_history(study: optuna.Study, other: optuna.Study, seed: int, steps: int = 80) -> None:
    """Random asks, tells, uncounted marks and queued copies through two Study objects on one
    storage, checking the index against a full scan after each step."""
    rng = random.Random(seed)
    running: list[optuna.Trial] = []
    keys = [f"key-{i}" for i in range(4)]
    for _ in range(steps):
        action = rng.choice(["ask", "ask", "tell", "tell", "uncounted", "requeue"])
        handle = rng.choice([study, other])
        if action == "ask" or not running:
            trial = handle.ask()
            trial.suggest_categorical("a", CHOICES)
            trial.set_user_attr(records.TRIAL_CONFIG_KEY, rng.choice(keys))
            running.append(trial)
        elif action == "tell":
            trial = running.pop(rng.randrange(len(running)))
            state = rng.choice([TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED])
            handle.tell(trial.number, 1.0 if state == TrialState.COMPLETE else None, state=state)
        elif action == "uncounted":
            trial = running.pop(rng.randrange(len(running)))
            trial.set_user_attr(records.TRIAL_UNCOUNTED, "interrupted")
            if rng.random() < 0.5:
                requeue(handle, trial.number, trial.params)  # queued while the trial still runs
            handle.tell(trial.number, state=TrialState.FAIL)
        else:
            finished = [t for t in handle.get_trials(deepcopy=False) if t.state == TrialState.FAIL]
            if finished:
                dead = rng.choice(finished)
                requeue(handle, dead.number, dead.params)
        for view in (study, other):
            assert _indexed(view, keys) == _full_scan(view)


@pytest.mark.parametrize("seed", range(4))
def test_the_index_agrees_with_a_full_scan_in_memory(seed):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    other = optuna.load_study(study_name=study.study_name, storage=study._storage,
                              sampler=optuna.samplers.RandomSampler(seed=seed + 1))
    _random_history(study, other, seed)


def test_the_index_agrees_with_a_full_scan_of_a_journal(tmp_path):
    """Two storages on one journal file, as two worker processes see it."""
    path = str(tmp_path / "study.journal")
    first = optuna.storages.JournalStorage(TrialDurableJournalBackend(path))
    second = optuna.storages.JournalStorage(TrialDurableJournalBackend(path))
    study = optuna.create_study(storage=first, study_name="s", sampler=optuna.samplers.RandomSampler(seed=0))
    other = optuna.load_study(study_name="s", storage=second, sampler=optuna.samplers.RandomSampler(seed=1))
    _random_history(study, other, seed=7, steps=60)


def test_a_copy_queued_after_its_trial_finished_gives_the_slot_back():
    study = optuna.create_study()
    trials = [study.ask() for _ in range(3)]
    for trial in trials:
        trial.suggest_categorical("a", CHOICES)
        study.tell(trial, 1.0)
    assert counted_trials(study) == 3  # all three are folded into the index now
    requeue(study, 1, trials[1].params)
    assert counted_trials(study) == claimed_trials(study) == 2
    requeue(study, 1, trials[1].params)  # a second copy of the same trial changes nothing more
    assert counted_trials(study) == 2


def test_a_budget_claim_of_a_finished_trial_still_counts_the_trials_below_it():
    study = optuna.create_study()
    trials = [study.ask() for _ in range(3)]
    for trial in trials:
        study.tell(trial, 1.0)
    counted_trials(study)  # fold every trial in
    assert trial_index(study).counting_below(study, 2) is None  # settled: claims count the full list
    claim_budget_slot(trials[2], 3)  # two trials below it: inside the budget
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        claim_budget_slot(trials[2], 2)  # over it: the trial would be marked, but it has finished


class _UnhashableStorage(optuna.storages.InMemoryStorage):
    __hash__ = None  # type: ignore[assignment]


def test_a_storage_that_cannot_be_a_weak_key_is_counted_in_full():
    study = optuna.create_study(storage=_UnhashableStorage())
    for _ in range(3):
        study.tell(study.ask(), 1.0)
    study.ask()
    assert counted_trials(study) == 3 and claimed_trials(study) == 4
