"""`machop transform` end to end: PTQ, redefine, test and quantization-aware training."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from machop.train import read_checkpoint

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def float_checkpoint(tmp_path_factory):
    from machop.cli.app import run

    out = tmp_path_factory.mktemp("float")
    code = run(["train", "jsc-s", "digits", "--max-epochs", "8", "--batch-size", "32",
                "--learning-rate", "1e-2", "--project-dir", str(out), "--project", "float"])
    assert code == 0
    return out / "float" / "checkpoints" / "best.ckpt"


def write_config(path: Path, width: int, frac: int) -> Path:
    path.write_text(f"""
model = "jsc-s"
dataset = "digits"
batch_size = 32
learning_rate = 1e-3

[passes.quantize]
by = "type"
[passes.quantize.default.config]
name = "NA"
[passes.quantize.linear.config]
name = "integer"
data_in_width = {width}
data_in_frac_width = {frac}
weight_width = {width}
weight_frac_width = {frac}
bias_width = {width}
bias_frac_width = {frac}
""")
    return path


def test_transform_saves_model_and_summary(cli, tmp_path, float_checkpoint):
    config = write_config(tmp_path / "q.toml", 8, 4)
    result = cli("transform", "-c", config, "--load", float_checkpoint, "--project-dir", tmp_path,
                 "--project", "q")
    assert result.code == 0, result.stderr
    model_path = tmp_path / "q" / "transformed" / "quantize" / "model.machop"
    checkpoint = read_checkpoint(model_path)
    assert [name for name, _ in checkpoint.passes] == ["quantize"]
    rows = list(csv.DictReader((tmp_path / "q" / "transformed" / "quantize" / "quantize_summary.csv").open()))
    assert [r["node"] for r in rows if r["new_type"] == "QuantLinear"] == [
        "seq_blocks_2", "seq_blocks_5", "seq_blocks_7", "seq_blocks_9", "seq_blocks_11"]
    assert "Pass quantize" in result.stdout and "Validation split" in result.stdout

    tested = cli("test", "-c", config, "--load", model_path, "--project-dir", tmp_path, "--project", "q")
    assert tested.code == 0, tested.stderr
    after = checkpoint.extra["metrics_after"]["accuracy"]
    assert json.loads((tmp_path / "q" / "test_metrics.json").read_text())["test"]["accuracy"] > after - 0.1


def test_quantization_aware_training_beats_post_training_at_4_bits(cli, tmp_path, float_checkpoint):
    config = write_config(tmp_path / "q4.toml", 4, 2)
    assert cli("transform", "-c", config, "--load", float_checkpoint, "--project-dir", tmp_path,
               "--project", "q4").code == 0
    model_path = tmp_path / "q4" / "transformed" / "quantize" / "model.machop"
    ptq = cli("test", "-c", config, "--load", model_path, "--project-dir", tmp_path, "--project", "q4")
    ptq_accuracy = json.loads((tmp_path / "q4" / "test_metrics.json").read_text())["test"]["accuracy"]
    assert ptq.code == 0
    qat = cli("train", "-c", config, "--load", model_path, "--max-epochs", "5", "--project-dir",
              tmp_path, "--project", "qat")
    assert qat.code == 0, qat.stderr
    qat_accuracy = json.loads((tmp_path / "qat" / "metrics.json").read_text())["test"]["accuracy"]
    assert qat_accuracy > ptq_accuracy
    best = read_checkpoint(tmp_path / "qat" / "checkpoints" / "best.ckpt")
    assert [name for name, _ in best.passes] == ["quantize"]


def test_redefine_config_from_the_repository(cli, tmp_path):
    result = cli("transform", "-c", ROOT / "configs" / "redefine_jsc_three_linear.toml",
                 "--project-dir", tmp_path, "--project", "r")
    assert result.code == 0, result.stderr
    checkpoint = read_checkpoint(tmp_path / "r" / "transformed" / "redefine" / "model.machop")
    shapes = {k: tuple(v.shape) for k, v in checkpoint.state_dict.items() if k.endswith("weight")}
    assert shapes["seq_blocks.2.weight"] == (32, 64) and shapes["seq_blocks.4.weight"] == (64, 32)
    assert shapes["seq_blocks.6.weight"] == (10, 64)
    trained = cli("train", "-c", ROOT / "configs" / "redefine_jsc_three_linear.toml", "--load",
                  tmp_path / "r" / "transformed" / "redefine" / "model.machop", "--max-epochs", "1",
                  "--project-dir", tmp_path, "--project", "r-train")
    assert trained.code == 0, trained.stderr


@pytest.mark.parametrize("passes, message", [
    ("", "transform needs at least one [passes.<name>] table"),
    ("[passes.prune]\nby = 'type'\n", "unknown pass 'prune'"),
    ("[passes.quantize]\nby = 'type'\n[passes.quantize.default.config]\nname = 'NA'\n"
     "[passes.quantize.linear.config]\nname = 'integer'\nweight_width = 4\nweight_frac_width = 37\n",
     "weight_frac_width"),
    ("[passes.redefine.seq_blocks_9.config]\nchannel_multiplier = 2\n", "seq_blocks_9"),
])
def test_bad_pass_configs_exit_2_and_write_nothing(cli, tmp_path, passes, message):
    config = tmp_path / "bad.toml"
    config.write_text('model = "jsc-three-linear-layers"\ndataset = "digits"\n' + passes)
    result = cli("transform", "-c", config, "--project-dir", tmp_path / "out")
    assert result.code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_checkpoint_of_another_model_is_refused(cli, tmp_path, float_checkpoint):
    config = tmp_path / "c.toml"
    config.write_text('model = "jsc-three-linear-layers"\ndataset = "digits"\n'
                      "[passes.quantize]\nby = 'type'\n[passes.quantize.default.config]\nname = 'NA'\n")
    result = cli("transform", "-c", config, "--load", float_checkpoint, "--project-dir", tmp_path / "out")
    assert result.code == 2 and "does not match the model" in result.stderr


def test_untraceable_user_model_is_one_line(cli, tmp_path):
    model_file = tmp_path / "branchy.py"
    model_file.write_text(
        "from torch import nn\n\n"
        "class Branchy(nn.Module):\n"
        "    def __init__(self, num_features, num_classes):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(num_features, num_classes)\n\n"
        "    def forward(self, x):\n"
        "        if x.mean() > 0:\n"
        "            return self.fc(x.flatten(1))\n"
        "        return -self.fc(x.flatten(1))\n")
    config = tmp_path / "c.toml"
    config.write_text(f'model = "{model_file}:Branchy"\ndataset = "digits"\n'
                      "[passes.quantize]\nby = 'type'\n[passes.quantize.default.config]\nname = 'NA'\n")
    result = cli("transform", "-c", config, "--project-dir", tmp_path / "out")
    assert result.code == 2
    assert "cannot trace Branchy at" in result.stderr and "branchy.py:9" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
