"""The project folder of a run: where each output goes, and the writable check before any work."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from machop.config.schema import RunConfig
from machop.errors import ConfigError
from machop.project import Project


def test_the_folder_is_model_task_dataset_unless_a_project_is_named(tmp_path):
    config = RunConfig(model="jsc-tiny", dataset="digits", project_dir=str(tmp_path))
    assert Project.from_config(config).root == tmp_path / "jsc-tiny_classification_digits"
    named = config.model_copy(update={"project": "mine"})
    assert Project.from_config(named).root == tmp_path / "mine"
    user_model = config.model_copy(update={"model": "models/net.py:Net"})
    assert Project.from_config(user_model).root == tmp_path / "models_net_Net_classification_digits"


def test_every_output_path_is_inside_the_root():
    project = Project(Path("out") / "p")
    assert {name: getattr(project, name) for name in (
        "checkpoints", "best_checkpoint", "last_checkpoint", "metrics", "test_metrics", "transformed",
        "config")} == {
        "checkpoints": Path("out/p/checkpoints"), "best_checkpoint": Path("out/p/checkpoints/best.ckpt"),
        "last_checkpoint": Path("out/p/checkpoints/last.ckpt"), "metrics": Path("out/p/metrics.json"),
        "test_metrics": Path("out/p/test_metrics.json"), "transformed": Path("out/p/transformed"),
        "config": Path("out/p/config.toml")}


def test_each_pass_list_keeps_a_folder_of_its_own():
    project = Project(Path("p"))
    assert project.transformed_dir(["quantize"]) == Path("p/transformed/quantize")
    assert project.transformed_dir(["redefine", "quantize"]) == Path("p/transformed/redefine+quantize")
    assert project.transformed_model(["redefine", "quantize"]) == Path(
        "p/transformed/redefine+quantize/model.machop")


def test_check_writable_creates_the_folder_and_leaves_nothing_in_it(tmp_path):
    project = Project(tmp_path / "a" / "b" / "p")
    project.check_writable()
    assert project.root.is_dir() and list(project.root.iterdir()) == []
    project.check_writable()  # an existing folder is fine


@pytest.mark.parametrize("blocked", ["root", "parent"])
def test_a_file_in_the_way_is_a_config_error_naming_it(tmp_path, blocked):
    file = tmp_path / "taken"
    file.write_text("keep me")
    project = Project(file if blocked == "root" else file / "p")
    with pytest.raises(ConfigError, match=f"project path '{file}' exists and is not a directory"):
        project.check_writable()
    assert file.read_text() == "keep me"


def test_a_folder_that_cannot_be_created_is_a_config_error_with_the_flag_to_use():
    with pytest.raises(ConfigError, match=r"project dir '/proc/machop/p' is not writable \(.+\); "
                                          "choose another with --project-dir"):
        Project(Path("/proc/machop/p")).check_writable()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_a_read_only_folder_is_a_config_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(ConfigError, match="is not writable \\(Permission denied\\)"):
            Project(locked / "p").check_writable()
    finally:
        locked.chmod(0o700)
