"""`machop export --trial N`: a search's candidate rebuilt as the search built it, then exported."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState
from tests.helpers.search import load

pytest.importorskip("onnxruntime")

from onnx import numpy_helper  # noqa: E402

from machop.config import load_config  # noqa: E402
from machop.data.batches import example_batch  # noqa: E402
from machop.graph import Graph  # noqa: E402
from machop.passes import apply_passes  # noqa: E402
from machop.search import records  # noqa: E402

NODE = "seq_blocks_2"  # jsc-tiny's one linear
SEARCH = """
model = "jsc-tiny"
dataset = "digits"
batch_size = 64
learning_rate = 1e-2
max_epochs = 3
seed = 4

[search]
train_base = true

[search.search_space]
name = "graph/quantize/mixed_precision_ptq"
setup = { by = "type" }
[search.search_space.seed.default.config]
name = ["NA"]
[search.search_space.seed.linear.config]
name = ["integer"]
data_in_width = [4, 8]
data_in_frac_width = ["auto"]
weight_width = [4, 8]
weight_frac_width = ["auto"]
[search.search_space.calibration]
granularity = "channel"

[search.strategy]
name = "optuna"
[search.strategy.sw_runner.basic_evaluation]
data_loader = "val_dataloader"
[search.strategy.hw_runner.bitops]
[search.strategy.setup]
sampler = "bruteforce"
n_trials = 4
[search.strategy.metrics]
accuracy.scale = 1.0
accuracy.direction = "maximize"
"""


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A 4-trial PTQ search on digits from a base that search.train_base trained; (folder, config)."""
    from machop.cli.app import run

    folder = tmp_path_factory.mktemp("trial_export")
    config = folder / "search.toml"
    config.write_text(SEARCH)
    assert run(["search", "--config", str(config), "--project-dir", str(folder), "--project", "p"]) == 0
    return folder, config


def _export(cli, folder, config, *extra):
    return cli("export", "--config", config, "--project-dir", folder, "--project", "p", *extra)


def _rebuilt_independently(folder, trial: optuna.trial.FrozenTrial):
    """The trial's candidate from the trained base and a plain quantize pass with the recorded widths."""
    from machop.api import prepare

    config = load_config(folder / "search.toml").model_copy(
        update={"load_name": str(folder / "p" / "checkpoints" / "best.ckpt"), "search": {}})
    prepared = prepare(config)
    sample, derived = trial.user_attrs[records.TRIAL_CONFIG], trial.user_attrs[records.TRIAL_DERIVED]
    node = {"name": "integer",
            "data_in_width": sample[f"{NODE}/data_in_width"],
            "data_in_frac_width": derived[f"{NODE}/data_in_frac_width"],
            "weight_width": sample[f"{NODE}/weight_width"],
            "weight_frac_width": derived[f"{NODE}/weight_frac_width"]}
    args = {"by": "name", "default": {"config": {"name": "NA"}}, NODE: {"config": node}}
    graph = Graph(prepared.model, example_batch(prepared.dataset.validation))
    quantized, _ = apply_passes(graph, [("quantize", args)])
    return quantized, prepared.dataset, node


def test_export_trial_is_the_trials_candidate(cli, searched):
    from machop.search.trial_export import trial_candidate

    folder, config = searched
    study = load(folder / "p")
    # The 4-bit input and weight trial: the coarsest grid, where a wrong frac width would show.
    trial = next(t for t in study.trials if t.params == {f"{NODE}/data_in_width": 4, f"{NODE}/weight_width": 4})
    result = _export(cli, folder, config, "--trial", trial.number, "--format", "onnx")
    assert result.code == 0, result.stderr
    out_dir = folder / "p" / "exported" / f"trial_{trial.number}" / "onnx"
    assert f"Wrote {out_dir / 'model.onnx'}" in result.stdout
    reference, dataset, node = _rebuilt_independently(folder, trial)
    # The model handed to the exporter computes exactly what the independent rebuild computes.
    built = trial_candidate(load_config(config).model_copy(update={"project_dir": str(folder), "project": "p"}),
                            trial.number)
    x = dataset.validation.x.float()
    with torch.no_grad():
        assert torch.equal(built.graph.module(x), reference.module(x))
    # The exported weights are the candidate's quantized weights, at the trial's precision.
    import onnx

    model = onnx.load(str(out_dir / "model.onnx"))
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    codes, scales = initializers[f"{NODE}.weight_quantized"], initializers[f"{NODE}.weight_scale"]
    np.testing.assert_array_equal(scales, np.exp2(-np.asarray(node["weight_frac_width"], dtype=np.float64)))
    assert codes.min() >= -8 and codes.max() <= 7  # a 4-bit signed grid
    spec = reference.meta[NODE].precision["weight"]
    assert spec["width"] == 4 and list(spec["frac_width"]) == list(node["weight_frac_width"])
    target = next(n.target for n in reference.module.graph.nodes if n.name == NODE)
    weight = reference.module.get_submodule(target).weight.detach().double().numpy()
    expected = np.clip(np.rint(weight / scales[:, None]), -8, 7) * scales[:, None]
    np.testing.assert_array_equal(codes * scales[:, None].astype(np.float64), expected)
    parity = json.loads((out_dir / "parity.json").read_text())
    assert parity["samples"] == len(dataset.validation) and parity["agreement"] >= 0.95


def test_bad_trials_are_one_line_and_write_nothing(cli, searched, tmp_path):
    folder, config = searched
    study = load(folder / "p")
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    failed = max(t.number for t in study.trials)
    plain = tmp_path / "plain.toml"
    plain.write_text(SEARCH.split("[search]")[0])
    trained = tmp_path / "trained.toml"
    trained.write_text(SEARCH.replace("sw_runner.basic_evaluation", "sw_runner.basic_train"))
    for path, trial, message in [(config, 99, "has no trial 99 (COMPLETE trials: 0, 1, 2, 3)"),
                                 (config, failed, f"trial {failed} of study 'p' is FAIL, not COMPLETE"),
                                 (plain, 0, "no [search] section"),
                                 (trained, 0, "sw_runner.basic_train trained each candidate")]:
        result = _export(cli, folder, path, "--trial", trial)
        err = result.stderr.strip()
        assert result.code == 2 and message in err and len(err.splitlines()) == 1, err
        assert not (folder / "p" / "exported" / f"trial_{trial}").exists()
