"""A journal file backend that makes a trial durable when it finishes, not at every write.

Optuna's JournalFileBackend fsyncs after every record; a trial writes about twenty (its
parameters, user attributes, state), and those fsyncs were most of the storage cost per trial.
Here every record is still written at once under the file lock (one system call, no buffering
in the process), so a killed process loses nothing: the data is in the kernel's page cache. Only
records that finish a trial or change a study make the file durable: a study change is fsynced
before the call returns; finished trials are fsynced by a background thread, at most once per
`fsync_interval` (1 s) — requests meanwhile share the next fsync, as Redis's `appendfsync
everysec` does — so trials do not wait for the disk (on the 2-core test machine one fsync took
0.3 to 2 ms, as long as a whole P2 trial's other storage work). Only an operating-system crash
or power loss can lose trials, those finished in the last second. `wait_durable` (called by the
search when its trials end, and at exit) fsyncs at once and waits. With `background_fsync =
False` the writer fsyncs each finished trial itself before returning (benchmarks/storage_cost.py
measures it as `journal-writer-fsync`).

Writers exclude each other with flock on the journal file itself (one system call; the kernel
releases it when a writer dies) instead of Optuna's default symlink lock (a symlink, a rename
and an unlink per record, and a stale lock left by a killed writer). Readers take no lock in
either scheme. A lock object passed explicitly is used as given.

Two more savings per trial: `held_writes` gathers the records a trial writes in a row (its
parameters, machop's user attributes) into one write instead of one per record, and a read
that finds the file no longer than what was already read returns at once (one stat instead of
an open and a read).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import get_lock_file
from optuna.storages.journal._storage import JournalOperation
from optuna.trial import TrialState

from machop.errors import SearchError

try:
    import fcntl
    _HAS_FLOCK = True
except ImportError:  # not POSIX: Optuna's symlink lock
    _HAS_FLOCK = False

# Records that may wait in a held block: nothing this process reads back depends on them before
# the block ends (Optuna's Trial keeps its own copy of what it set). Anything else written in a
# held block (a trial's state, a new trial, an intermediate value the pruner reads) goes out at
# once, together with what was waiting, in the order it was written.
_HOLDABLE_OPERATIONS = (JournalOperation.SET_TRIAL_PARAM, JournalOperation.SET_TRIAL_USER_ATTR,
                        JournalOperation.SET_TRIAL_SYSTEM_ATTR)
_STUDY_OPERATIONS = (JournalOperation.CREATE_STUDY, JournalOperation.DELETE_STUDY,
                     JournalOperation.SET_STUDY_USER_ATTR, JournalOperation.SET_STUDY_SYSTEM_ATTR)


# Optuna writes every record as one JSON object per line with op_code as its first key.
_RECORD_START = b'{"op_code":'


def corrupt_journal(path: str | Path, line: int | None, why: str = "") -> SearchError:
    """The error for a file that is not a journal of JSON records."""
    where = ", ".join(part for part in (f"corrupt at line {line}" if line else "corrupt", why) if part)
    return SearchError(f"storage {str(path)!r} is not a machop/Optuna journal ({where}); "
                       "give another --storage or move the file away")


def check_journal(path: str | Path) -> None:
    """Refuse a journal file with a line that is not a record; a missing file is a new journal.

    The last line may lack its newline: a writer killed mid-record leaves the start of a record,
    which Optuna skips when reading and `append_logs` cuts off before writing after it.
    """
    try:
        with open(path, "rb") as stream:
            lines = stream.read().split(b"\n")
    except FileNotFoundError:
        return
    except (IsADirectoryError, PermissionError) as exc:
        raise SearchError(f"cannot read journal {str(path)!r}: {exc.strerror}") from None
    *complete, tail = lines
    for number, line in enumerate(complete, start=1):
        try:
            record = json.loads(line)
        except ValueError:  # JSONDecodeError, or bytes that are not UTF-8
            raise corrupt_journal(path, number) from None
        if not isinstance(record, dict) or not isinstance(record.get("op_code"), int):
            raise corrupt_journal(path, number, "a JSON line without an op_code")
    if tail and not (tail.startswith(_RECORD_START) or _RECORD_START.startswith(tail)):
        raise corrupt_journal(path, len(lines), "not the start of a record")


def _makes_durable(log: dict[str, Any]) -> bool:
    operation = log.get("op_code")
    if operation in _STUDY_OPERATIONS:
        return True
    state = log.get("state")
    return operation == JournalOperation.SET_TRIAL_STATE_VALUES and state is not None \
        and TrialState(state).is_finished()


class _BackgroundSync:
    """fsyncs one file on a daemon thread when asked, at most once per `interval` seconds unless
    someone waits; requests made meanwhile share the next fsync."""

    def __init__(self, path: str, interval: float = 0.0) -> None:
        self.path, self.interval = path, interval
        self._condition = threading.Condition()
        self._requested = self._done = self._waiters = 0
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        """Ask for an fsync of everything written so far; returns at once."""
        with self._condition:
            self._requested += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="machop-journal-fsync", daemon=True)
                self._thread.start()
            self._condition.notify_all()

    def wait(self) -> None:
        """Block until every requested fsync has happened (the next one starts at once)."""
        with self._condition:
            self._waiters += 1
            self._condition.notify_all()
            try:
                while self._done < self._requested and self._thread is not None and self._thread.is_alive():
                    self._condition.wait(timeout=1.0)
            finally:
                self._waiters -= 1

    def _run(self) -> None:
        last = -float("inf")
        while True:
            with self._condition:
                while self._done == self._requested:
                    if not self._condition.wait(timeout=30.0):
                        self._thread = None  # idle: the next request starts a new thread
                        return
                while not self._waiters and (wait := last + self.interval - time.monotonic()) > 0:
                    self._condition.wait(timeout=wait)
                target = self._requested
            last = time.monotonic()
            _fsync_path(self.path)
            with self._condition:
                self._done = target
                self._condition.notify_all()


def _fsync_path(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # moved away or deleted: nothing left to make durable
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_LIVE_SYNCS: weakref.WeakSet[_BackgroundSync] = weakref.WeakSet()


@atexit.register
def wait_durable() -> None:
    """Wait for every journal fsync still in flight in this process."""
    for sync in list(_LIVE_SYNCS):
        sync.wait()


class TrialDurableJournalBackend(JournalFileBackend):
    """JournalFileBackend that fsyncs when a trial finishes or the study changes, not at every record."""

    background_fsync = True  # False: the writer fsyncs a finished trial before returning
    fsync_interval = 1.0  # seconds between background fsyncs at most (a waiting search gets one at once)

    def __init__(self, file_path: str, lock_obj: Any = None) -> None:
        super().__init__(file_path, lock_obj)
        self._flock = lock_obj is None and _HAS_FLOCK  # else the lock object (Optuna's default or given)
        self._sync = _BackgroundSync(self._file_path, self.fsync_interval)
        _LIVE_SYNCS.add(self._sync)
        self._held = _HeldRecords()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_sync")
        state.pop("_held")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._sync = _BackgroundSync(self._file_path, self.fsync_interval)
        _LIVE_SYNCS.add(self._sync)
        self._held = _HeldRecords()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Gather this thread's holdable records until the outermost block ends, then write them at once.

        The records are written when the block ends, also when it ends with an exception.
        """
        held = self._held
        held.depth += 1
        try:
            yield
        finally:
            held.depth -= 1
            if held.depth == 0 and held.records:
                records, held.records = held.records, []
                self._write(records)

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        """Optuna's reader, skipped when the file holds nothing beyond what was already read."""
        offset = self._log_number_offset.get(log_number_from)
        if offset is not None:
            try:
                if os.stat(self._file_path).st_size == offset:
                    return iter(())
            except FileNotFoundError:
                pass  # Optuna's reader says what is wrong
        return super().read_logs(log_number_from)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        held = self._held
        if held.depth:
            held.records.extend(logs)
            if all(log.get("op_code") in _HOLDABLE_OPERATIONS for log in logs):
                return
            logs, held.records = held.records, []
        self._write(logs)

    def _write(self, logs: list[dict[str, Any]]) -> None:
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode("utf-8")
        durable = any(_makes_durable(log) for log in logs)
        flock = self._flock
        with contextlib.ExitStack() as stack:
            if not flock:
                stack.enter_context(get_lock_file(self._lock))
            fd = os.open(self._file_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            stack.callback(os.close, fd)  # closing the descriptor also drops its flock
            if flock:
                stack.enter_context(_flocked(fd))
            _cut_partial_tail(fd)
            _write_all(fd, data)
            if any(log.get("op_code") in _STUDY_OPERATIONS for log in logs) or \
                    (durable and not self.background_fsync):
                os.fsync(fd)
                return
        if durable:
            self._sync.request()

    def wait_durable(self) -> None:
        """Block until every finished trial written by this backend is on disk."""
        self._sync.wait()


class _HeldRecords(threading.local):
    """Per thread: how deep in held blocks it is, and the records waiting for the outermost to end."""

    def __init__(self) -> None:
        self.depth = 0
        self.records: list[dict[str, Any]] = []


def held_writes(study: Any) -> contextlib.AbstractContextManager:
    """Write a study's holdable records of the block at once (a machop journal; other storages as they are)."""
    storage = getattr(study, "_storage", None)
    backend = getattr(storage, "_backend", None)
    if isinstance(backend, TrialDurableJournalBackend):
        return backend.hold()
    return contextlib.nullcontext()


@contextlib.contextmanager
def _flocked(fd: int) -> Iterator[None]:
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _cut_partial_tail(fd: int) -> None:
    """Drop the unfinished last line a killed writer left, so the next record starts on its own line.

    Called under the file lock: every live writer finishes its line before releasing it, and
    readers never apply a line without its newline, so the cut removes nothing anyone read.
    """
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    end = size
    while end > 0:  # find the last newline, reading backwards in blocks
        start = max(0, end - 65536)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            os.ftruncate(fd, start + newline + 1)
            return
        end = start
    os.ftruncate(fd, 0)
