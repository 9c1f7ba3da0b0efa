"""Every example search config in configs/ runs, at a small size, through the CLI."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

ROOT = Path(__file__).parents[2]


def study_of(search_dir: Path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(search_dir / "study.journal")))
    name = optuna.get_all_study_summaries(storage)[0].study_name
    return optuna.load_study(study_name=name, storage=storage)


def run_example(cli, tmp_path: Path, name: str, *extra: str) -> optuna.Study:
    result = cli("search", "-c", ROOT / "configs" / f"{name}.toml", "--project-dir", tmp_path,
                 "--project", name, *extra)
    assert result.code == 0, result.stderr
    search_dir = tmp_path / name / "search"
    assert (search_dir / "report.html").is_file() and (search_dir / "trials.csv").is_file()
    return study_of(search_dir)


def complete(study: optuna.Study) -> list:
    return study.get_trials(states=(TrialState.COMPLETE,))


def test_quant_grid_bruteforce_runs_all_16_points_with_heatmaps(cli, tmp_path):
    study = run_example(cli, tmp_path, "search_quant_grid_bruteforce")
    points = {tuple(sorted(t.params.items())) for t in complete(study)}
    assert len(points) == 16 == len(study.trials)
    assert (tmp_path / "search_quant_grid_bruteforce" / "search" / "plots" / "heatmaps.png").is_file()


def test_quant_by_name_tpe_with_constraint(cli, tmp_path):
    study = run_example(cli, tmp_path, "search_quant_jsc_tpe", "--n-trials", "5")
    assert len(study.trials) == 5
    assert {p.split("/")[0] for p in study.trials[0].params} == {"seq_blocks_2", "seq_blocks_4", "seq_blocks_6"}


def test_uniform_channel_multiplier_with_training(cli, tmp_path):
    study = run_example(cli, tmp_path, "search_width_jsc_train", "--max-epochs", "1")
    multipliers = sorted(t.params["channel_multiplier"] for t in complete(study))
    assert multipliers == [1, 2, 3, 4]
    flops = {t.params["channel_multiplier"]: t.user_attrs["machop_metrics"]["flops"] for t in complete(study)}
    assert flops[1] < flops[2] < flops[3] < flops[4]


def test_nonuniform_channel_multipliers_heatmap(cli, tmp_path):
    study = run_example(cli, tmp_path, "search_width_jsc_nonuniform", "--max-epochs", "1")
    assert len(complete(study)) == 16
    assert (tmp_path / "search_width_jsc_nonuniform" / "search" / "plots" / "heatmaps.png").is_file()
    for trial in complete(study):
        a = 16 * trial.params["seq_blocks_2/channel_multiplier"]
        b = 16 * trial.params["seq_blocks_4/channel_multiplier"]
        expected = 128 + (64 * a + a) + (a * b + b) + (b * 10 + 10)  # digits: 64 features, 10 classes
        assert trial.user_attrs["machop_metrics"]["params"] == expected


def test_joint_width_and_precision_multi_objective(cli, tmp_path):
    study = run_example(cli, tmp_path, "search_joint_width_precision", "--n-trials", "4", "--max-epochs", "1")
    assert len(study.directions) == 2 and len(complete(study)) == 4
    assert any(name.startswith("redefine:") for name in study.trials[0].params) or \
        "redefine:channel_multiplier" in study.trials[0].params


def test_vgg7_conv_channel_search_on_cifar_format_data(cli, tmp_path):
    from tests.helpers.cifar10 import write_batches

    write_batches(tmp_path / "data" / "cifar-10-batches-py")
    study = run_example(cli, tmp_path, "search_vgg7_cifar_tpe", "--n-trials", "2", "--max-epochs", "1",
                        "--data-dir", str(tmp_path / "data"), "--batch-size", "16")
    assert len(complete(study)) == 2


@pytest.mark.slow
def test_quickstart_at_small_size(cli, tmp_path):
    study = run_example(cli, tmp_path, "quickstart", "--n-trials", "6", "--max-epochs", "2")
    assert len(study.directions) == 2 and len(study.trials) == 6
    assert (tmp_path / "quickstart" / "checkpoints" / "best.ckpt").is_file()
