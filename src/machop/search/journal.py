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

Three more savings per trial: `held_writes` gathers the records a trial writes in a row (its
parameters, machop's user attributes) into one write instead of one per record; records this
backend writes right after everything it had read are handed to the next read already decoded
(the file lock proves nothing came in between), so a lone writer never reads its own records
back; and a read that finds the file no longer than what was already read returns at once (one
stat instead of an open and a read).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
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
HOLDABLE_OPERATIONS = (JournalOperation.SET_TRIAL_PARAM, JournalOperation.SET_TRIAL_USER_ATTR,
                        JournalOperation.SET_TRIAL_SYSTEM_ATTR)
_STUDY_OPERATIONS = (JournalOperation.CREATE_STUDY, JournalOperation.DELETE_STUDY,
                     JournalOperation.SET_STUDY_USER_ATTR, JournalOperation.SET_STUDY_SYSTEM_ATTR)


# Optuna writes every record as one JSON object per line with op_code as its first key.
_RECORD_START = b'{"op_code":'
# The encoding of Optuna's JournalFileBackend: json.dumps(log, separators=(",", ":")), one encoder.
_encode = json.JSONEncoder(separators=(",", ":")).encode


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


def _finishes_trial(log: dict[str, Any]) -> bool:
    if log.get("op_code") != JournalOperation.SET_TRIAL_STATE_VALUES:
        return False
    state = log.get("state")
    return state is not None and TrialState(state).is_finished()


class _BackgroundSync:
    """fsyncs one file on a daemon thread when asked, at most once per `interval` seconds unless
    someone waits; requests made meanwhile share the next fsync.

    A request wakes the thread only when it is idle: while it sleeps until the interval is over,
    it wakes by itself and takes every request made meanwhile (waking it at each request would
    cost two thread switches per trial for nothing).
    """

    idle_exit = 30.0  # seconds without a request after which the thread ends (the next request starts one)

    def __init__(self, path: str, interval: float = 0.0) -> None:
        self.path, self.interval = path, interval
        self._condition = threading.Condition()
        self._requested = self._done = self._waiters = 0
        self._idle = False
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        """Ask for an fsync of everything written so far; returns at once."""
        with self._condition:
            self._requested += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="machop-journal-fsync", daemon=True)
                self._thread.start()
            elif self._idle:
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
                if not self._wait_for_request():
                    self._thread = None  # idle too long: the next request starts a new thread
                    return
                while not self._waiters and (wait := last + self.interval - time.monotonic()) > 0:
                    self._condition.wait(timeout=wait)
                target = self._requested
            last = time.monotonic()
            _fsync_path(self.path)
            with self._condition:
                self._done = target
                self._condition.notify_all()

    def _wait_for_request(self) -> bool:
        """Under the condition's lock: wait until an fsync is due; False after `idle_exit` without one."""
        deadline = time.monotonic() + self.idle_exit
        while self._done == self._requested:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._idle = True
            try:
                self._condition.wait(timeout=left)
            finally:
                self._idle = False
        return True


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
        self._read_to = (0, 0)  # the next record this process has not read: its number and byte offset
        self._own: _OwnRecords | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for unpicklable_or_per_process in ("_sync", "_held", "_read_to", "_own"):
            state.pop(unpicklable_or_per_process)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._sync = _BackgroundSync(self._file_path, self.fsync_interval)
        _LIVE_SYNCS.add(self._sync)
        self._held = _HeldRecords()
        self._read_to = (0, 0)
        self._own = None

    def holding(self) -> bool:
        """True inside this thread's held block: holdable records wait for its end."""
        return self._held.depth > 0

    @contextlib.contextmanager
    def hold(self, lock: Any = None) -> Iterator[None]:
        """Gather this thread's holdable records until the outermost block ends, then write them at once.

        The records are written when the block ends, also when it ends with an exception, under
        `lock` if given (the storage's thread lock, which its own writes and reads take).
        """
        held = self._held
        held.depth += 1
        try:
            yield
        finally:
            held.depth -= 1
            if held.depth == 0 and held.records:
                records, held.records = held.records, []
                with lock or contextlib.nullcontext():
                    self._write(records)

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        """Optuna's reader, after the records this backend wrote itself (already decoded), and
        skipped when the file holds nothing beyond what was already read."""
        own = self._own
        if own is not None and own.start <= log_number_from < own.end:
            unread = own.logs[log_number_from - own.start:]
            self._own = _OwnRecords(log_number_from, unread, own.end_offset)
            return itertools.chain(unread, self._read_new(own.end))
        self._own = None  # all read: the records from here on come from the file
        self._note_read_to(log_number_from)
        return self._read_file(log_number_from) if self._appended_since(log_number_from) else iter(())

    def _note_read_to(self, log_number: int) -> None:
        """Remember that this process has read every record before `log_number`, when its offset is known."""
        offset = self._log_number_offset.get(log_number)
        if offset is not None and log_number >= self._read_to[0]:
            self._read_to = (log_number, offset)

    def _appended_since(self, log_number: int) -> bool:
        """False when the file ends where record `log_number` starts (one stat; no open, no read)."""
        offset = self._log_number_offset.get(log_number)
        if offset is None:
            return True
        try:
            return os.stat(self._file_path).st_size != offset
        except FileNotFoundError:
            return True  # Optuna's reader says what is wrong

    def _read_new(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        if self._appended_since(log_number_from):
            yield from self._read_file(log_number_from)

    def _read_file(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        """Optuna's reader, noting how far it got: the records up to there are known to this process."""
        number = log_number_from
        for number, log in enumerate(super().read_logs(log_number_from), start=log_number_from + 1):
            yield log
        self._note_read_to(number)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        held = self._held
        if held.depth:
            held.records.extend(logs)
            if all(log.get("op_code") in HOLDABLE_OPERATIONS for log in logs):
                return
            logs, held.records = held.records, []
        self._write(logs)

    def _write(self, logs: list[dict[str, Any]]) -> None:
        lines = [_encode(log) for log in logs]
        data = ("\n".join(lines) + "\n").encode("utf-8")
        changes_study = any(log.get("op_code") in _STUDY_OPERATIONS for log in logs)
        finishes_trial = any(_finishes_trial(log) for log in logs)
        with contextlib.nullcontext() if self._flock else get_lock_file(self._lock):
            fd = os.open(self._file_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                if self._flock:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # released when the descriptor closes
                size = _cut_partial_tail(fd)
                _write_all(fd, data)
                self._remember_own(size, lines, size + len(data))
                if changes_study or (finishes_trial and not self.background_fsync):
                    os.fsync(fd)
                    return
            finally:
                os.close(fd)
        if finishes_trial:
            self._sync.request()

    def _remember_own(self, start_offset: int, lines: list[str], end_offset: int) -> None:
        """Keep what was just written for the next read when nothing but it follows what was read.

        Called under the file lock: if the file ended where this process's reads (and its own
        earlier writes) ended, the records just written are the next ones in the file, in this
        order, and the next read can take them decoded from here instead of from the file.
        """
        own, (read_number, read_offset) = self._own, self._read_to
        if own is not None and own.end_offset == start_offset:
            start, logs = own.start, own.logs
        elif own is None and read_offset == start_offset:
            start, logs = read_number, []
        else:
            self._own = None  # another writer came in between: read everything back from the file
            return
        number, offset = start + len(logs), start_offset
        for line in lines:  # where each record starts, as Optuna's reader notes it (ASCII: bytes == chars)
            number, offset = number + 1, offset + len(line) + 1
            self._log_number_offset[number] = offset
        # the records exactly as a reader decodes them (one decoder call for all)
        self._own = _OwnRecords(start, logs + json.loads("[" + ",".join(lines) + "]"), end_offset)

    def wait_durable(self) -> None:
        """Block until every finished trial written by this backend is on disk."""
        self._sync.wait()


class _OwnRecords:
    """Records this backend wrote right after what it had read, decoded, from record `start` on."""

    def __init__(self, start: int, logs: list[dict[str, Any]], end_offset: int) -> None:
        self.start, self.logs, self.end_offset = start, logs, end_offset

    @property
    def end(self) -> int:
        return self.start + len(self.logs)


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
        return backend.hold(getattr(storage, "_thread_lock", None))
    return contextlib.nullcontext()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _cut_partial_tail(fd: int) -> int:
    """Drop the unfinished last line a killed writer left, so the next record starts on its own
    line; returns the file's size after the cut.

    Called under the file lock: every live writer finishes its line before releasing it, and
    readers never apply a line without its newline, so the cut removes nothing anyone read.
    """
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    end = size
    while end > 0:  # find the last newline, reading backwards in blocks
        start = max(0, end - 65536)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            os.ftruncate(fd, start + newline + 1)
            return start + newline + 1
        end = start
    os.ftruncate(fd, 0)
    return 0
