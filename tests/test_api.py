"""The Python API (machop.api): prepare, train, test, transform and analyze on digits, tiny settings."""

from __future__ import annotations

import csv
import json
import logging

import pytest
import torch

from machop import api
from machop.config import load_config
from machop.config.schema import RunConfig
from machop.errors import ConfigError, DataError
from machop.train import read_checkpoint
from machop.train.evaluate import evaluate

MODEL = "jsc-three-linear-layers"
# BatchNorm(64) weight+bias, then Linear 64->16, 16->16, 16->10 with biases.
DIGITS_PARAMS = 2 * 64 + (64 * 16 + 16) + (16 * 16 + 16) + (16 * 10 + 10)
INTEGER_8 = {"by": "type", "default": {"config": {"name": None}},
             "linear": {"config": {"name": "integer", "data_in_width": 8, "data_in_frac_width": 4,
                                   "weight_width": 8, "weight_frac_width": 6, "bias_width": 8,
                                   "bias_frac_width": 6}}}


def loaded(checkpoint, tmp_path, **settings) -> RunConfig:
    """A config that names only a checkpoint (model and dataset come from it) and an output folder."""
    return RunConfig(load_name=str(checkpoint), project_dir=str(tmp_path), **settings)


@pytest.fixture(scope="module")
def best_metrics(digits_project) -> dict:
    """The validation metrics of the shared project's best epoch, as metrics.json records them."""
    return json.loads((digits_project.root / "metrics.json").read_text())["best"]


# ------------------------------------------------------------------------------------ prepare

def test_prepare_takes_model_dataset_and_weights_from_a_checkpoint(digits_project):
    prepared = api.prepare(RunConfig(load_name=str(digits_project.best_checkpoint)))
    assert (prepared.config.model, prepared.config.dataset) == (MODEL, "digits")
    assert prepared.checkpoint.kind == "machop" and prepared.missing_data is None
    assert prepared.dataset.sizes() == {"train": 1257, "validation": 180, "test": 360}
    saved = read_checkpoint(digits_project.best_checkpoint).state_dict
    state = prepared.model.state_dict()
    assert state.keys() == saved.keys()
    assert all(torch.equal(state[name], saved[name]) for name in saved)
    assert torch.equal(prepared.example_input(), prepared.dataset.validation.x[:8].float())


def test_prepare_builds_the_same_random_model_for_the_same_seed():
    first, second, other = (api.prepare(RunConfig(model=MODEL, dataset="digits", seed=seed)).model.state_dict()
                            for seed in (7, 7, 8))
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_prepare_without_model_or_dataset_says_how_to_give_them():
    with pytest.raises(ConfigError, match="no model or dataset given: pass MODEL DATASET"):
        api.prepare(RunConfig())
    with pytest.raises(ConfigError, match="^no dataset given"):
        api.prepare(RunConfig(model=MODEL))


def test_prepare_refuses_several_processes_outside_train_and_test():
    with pytest.raises(ConfigError, match="num_devices=2, num_nodes=1: only `machop train` and `machop test`"):
        api.prepare(RunConfig(model=MODEL, dataset="digits", num_devices=2))


def test_prepare_with_static_ok_builds_from_the_static_shape_when_files_are_absent(tmp_path):
    prepared = api.prepare(RunConfig(model="jsc-tiny", dataset="jsc", data_dir=str(tmp_path)), static_ok=True)
    assert prepared.dataset is None and "JSC data not found" in prepared.missing_data
    assert (prepared.info.num_features, prepared.info.num_classes) == (16, 5)
    assert torch.equal(prepared.example_input(), torch.zeros(8, 16))
    with pytest.raises(DataError, match="JSC data not found"):
        api.prepare(RunConfig(model="jsc-tiny", dataset="jsc", data_dir=str(tmp_path)))


# -------------------------------------------------------------------------------------- train

def test_train_returns_what_it_wrote(tmp_path):
    config = RunConfig(model=MODEL, dataset="digits", max_epochs=2, batch_size=64, learning_rate=1e-2,
                       project_dir=str(tmp_path), project="t")
    outcome = api.train(config)
    assert outcome.project.root == tmp_path / "t" and outcome.rank == 0
    written = json.loads(outcome.project.metrics.read_text())
    assert written["test"] == outcome.test_metrics and written["history"] == outcome.fit.history
    assert written["best_epoch"] == outcome.fit.best_epoch and len(outcome.fit.history) == 2
    assert written["world_size"] == 1
    assert load_config(outcome.project.config) == config
    best = read_checkpoint(outcome.project.best_checkpoint)
    assert (best.model_name, best.dataset_info.name, best.extra["epoch"]) == (MODEL, "digits",
                                                                              outcome.fit.best_epoch)
    assert read_checkpoint(outcome.project.last_checkpoint).extra["epoch"] == 2
    # The returned model is the best epoch's, the one the test metrics were measured on.
    assert all(torch.equal(value, best.state_dict[name]) for name, value in outcome.model.state_dict().items())


def test_train_refuses_an_unwritable_project_dir_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = RunConfig(model=MODEL, dataset="digits", max_epochs=1, project_dir=str(blocker / "sub"))
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        api.train(config)


# --------------------------------------------------------------------------------------- test

def test_test_reproduces_the_training_test_metrics(digits_project, tmp_path):
    metrics, path = api.test(loaded(digits_project.best_checkpoint, tmp_path, project="t"))
    trained = json.loads((digits_project.root / "metrics.json").read_text())["test"]
    assert metrics == pytest.approx(trained)
    assert path == tmp_path / "t" / "test_metrics.json"
    assert json.loads(path.read_text()) == {"checkpoint": str(digits_project.best_checkpoint),
                                            "test": metrics, "num_samples": 360}


def test_test_needs_a_checkpoint():
    with pytest.raises(ConfigError, match="test needs a checkpoint: pass --load PATH"):
        api.test(RunConfig(model=MODEL, dataset="digits"))


# ---------------------------------------------------------------------------------- transform

def test_transform_saves_a_model_that_loads_back_with_the_measured_accuracy(digits_project, tmp_path,
                                                                            best_metrics):
    outcome = api.transform(loaded(digits_project.best_checkpoint, tmp_path, project="q",
                                   passes={"quantize": INTEGER_8}))
    assert outcome.model_path == tmp_path / "q" / "transformed" / "quantize" / "model.machop"
    # Before: the best checkpoint on the validation split, as training measured it.
    assert outcome.metrics_before["accuracy"] == pytest.approx(best_metrics["val_accuracy"])
    assert outcome.metrics_before["loss"] == pytest.approx(best_metrics["val_loss"], rel=1e-5)
    # After: what the saved model gives once loaded back (its passes are re-applied on load).
    reloaded = api.prepare(RunConfig(load_name=str(outcome.model_path)))
    assert [name for name, _ in reloaded.checkpoint.passes] == ["quantize"]
    again = evaluate(reloaded.model, reloaded.dataset.validation, 10)
    assert again == pytest.approx(outcome.metrics_after)
    [summary] = outcome.summary_paths
    rows = list(csv.DictReader(summary.open()))
    assert summary.name == "quantize_summary.csv" and rows == [
        {k: str(v) for k, v in row.items()} for row in outcome.summaries[0][1]["rows"]]
    assert [row["node"] for row in rows if row["new_type"] == "QuantLinear"] == [
        "seq_blocks_2", "seq_blocks_4", "seq_blocks_6"]


def test_transform_warns_only_when_it_replaces_another_result(digits_project, tmp_path, caplog):
    config = loaded(digits_project.best_checkpoint, tmp_path, project="q", passes={"quantize": INTEGER_8})
    with caplog.at_level(logging.WARNING, logger="machop"):
        api.transform(config)
        api.transform(config)  # the same transform again
        assert not [r for r in caplog.records if "replaced" in r.getMessage()]
        wider = {**INTEGER_8, "linear": {"config": {**INTEGER_8["linear"]["config"], "weight_width": 16}}}
        api.transform(config.model_copy(update={"passes": {"quantize": wider}}))
    [warning] = [r.getMessage() for r in caplog.records if "replaced" in r.getMessage()]
    assert "a model made with other pass settings; pass --project NAME" in warning


def test_transform_needs_a_pass():
    with pytest.raises(ConfigError, match=r"transform needs at least one \[passes.<name>\] table"):
        api.transform(RunConfig(model=MODEL, dataset="digits"))


# ------------------------------------------------------------------------------------ analyze

def test_analyze_measures_the_checkpoint_and_writes_analysis_json(digits_project, tmp_path, best_metrics):
    outcome = api.analyze(loaded(digits_project.best_checkpoint, tmp_path, project="a"), ["params", "accuracy"])
    assert outcome.metrics == {"params": DIGITS_PARAMS, "accuracy": pytest.approx(best_metrics["val_accuracy"])}
    assert outcome.static_only is None and outcome.path == tmp_path / "a" / "analysis.json"
    written = json.loads(outcome.path.read_text())
    assert (written["model"], written["dataset"], written["split"]) == (MODEL, "digits", "validation")
    assert written["metrics"] == outcome.metrics
    assert sum(row["params"] for row in outcome.per_node if "params" in row) == DIGITS_PARAMS


def test_analyze_on_the_test_split_matches_the_test_metrics(digits_project, tmp_path):
    outcome = api.analyze(loaded(digits_project.best_checkpoint, tmp_path), ["accuracy"], split="test")
    trained = json.loads((digits_project.root / "metrics.json").read_text())["test"]
    assert outcome.metrics["accuracy"] == pytest.approx(trained["accuracy"])


def test_analyze_after_passes_measures_the_transformed_model(digits_project, tmp_path):
    config = loaded(digits_project.best_checkpoint, tmp_path, passes={"quantize": INTEGER_8})
    quantized = api.analyze(config, ["accuracy", "average_bitwidth"])
    transformed = api.transform(config.model_copy(update={"project": "q"}))
    assert quantized.metrics["accuracy"] == pytest.approx(transformed.metrics_after["accuracy"])
    assert quantized.metrics["average_bitwidth"] == pytest.approx(8.0)


def test_analyze_of_random_weights_says_so(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="machop"):
        api.analyze(RunConfig(model=MODEL, dataset="digits", project_dir=str(tmp_path)), ["params"])
    assert any("analyze: no checkpoint loaded (--load), so the model has random, untrained weights"
               in r.getMessage() for r in caplog.records)


def test_analyze_refuses_an_unknown_split_and_metric(tmp_path):
    config = RunConfig(model=MODEL, dataset="digits", project_dir=str(tmp_path))
    with pytest.raises(DataError, match="unknown split 'dev' \\(valid: train, validation, test\\)"):
        api.analyze(config, ["params"], split="dev")
    with pytest.raises(ConfigError, match="unknown metric 'acuracy'; did you mean 'accuracy'"):
        api.analyze(config, ["acuracy"])
    assert not any(tmp_path.iterdir())
