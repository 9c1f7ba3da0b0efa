"""`machop search` end to end: MASE configs, objectives, brute force, resume, failures, errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState
from tests.helpers.search import load, search_config

from machop.search import records
from machop.search.journal import TrialDurableJournalBackend

ROOT = Path(__file__).parents[2]


def test_mase_search_config_runs_unchanged_and_really_quantizes(cli, tmp_path, checkpoint):
    result = cli("search", "-c", ROOT / "configs" / "search_quant_jsc_mase.toml", "--load", checkpoint,
                 "--n-trials", "5", "--project-dir", tmp_path, "--project", "mase")
    assert result.code == 0, result.stderr
    study = load(tmp_path / "mase")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 5
    for trial in complete:
        metrics = trial.user_attrs[records.TRIAL_METRICS]
        widths = {node: trial.params[f"{node}/weight_width"] for node in ("seq_blocks_2", "seq_blocks_4", "seq_blocks_6")}
        weighted = 1024 * widths["seq_blocks_2"] + 256 * widths["seq_blocks_4"] + 160 * widths["seq_blocks_6"]
        assert metrics["average_bitwidth"] == pytest.approx(weighted / (1024 + 256 + 160))
        assert trial.value == pytest.approx(metrics["accuracy"] - 0.2 * metrics["average_bitwidth"])
    outputs = tmp_path / "mase" / "search"
    for name in ("trials.csv", "log.json", "best.json", "report.html"):
        assert (outputs / name).is_file()
    rate = re.search(r"Trials: 5 in ([0-9.]+) s \(([0-9.]+) trials per second\)", result.stdout)
    assert rate, result.stdout
    first = min(t.datetime_start for t in complete).timestamp()
    span = max(t.datetime_complete for t in complete).timestamp() - first
    assert float(rate.group(1)) == pytest.approx(span, abs=0.006)
    assert float(rate.group(2)) == pytest.approx(5 / span, rel=0.05, abs=0.06)


def test_multi_objective_pareto(cli, tmp_path, checkpoint):
    config = search_config(tmp_path, setup='sampler = "nsgaii"\nn_trials = 8\nsum_scaled_metrics = false',
                           metrics='accuracy.direction = "maximize"\nbitops.scale = 1e-6\nbitops.direction = "minimize"')
    result = cli("search", "-c", config, "--load", checkpoint, "--project-dir", tmp_path, "--project", "mo")
    assert result.code == 0, result.stderr
    study = load(tmp_path / "mo")
    assert len(study.directions) == 2 and study.best_trials
    assert "Pareto front" in result.stdout


def test_bruteforce_grid_runs_every_point_once(cli, tmp_path, checkpoint):
    config = search_config(tmp_path, space="", setup='sampler = "bruteforce"\nn_trials = 100')
    result = cli("search", "-c", config, "--load", checkpoint, "--project-dir", tmp_path, "--project", "bf")
    assert result.code == 0, result.stderr
    study = load(tmp_path / "bf")
    configs = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(configs) == 6 and len(set(configs)) == 6
    assert (tmp_path / "bf" / "search" / "plots").is_dir()


def test_failing_trials_are_recorded_and_the_search_goes_on(cli, tmp_path, checkpoint, monkeypatch):
    from machop.search import evaluator

    calls = {"n": 0}
    original = evaluator.run_all

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise MemoryError("simulated out of memory")
        if calls["n"] == 3:
            return {"accuracy": float("nan")}
        return original(*args, **kwargs)
    monkeypatch.setattr(evaluator, "run_all", flaky)
    config = search_config(tmp_path, setup='sampler = "random"\nn_trials = 5')
    result = cli("search", "-c", config, "--load", checkpoint, "--project-dir", tmp_path, "--project", "flaky")
    assert result.code == 0, result.stderr
    study = load(tmp_path / "flaky")
    failed = study.get_trials(states=(TrialState.FAIL,))
    reasons = sorted(t.user_attrs[records.TRIAL_FAIL] for t in failed)
    assert reasons == ["MemoryError: simulated out of memory", "TrialFailed: metric 'accuracy' is NaN or missing"]
    assert len(study.trials) == 5


def test_a_search_makes_its_trials_durable_before_writing_reports(cli, tmp_path, checkpoint, monkeypatch):
    from machop.search import journal, report

    journal_file = tmp_path / "durable" / "search" / "study.journal"
    events: list[tuple[str, int]] = []  # (event, journal size then)
    fsync, write_outputs = journal.os.fsync, report.write_search_outputs
    monkeypatch.setattr(journal.os, "fsync", lambda fd: (events.append(("fsync", os.fstat(fd).st_size)), fsync(fd))[1])
    monkeypatch.setattr(TrialDurableJournalBackend, "fsync_interval", 3600.0)  # only the study and the wait
    monkeypatch.setattr(report, "write_search_outputs",
                        lambda *args: (events.append(("reports", journal_file.stat().st_size)),
                                       write_outputs(*args))[1])
    config = search_config(tmp_path, setup='sampler = "random"\nn_trials = 3')
    result = cli("search", "-c", config, "--load", checkpoint, "--project-dir", tmp_path, "--project", "durable")
    assert result.code == 0, result.stderr
    (last_fsync, synced), (last, size) = events[-2:]
    assert (last_fsync, last) == ("fsync", "reports") and synced == size  # everything on disk before reports
    assert len(load(tmp_path / "durable").trials) == 3


def _complete_so_far(project: Path) -> int:
    """Completed trials of a study another process is writing (0 while it is being created)."""
    try:
        return len(load(project).get_trials(states=(TrialState.COMPLETE,)))
    except (IndexError, KeyError, ValueError):
        return 0


def test_resume_after_sigkill(tmp_path, checkpoint):
    # 8 random trials over 6 configurations: some repeat one, which is reused, never evaluated twice
    config = search_config(tmp_path, setup='sampler = "random"\nn_trials = 8',
                           runners='[search.strategy.sw_runner.basic_train]\nmax_epochs = 1\n'
                                   '[search.strategy.hw_runner.bitops]')
    command = [sys.executable, "-m", "machop", "search", "-c", str(config), "--load", str(checkpoint),
               "--project-dir", str(tmp_path), "--project", "resume"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    journal = tmp_path / "resume" / "search" / "study.journal"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists() and _complete_so_far(tmp_path / "resume") >= 3:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    rerun = subprocess.run(command, capture_output=True, text=True, env=env)
    assert rerun.returncode == 0, rerun.stderr
    study = load(tmp_path / "resume")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 8
    interrupted = [t for t in study.trials if t.state == TrialState.FAIL]
    assert all("interrupted" in t.user_attrs[records.TRIAL_FAIL] for t in interrupted)
    requeued_as = {t.user_attrs[records.TRIAL_REQUEUE_OF] for t in study.trials
                   if records.TRIAL_REQUEUE_OF in t.user_attrs}
    assert requeued_as == {t.number for t in interrupted}
    evaluated = [t.params for t in complete if records.TRIAL_CACHED_FROM not in t.user_attrs]
    for trial in interrupted:
        if trial.params:
            assert trial.params in [t.params for t in complete]
    assert len(evaluated) == len({json.dumps(p, sort_keys=True) for p in evaluated})


@pytest.mark.parametrize("kwargs, message", [
    ({"setup": 'sampler = "tpee"'}, "unknown sampler 'tpee'; did you mean 'tpe'"),
    ({"setup": 'sampler = "cmaes"'}, "needs numeric parameters"),
    ({"metrics": "acuracy.scale = 1.0"}, "did you mean 'accuracy'"),
    ({"metrics": "latency.scale = 1.0"}, "'latency' is produced by no configured runner"),
    ({"runners": "[search.strategy.sw_runner.basic_evaluate]"}, "did you mean 'basic_evaluation'"),
    ({"strategy": '[search.strategy.constraints]\nbitopz = "<= 5"'}, "unknown metric 'bitopz'"),
    ({"space": "[search.search_space.seed.seq_blocks_2.config]\ndata_in_width = []"}, "non-empty list"),
])
def test_bad_search_configs(cli, tmp_path, kwargs, message):
    config = search_config(tmp_path, **kwargs)
    result = cli("search", "-c", config, "--project-dir", tmp_path / "out")
    assert result.code == 2, result.stdout
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unknown_space_name(cli, tmp_path):
    config = search_config(tmp_path)
    config.write_text(config.read_text().replace("graph/quantize/mixed_precision_ptq", "graph/quantise/mixed"))
    result = cli("search", "-c", config, "--project-dir", tmp_path / "out")
    assert result.code == 2 and "unknown" in result.stderr and "graph/quantize/mixed_precision_ptq" in result.stderr


def test_report_regenerates_outputs(cli, tmp_path, checkpoint):
    config = search_config(tmp_path)
    assert cli("search", "-c", config, "--load", checkpoint, "--project-dir", tmp_path, "--project", "r").code == 0
    html = tmp_path / "r" / "search" / "report.html"
    old = html.read_bytes()
    html.unlink()
    result = cli("report", tmp_path / "r")
    assert result.code == 0, result.stderr
    assert html.read_bytes() == old


def test_unwritable_project_dir(cli, tmp_path):
    result = cli("search", "-c", search_config(tmp_path), "--project-dir", "/proc/machop")
    assert result.code == 2 and "is not writable" in result.stderr


def test_worker_needs_an_existing_study(cli, tmp_path):
    result = cli("search", "-c", search_config(tmp_path), "--worker", "--project-dir", tmp_path, "--project", "w")
    assert result.code == 2 and "does not exist in the storage" in result.stderr


def test_resuming_with_another_space_is_refused(cli, tmp_path, checkpoint):
    config = search_config(tmp_path, setup='sampler = "random"\nn_trials = 2')
    assert cli("search", "-c", config, "--load", checkpoint, "--project-dir", tmp_path, "--project", "s").code == 0
    config.write_text(config.read_text().replace("weight_width = [2, 4, 8]", "weight_width = [2, 8]"))
    result = cli("search", "-c", config, "--load", checkpoint, "--project-dir", tmp_path, "--project", "s")
    assert result.code == 2 and "different search" in result.stderr and "space" in result.stderr


def test_train_in_the_loop_reports_epochs_for_pruning(cli, tmp_path):
    config = search_config(tmp_path, setup='sampler = "random"\nn_trials = 6\npruner = "median"',
                           runners='[search.strategy.sw_runner.basic_train]\nmax_epochs = 3\n'
                                   '[search.strategy.hw_runner.bitops]')
    result = cli("search", "-c", config, "--project-dir", tmp_path, "--project", "prune")
    assert result.code == 0, result.stderr
    study = load(tmp_path / "prune")
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 6
    trained = [t for t in finished if records.TRIAL_CACHED_FROM not in t.user_attrs]
    assert trained and all(t.intermediate_values for t in trained)
    assert all(sorted(t.intermediate_values) == [1, 2, 3] for t in trained if t.state == TrialState.COMPLETE)
