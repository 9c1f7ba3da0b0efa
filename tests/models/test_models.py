"""Model registry: pinned parameter counts, dataset-driven shapes, user models, errors."""

from __future__ import annotations

import textwrap

import pytest
import torch
from torch import fx

from machop.data import DatasetInfo, load_dataset
from machop.errors import ModelError
from machop.models import MODELS, build_model

JSC = DatasetInfo("jsc", num_classes=5, num_features=16)
CIFAR = DatasetInfo("cifar10", num_classes=10, num_features=3072, image_size=(3, 32, 32))
TOY = DatasetInfo("toy-tiny", num_classes=2, num_features=4)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, info, expected", [
    ("jsc-tiny", JSC, 117),
    ("jsc-toy", JSC, 327),
    ("jsc-s", JSC, 5615),
    ("jsc-three-linear-layers", JSC, 661),
    ("vgg7", CIFAR, 14_029_450),
    ("toy", TOY, 130),
    ("toy-tiny", TOY, 30),
])
def test_parameter_counts(name, info, expected):
    assert count(build_model(name, info)) == expected


def test_jsc_models_take_sizes_from_the_dataset():
    digits = load_dataset("digits")
    for name in ("jsc-tiny", "jsc-toy", "jsc-s", "jsc-three-linear-layers", "toy", "toy-tiny"):
        model = build_model(name, digits.info).eval()
        assert model(digits.test.x[:7]).shape == (7, 10)
    # jsc-three-linear-layers on digits: BN(64) + 64*16+16 + 16*16+16 + 16*10+10
    assert count(build_model("jsc-three-linear-layers", digits.info)) == 128 + 1040 + 272 + 170


def test_vgg7_runs_on_small_images():
    digits = load_dataset("digits")
    model = build_model("vgg7", digits.info).eval()
    assert model(digits.test.x[:3]).shape == (3, 10)
    assert model.classifier[0].in_features == 512


def test_vgg7_needs_images():
    with pytest.raises(ModelError, match="needs an image dataset"):
        build_model("vgg7", JSC)


def test_vgg7_batchnorm_momentum_is_configurable():
    default = build_model("vgg7", CIFAR)
    mase = build_model("vgg7", CIFAR, {"bn_momentum": 0.9})
    assert default.feature_layers[1].momentum == 0.1
    assert mase.feature_layers[1].momentum == 0.9


def test_three_linear_layers_fx_names():
    traced = fx.symbolic_trace(build_model("jsc-three-linear-layers", JSC))
    linears = [n.name for n in traced.graph.nodes
               if n.op == "call_module" and isinstance(traced.get_submodule(n.target), torch.nn.Linear)]
    assert linears == ["seq_blocks_2", "seq_blocks_4", "seq_blocks_6"]


def test_unknown_model_suggests():
    with pytest.raises(ModelError, match="did you mean 'jsc-tiny'"):
        build_model("jsc-tiyn", JSC)


def test_aliases():
    assert count(build_model("jsc_tiny", JSC)) == 117


def test_bad_model_args():
    with pytest.raises(ModelError, match="takes no argument 'width'.*valid: hidden"):
        build_model("jsc-three-linear-layers", JSC, {"width": 3})
    assert count(build_model("jsc-three-linear-layers", JSC, {"hidden": 8})) == 32 + 136 + 72 + 45


USER_MODEL = textwrap.dedent("""
    from torch import nn

    class Net(nn.Module):
        def __init__(self, num_features, num_classes, hidden=4):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(num_features, hidden), nn.ReLU(),
                                      nn.Linear(hidden, num_classes))
        def forward(self, x):
            return self.body(x.flatten(1))

    def make(info):
        return Net(info.num_features, info.num_classes, hidden=2)

    def not_a_model():
        return 3

    broken = 1
""")


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "mynet.py"
    path.write_text(USER_MODEL)
    return path


def test_user_model_from_file(user_file):
    assert count(build_model(f"{user_file}:Net", JSC)) == 16 * 4 + 4 + 4 * 5 + 5
    assert count(build_model(f"{user_file}:Net", JSC, {"hidden": 3})) == 16 * 3 + 3 + 3 * 5 + 5
    assert count(build_model(f"{user_file}:make", JSC)) == 16 * 2 + 2 + 2 * 5 + 5


def test_user_model_from_package(user_file, monkeypatch):
    monkeypatch.syspath_prepend(str(user_file.parent))
    assert count(build_model("mynet:Net", TOY)) == 4 * 4 + 4 + 4 * 2 + 2


@pytest.mark.parametrize("spec, message", [
    ("{dir}/missing.py:Net", "does not exist"),
    ("{file}:Nope", "defines no 'Nope'"),
    ("{file}:not_a_model", "returned int, not a torch.nn.Module"),
    ("{file}:broken", "is not a class or function"),
    ("{dir}/raises.py:Net", "failed to import: RuntimeError: boom"),
    ("no_such_package_xyz:Net", "failed to import: ModuleNotFoundError"),
])
def test_user_model_errors(tmp_path, user_file, spec, message):
    (tmp_path / "raises.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ModelError, match=message):
        build_model(spec.format(dir=tmp_path, file=user_file), JSC)


def test_registry_is_plain_dict():
    assert isinstance(MODELS, dict) and "jsc-tiny" in MODELS


def test_jsc_three_linear_layers_without_the_final_relu():
    info = DatasetInfo("digits", 10, 64)
    with_relu = build_model("jsc-three-linear-layers", info)
    without = build_model("jsc-three-linear-layers", info, {"final_relu": False})
    assert sum(p.numel() for p in without.parameters()) == sum(p.numel() for p in with_relu.parameters())
    assert isinstance(list(without.modules())[-1], torch.nn.Linear)
    x = torch.randn(4, 64)
    assert (without.eval()(x) < 0).any() and not (with_relu.eval()(x) < 0).any()
