"""Shared fixtures: no test downloads, CLI runs in-process with captured output."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

os.environ["MACHOP_OFFLINE"] = "1"
# Tests use tiny tensors; more threads only add contention with other processes.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch

    torch.set_num_threads(1)


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run `machop ARGS...` in-process; returns exit code and captured output."""
    from machop.cli.app import run

    monkeypatch.setenv("COLUMNS", "200")

    def invoke(*args: str) -> CliResult:
        code = run([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)
    return invoke

