"""A journal file backend that makes a trial durable when it finishes, not at every write.

Optuna's JournalFileBackend fsyncs after every record; a trial writes about twenty (its
parameters, user attributes, state), and those fsyncs were most of the storage cost per trial.
Here every record is still written and flushed at once under the file lock, so a killed process
loses nothing (the data is in the kernel's page cache); only records that finish a trial or
change a study are fsynced, which also makes every earlier record of the file durable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import get_lock_file
from optuna.storages.journal._storage import JournalOperation
from optuna.trial import TrialState

from machop.errors import SearchError

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


class TrialDurableJournalBackend(JournalFileBackend):
    """JournalFileBackend that fsyncs when a trial finishes or the study changes."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        with get_lock_file(self._lock):
            text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
            _cut_partial_record(self._file_path)
            with open(self._file_path, "ab") as stream:
                stream.write(text.encode("utf-8"))
                stream.flush()
                if any(_makes_durable(log) for log in logs):
                    os.fsync(stream.fileno())


def _cut_partial_record(path: str) -> None:
    """Drop the unfinished last line a killed writer left, so the next record starts on its own line.

    Called under the file lock: every live writer finishes its line before releasing it, and
    readers never apply a line without its newline, so the cut removes nothing anyone read.
    """
    with open(path, "rb+") as stream:
        size = stream.seek(0, os.SEEK_END)
        if size == 0:
            return
        stream.seek(size - 1)
        if stream.read(1) == b"\n":
            return
        end = size
        while end > 0:  # find the last newline, reading backwards in blocks
            start = max(0, end - 65536)
            stream.seek(start)
            newline = stream.read(end - start).rfind(b"\n")
            if newline >= 0:
                stream.truncate(start + newline + 1)
                return
            end = start
        stream.truncate(0)
