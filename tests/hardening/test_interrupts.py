"""Ctrl-C and SIGKILL during a search: nothing partial, and the next run finishes the budget.

Brute force is the sampler under which an interrupted search can match an uninterrupted one
exactly: it evaluates every configuration once whatever the order, so the final study holds the
same configurations with the same metrics and the same best result. Samplers that learn from the
history (tpe, random with a seed) restart their random state on resume, so their trial sequence,
and possibly their best result, differ after an interruption; for them only the budget and
no-repeat guarantees are tested (tests/search/test_search.py::test_resume_after_sigkill).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from machop.search import records

SPACE = 2 * 3 * 2  # data_in widths x weight widths x bias widths


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "interrupt.toml"
    path.write_text("""
model = "jsc-three-linear-layers"
dataset = "digits"
batch_size = 64
seed = 11

[search.search_space]
name = "graph/quantize/mixed_precision_ptq"
setup = { by = "type", share_by_type = true }
[search.search_space.seed.default.config]
name = ["NA"]
[search.search_space.seed.linear.config]
name = ["integer"]
data_in_width = [4, 8]
data_in_frac_width = ["NA"]
weight_width = [2, 4, 8]
weight_frac_width = ["NA"]
bias_width = [4, 8]

[search.strategy]
name = "bruteforce"
[search.strategy.sw_runner.basic_train]
max_epochs = 2
[search.strategy.hw_runner.bitops]
[search.strategy.setup]
n_trials = 1000
[search.strategy.metrics]
accuracy.scale = 1.0
bitops.scale = 0.0
""")
    return path


def _command(config: Path, project_dir: Path) -> list[str]:
    return [sys.executable, "-m", "machop", "search", "-c", str(config), "--project-dir", str(project_dir),
            "--project", "p"]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _study(project_dir: Path) -> optuna.Study:
    journal = project_dir / "p" / "search" / "study.journal"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    return optuna.load_study(study_name="p", storage=storage)


def _results(study: optuna.Study) -> dict[str, tuple]:
    """configuration -> (accuracy, bitops) of every counted complete trial."""
    results = {}
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        key = json.dumps(trial.params, sort_keys=True)
        assert key not in results, f"{key} completed twice"
        metrics = trial.user_attrs[records.TRIAL_METRICS]
        results[key] = (metrics["accuracy"], metrics["bitops"])
    return results


def _completed(project_dir: Path) -> int:
    try:
        return len(_study(project_dir).get_trials(states=(TrialState.COMPLETE,)))
    except Exception:  # the study is still being created
        return 0


def _no_temporary_files(folder: Path) -> None:
    leftovers = [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".partial")) or p.name.startswith(".tmp")]
    assert not leftovers


@pytest.mark.slow
def test_ctrl_c_writes_nothing_partial_and_the_next_run_resumes(tmp_path):
    config = _config(tmp_path)
    process = subprocess.Popen(_command(config, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=ENV)
    deadline = time.monotonic() + 120
    while _completed(tmp_path) < 5 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "error: interrupted" and "Traceback" not in stderr
    search_dir = tmp_path / "p" / "search"
    assert not (search_dir / "report.html").exists()  # reports are written when a run ends, not halfway
    _no_temporary_files(tmp_path)
    study = _study(tmp_path)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    interrupted = [t for t in study.trials if t.user_attrs.get(records.TRIAL_UNCOUNTED) == "interrupted"]
    assert len(interrupted) <= 1

    rerun = subprocess.run(_command(config, tmp_path), capture_output=True, text=True, env=ENV)
    assert rerun.returncode == 0, rerun.stderr
    assert len(_results(_study(tmp_path))) == SPACE
    assert (search_dir / "report.html").is_file()


@dataclass
class Timeline:
    """Seconds into an uninterrupted run at which its phases begin, and the length of one trial."""

    study: float  # the journal exists: the study is created, then the float base is evaluated
    trials: float  # the first trial starts
    trial: float  # the mean length of one trial
    reports: float  # trials.csv is written, the first of the reports
    end: float


def _reference_run(config: Path, project_dir: Path) -> Timeline:
    """Run the search to the end, noting when each phase began."""
    journal = project_dir / "p" / "search" / "study.journal"
    started = time.time()
    process = subprocess.Popen(_command(config, project_dir), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=ENV)
    created = None
    while process.poll() is None:
        if created is None and journal.exists():
            created = time.time() - started
        time.sleep(0.02)
    end = time.time() - started
    assert process.returncode == 0
    trials = _study(project_dir).trials
    first = min(t.datetime_start.timestamp() for t in trials) - started
    last = max(t.datetime_complete.timestamp() for t in trials) - started
    reports = (journal.parent / "trials.csv").stat().st_mtime - started
    return Timeline(study=created or first, trials=first, trial=(last - first) / len(trials),
                    reports=reports, end=end)


def _kill_moments(timeline: Timeline, seed: int) -> list[tuple[str, float]]:
    """Two kills a phase, (event, seconds after it): each at a seeded point of its own window."""
    rng = random.Random(seed)
    half_reports = (timeline.end - timeline.reports) / 2
    windows = [("launch", 0.0, timeline.study),  # imports, configuration, data
               ("launch", timeline.study, timeline.trials - timeline.study),  # the float base
               ("trial completed", 0.0, timeline.trial),  # within the next two trials
               ("trial completed", timeline.trial, timeline.trial),
               ("reports begun", 0.0, half_reports),
               ("reports begun", half_reports, half_reports)]
    return [(event, start + length * rng.random()) for event, start, length in windows]


def _run_and_kill(command: list[str], project_dir: Path, event: str, delay: float) -> None:
    """Start the search, wait for `event` in this run, then SIGKILL it `delay` seconds later."""
    completed_before, launched = _completed(project_dir), time.time()
    csv = project_dir / "p" / "search" / "trials.csv"
    happened = {"launch": lambda: True,
                "trial completed": lambda: _completed(project_dir) > completed_before,
                "reports begun": lambda: csv.exists() and csv.stat().st_mtime > launched}[event]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    while not happened() and process.poll() is None:
        time.sleep(0.05)  # reading the study takes CPU time from the search on a small machine
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.slow
def test_sigkill_in_start_up_trials_and_reports_matches_an_uninterrupted_run(tmp_path):
    config = _config(tmp_path)
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    timeline = _reference_run(config, reference_dir)
    reference = _study(reference_dir)

    for event, delay in _kill_moments(timeline, seed=2026):
        _run_and_kill(_command(config, killed_dir), killed_dir, event, delay)
    final = subprocess.run(_command(config, killed_dir), capture_output=True, text=True, env=ENV)
    assert final.returncode == 0, final.stderr

    resumed = _study(killed_dir)
    assert _results(resumed) == _results(reference)
    assert len(_results(resumed)) == SPACE
    assert resumed.best_trial.params == reference.best_trial.params
    assert resumed.best_value == reference.best_value
    assert not resumed.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
