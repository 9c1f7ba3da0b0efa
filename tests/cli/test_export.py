"""`machop export` in-process: tables and files, and one-line errors with exit status 2."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime")

CONFIG = """
model = "jsc-s"
dataset = "digits"
batch_size = 64

[passes.quantize]
by = "type"
[passes.quantize.default.config]
name = "NA"
[passes.quantize.linear.config]
name = "integer"
data_in_width = 8
data_in_frac_width = "auto"
weight_width = 8
weight_frac_width = "auto"
[passes.quantize.calibration]
method = "max"
"""


def _run(args):
    from machop.cli.app import run

    return run(args)


def test_export_writes_model_and_parity(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(CONFIG)
    code = _run(["export", "--config", str(config), "--project-dir", str(tmp_path / "o"), "--per-layer"])
    printed = capsys.readouterr().out
    assert code == 0
    folder = tmp_path / "o" / "jsc-s_classification_digits" / "exported" / "onnx"
    parity = json.loads((folder / "parity.json").read_text())
    assert parity["samples"] == 180 and len(parity["per_layer"]) == 5
    assert "QGemm" in printed and "Parity with the simulation" in printed


@pytest.mark.parametrize("extra, message", [
    (["--format", "tflite"], "unknown export format 'tflite'"),
    (["--strict", "--threshold", "1.5"], "--threshold"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, extra, message):
    config = tmp_path / "c.toml"
    config.write_text(CONFIG)
    code = _run(["export", "--config", str(config), "--project-dir", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o" / "jsc-s_classification_digits" / "exported").exists()


def test_a_checkpoint_of_another_model_is_refused(tmp_path, capsys):
    code = _run(["train", "jsc-tiny", "digits", "--max-epochs", "1", "--project-dir", str(tmp_path),
                 "--project", "tiny"])
    assert code == 0
    capsys.readouterr()
    code = _run(["export", "jsc-s", "digits", "--load", str(tmp_path / "tiny" / "checkpoints" / "best.ckpt"),
                 "--project-dir", str(tmp_path), "--project", "s"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert not (tmp_path / "s" / "exported").exists()
