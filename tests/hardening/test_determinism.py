"""Same config and seed, fresh project folders: the same trials in the same order with exactly the
same metrics, and `machop train` writes bit-identical weights."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from machop.search import records

TIMING = ("latency", "throughput", "seconds", "energy", "memory")

QUANT_SPACE = """
[search.search_space]
name = "graph/quantize/mixed_precision_ptq"
[search.search_space.setup]
by = "name"
[search.search_space.seed.default.config]
name = ["integer"]
data_in_width = [8]
weight_width = [2, 3, 4, 8]
bias_width = [8]
"""

TRAIN_SPACE = """
[search.search_space]
name = "composite"
[[search.search_space.spaces]]
name = "graph/redefine/channel_multiplier"
seed.seq_blocks_2.config.channel_multiplier = [1, 2]
[[search.search_space.spaces]]
name = "graph/quantize/mixed_precision_ptq"
setup = { by = "type", share_by_type = true }
seed.default.config.name = ["NA"]
seed.linear.config = { name = ["integer"], data_in_width = [8], weight_width = [4, 8], bias_width = [8] }
[search.search_space.hyperparameters]
learning_rate = [3e-3, 1e-2]
"""


def write_config(tmp_path: Path, space: str, runner: str, sampler: str, n_trials: int) -> Path:
    path = tmp_path / "determinism.toml"
    path.write_text(f"""
model = "jsc-three-linear-layers"
dataset = "digits"
batch_size = 64
learning_rate = 1e-2
seed = 11
{space}
{runner}
[search.strategy.hw_runner.bitops]
[search.strategy.setup]
sampler = "{sampler}"
n_trials = {n_trials}
[search.strategy.metrics]
accuracy.scale = 1.0
accuracy.direction = "maximize"
bitops.scale = -1e-7
bitops.direction = "maximize"
""")
    return path


def trial_sequence(project: Path) -> list[tuple[str, dict, dict, list | None]]:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(project / "search" / "study.journal")))
    name = optuna.get_all_study_summaries(storage)[0].study_name
    study = optuna.load_study(study_name=name, storage=storage)
    sequence = []
    for trial in sorted(study.trials, key=lambda t: t.number):
        metrics = {k: v for k, v in trial.user_attrs.get(records.TRIAL_METRICS, {}).items()
                   if not any(word in k for word in TIMING)}
        sequence.append((trial.state.name, dict(trial.params), metrics, trial.values))
    return sequence


def run_twice(cli, tmp_path: Path, config: Path) -> tuple[list, list]:
    runs = []
    for folder in ("first", "second"):
        result = cli("search", "-c", config, "--project-dir", tmp_path / folder, "--project", "det")
        assert result.code == 0, result.stderr
        runs.append(trial_sequence(tmp_path / folder / "det"))
    return runs[0], runs[1]


EVALUATION = '[search.strategy.sw_runner.basic_evaluation]\ndata_loader = "val_dataloader"'


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_search_repeats_exactly(cli, tmp_path, sampler):
    # 13 trials: TPE samples its first 10 at random, then from its model
    first, second = run_twice(cli, tmp_path, write_config(tmp_path, QUANT_SPACE, EVALUATION, sampler, 13))
    assert len(first) == 13 and all(state == "COMPLETE" for state, *_ in first)
    assert len({repr(sorted(params.items())) for _, params, _, _ in first}) > 5  # the sampler explored
    assert all("accuracy" in metrics and "bitops" in metrics for _, _, metrics, _ in first)
    assert first == second


def test_train_in_the_loop_search_repeats_exactly(cli, tmp_path):
    runner = '[search.strategy.sw_runner.basic_train]\nmax_epochs = 1\ndata_loader = "val_dataloader"'
    first, second = run_twice(cli, tmp_path, write_config(tmp_path, TRAIN_SPACE, runner, "tpe", 4))
    assert len(first) == 4 and all(state == "COMPLETE" for state, *_ in first)
    assert all("loss" in metrics and "accuracy" in metrics for _, _, metrics, _ in first)
    assert first == second


def test_train_twice_gives_bit_identical_weights(cli, tmp_path):
    weights = []
    for folder in ("first", "second"):
        result = cli("train", "jsc-three-linear-layers", "digits", "--max-epochs", "3", "--batch-size", "64",
                     "--learning-rate", "1e-2", "--seed", "4", "--project-dir", tmp_path / folder,
                     "--project", "t")
        assert result.code == 0, result.stderr
        checkpoints = tmp_path / folder / "t" / "checkpoints"
        weights.append({name: torch.load(checkpoints / name, map_location="cpu", weights_only=False)
                        for name in ("best.ckpt", "last.ckpt")})
    for name in ("best.ckpt", "last.ckpt"):
        first, second = (w[name]["state_dict"] for w in weights)
        assert list(first) == list(second) and len(first) > 0
        for key in first:
            assert torch.equal(first[key], second[key]), (name, key)
    untrained = weights[0]["last.ckpt"]["state_dict"]["seq_blocks.2.weight"]
    assert not torch.equal(untrained, torch.zeros_like(untrained))
