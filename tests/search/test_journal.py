"""The trial-durable journal backend: same records as Optuna's, fsync only when it matters."""

from __future__ import annotations

import json
import os
import threading

import optuna

from machop.search import journal
from machop.search.journal import TrialDurableJournalBackend


def test_records_are_readable_by_plain_optuna_and_fsync_only_at_finished_trials(tmp_path, monkeypatch):
    synced = []  # (thread, file size at the fsync)
    monkeypatch.setattr(journal.os, "fsync", lambda fd: synced.append((threading.current_thread().name,
                                                                       os.fstat(fd).st_size)))
    monkeypatch.setattr(TrialDurableJournalBackend, "background_fsync", True)
    path = tmp_path / "study.journal"
    backend = TrialDurableJournalBackend(str(path))
    study = optuna.create_study(storage=optuna.storages.JournalStorage(backend), study_name="s")
    assert synced == [(threading.main_thread().name, path.stat().st_size)]  # a study change: synced at once
    for value in (1.0, 2.0, 3.0):
        trial = study.ask()
        trial.suggest_categorical("x", [1, 2])
        trial.set_user_attr("a", value)
        study.tell(trial, value)
    backend.wait_durable()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    trial_syncs = synced[1:]
    # finished trials are synced in the background; requests made during an fsync share the next one
    assert 1 <= len(trial_syncs) <= 3 and all(name == "machop-journal-fsync" for name, _ in trial_syncs)
    assert trial_syncs[-1][1] == path.stat().st_size  # the last fsync covers the whole file
    assert len(lines) > len(synced)
    plain = optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path))))
    assert [t.value for t in plain.trials] == [1.0, 2.0, 3.0]
    assert [t.user_attrs["a"] for t in plain.trials] == [1.0, 2.0, 3.0]



def test_by_default_each_finished_trial_is_synced_before_tell_returns(tmp_path, monkeypatch):
    synced = []  # (thread, file size at the fsync)
    monkeypatch.setattr(journal.os, "fsync", lambda fd: synced.append((threading.current_thread().name,
                                                                       os.fstat(fd).st_size)))
    path = tmp_path / "study.journal"
    study = optuna.create_study(storage=optuna.storages.JournalStorage(TrialDurableJournalBackend(str(path))),
                                study_name="s")
    for value in (1.0, 2.0):
        trial = study.ask()
        trial.set_user_attr("a", value)
        study.tell(trial, value)
        # the record finishing the trial is the last one written, and it is on disk already
        assert synced[-1] == (threading.main_thread().name, path.stat().st_size)
    assert len(synced) == 3  # the study, then one per finished trial (not per record)

def test_a_record_cut_off_by_a_killed_writer_is_dropped_before_the_next_write(tmp_path):
    path = tmp_path / "study.journal"
    backend = TrialDurableJournalBackend(str(path))
    study = optuna.create_study(storage=optuna.storages.JournalStorage(backend), study_name="s")
    study.tell(study.ask(), 1.0)
    complete = path.read_bytes()
    with open(path, "ab") as stream:
        stream.write(b'{"op_code":4,"trial_id":0,"us')  # what a SIGKILL mid-write leaves
    study.tell(study.ask(), 2.0)
    backend.wait_durable()
    assert path.read_bytes().startswith(complete)
    records = [json.loads(line) for line in path.read_text().splitlines()]  # every line whole again
    assert len(records) == len(complete.splitlines()) + 2
    assert [t.value for t in optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path)))).trials] == [1.0, 2.0]


def test_writers_exclude_each_other_with_flock_on_the_journal(tmp_path):
    import fcntl

    path = tmp_path / "study.journal"
    backend = TrialDurableJournalBackend(str(path))
    other = os.open(path, os.O_RDWR)  # another writer's open file: flock excludes it like a process
    fcntl.flock(other, fcntl.LOCK_EX)
    writer = threading.Thread(target=backend.append_logs, args=([{"op_code": 4, "trial_id": 0}],))
    writer.start()
    writer.join(timeout=0.3)
    assert writer.is_alive() and path.stat().st_size == 0  # waits for the lock, nothing written
    os.write(other, b'{"op_code":0}\n')
    fcntl.flock(other, fcntl.LOCK_UN)
    os.close(other)
    writer.join()
    assert path.read_bytes().splitlines() == [b'{"op_code":0}', b'{"op_code":4,"trial_id":0}']
    assert not list(tmp_path.glob("*.lock"))  # no symlink lock was taken
