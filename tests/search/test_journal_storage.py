"""machop's JournalStorage: its own records are not read back, and every reader still sees the same study."""

from __future__ import annotations

import pickle
import random

import optuna
import pytest
from optuna.storages.journal._storage import JournalStorageReplayResult
from optuna.trial import TrialState

from machop.search import journal
from machop.search.journal import TrialDurableJournalBackend
from machop.search.journal_storage import ListingReplay, MachopJournalStorage


def _storage(path) -> MachopJournalStorage:
    return MachopJournalStorage(TrialDurableJournalBackend(str(path)))


def _snapshot(study: optuna.Study) -> list[tuple]:
    """Everything a reader sees of each trial, in number order."""
    return [(t.number, t.state, t.values, t.params, t.user_attrs, t.system_attrs, t.intermediate_values,
             {name: repr(d) for name, d in t.distributions.items()})
            for t in study.get_trials(deepcopy=False)]


def _plain(path, name: str = "s") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path))))


def _run_trial(study: optuna.Study, rng: random.Random, number: int) -> None:
    """One trial as machop's loop makes it: held parameters and attributes, then the state."""
    trial = study.ask()
    with journal.held_writes(study):
        trial.suggest_categorical("width", [2, 4, 8])
        trial.suggest_float("scale", 0.5, 2.0, log=True)
        trial.set_user_attr("metrics", {"accuracy": rng.random(), "tags": ("a", number)})
    trial.report(rng.random(), step=0)  # not holdable: goes out at once
    if rng.random() < 0.2:
        study.tell(trial, state=TrialState.FAIL)
    else:
        study.tell(trial, rng.random())


def test_two_writers_on_one_journal_see_exactly_what_plain_optuna_reads(tmp_path):
    path = tmp_path / "study.journal"
    first = optuna.create_study(storage=_storage(path), study_name="s")
    second = optuna.load_study(study_name="s", storage=_storage(path))  # another process's storage
    rng = random.Random(0)
    for number in range(40):  # the writers take turns at random, so each often finds the other's records
        _run_trial(first if rng.random() < 0.5 else second, rng, number)
    plain = _snapshot(_plain(path))
    assert len(plain) == 40
    assert _snapshot(first) == plain and _snapshot(second) == plain
    # tuples became lists in the file: the writer's own view shows them as any reader decodes them
    assert all(trial[4]["metrics"]["tags"][0] == "a" and isinstance(trial[4]["metrics"]["tags"], list)
               for trial in plain)


def test_a_writer_reads_back_only_what_others_wrote(tmp_path, monkeypatch):
    path = tmp_path / "study.journal"
    study = optuna.create_study(storage=_storage(path), study_name="s")
    backend = study._storage._backend
    file_reads: list[int] = []
    read_file = TrialDurableJournalBackend._read_file
    monkeypatch.setattr(TrialDurableJournalBackend, "_read_file",
                        lambda self, start: (file_reads.append(start), read_file(self, start))[1])
    rng = random.Random(1)
    for number in range(5):
        _run_trial(study, rng, number)
    assert file_reads == []  # every record this writer wrote was applied from memory
    other = _plain(path)
    other.tell(other.ask(), 0.5)  # another writer's trial
    _run_trial(study, rng, 5)
    assert len(file_reads) == 1  # that trial's records came from the file, once
    assert _snapshot(study) == _snapshot(_plain(path))
    trial = study.ask()
    with journal.held_writes(study):
        trial.set_user_attr("late", 1)
        other.tell(other.ask(), 0.25)  # lands in the file between this writer's last read and its write
    study.tell(trial, 1.0)
    assert len(file_reads) == 2  # the held record follows the other's: all of it read from the file
    assert _snapshot(study) == _snapshot(_plain(path))
    trial = study.ask()
    trial.report(0.1, step=0)  # written, and kept for the next read
    other.tell(other.ask(), 0.75)  # lands between that record and this writer's next one
    trial.set_user_attr("after", 1)  # written with no read in between
    study.tell(trial, 2.0)
    assert _snapshot(study) == _snapshot(_plain(path))
    assert backend._own is None or backend._own.end == study._storage._replay_result.log_number_read


def test_a_record_held_in_a_block_is_not_followed_by_a_read(tmp_path, monkeypatch):
    path = tmp_path / "study.journal"
    study = optuna.create_study(storage=_storage(path), study_name="s")
    trial = study.ask()
    reads: list[int] = []
    read_logs = TrialDurableJournalBackend.read_logs
    monkeypatch.setattr(TrialDurableJournalBackend, "read_logs",
                        lambda self, start: (reads.append(start), read_logs(self, start))[1])
    with journal.held_writes(study):
        trial.suggest_int("x", 0, 3)  # the sampler reads the study
        del reads[:]
        trial.set_user_attr("a", 1)
        trial.set_user_attr("b", 2)
        assert reads == []
        other = _plain(path)
        other.tell(other.ask(), 1.0)  # another writer's record, written during the block
        assert [t.number for t in study.get_trials(deepcopy=False)] == [0, 1]  # a read finds it
    assert reads == [reads[0]]
    study.tell(trial, 2.0)
    assert study.trials[0].user_attrs == {"a": 1, "b": 2} and _snapshot(study) == _snapshot(_plain(path))


def test_an_incompatible_parameter_still_fails_for_its_writer_and_is_skipped_for_others(tmp_path):
    path = tmp_path / "study.journal"
    study = optuna.create_study(storage=_storage(path), study_name="s")
    study.tell(study.ask({"x": optuna.distributions.CategoricalDistribution([1, 2])}), 1.0)
    trial = study.ask()
    storage = study._storage
    with pytest.raises(ValueError):
        storage.set_trial_param(trial._trial_id, "x", 0, optuna.distributions.CategoricalDistribution([1, 2, 3]))
    assert "x" not in study.trials[1].params
    other = _plain(path)
    other_trial = other.ask()
    other._storage.set_trial_param(other_trial._trial_id, "y", 0.5,
                                   optuna.distributions.FloatDistribution(0, 1))
    study.tell(trial, 3.0)
    assert _snapshot(study) == _snapshot(_plain(path))


def test_the_listing_replay_lists_what_optunas_replay_lists(tmp_path):
    path = tmp_path / "study.journal"
    study = optuna.create_study(storage=_storage(path), study_name="s")
    optuna.create_study(storage=study._storage, study_name="t").tell(optuna.load_study(
        study_name="t", storage=study._storage).ask(), 1.0)  # a second study in the same journal
    rng = random.Random(2)
    for number in range(12):
        _run_trial(study, rng, number)
    running = study.ask()
    logs = list(optuna.storages.journal.JournalFileBackend(str(path)).read_logs(0))
    listing, plain = ListingReplay("x-"), JournalStorageReplayResult("x-")
    for start in range(0, len(logs), 7):  # applied in batches, as reads find them
        listing.apply_logs(logs[start:start + 7])
        plain.apply_logs(logs[start:start + 7])
        for study_id in (0, 1):
            for states in (None, (TrialState.COMPLETE,), (TrialState.RUNNING, TrialState.FAIL)):
                try:
                    expected = plain.get_all_trials(study_id, states)
                except KeyError:
                    with pytest.raises(KeyError):
                        listing.get_all_trials(study_id, states)
                    continue
                got = listing.get_all_trials(study_id, states)
                assert [(t.number, t.state, t.params, t.user_attrs) for t in got] == \
                    [(t.number, t.state, t.params, t.user_attrs) for t in expected]
    assert listing.get_all_trials(0, (TrialState.RUNNING,))[0].number == running.number


def test_a_pickled_storage_reads_the_whole_journal_again(tmp_path):
    path = tmp_path / "study.journal"
    study = optuna.create_study(storage=_storage(path), study_name="s")
    rng = random.Random(3)
    for number in range(3):
        _run_trial(study, rng, number)
    copied = pickle.loads(pickle.dumps(study._storage))
    assert isinstance(copied._replay_result, ListingReplay)
    assert _snapshot(optuna.load_study(study_name="s", storage=copied)) == _snapshot(study)



def test_trials_handed_out_never_change_while_a_batch_updates_its_own_copy(tmp_path):
    path = tmp_path / "study.journal"
    writer = optuna.create_study(storage=_storage(path), study_name="s")
    reader = optuna.load_study(study_name="s", storage=_storage(path))  # reads the writer's records in batches
    trial = writer.ask()
    before = reader._storage.get_trial(trial._trial_id)  # handed out by the reader: must stay as it is
    listed = reader.get_trials(deepcopy=False)[0]
    with journal.held_writes(writer):  # parameters and attributes in one write: one batch for the reader
        trial.suggest_categorical("width", [2, 4, 8])
        trial.suggest_categorical("depth", [1, 2])
        trial.set_user_attr("a", 1)
        trial.set_user_attr("b", [2])
        writer._storage.set_trial_system_attr(trial._trial_id, "c", 3)
    after = reader._storage.get_trial(trial._trial_id)
    for old in (before, listed):
        assert old.params == {} and old.distributions == {} and old.user_attrs == {} and old.system_attrs == {}
    assert set(after.params) == {"width", "depth"} and after.user_attrs == {"a": 1, "b": [2]}
    assert after.system_attrs["c"] == 3
    writer.tell(trial, 1.0)
    finished = reader._storage.get_trial(trial._trial_id)
    assert after.state == TrialState.RUNNING and finished.state == TrialState.COMPLETE
    assert finished.params == after.params and finished.user_attrs == after.user_attrs
    assert _snapshot(reader) == _snapshot(writer) == _snapshot(_plain(path))
