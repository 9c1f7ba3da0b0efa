"""hls4ml's C simulation (g++) against machop's simulation: bit-exact on every validation sample.

Each fixture compiles one model (11-17 s; the tiny convolutional one about 12 s), shared by the
assertions on it.
"""

from __future__ import annotations

import json
import shutil

import pytest
from tests.helpers.hls4ml import ACTIVATION_FRAC, image_dataset, jsc_dataset, quantized_conv, quantized_jsc

from machop.export.parity import evaluation_inputs

pytest.importorskip("hls4ml")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("g++") is None, reason="hls4ml's C simulation needs g++")]


@pytest.fixture(scope="module")
def dataset():
    return jsc_dataset()


@pytest.fixture(scope="module")
def toy_export(tmp_path_factory, dataset):
    """jsc-toy, every node fixed point (four BatchNorms), per-layer traces."""
    from machop.export.hls4ml import to_hls4ml

    model = quantized_jsc("jsc-toy", seed=3)
    out = tmp_path_factory.mktemp("toy") / "hls"
    return model, to_hls4ml(model, out, dataset=dataset, csim=True, per_layer=True)


@pytest.fixture(scope="module")
def calibrated_export(tmp_path_factory, dataset):
    """jsc-three-linear-layers with per-channel calibrated weights and scales ("auto")."""
    from machop.export.hls4ml import to_hls4ml

    model = quantized_jsc("jsc-three-linear-layers", seed=5, weight_frac="auto", dataset=dataset,
                          calibration={"method": "mse", "granularity": "channel"})
    out = tmp_path_factory.mktemp("calibrated") / "hls"
    return model, to_hls4ml(model, out, dataset=dataset, csim=True, backend="Vivado", reuse_factor=4)


def test_inputs_include_rounding_ties(dataset):
    inputs = evaluation_inputs(dataset, "validation", 128)
    on_ties = (inputs * 2**ACTIVATION_FRAC) % 1 == 0.5
    assert on_ties.all(axis=1).sum() == len(inputs) // 10


def test_jsc_toy_is_bit_exact_on_every_validation_sample(toy_export):
    _, result = toy_export
    parity = result.parity
    assert parity.samples == 300
    assert parity.bit_exact and parity.differing_samples == 0 and parity.max_abs_diff == 0.0
    assert parity.agreement == 1.0
    assert not result.notes  # nothing left in float


def test_jsc_toy_per_layer_traces_agree_everywhere(toy_export):
    model, result = toy_export
    rows = {row["node"]: row for row in result.parity.per_layer}
    assert set(rows) == {f"seq_blocks_{i}" for i in range(11)}
    assert all(row["differing_values"] == 0 and row["values"] > 0 for row in rows.values())
    saved = json.loads((result.out / "parity.json").read_text())
    assert saved["bit_exact"] is True and len(saved["per_layer"]) == 11
    assert "**bit-exact**" in (result.out / "README.md").read_text()


def test_per_channel_calibrated_model_is_bit_exact(calibrated_export):
    model, result = calibrated_export
    fracs = {name: layer.specs["weight"].frac_width for name, layer in model.named_modules()
             if getattr(layer, "specs", {}).get("weight") is not None}
    assert all(isinstance(f, tuple) for f in fracs.values())
    assert any(len(set(f)) > 1 for f in fracs.values())  # really one frac per channel somewhere
    parity = result.parity
    assert parity.bit_exact and parity.samples == 300 and parity.differing_samples == 0
    assert parity.max_abs_diff == 0.0 and parity.agreement == 1.0


@pytest.fixture(scope="module")
def conv_export(tmp_path_factory):
    """Conv2d, BatchNorm2d, ReLU, a residual add, MaxPool, flatten, Linear: every node fixed point."""
    from machop.export.hls4ml import to_hls4ml

    data = image_dataset()
    model = quantized_conv(seed=2)
    out = tmp_path_factory.mktemp("conv") / "hls"
    return data, to_hls4ml(model, out, dataset=data, csim=True, per_layer=True)


def test_conv_residual_model_is_bit_exact_on_every_validation_sample_and_tie(conv_export):
    data, result = conv_export
    inputs = evaluation_inputs(data, "validation", 128)
    on_ties = ((inputs * 2**ACTIVATION_FRAC) % 1 == 0.5).reshape(len(inputs), -1).all(axis=1)
    assert on_ties.sum() == 30
    parity = result.parity
    assert parity.samples == 300 and parity.bit_exact and parity.differing_samples == 0
    assert parity.max_abs_diff == 0.0 and parity.agreement == 1.0
    assert not result.notes


def test_conv_residual_layer_traces_agree_in_channels_last_order(conv_export):
    _, result = conv_export
    rows = {row["node"]: row for row in result.parity.per_layer}
    # hls4ml holds every (C, H, W) tensor as (H, W, C); the flatten is a view and has no trace.
    assert set(rows) == {"conv1", "bn", "relu", "conv2", "relu_1", "add", "pool", "fc"}
    assert all(row["differing_values"] == 0 for row in rows.values())
    assert rows["conv1"]["values"] == 300 * 3 * 4 * 4 and rows["pool"]["values"] == 300 * 3 * 2 * 2
    readme = (result.out / "README.md").read_text()
    assert "| add | add | `ap_ufixed<8,5>`" in readme and "**bit-exact**" in readme
