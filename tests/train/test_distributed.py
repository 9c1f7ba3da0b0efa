"""Data-parallel training: 2 CPU processes (gloo) equal 1 process with twice the batch.

The multi-process runs go through the real console script (machop's own launcher) and
through torchrun, in subprocesses; each costs a few seconds of imports per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tests.helpers.files import tree

ROOT = Path(__file__).resolve().parents[2]
MACHOP = Path(sys.executable).with_name("machop")
TRAIN = ["train", "toy-tiny", "digits", "--max-epochs", "2", "--lr", "0.01", "--seed", "3",
         "--accelerator", "cpu", "--project", "p"]
PER_RANK_BATCH = 32
EXPECTED_FILES = {"config.toml", "config_table.txt", "metrics.json", "checkpoints", "checkpoints/best.ckpt",
                  "checkpoints/last.ckpt"}
# The two runs differ only in float summation order: gloo adds two half-batch gradients where
# one process sums the whole batch. After 40 Adam steps the weights agree to ~1e-7 (measured
# 9.7e-8); one sample in the wrong shard or a different permutation moves them by ~1e-3.
WEIGHT_TOL = 1e-5


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "MACHOP_OFFLINE": "1"}


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)


def _weights(project: Path, name: str = "last.ckpt") -> dict[str, torch.Tensor]:
    return torch.load(project / "checkpoints" / name, weights_only=True)["state_dict"]


def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert list(a) == list(b)  # same keys, no "module." or "_forward_module." prefix
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """One process with the global batch of the 2-process runs (2 × 32)."""
    from machop.cli.app import run

    out = tmp_path_factory.mktemp("single")
    assert run([*TRAIN, "--batch-size", str(2 * PER_RANK_BATCH), "--project-dir", str(out)]) == 0
    return out / "p"


def _assert_matches_single(project: Path, single: Path) -> None:
    assert set(tree(project)) == EXPECTED_FILES  # rank 1 wrote nothing, rank 0 one set
    assert _max_difference(_weights(project), _weights(single)) < WEIGHT_TOL
    ours, theirs = (json.loads((p / "metrics.json").read_text()) for p in (project, single))
    assert ours["world_size"] == 2 and theirs["world_size"] == 1
    assert ours["best_epoch"] == theirs["best_epoch"]
    for mine, other in zip(ours["history"], theirs["history"], strict=True):
        assert mine.keys() == other.keys()
        for key in mine:
            assert mine[key] == pytest.approx(other[key], rel=1e-5, abs=1e-6), key
    assert ours["test"]["accuracy"] == theirs["test"]["accuracy"]


@pytest.mark.slow
def test_two_processes_equal_one_process_with_twice_the_batch(tmp_path, single, cli):
    result = _run([str(MACHOP), *TRAIN, "--batch-size", str(PER_RANK_BATCH), "--devices", "2",
                   "--strategy", "ddp", "--project-dir", str(tmp_path)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Configuration") == 1  # rank 0 alone prints
    assert result.stdout.count("Best epoch 2 of 2 (40 optimizer steps)") == 1
    project = tmp_path / "p"
    _assert_matches_single(project, single)

    # the DDP checkpoint loads in a single process and tests exactly as training reported
    code = cli("test", "--load", project / "checkpoints" / "best.ckpt", "--accelerator", "cpu",
               "--project-dir", tmp_path / "single-test", "--project", "t")
    assert code.code == 0, code.stderr
    tested = json.loads((tmp_path / "single-test" / "t" / "test_metrics.json").read_text())["test"]
    assert tested == json.loads((project / "metrics.json").read_text())["test"]


@pytest.mark.slow
def test_torchrun_launch_equals_one_process(tmp_path, single):
    result = _run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                   "--standalone", "-m", "machop", *TRAIN, "--batch-size", str(PER_RANK_BATCH),
                   "--devices", "2", "--project-dir", str(tmp_path)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Configuration") == 1
    _assert_matches_single(tmp_path / "p", single)


@pytest.mark.slow
def test_a_failing_rank_ends_the_run_with_its_one_line_error(tmp_path):
    (tmp_path / "net.py").write_text(
        "import os\nfrom torch import nn\nfrom machop.errors import ModelError\n\n"
        "def Net(num_features, num_classes):\n"
        "    if os.environ.get('LOCAL_RANK') == '1':\n"
        "        raise ModelError('net.py: rank 1 refuses')\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(num_features, num_classes))\n")
    result = _run([str(MACHOP), "train", "net.py:Net", "digits", "--devices", "2",
                   "--accelerator", "cpu", "--max-epochs", "1", "--project-dir", "out"], tmp_path)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: rank 1 failed: ") and last.endswith("net.py: rank 1 refuses")
    assert "Traceback" not in result.stderr
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                    reason="needs 2 CUDA devices")
def test_two_gpus_with_mixed_precision(tmp_path):
    result = _run([str(MACHOP), *TRAIN[:-4], "--accelerator", "gpu", "--devices", "2",
                   "--precision", "16-mixed", "--batch-size", "32", "--project", "p",
                   "--project-dir", str(tmp_path)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(tree(tmp_path / "p")) == EXPECTED_FILES
    assert all(t.isfinite().all() for t in _weights(tmp_path / "p").values())


# ---------------------------------------------------------------- refused before anything runs


@pytest.mark.parametrize(("flags", "message"), [
    (["--devices", "0"], "'num_devices'"),
    (["--strategy", "fsdp"], "expected 'auto', 'ddp'"),
    (["--num-nodes", "2"], "needs MASTER_ADDR, MASTER_PORT and NODE_RANK"),
])
def test_bad_distributed_flags_are_one_line_errors(tmp_path, cli, monkeypatch, flags, message):
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    result = cli("train", "toy-tiny", "digits", "--project-dir", tmp_path, *flags)
    assert result.code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert tree(tmp_path) == {}


@pytest.mark.skipif(torch.cuda.is_available() and torch.cuda.device_count() >= 3,
                    reason="this machine has 3 GPUs")
def test_more_gpus_than_the_machine_has_is_refused(tmp_path, cli):
    result = cli("train", "toy-tiny", "digits", "--devices", "3", "--accelerator", "gpu",
                 "--project-dir", tmp_path)
    assert result.code == 2
    assert "needs 3 CUDA devices per node, but this machine has" in result.stderr
    assert tree(tmp_path) == {}


def test_missing_lightning_says_how_to_install_it(tmp_path, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "lightning.fabric", None)
    result = cli("train", "toy-tiny", "digits", "--devices", "2", "--accelerator", "cpu",
                 "--project-dir", tmp_path)
    assert result.code == 2
    assert "pip install 'machop[distributed]'" in result.stderr
    assert tree(tmp_path) == {}


def test_a_launcher_with_another_world_size_is_refused(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("WORLD_SIZE", "4")
    result = cli("train", "toy-tiny", "digits", "--devices", "2", "--project-dir", tmp_path)
    assert result.code == 2
    assert "torchrun started 4 process(es) but num_devices × num_nodes = 2 × 1 = 2" in result.stderr
    assert tree(tmp_path) == {}


def test_search_and_transform_refuse_several_processes(tmp_path, cli):
    config = ROOT / "configs" / "search_width_jsc_train.toml"
    for args in (["search", "--config", config, "--devices", "2"],
                 ["transform", "--config", ROOT / "configs" / "quantize_jsc_by_type.toml",
                  "--num-nodes", "2"]):
        result = cli(*args, "--project-dir", tmp_path)
        assert result.code == 2
        assert "only `machop train` and `machop test` run on several processes" in result.stderr
    assert tree(tmp_path) == {}


def test_basic_train_runner_refuses_several_processes():
    from machop.errors import SearchError
    from machop.search.runners import BasicTrain, RunContext

    run = RunContext(dataset=None, train_defaults={"num_devices": 2, "max_epochs": 1})
    with pytest.raises(SearchError, match="trains each candidate in one process"):
        BasicTrain({})(None, run, {})


# ---------------------------------------------------------------- pieces


def test_shards_are_contiguous_balanced_and_cover_the_batch():
    from machop.train.distributed import shard_bounds

    for total in (64, 41, 3):
        bounds = [shard_bounds(total, 2, rank) for rank in range(2)]
        assert bounds[0][0] == 0 and bounds[0][1] == bounds[1][0] and bounds[1][1] == total
        assert abs((bounds[0][1] - bounds[0][0]) - (bounds[1][1] - bounds[1][0])) <= 1
    assert shard_bounds(64, 2, 1) == (32, 64)


def test_single_process_runs_do_not_import_lightning():
    code = ("import sys; from machop.config.schema import RunConfig; from machop import api; "
            "from machop.train.distributed import requested; "
            "assert not requested(RunConfig(model='toy-tiny', dataset='digits')); "
            "print('lightning' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


def test_batchnorm_under_ddp_is_noted_once_on_rank_zero(caplog):
    from types import SimpleNamespace

    from torch import nn

    from machop.train.distributed import note_batchnorm

    model = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 2))
    for rank in (0, 1):
        note_batchnorm(model, SimpleNamespace(is_zero=rank == 0, world_size=2), 32)
    note_batchnorm(nn.Linear(4, 2), SimpleNamespace(is_zero=True, world_size=2), 32)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "statistics of its own 32 samples" in messages[0]
