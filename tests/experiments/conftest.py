"""Every experiment of docs/experiments.md at a tiny size, run once per session into one folder."""

from __future__ import annotations

import contextlib
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from machop.search.report.experiments_page import STEPS, TIMINGS_FILE, machine_record

ROOT = Path(__file__).parents[2]
# The page's commands with a budget small enough for a test: one epoch, a few trials.
TINY = {"quant_grid": ["--max-epochs", "1", "--n-trials", "4"],
        "samplers_small": ["--max-epochs", "1", "--repeats", "2", "--n-trials", "4"],
        "samplers_large": ["--max-epochs", "1", "--repeats", "2", "--n-trials", "4"],
        "width_uniform": ["--max-epochs", "1"],
        "width_nonuniform": ["--max-epochs", "1", "--n-trials", "8"],
        "joint_width_precision": ["--max-epochs", "1", "--n-trials", "4"],
        "greedy_vs_tpe": ["--max-epochs", "5", "--repeats", "2", "--n-trials", "4"]}  # a feasible 8-bit model


@dataclass
class TinyRun:
    """One command's exit status and output."""

    code: int
    stdout: str
    stderr: str


@dataclass
class TinyRuns:
    """The outputs folder of the tiny runs, each command's output, and their timings.json."""

    out: Path
    runs: dict[str, TinyRun] = field(default_factory=dict)


def _run_in_process(args: list[str]) -> tuple[TinyRun, float, float]:
    from machop.cli.app import run

    stdout, stderr = io.StringIO(), io.StringIO()
    started, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = run(args)
    return (TinyRun(code, stdout.getvalue(), stderr.getvalue()),
            time.perf_counter() - started, time.process_time() - cpu)


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> TinyRuns:
    """Run the page's commands at a tiny size, timed like `make experiments` times them."""
    out = tmp_path_factory.mktemp("experiments")
    runs = TinyRuns(out)
    timings = {**machine_record(1), "steps": {}}
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "200"  # the wide tables of an interactive terminal
    try:
        for step in STEPS:
            args = [step.command, "--config", str(step.config_path(ROOT)), *step.args, "--project-dir", str(out),
                    *TINY[step.example]]
            runs.runs[step.example], wall, cpu = _run_in_process(args)
            timings["steps"][step.key] = {"command": step.shown_command(), "wall_s": wall, "cpu_s": cpu}
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns
    from machop.io_atomic import write_json_atomic

    write_json_atomic(out / TIMINGS_FILE, timings)
    return runs
