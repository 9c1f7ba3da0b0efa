"""Checkpoints: machop format, Lightning .ckpt, plain .pt, pickled modules, and bad files."""

from __future__ import annotations

import pytest
import torch

from machop.data import DatasetInfo
from machop.errors import CheckpointError, ModelError
from machop.models import build_model
from machop.train import load_checkpoint, read_checkpoint, save_checkpoint

JSC = DatasetInfo("jsc", num_classes=5, num_features=16, class_names=("g", "q", "w", "z", "t"))


def fresh(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("jsc-three-linear-layers", JSC)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_machop_format_round_trip(tmp_path):
    source = fresh(1)
    path = save_checkpoint(tmp_path / "m.ckpt", source, model_name="jsc-three-linear-layers",
                           dataset_info=JSC, config={"seed": 1}, epoch=3)
    checkpoint = read_checkpoint(path)
    assert checkpoint.kind == "machop" and checkpoint.model_name == "jsc-three-linear-layers"
    assert checkpoint.dataset_info == JSC and checkpoint.config == {"seed": 1}
    assert checkpoint.extra == {"epoch": 3}
    target = fresh(2)
    assert not same_weights(source, target)
    assert same_weights(source, load_checkpoint(target, path))


def test_lightning_checkpoint_prefix_is_stripped(tmp_path):
    source = fresh(1)
    path = tmp_path / "best.ckpt"
    torch.save({"epoch": 4, "pytorch-lightning_version": "2.4.0",
                "state_dict": {f"model.{k}": v for k, v in source.state_dict().items()},
                "optimizer_states": []}, path)
    for load_type in ("auto", "pl"):
        assert same_weights(source, load_checkpoint(fresh(2), path, load_type))


def test_plain_state_dict(tmp_path):
    source = fresh(1)
    path = tmp_path / "w.pt"
    torch.save(source.state_dict(), path)
    assert read_checkpoint(path).kind == "pt"
    assert same_weights(source, load_checkpoint(fresh(2), path, "pt"))


def test_pickled_module(tmp_path):
    source = fresh(1)
    path = tmp_path / "model.mz"
    torch.save(source, path)
    loaded = load_checkpoint(fresh(2), path, "mz")
    assert same_weights(source, loaded)
    assert read_checkpoint(path).kind == "mz"  # auto-detected too


def test_mismatched_checkpoint(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(build_model("jsc-tiny", JSC).state_dict(), path)
    with pytest.raises(CheckpointError, match="does not match the model: missing") as info:
        load_checkpoint(fresh(0), path)
    assert isinstance(info.value, ModelError)


def test_shape_mismatch_is_named(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(build_model("jsc-three-linear-layers", JSC, {"hidden": 8}).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"shape mismatch.*seq_blocks\.2\.weight \(8, 16\) vs \(16, 16\)"):
        load_checkpoint(fresh(0), path)


def test_a_project_base_checkpoint_of_another_run_names_the_way_out(tmp_path):
    from machop.train.checkpoint import load_base_checkpoint

    digits = DatasetInfo("digits", num_classes=10, num_features=64)
    path = save_checkpoint(tmp_path / "exp" / "checkpoints" / "best.ckpt",
                           build_model("jsc-three-linear-layers", digits),
                           model_name="jsc-three-linear-layers", dataset_info=digits)
    with pytest.raises(CheckpointError) as shapes:
        load_base_checkpoint(fresh(0), path, model_name="jsc-three-linear-layers", dataset="jsc")
    assert str(shapes.value).startswith(
        f"project folder {str(tmp_path / 'exp')!r} holds the base checkpoint of another run "
        "(jsc-three-linear-layers on digits; this run: jsc-three-linear-layers on jsc): ")
    assert "shape mismatch" in str(shapes.value) and "pass --project NAME" in str(shapes.value)
    same_shapes = save_checkpoint(tmp_path / "other" / "checkpoints" / "best.ckpt", fresh(1),
                                  model_name="jsc-three-linear-layers",
                                  dataset_info=DatasetInfo("toy", num_classes=5, num_features=16))
    with pytest.raises(CheckpointError, match="trained on 'toy', not 'jsc'; pass --project NAME"):
        load_base_checkpoint(fresh(0), same_shapes, model_name="jsc-three-linear-layers", dataset="jsc")
    own = save_checkpoint(tmp_path / "own.ckpt", fresh(1), model_name="jsc-three-linear-layers",
                          dataset_info=JSC)
    assert same_weights(fresh(1), load_base_checkpoint(fresh(0), own, model_name="jsc-three-linear-layers",
                                                        dataset="jsc"))


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04broken"])
def test_corrupt_checkpoint(tmp_path, content):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="corrupt or truncated|not a machop"):
        read_checkpoint(path)


def test_truncated_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "m.ckpt", fresh(1), model_name="x", dataset_info=JSC)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        read_checkpoint(path)


def test_wrong_load_type_and_missing_file(tmp_path):
    path = save_checkpoint(tmp_path / "m.ckpt", fresh(1), model_name="x", dataset_info=JSC)
    with pytest.raises(CheckpointError, match="not a plain state_dict"):
        read_checkpoint(path, "pt")
    with pytest.raises(CheckpointError, match="holds no pickled model"):
        read_checkpoint(path, "mz")
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(CheckpointError, match="unknown load type"):
        read_checkpoint(path, "hf")


def test_non_checkpoint_dict(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"hello": 1}, path)
    with pytest.raises(CheckpointError, match="is not a machop, Lightning"):
        read_checkpoint(path)


def test_config_naming_the_model_takes_the_checkpoints_model_args(tmp_path):
    from machop.config.schema import RunConfig
    from machop.train.checkpoint import fill_names_from_checkpoint

    torch.manual_seed(0)
    info = DatasetInfo("digits", num_classes=10, num_features=64, image_size=(1, 8, 8))
    narrow = build_model("vgg7", info, {"widths": [4, 8, 8], "hidden": 16})
    path = save_checkpoint(tmp_path / "narrow.ckpt", narrow, model_name="vgg7", dataset_info=info,
                           model_args={"widths": [4, 8, 8], "hidden": 16})
    checkpoint = read_checkpoint(path)
    named = RunConfig(model="vgg7", dataset="digits", load_name=str(path))
    filled = fill_names_from_checkpoint(named, checkpoint)
    assert filled.model_args == {"widths": [4, 8, 8], "hidden": 16}
    rebuilt = build_model(filled.model, info, filled.model_args)
    assert same_weights(narrow, load_checkpoint(rebuilt, path))
    other = named.model_copy(update={"model_args": {"widths": [8, 8, 8], "hidden": 16}})
    with pytest.raises(CheckpointError, match="trained with model_args"):
        fill_names_from_checkpoint(other, checkpoint)
    same = named.model_copy(update={"model_args": {"widths": [4, 8, 8], "hidden": 16}})
    assert fill_names_from_checkpoint(same, checkpoint).model_args == same.model_args
