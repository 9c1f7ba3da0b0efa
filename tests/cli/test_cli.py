"""End-to-end CLI: train, test, info, MASE-style configs, the config table, lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from machop.config import load_config
from machop.train import read_checkpoint


@pytest.fixture
def trained_project(digits_project):
    """The session's digits project (2 epochs, batch 64): its folder and what training printed."""
    return digits_project.root, digits_project


def test_train_writes_checkpoints_metrics_and_config(trained_project):
    project, result = trained_project
    assert (project / "checkpoints" / "best.ckpt").is_file()
    assert (project / "checkpoints" / "last.ckpt").is_file()
    metrics = json.loads((project / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and set(metrics["test"]) >= {"accuracy", "f1", "loss"}
    assert metrics["dataset_sizes"] == {"train": 1257, "validation": 180, "test": 360}
    config = load_config(project / "config.toml")
    assert (config.model, config.dataset, config.max_epochs, config.batch_size) == (
        "jsc-three-linear-layers", "digits", 2, 64)
    checkpoint = read_checkpoint(project / "checkpoints" / "best.ckpt")
    assert checkpoint.model_name == "jsc-three-linear-layers"
    assert checkpoint.extra["epoch"] == metrics["best_epoch"]
    assert "Best checkpoint" in result.stdout


def test_test_reproduces_the_training_test_metrics(cli, trained_project, tmp_path):
    project, _ = trained_project
    result = cli("test", "jsc-three-linear-layers", "digits", "--load",
                 project / "checkpoints" / "best.ckpt", "--project-dir", tmp_path, "--project", "p")
    assert result.code == 0, result.stderr
    tested = json.loads((tmp_path / "p" / "test_metrics.json").read_text())["test"]
    trained = json.loads((project / "metrics.json").read_text())["test"]
    assert tested == pytest.approx(trained)


def test_test_takes_model_and_dataset_from_a_machop_checkpoint(cli, trained_project, tmp_path):
    project, _ = trained_project
    result = cli("test", "--load", project / "checkpoints" / "best.ckpt", "--project-dir", tmp_path)
    assert result.code == 0, result.stderr
    tested = json.loads((tmp_path / "jsc-three-linear-layers_classification_digits" / "test_metrics.json")
                        .read_text())
    assert tested["num_samples"] == 360  # the digits test split: the dataset came from the checkpoint
    assert tested["test"] == pytest.approx(json.loads((project / "metrics.json").read_text())["test"])


def test_mase_style_config_runs_unchanged(cli, tmp_path):
    config = tmp_path / "mase.toml"
    config.write_text(f"""
model = "jsc-tiny"
dataset = "digits"
task = "cls"
max_epochs = 1
batch_size = 256
learning_rate = 1e-2
accelerator = "gpu"
project = "jsc-tiny"
project_dir = "{tmp_path}"
seed = 42
log_every_n_steps = 5
load_name = "NA"
load_type = "pl"
training_optimizer = "adam"
trainer_precision = "16-mixed"
num_workers = 8

[passes.quantize]
by = "type"
[passes.quantize.default.config]
name = "NA"

[transform]
style = "graph"
""")
    result = cli("train", "--config", config)
    assert result.code == 0, result.stderr
    assert (tmp_path / "jsc-tiny" / "checkpoints" / "best.ckpt").is_file()
    saved = load_config(tmp_path / "jsc-tiny" / "config.toml")
    assert saved.passes == {"quantize": {"by": "type", "default": {"config": {"name": None}}}}
    assert saved.transform == {"style": "graph"}


def test_config_table_is_printed_with_sources(cli, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('model = "toy"\ndataset = "toy-tiny"\nbatch_size = 512\nmax_epochs = 1\n')
    result = cli("train", "--config", config, "--batch-size", "128", "--project-dir", tmp_path)
    assert result.code == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "Name" in line)
    for column in ("Name", "Default", "Config file", "CLI", "Effective"):
        assert column in header
    row = next(line for line in result.stdout.splitlines() if "batch_size" in line)
    assert [cell.strip() for cell in row.strip("│┃ ").split("│")] == ["batch_size", "128", "512", "128", "128"]


def test_positional_arguments_override_the_config(cli, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('model = "jsc-s"\ndataset = "jsc"\nmax_epochs = 1\n')
    result = cli("train", "toy", "toy-tiny", "--config", config, "--project-dir", tmp_path)
    assert result.code == 0, result.stderr
    saved = load_config(tmp_path / "toy_classification_toy-tiny" / "config.toml")
    assert (saved.model, saved.dataset, saved.max_epochs) == ("toy", "toy-tiny", 1)
    metrics = json.loads((tmp_path / "toy_classification_toy-tiny" / "metrics.json").read_text())
    assert len(metrics["history"]) == 1  # max_epochs still comes from the file


@pytest.mark.parametrize("topic, expected", [
    ("models", ["jsc-tiny", "jsc-three-linear-layers", "vgg7", "toy-tiny"]),
    ("datasets", ["digits", "jsc", "cifar10", "toy-tiny"]),
])
def test_info(cli, topic, expected):
    result = cli("info", topic)
    assert result.code == 0
    assert all(name in result.stdout for name in expected)


def test_help_does_not_import_torch():
    code = ("import sys, machop.cli.app as a\n"
            "heavy = [m for m in ('torch', 'sklearn', 'optuna', 'lightning') if m in sys.modules]\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_console_script_exit_status(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "machop", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "train" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "machop", "train", "nope", "digits",
                          "--project-dir", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "unknown model 'nope'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_debug_shows_the_traceback(cli, tmp_path):
    bad = cli("train", "nope", "digits", "--debug", "--project-dir", tmp_path)
    assert bad.code == 2 and "Traceback" in bad.stderr and "unknown model 'nope'" in bad.stderr
    assert "Traceback" not in cli("train", "nope", "digits", "--project-dir", tmp_path).stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_gpu_request_falls_back_to_cpu(cli, tmp_path):
    result = cli("train", "toy", "toy-tiny", "--accelerator", "gpu", "--max-epochs", "1",
                 "--project-dir", tmp_path)
    assert result.code == 0 and "no CUDA device" in result.stderr


def test_train_on_jsc_and_cifar10_files_through_the_cli(cli, tmp_path):
    import numpy as np
    from tests.helpers.cifar10 import write_batches
    from tests.helpers.jsc import write_csv

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16)).astype(np.float32)
    letters = np.array(list("gqwzt"))[rng.integers(0, 5, 400)]
    (tmp_path / "jsc").mkdir()
    write_csv(tmp_path / "jsc" / "hls4ml_lhc_jets_hlf.csv", x, letters)
    write_batches(tmp_path / "cifar-10-batches-py")
    jsc = cli("train", "jsc-tiny", "jsc", "--data-dir", tmp_path, "--max-epochs", "1",
              "--project-dir", tmp_path / "out")
    assert jsc.code == 0, jsc.stderr
    config = tmp_path / "vgg.toml"
    config.write_text('model = "vgg7"\ndataset = "cifar10"\nmax_epochs = 1\nbatch_size = 16\n'
                      '[model_args]\nwidths = [4, 8, 8]\nhidden = 16\n')
    cifar = cli("train", "-c", config, "--data-dir", tmp_path, "--project-dir", tmp_path / "out")
    assert cifar.code == 0, cifar.stderr
    metrics = json.loads((tmp_path / "out" / "vgg7_classification_cifar10" / "metrics.json").read_text())
    assert sum(metrics["dataset_sizes"].values()) == 120


def test_command_specific_options_show_their_help(cli):
    result = cli("search", "--help")
    assert "Optuna storage URL" in result.stdout
    assert "Comma-separated metric names" in cli("analyze", "--help").stdout
