"""Faults during a search: a trial that diverges or runs out of memory is recorded FAIL with its
reason, the other trials complete, and the reports are still written."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState

from machop.search import records, runners
from tests.helpers.search import load

QUANT_SEED = """
[search.search_space.seed.default.config]
name = ["NA"]
[search.search_space.seed.linear.config]
name = ["integer"]
data_in_width = [8]
weight_width = [4, 8]
bias_width = [8]
"""


def write_config(tmp_path: Path, body: str, *, sampler: str = "bruteforce", n_trials: int = 4) -> Path:
    path = tmp_path / "faults.toml"
    path.write_text(f"""
model = "jsc-three-linear-layers"
dataset = "digits"
batch_size = 64
seed = 5
{body}
[search.strategy.setup]
sampler = "{sampler}"
n_trials = {n_trials}
[search.strategy.metrics]
accuracy.scale = 1.0
accuracy.direction = "maximize"
""")
    return path


def csv_rows(project: Path) -> list[dict[str, str]]:
    with (project / "search" / "trials.csv").open() as handle:
        return list(csv.DictReader(handle))


def assert_reports_written(project: Path) -> None:
    search = project / "search"
    for name in ("trials.csv", "log.json", "best.json", "report.html"):
        assert (search / name).is_file() and (search / name).stat().st_size > 0, name


def test_diverging_training_is_a_failed_trial_and_the_search_goes_on(cli, tmp_path):
    # Float candidates: fake quantization would clamp the weights and keep the loss finite.
    config = write_config(tmp_path, """
[search.search_space]
name = "composite"
[[search.search_space.spaces]]
name = "graph/redefine/channel_multiplier"
seed.seq_blocks_2.config.channel_multiplier = [1, 2]
[search.search_space.hyperparameters]
learning_rate = [1e-2, 1e30]
[search.strategy.sw_runner.basic_train]
max_epochs = 1
optimizer = "sgd"
""")
    result = cli("search", "-c", config, "--project-dir", tmp_path, "--project", "nan")
    assert result.code == 0, result.stderr
    study = load(tmp_path / "nan")
    assert len(study.trials) == 4
    failed = study.get_trials(states=(TrialState.FAIL,))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.params["train/learning_rate"] for t in failed) == [1e30, 1e30]
    assert sorted(t.params["train/learning_rate"] for t in complete) == [1e-2, 1e-2]
    for trial in failed:
        reason = trial.user_attrs[records.TRIAL_FAIL]
        assert reason.startswith("TrainingError: training diverged: loss became"), reason
    assert all(0.0 <= t.value <= 1.0 for t in complete)
    assert_reports_written(tmp_path / "nan")
    rows = {row["number"]: row for row in csv_rows(tmp_path / "nan")}
    for trial in failed:
        assert "training diverged" in rows[str(trial.number)]["fail_reason"]


def _weight_width(graph) -> int | None:
    """Weight width of the first linear layer of a candidate (None when it stays float)."""
    precision = graph.meta["seq_blocks_2"].precision.get("weight", {})
    return precision.get("width") if precision.get("type") == "integer" else None


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB"),
], ids=["OutOfMemoryError", "RuntimeError"])
def test_out_of_memory_trial_is_recorded_and_others_complete(cli, tmp_path, monkeypatch, error):
    evaluate = runners.BasicEvaluation.__call__

    def runs_out_of_memory_at_width_8(self, graph, run, overrides):
        if _weight_width(graph) == 8:
            raise error
        return evaluate(self, graph, run, overrides)
    monkeypatch.setattr(runners.BasicEvaluation, "__call__", runs_out_of_memory_at_width_8)
    config = write_config(tmp_path, f"""
[search.search_space]
name = "graph/quantize/mixed_precision_ptq"
[search.search_space.setup]
by = "type"
share_by_type = true
{QUANT_SEED.replace("weight_width = [4, 8]", "weight_width = [2, 4, 8]")}
[search.strategy.sw_runner.basic_evaluation]
num_samples = 128
[search.strategy.hw_runner.bitops]
""", n_trials=3)
    result = cli("search", "-c", config, "--project-dir", tmp_path, "--project", "oom")
    assert result.code == 0, result.stderr
    study = load(tmp_path / "oom")
    assert len(study.trials) == 3
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert [t.params["linear/weight_width"] for t in failed] == [8]
    assert failed[0].user_attrs[records.TRIAL_FAIL] == \
        f"{type(error).__name__}: CUDA out of memory. Tried to allocate 20.00 GiB"
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.params["linear/weight_width"] for t in complete) == [2, 4]
    assert all(t.user_attrs[records.TRIAL_METRICS]["bitops"] > 0 for t in complete)
    assert_reports_written(tmp_path / "oom")
    rows = csv_rows(tmp_path / "oom")
    assert [r["fail_reason"] for r in rows if r["state"] == "FAIL"] == \
        [f"{type(error).__name__}: CUDA out of memory. Tried to allocate 20.00 GiB"]
