"""`machop export --format hls4ml` end to end, in-process: a JSC model quantized with its BatchNorms."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("hls4ml")

CONFIG = """
model = "jsc-toy"
dataset = "digits"
batch_size = 64

[passes.quantize]
by = "type"

[passes.quantize.default.config]
name = "NA"

[passes.quantize.linear.config]
name = "integer"
data_in_width = 8
data_in_frac_width = 3
weight_width = 6
weight_frac_width = 4
bias_width = 8
bias_frac_width = 4

[passes.quantize.relu.config]
name = "integer"
data_in_width = 8
data_in_frac_width = 3

[passes.quantize.batch_norm1d.config]
name = "integer"
data_in_width = 8
data_in_frac_width = 3
weight_width = 8
weight_frac_width = 5
bias_width = 8
bias_frac_width = 4
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "hls.toml"
    path.write_text(CONFIG)
    return path


def test_export_writes_the_project_and_prints_the_types(cli, config, tmp_path):
    out = tmp_path / "hls"
    result = cli("export", "--config", config, "--format", "hls4ml", "--out", out, "--backend", "vitis",
                 "--reuse-factor", "2", "--project-dir", tmp_path / "outputs")
    assert result.code == 0, result.stdout + result.stderr
    assert "ap_ufixed<7,4,AP_RND_CONV,AP_SAT>" in result.stdout  # the ReLUs feeding 8/3 Linears
    layers = json.loads((out / "layers.json").read_text())
    assert layers["backend"] == "Vitis" and layers["reuse_factor"] == 2
    assert {row["kind"] for row in layers["layers"]} == {"input", "batch_norm1d", "relu", "linear"}
    assert (out / "hls4ml_prj" / "build_prj.tcl").is_file() and (out / "README.md").is_file()


@pytest.mark.parametrize(("extra", "message"), [
    (("--backend", "Quartus"), "backend = 'Quartus' is invalid (valid: Vivado, Vitis, oneAPI)"),
    (("--reuse-factor", "0"), "reuse_factor must be a positive integer"),
])
def test_bad_options_exit_2_with_one_line_and_write_nothing(cli, config, tmp_path, extra, message):
    out = tmp_path / "hls"
    result = cli("export", "--config", config, "--format", "hls4ml", "--out", out, *extra,
                 "--project-dir", tmp_path / "outputs")
    assert result.code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0]
    assert not out.exists()


def test_float_model_without_allow_float_exits_2(cli, tmp_path):
    out = tmp_path / "hls"
    result = cli("export", "jsc-tiny", "digits", "--format", "hls4ml", "--out", out,
                 "--project-dir", tmp_path / "outputs")
    assert result.code == 2 and "--allow-float" in result.stderr
    assert not out.exists()
