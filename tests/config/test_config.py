"""Config loading: MASE defaults, "NA", precedence, unknown keys, types, TOML round trip."""

from __future__ import annotations

import pytest

from machop.config import RunConfig, dumps_toml, load_config, read_toml, resolve_config, table_rows
from machop.errors import ConfigError

MASE_STYLE = """
model = "jsc-tiny"
dataset = "jsc"
task = "cls"
max_epochs = 5
batch_size = 512
learning_rate = 1e-2
accelerator = "gpu"
project = "jsc-tiny"
seed = 42
log_every_n_steps = 5
load_name = "NA"
load_type = "pl"

[passes.quantize]
by = "type"
[passes.quantize.default.config]
name = "NA"
[passes.quantize.linear.config]
name = "integer"
data_in_width = 8
data_in_frac_width = 4

[search.search_space]
name = "graph/quantize/mixed_precision_ptq"
[search.search_space.seed.default.config]
name = ["integer"]
data_in_width = [4, 8]
"""


@pytest.fixture
def mase_toml(tmp_path):
    path = tmp_path / "mase.toml"
    path.write_text(MASE_STYLE)
    return path


def test_defaults_are_mases():
    config = RunConfig()
    assert (config.task, config.batch_size, config.learning_rate, config.max_epochs) == (
        "classification", 128, 1e-5, 20)
    assert (config.training_optimizer, config.weight_decay, config.seed) == ("adam", 0.0, 0)
    assert (config.trainer_precision, config.max_steps, config.t_max, config.eta_min) == (
        "16-mixed", -1, 20, 1e-6)


def test_mase_style_file_loads_with_na_as_none(mase_toml):
    config = load_config(mase_toml)
    assert config.load_name is None
    assert config.batch_size == 512 and config.learning_rate == 0.01 and config.task == "cls"
    assert config.passes["quantize"]["default"]["config"] == {"name": None}
    assert config.search["search_space"]["seed"]["default"]["config"]["data_in_width"] == [4, 8]


def test_sections_are_handed_on_untouched(mase_toml):
    raw = read_toml(mase_toml)
    config = load_config(mase_toml)
    assert config.passes == raw["passes"]
    assert config.search == raw["search"]


def test_precedence_default_file_cli(mase_toml):
    resolved = resolve_config(mase_toml, {"max_epochs": 7})
    assert resolved.config.max_epochs == 7
    assert resolved.config.batch_size == 512
    assert resolved.config.weight_decay == 0.0
    assert [resolved.source(k) for k in ("max_epochs", "batch_size", "weight_decay")] == [
        "CLI", "config file", "default"]


def test_explicit_cli_value_equal_to_default_still_wins(mase_toml):
    # the file sets batch_size 512; an explicit --batch-size 128 (the default) must win
    assert load_config(mase_toml, batch_size=128).batch_size == 128


def test_table_rows_show_every_layer(mase_toml):
    rows = {row[0]: row for row in table_rows(resolve_config(mase_toml, {"batch_size": 64}))}
    assert rows["batch_size"] == ("batch_size", "128", "512", "64", "64")
    assert rows["load_name"] == ("load_name", "NA", "NA", "", "NA")
    assert rows["weight_decay"] == ("weight_decay", "0.0", "", "", "0.0")
    assert "passes" not in rows


def test_unknown_key_suggests_closest(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("batchsize = 3\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'batchsize'.*did you mean 'batch_size'"):
        load_config(path)


def test_cli_alias_key_is_explained():
    with pytest.raises(ConfigError, match="did you mean 'load_name'"):
        load_config(load="x.ckpt")


@pytest.mark.parametrize("text, key", [
    ('batch_size = "big"', "batch_size"),
    ("batch_size = 0", "batch_size"),
    ("learning_rate = -1.0", "learning_rate"),
    ('max_epochs = 2.5', "max_epochs"),
    ('training_optimizer = "rmsprop"', "training_optimizer"),
    ("seed = true", "seed"),
    ('passes = 3', "passes"),
])
def test_wrong_value_is_one_line_config_error(tmp_path, text, key):
    path = tmp_path / "c.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert f"'{key}'" in message and str(path) in message and "\n" not in message


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("model = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_project_name_defaults_like_mase():
    assert load_config(model="jsc-tiny", dataset="jsc", task="cls").project_name() == \
        "jsc-tiny_classification_jsc"


def test_effective_config_round_trips_through_toml(tmp_path, mase_toml):
    config = load_config(mase_toml, data_dir=None, learning_rate=3e-4)
    out = tmp_path / "effective.toml"
    out.write_text(dumps_toml(config.model_dump()))
    assert load_config(out) == config


def test_configuration_docs_list_every_key():
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    documented = {line.split("`")[1] for line in text.splitlines() if line.startswith("| `")}
    assert documented == set(RunConfig.model_fields)
