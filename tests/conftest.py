"""Shared fixtures: no test downloads, CLI runs in-process with captured output."""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ["MACHOP_OFFLINE"] = "1"
# pytest-xdist's workers start with COLUMNS=80 and LINES=24, which rich would fix as the console's
# size at its creation; tests set the width they check themselves (the `cli` fixture).
for _variable in ("COLUMNS", "LINES"):
    os.environ.pop(_variable, None)
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



@dataclass
class TrainedProject:
    """A project trained through the CLI: its folder and what `machop train` printed."""

    root: Path
    stdout: str

    @property
    def best_checkpoint(self) -> Path:
        return self.root / "checkpoints" / "best.ckpt"


# The CLI options of the shared digits project (tests compare the saved config with them).
DIGITS_TRAIN = ("--max-epochs", "2", "--batch-size", "64", "--learning-rate", "1e-2")


@pytest.fixture(scope="session")
def digits_project(tmp_path_factory) -> TrainedProject:
    """jsc-three-linear-layers trained 2 epochs on digits, once per session; tests only read it."""
    from machop.cli.app import run

    out = tmp_path_factory.mktemp("digits")
    stdout, stderr = io.StringIO(), io.StringIO()
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "200"
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = run(["train", "jsc-three-linear-layers", "digits", *DIGITS_TRAIN, "--project-dir", str(out),
                        "--project", "p"])
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns
    assert code == 0, stderr.getvalue()
    return TrainedProject(out / "p", stdout.getvalue())


# The demo's optimizer settings on a model that trains in seconds: accurate enough (about 86 % on
# digits' test split) for quantization to be measured against it.
CALIBRATION_TRAIN = {"model": "jsc-three-linear-layers", "dataset": "digits", "max_epochs": 20, "t_max": 20,
                     "batch_size": 64, "learning_rate": 1e-2, "training_optimizer": "adamw",
                     "weight_decay": 1e-4, "checkpoint_monitor": "last", "project": "p"}


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory):
    """jsc-three-linear-layers trained 20 epochs on digits through the API, once per session: the
    run config (its load_name the trained checkpoint) and the prepared model and data; tests only read it."""
    from machop import api
    from machop.config import load_config

    out = tmp_path_factory.mktemp("trained_digits")
    api.train(load_config(**CALIBRATION_TRAIN, project_dir=str(out)))
    config = load_config(**CALIBRATION_TRAIN, project_dir=str(out),
                         load_name=str(out / "p" / "checkpoints" / "best.ckpt"))
    return api.prepare(config)
