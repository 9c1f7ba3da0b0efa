"""Training options: RunConfig's fields define what a search may set and TrainSettings' defaults."""

from __future__ import annotations

import dataclasses
import math

import pytest

from machop.config.schema import (
    TRAINING_OPTIONS,
    RunConfig,
    accepts_setting,
    config_key,
    setting_choices,
    setting_values,
)
from machop.train.settings import TrainSettings


def test_every_training_option_says_what_it_accepts():
    assert {name: setting_values(name) for name in TRAINING_OPTIONS} == {
        "max_epochs": "a positive integer", "learning_rate": "a positive number",
        "batch_size": "a positive integer", "optimizer": "one of adam, adamw, sgd",
        "weight_decay": "a number >= 0", "lr_scheduler": "one of cosine, none",
        "t_max": "a positive integer", "eta_min": "a number >= 0", "max_steps": "an integer >= -1"}
    assert setting_choices("optimizer") == ("adam", "adamw", "sgd")
    assert setting_choices("learning_rate") == ()


@pytest.mark.parametrize(("name", "value", "accepted"), [
    ("learning_rate", 1, True), ("learning_rate", 1e-3, True), ("learning_rate", 0.0, False),
    ("learning_rate", math.inf, False), ("learning_rate", True, False), ("learning_rate", "fast", False),
    ("batch_size", 64, True), ("batch_size", 64.0, False), ("batch_size", True, False),
    ("optimizer", "sgd", True), ("optimizer", "adm", False),
    ("weight_decay", 0, True), ("weight_decay", -0.1, False),
    ("max_steps", -1, True), ("max_steps", -2, False),
    ("eta_min", 0.0, True), ("eta_min", math.nan, False), ("lr_scheduler", "step", False),
])
def test_a_training_option_accepts_what_its_config_key_accepts(name, value, accepted):
    assert accepts_setting(name, value) is accepted


def test_train_settings_defaults_are_the_config_defaults():
    config = RunConfig()
    defaults = {f.name: f.default for f in dataclasses.fields(TrainSettings)}
    assert defaults == {name: getattr(config, config_key(name)) for name in defaults}
    assert TrainSettings() == TrainSettings.from_config(config)


def test_train_settings_from_config_maps_mase_names():
    config = RunConfig(training_optimizer="sgd", trainer_precision="32", learning_rate=0.5,
                       max_epochs=3, checkpoint_monitor="last")
    settings = TrainSettings.from_config(config)
    assert (settings.optimizer, settings.precision, settings.learning_rate, settings.max_epochs,
            settings.checkpoint_monitor) == ("sgd", "32", 0.5, 3, "last")
