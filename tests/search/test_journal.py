"""The trial-durable journal backend: same records as Optuna's, fsync only when it matters."""

from __future__ import annotations

import json
import os
import threading
import time

import optuna

from machop.search import journal
from machop.search.journal import TrialDurableJournalBackend


def test_records_are_readable_by_plain_optuna_and_by_default_fsynced_in_the_background(tmp_path, monkeypatch):
    synced = []  # (thread, file size at the fsync)
    monkeypatch.setattr(journal.os, "fsync", lambda fd: synced.append((threading.current_thread().name,
                                                                       os.fstat(fd).st_size)))
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



def test_without_background_fsync_each_finished_trial_is_synced_before_tell_returns(tmp_path, monkeypatch):
    synced = []  # (thread, file size at the fsync)
    monkeypatch.setattr(journal.os, "fsync", lambda fd: synced.append((threading.current_thread().name,
                                                                       os.fstat(fd).st_size)))
    monkeypatch.setattr(TrialDurableJournalBackend, "background_fsync", False)
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


def _writes(monkeypatch) -> list[int]:
    """Records per write of every TrialDurableJournalBackend, in order."""
    sizes: list[int] = []
    write = TrialDurableJournalBackend._write
    monkeypatch.setattr(TrialDurableJournalBackend, "_write",
                        lambda self, logs: (sizes.append(len(logs)), write(self, logs))[1])
    return sizes


def test_held_records_go_out_in_one_write_in_order_when_the_block_ends(tmp_path, monkeypatch):
    path = tmp_path / "study.journal"
    backend = TrialDurableJournalBackend(str(path))
    study = optuna.create_study(storage=optuna.storages.JournalStorage(backend), study_name="s")
    trial = study.ask()
    writes = _writes(monkeypatch)
    size = path.stat().st_size
    with journal.held_writes(study):
        trial.suggest_categorical("x", [1, 2])
        with journal.held_writes(study):  # nested: only the outermost block writes
            trial.set_user_attr("a", 1)
        trial.set_user_attr("b", 2)
        assert path.stat().st_size == size and writes == []
    assert writes == [3]
    records = [json.loads(line) for line in path.read_text().splitlines()][-3:]
    assert [r["op_code"] for r in records] == [5, 8, 8] and records[1]["user_attr"] == {"a": 1}
    study.tell(trial, 1.0)
    stored = study.trials[0]
    assert stored.params == {"x": trial.params["x"]} and stored.user_attrs == {"a": 1, "b": 2}


def _study_with_a_trial(tmp_path, monkeypatch) -> tuple[optuna.Study, optuna.Trial, list[int]]:
    """A journal study, its first trial, and the records per write from now on."""
    study = optuna.create_study(storage=optuna.storages.JournalStorage(
        TrialDurableJournalBackend(str(tmp_path / "study.journal"))), study_name="s")
    return study, study.ask(), _writes(monkeypatch)


def test_a_record_that_cannot_wait_takes_the_held_ones_with_it(tmp_path, monkeypatch):
    study, trial, writes = _study_with_a_trial(tmp_path, monkeypatch)
    with journal.held_writes(study):
        trial.set_user_attr("a", 1)
        trial.report(0.5, step=0)  # a pruner reads intermediate values back at once
        assert writes == [2]
        assert study.trials[0].intermediate_values == {0: 0.5} and study.trials[0].user_attrs == {"a": 1}
        trial.set_user_attr("b", 2)
    assert writes == [2, 1]


def test_held_records_are_written_when_the_block_raises_and_other_threads_are_not_held(tmp_path, monkeypatch):
    study, trial, writes = _study_with_a_trial(tmp_path, monkeypatch)
    try:
        with journal.held_writes(study):
            trial.set_user_attr("a", 1)
            other = threading.Thread(target=trial.set_user_attr, args=("b", 2))
            other.start()
            other.join()
            assert writes == [1]  # the other thread's record went out on its own
            raise RuntimeError("evaluation failed")
    except RuntimeError:
        pass
    assert writes == [1, 1] and study.trials[0].user_attrs == {"a": 1, "b": 2}
    assert journal.held_writes(optuna.create_study()).__class__.__name__ == "nullcontext"  # other storages


def test_a_reader_skips_the_file_only_while_nothing_was_appended(tmp_path):
    path = tmp_path / "study.journal"
    reader = optuna.storages.JournalStorage(TrialDurableJournalBackend(str(path)))
    study = optuna.create_study(storage=reader, study_name="s")
    writer = optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path))))  # another process's writer
    assert study.trials == []
    writer.tell(writer.ask(), 1.0)
    assert [t.value for t in study.trials] == [1.0]
    with open(path, "ab") as stream:
        stream.write(b'{"op_code":4,"worker_id":"w","study_id":0,"datetime_start":null}')  # no newline yet
    assert [t.value for t in study.trials] == [1.0]
    with open(path, "ab") as stream:
        stream.write(b"\n")
    assert len(study.trials) == 2


def test_background_fsyncs_are_at_most_one_per_interval_and_a_waiter_gets_one_at_once(tmp_path, monkeypatch):
    synced = []  # file size at each fsync
    monkeypatch.setattr(journal.os, "fsync", lambda fd: synced.append(os.fstat(fd).st_size))
    monkeypatch.setattr(TrialDurableJournalBackend, "fsync_interval", 3600.0)
    path = tmp_path / "study.journal"
    backend = TrialDurableJournalBackend(str(path))
    study = optuna.create_study(storage=optuna.storages.JournalStorage(backend), study_name="s")
    for value in range(5):
        study.tell(study.ask(), float(value))
    backend._sync.request()  # (the thread may not have run yet: make sure it saw a request)
    before_wait = len(synced)
    assert before_wait <= 2  # the study's own fsync, and the first trial's; the rest wait an hour
    backend.wait_durable()
    assert synced[-1] == path.stat().st_size and len(synced) <= before_wait + 1


class _CountingCondition(threading.Condition):
    def __init__(self) -> None:
        super().__init__()
        self.notified = 0

    def notify_all(self) -> None:
        self.notified += 1
        super().notify_all()


def test_a_request_does_not_wake_a_sync_thread_that_sleeps_until_its_interval_is_over(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(journal.os, "fsync", lambda fd: synced.append(os.fstat(fd).st_size))
    path = tmp_path / "study.journal"
    path.write_bytes(b"")
    sync = journal._BackgroundSync(str(path), interval=3600.0)
    sync._condition = condition = _CountingCondition()
    sync.request()  # starts the thread: the first fsync is due at once
    sync.wait()
    assert len(synced) == 1
    sync.request()  # wakes the idle thread, which then sleeps until the hour is over
    deadline = time.monotonic() + 5
    while sync._idle and time.monotonic() < deadline:
        time.sleep(0.001)
    notified = condition.notified
    for _ in range(10):
        sync.request()
    assert condition.notified == notified and len(synced) == 1
    path.write_bytes(b"x\n")
    sync.wait()  # a waiter cuts the interval short: one fsync for the ten requests
    assert synced == [0, 2]


def test_an_idle_sync_thread_ends_and_the_next_request_starts_another(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(journal.os, "fsync", lambda fd: synced.append(os.fstat(fd).st_size))
    path = tmp_path / "study.journal"
    path.write_bytes(b"")
    sync = journal._BackgroundSync(str(path))
    sync.idle_exit = 0.05
    sync.request()
    sync.wait()
    first = sync._thread
    first.join(timeout=5)
    assert not first.is_alive() and sync._thread is None
    path.write_bytes(b"x\n")
    sync.request()
    sync.wait()
    assert synced == [0, 2] and sync._thread is not first
