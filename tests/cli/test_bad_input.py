"""Bad input of every kind: exit status 2, one line naming the culprit, nothing written."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import tree

from machop.data import DatasetInfo
from machop.models import build_model


def _write(path, text):
    path.write_text(text)
    return path


def _mismatched_checkpoint(tmp):
    path = tmp / "jsc_tiny.pt"
    torch.save(build_model("jsc-tiny", DatasetInfo("digits", 10, 64)).state_dict(), path)
    return path


CASES = {
    "unknown model": (lambda t: ["train", "jsc-tinny", "digits"], "unknown model 'jsc-tinny'; did you mean 'jsc-tiny'"),
    "unknown dataset": (lambda t: ["train", "jsc-tiny", "mnist"], "unknown dataset 'mnist'"),
    "unknown config key": (lambda t: ["train", "-c", _write(t / "c.toml", 'model = "toy"\nlearning_rat = 0.1\n')],
                           "unknown config key 'learning_rat'"),
    "wrong value type": (lambda t: ["train", "-c", _write(t / "c.toml", 'batch_size = "many"\n')],
                         "invalid value 'many' for 'batch_size'"),
    "wrong flag type": (lambda t: ["train", "toy", "toy-tiny", "--batch-size", "abc"], "Invalid value for '--batch-size'"),
    "invalid choice": (lambda t: ["train", "toy", "toy-tiny", "--optimizer", "rmsprop"], "'training_optimizer'"),
    "missing config file": (lambda t: ["train", "-c", t / "missing.toml"], "does not exist"),
    "malformed toml": (lambda t: ["train", "-c", _write(t / "c.toml", "model = [\n")], "is not valid TOML"),
    "missing data file": (lambda t: ["train", "jsc-tiny", "jsc", "--data-dir", t / "nodata"], str("nodata")),
    "mismatched checkpoint": (lambda t: ["test", "jsc-three-linear-layers", "digits", "--load", _mismatched_checkpoint(t)],
                              "does not match the model"),
    "corrupt checkpoint": (lambda t: ["test", "toy", "toy-tiny", "--load", _write(t / "x.ckpt", "garbage")],
                           "corrupt or truncated"),
    "missing checkpoint": (lambda t: ["test", "toy", "toy-tiny", "--load", t / "none.ckpt"], "does not exist"),
    "test without load": (lambda t: ["test", "toy", "toy-tiny"], "test needs a checkpoint"),
    "no model given": (lambda t: ["train"], "no model or dataset given"),
    "unknown option": (lambda t: ["train", "toy", "toy-tiny", "--bach-size", "3"], "--bach-size"),
    "model needs images": (lambda t: ["train", "vgg7", "toy-tiny"], "needs an image dataset"),
    "unsupported task": (lambda t: ["train", "toy", "toy-tiny", "--task", "lm"], "'task'"),
    "user model missing": (lambda t: ["train", f"{t}/net.py:Net", "digits"], "does not exist"),
    "unknown info topic": (lambda t: ["info", "samplers"], "unknown info topic"),
    "bad model_args": (lambda t: ["train", "-c", _write(t / "c.toml", 'model = "jsc-tiny"\ndataset = "digits"\n[model_args]\nwidth = 3\n')],
                       "takes no argument 'width'"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(cli, tmp_path, name):
    build_args, expected = CASES[name]
    project_dir = tmp_path / "projects"
    project_dir.mkdir()
    args = [*build_args(tmp_path), "--project-dir", project_dir] if name != "unknown info topic" \
        else build_args(tmp_path)
    before = tree(tmp_path)
    result = cli(*args)
    assert result.code == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert tree(tmp_path) == before


def test_unwritable_project_dir(cli):
    result = cli("train", "toy", "toy-tiny", "--max-epochs", "1", "--project-dir", "/proc/machop")
    assert result.code == 2 and "is not writable" in result.stderr


def test_project_dir_that_is_a_file(cli, tmp_path):
    blocker = _write(tmp_path / "file", "x")
    result = cli("train", "toy", "toy-tiny", "--max-epochs", "1", "--project-dir", blocker)
    assert result.code == 2 and "is not a directory" in result.stderr
