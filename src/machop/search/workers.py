"""Who runs a trial, and whether that process is still alive."""

from __future__ import annotations

import os
import socket


def _stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (Linux); empty elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _start_time(pid: int) -> str:
    """The process start time in clock ticks since boot, so a reused pid is not mistaken."""
    fields = _stat(pid)
    return fields[19] if len(fields) > 19 else ""


def worker_id() -> str:
    """`host:pid:start` of this process."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_dead(worker: str | None) -> bool:
    """True only when `worker` ran on this host and that process no longer exists."""
    if not worker:
        return False
    host, _, rest = worker.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if not _pid_running(pid):
        return True
    fields = _stat(pid)
    if fields and fields[0] in ("Z", "X"):  # killed but not yet reaped by its parent
        return True
    return bool(start) and len(fields) > 19 and fields[19] != start
