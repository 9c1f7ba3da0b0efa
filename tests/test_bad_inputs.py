"""Bad input of every kind: exit status 2, one line naming the culprit, no traceback, nothing written.

One parametrised case per row of CASES. A case builds its command line from a Ctx (a scratch
folder where it may write the bad input first); the whole scratch folder, project dir included, is
snapshotted (paths, sizes, mtimes) after the inputs exist and compared after the command ran.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

import numpy as np
import optuna
import pytest
import torch
from torch import nn

from machop.config.schema import RunConfig
from machop.data import DatasetInfo
from machop.models import build_model

JSC3 = "jsc-three-linear-layers"
NO_PROJECT_DIR = ("info", "report")  # commands without --project-dir
OWN_PROJECT_DIR = ("wrong type for project_dir",)


@dataclass
class Ctx:
    """A scratch folder for one case and the project dir its command must leave untouched."""

    tmp: Path
    cli: Any

    @property
    def projects(self) -> Path:
        return self.tmp / "projects"

    def write(self, name: str, text: str | bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path


def snapshot(path: Path) -> dict[str, tuple[int, int]]:
    """Every file under `path` with its size and modification time, and every folder."""
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (-1, -1)
            for p in sorted(path.rglob("*"))}


# -------------------------------------------------------------------------------- configs

def config(c: Ctx, body: str, head: str = f'model = "{JSC3}"\ndataset = "digits"\n') -> Path:
    return c.write("c.toml", head + body)


def quantize(c: Ctx, linear: str, extra: str = "") -> Path:
    return config(c, f"""
[passes.quantize]
by = "type"
{extra}
[passes.quantize.default.config]
name = "NA"
[passes.quantize.linear.config]
{linear}
""")


INTEGER8 = 'name = "integer"\ndata_in_width = 8\nweight_width = 8\nbias_width = 8\n'


def calibrated(c: Ctx, table: str) -> Path:
    """Every Linear at 8 bits with calibrated ("auto") frac widths and the given calibration table."""
    return quantize(c, INTEGER8 + 'data_in_frac_width = "auto"\nweight_frac_width = "auto"\n'
                    f"[passes.quantize.calibration]\n{table}\n")


def redefine(c: Ctx, body: str) -> Path:
    return config(c, f"\n[passes.redefine]\n{body}\n")


SPACE = """
[search.search_space]
name = "graph/quantize/mixed_precision_ptq"
[search.search_space.setup]
by = "type"
[search.search_space.seed.default.config]
name = ["NA"]
[search.search_space.seed.linear.config]
name = ["integer"]
data_in_width = [4, 8]
weight_width = [2, 4, 8]
bias_width = [8]
"""
STRATEGY = """
[search.strategy]
name = "optuna"
[search.strategy.sw_runner.basic_evaluation]
data_loader = "val_dataloader"
num_samples = 64
[search.strategy.setup]
sampler = "random"
n_trials = 2
[search.strategy.metrics]
accuracy.scale = 1.0
accuracy.direction = "maximize"
"""


def search(c: Ctx, *, space: str = SPACE, strategy: str = STRATEGY, replace: dict[str, str] | None = None,
           extra: str = "") -> Path:
    text = space + strategy + extra
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    return config(c, text)


COMPOSITE = """
[search.search_space]
name = "composite"
[[search.search_space.spaces]]
name = "graph/redefine/channel_multiplier"
seed.seq_blocks_2.config.channel_multiplier = [1, 2]
[search.search_space.hyperparameters]
learning_rate = [1e-3, 1e-2]
"""


# ------------------------------------------------------------------- wrong types, per key

def _wrong_value(name: str) -> Any:
    annotation = RunConfig.model_fields[name].annotation
    if annotation is bool:
        return "yes"
    if annotation is int:
        return "many"
    if annotation is float:
        return "fast"
    if get_origin(annotation) is dict:
        return 3
    assert str in get_args(annotation) or annotation is str or get_origin(annotation) is not None, annotation
    return 5


def _toml_value(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


WRONG_TYPE_CASES = {
    f"wrong type for {key}": (
        (lambda c, key=key: ["train", "-c", config(c, f"{key} = {_toml_value(_wrong_value(key))}\n", head="")]),
        f"for '{key}'")
    for key in RunConfig.model_fields
}


def _flag_cases() -> dict[str, tuple[Callable[[Ctx], list[Any]], str]]:
    """A word for every numeric flag of the config commands."""
    from machop.cli.options import CONFIG_FLAGS

    return {f"wrong type for flag {flag.names[0]}": (
        (lambda c, name=flag.names[0]: ["train", "toy", "toy-tiny", name, "abc"]),
        f"Invalid value for '{flag.names[0]}'") for flag in CONFIG_FLAGS if flag.type in (int, float)}


WRONG_FLAG_CASES = _flag_cases()


# ------------------------------------------------------------------------ user models

NOT_TRACEABLE = """
from torch import nn

class Net(nn.Module):
    def __init__(self, num_features, num_classes):
        super().__init__()
        self.fc = nn.Linear(num_features, num_classes)

    def forward(self, x):
        x = x.flatten(1)
        if x.sum() > 0:
            return self.fc(x)
        return -self.fc(x)
"""


def _net(init: str, forward: str, features: str = "num_features") -> str:
    return (f"from torch import nn\n\nclass Net(nn.Module):\n    def __init__({init}):\n"
            f"        super().__init__()\n        self.fc = nn.Linear({features}, 10)\n"
            f"    def forward(self, x):\n        return {forward}\n")


def user_model(c: Ctx, source: str, name: str = "Net") -> str:
    return f"{c.write('net.py', source)}:{name}"


# ------------------------------------------------------------------------- checkpoints

def _jsc_tiny_weights(c: Ctx) -> Path:
    path = c.tmp / "jsc_tiny.pt"
    torch.save(build_model("jsc-tiny", DatasetInfo("digits", 10, 64)).state_dict(), path)
    return path


def _truncated_checkpoint(c: Ctx) -> Path:
    path = c.tmp / "whole.pt"
    torch.save(build_model(JSC3, DatasetInfo("digits", 10, 64)).state_dict(), path)
    data = path.read_bytes()
    path.unlink()
    return c.write("half.ckpt", data[: len(data) // 2])


def _machop_checkpoint(c: Ctx, **changes: Any) -> Path:
    from machop.train.checkpoint import FORMAT

    payload = {"format": FORMAT, "version": 1, "model": JSC3, "model_args": {},
               "dataset_info": {"name": "digits", "num_classes": 10, "num_features": 64, "image_size": [1, 8, 8]},
               "config": {}, "passes": [], "extra": {},
               "state_dict": build_model(JSC3, DatasetInfo("digits", 10, 64)).state_dict()}
    payload.update(changes)
    payload = {k: v for k, v in payload.items() if v is not None}
    path = c.tmp / "tampered.ckpt"
    torch.save(payload, path)
    return path


def _pickled_misfit(c: Ctx) -> Path:
    path = c.tmp / "whole.pt"
    torch.save(nn.Linear(3, 2), path)
    return path


def _list_checkpoint(c: Ctx) -> Path:
    path = c.tmp / "list.pt"
    torch.save([1, 2, 3], path)
    return path


# --------------------------------------------------------------------------- data files

JSC_FEATURES = ("zlogz", "c1_b0_mmdt", "c1_b1_mmdt", "c1_b2_mmdt", "c2_b1_mmdt", "c2_b2_mmdt",
                "d2_b1_mmdt", "d2_b2_mmdt", "d2_a1_b1_mmdt", "d2_a1_b2_mmdt", "m2_b1_mmdt",
                "m2_b2_mmdt", "n2_b1_mmdt", "n2_b2_mmdt", "mass_mmdt", "multiplicity")


def _jsc_csv(rows: int = 60) -> str:
    rng = np.random.default_rng(0)
    lines = [",".join([*JSC_FEATURES, "class"])]
    lines += [",".join([*(f"{v:.5f}" for v in rng.normal(size=16)), "gqwzt"[i % 5]]) for i in range(rows)]
    return "\n".join(lines) + "\n"


def _non_finite_csv() -> str:
    header, first, *rest = _jsc_csv().splitlines()
    return "\n".join([header, "inf" + first[first.index(","):], *rest]) + "\n"


def _jsc_file(c: Ctx, name: str, content: str | bytes) -> str:
    c.write(f"data/jsc/{name}", content)
    return str(c.tmp / "data")


def _truncated_parquet(c: Ctx) -> str:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    buffer = io.BytesIO()
    pq.write_table(pa.table({name: pa.array(np.zeros(50, np.float32)) for name in JSC_FEATURES}), buffer)
    data = buffer.getvalue()
    return _jsc_file(c, "jets.parquet", data[: len(data) // 2])


def _truncated_hdf5(c: Ctx) -> str:
    h5py = pytest.importorskip("h5py")
    path = c.tmp / "whole.h5"
    records = np.zeros(200, dtype=[(f"j_{n}", np.float32) for n in (*JSC_FEATURES, "g", "q", "w", "z", "t")])
    with h5py.File(path, "w") as handle:
        handle.create_dataset("t_allpar_new", data=records)
    data = path.read_bytes()
    path.unlink()
    return _jsc_file(c, "processed-pythia82-lhc13-all-pt1-50k-r1_h022_e0175_t220_nonu_truth.z",
                     data[: len(data) // 2])


def _cifar_batch(count: int = 10) -> bytes:
    data = np.zeros((count, 3072), dtype=np.uint8)
    return pickle.dumps({b"labels": [i % 10 for i in range(count)], b"data": data}, protocol=2)


def _cifar_batches(c: Ctx, broken: bytes | None) -> str:
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        content = _cifar_batch()
        if name == "data_batch_3" and broken is not None:
            content = broken
        c.write(f"data/cifar-10-batches-py/{name}", content)
    return str(c.tmp / "data")


def _cifar_truncated_archive(c: Ctx) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            content = _cifar_batch(200)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    data = buffer.getvalue()
    c.write("data/cifar-10-python.tar.gz", data[: len(data) // 2])
    return str(c.tmp / "data")


# ------------------------------------------------------------------------ the catalogue

def _train(*args: Any) -> Callable[[Ctx], list[Any]]:
    return lambda c: ["train", *args]


def _existing_study(c: Ctx) -> list[Any]:
    path = search(c)
    first = c.cli("search", "-c", path, "--project-dir", c.projects, "--project", "s")
    assert first.code == 0, first.stderr
    changed = search(c, replace={"weight_width = [2, 4, 8]": "weight_width = [2, 8]"})
    return ["search", "-c", changed, "--project", "s"]


def _searched(c: Ctx) -> Path:
    first = c.cli("search", "-c", search(c), "--project-dir", c.projects, "--project", "s")
    assert first.code == 0, first.stderr
    return c.projects / "s"


def _report_unknown_study(c: Ctx) -> list[Any]:
    return ["report", _searched(c), "--study-name", "nope"]


CASES: dict[str, tuple[Callable[[Ctx], list[Any]], str]] = {
    # --- command line
    "no model given": (_train(), "no model or dataset given"),
    "unknown option": (_train("toy", "toy-tiny", "--bach-size", "3"), "--bach-size"),
    "wrong flag type": (_train("toy", "toy-tiny", "--batch-size", "abc"), "Invalid value for '--batch-size'"),
    "invalid choice flag": (_train("toy", "toy-tiny", "--optimizer", "rmsprop"), "'training_optimizer'"),
    "zero batch size flag": (_train("toy", "toy-tiny", "--batch-size", "0"), "'batch_size'"),
    "negative learning rate flag": (_train("toy", "toy-tiny", "--lr", "-1"), "'learning_rate'"),
    "negative seed": (_train("toy", "toy-tiny", "--seed", "-5"), "'seed'"),
    "seed too large": (_train("toy", "toy-tiny", "--seed", str(2**70)), "'seed'"),
    "strategy seed too large": (lambda c: ["search", "-c", search(c, replace={"n_trials = 2":
                                                                              "n_trials = 2\nseed = 18446744073709551616"})],
                                "setup.seed"),
    "unsupported task": (_train("toy", "toy-tiny", "--task", "lm"), "'task'"),
    "zero devices": (_train("toy", "toy-tiny", "--devices", "0"), "'num_devices'"),
    "unknown info topic": (lambda c: ["info", "widgets"], "unknown info topic 'widgets'"),
    # --- config files
    "missing config file": (lambda c: ["train", "-c", c.tmp / "missing.toml"], "does not exist"),
    "config path is a folder": (lambda c: ["train", "-c", c.tmp], "is not a file"),
    "malformed toml": (lambda c: ["train", "-c", c.write("c.toml", "model = [\n")], "is not valid TOML"),
    "toml duplicate key": (lambda c: ["train", "-c", c.write("c.toml", "seed = 1\nseed = 2\n")],
                           "is not valid TOML"),
    "toml not utf-8": (lambda c: ["train", "-c", c.write("c.toml", b"model = \"\xff\xfe\"\n")], "c.toml"),
    "unknown config key": (lambda c: ["train", "-c", c.write("c.toml", 'model = "toy"\nlearning_rat = 0.1\n')],
                           "unknown config key 'learning_rat'"),
    "wrong value type": (lambda c: ["train", "-c", c.write("c.toml", 'batch_size = "many"\n')],
                         "invalid value 'many' for 'batch_size'"),
    "bad model_args": (lambda c: ["train", "-c", config(c, "[model_args]\nwidth = 3\n", 'model = "jsc-tiny"\n'
                                                        'dataset = "digits"\n')], "takes no argument 'width'"),
    **WRONG_TYPE_CASES,
    **WRONG_FLAG_CASES,
    # --- registry names
    "unknown model": (_train("jsc-tinny", "digits"), "unknown model 'jsc-tinny'; did you mean 'jsc-tiny'"),
    "unknown dataset": (_train("jsc-tiny", "mnist"), "unknown dataset 'mnist'"),
    "model needs images": (_train("vgg7", "toy-tiny"), "needs an image dataset"),
    "unknown pass": (lambda c: ["transform", "-c", config(c, "[passes.quantise]\nby = \"type\"\n")],
                     "unknown pass 'quantise'"),
    "unknown arithmetic": (lambda c: ["transform", "-c", quantize(c, 'name = "intger"\ndata_in_width = 8\n')],
                           "unknown arithmetic 'intger'"),
    "unknown analyze metric": (lambda c: ["analyze", JSC3, "digits", "--metrics", "acuracy"], "acuracy"),
    "unknown space": (lambda c: ["search", "-c", search(c, replace={
        "graph/quantize/mixed_precision_ptq": "graph/quantise/mixed"})], "graph/quantise/mixed"),
    "unknown sampler": (lambda c: ["search", "-c", search(c, replace={'"random"': '"tpee"'})],
                        "unknown sampler 'tpee'"),
    "unknown sampler flag": (lambda c: ["search", "-c", search(c), "--sampler", "annealing"], "'annealing'"),
    "unknown sw runner": (lambda c: ["search", "-c", search(c, replace={
        "sw_runner.basic_evaluation]": "sw_runner.basic_evaluate]"})], "unknown runner 'basic_evaluate'"),
    "unknown hw runner": (lambda c: ["search", "-c", search(c, extra="[search.strategy.hw_runner.bitopz]\n")],
                          "unknown runner 'bitopz'"),
    "unknown metric": (lambda c: ["search", "-c", search(c, replace={"accuracy.scale": "acuracy.scale"})],
                       "unknown metric 'acuracy'"),
    "unknown constraint metric": (lambda c: ["search", "-c", search(
        c, extra='[search.strategy.constraints]\nbitopz = "<= 5"\n')], "unknown metric 'bitopz'"),
    "unknown compare sampler": (lambda c: ["compare-samplers", "-c", search(c), "--samplers", "tpe,foo"], "'foo'"),
    # --- unknown keys at every level of [passes]
    "passes.quantize unknown key": (lambda c: ["transform", "-c", quantize(c, INTEGER8, "bye = 1")],
                                    "passes.quantize.bye"),
    "passes.quantize node unknown key": (lambda c: ["transform", "-c", quantize(
        c, INTEGER8, "[passes.quantize.linear.confg]\nname = \"integer\"")], "confg"),
    "passes.quantize config unknown key": (lambda c: ["transform", "-c", quantize(
        c, INTEGER8 + "data_in_widht = 4\n")], "'data_in_widht'"),
    "passes.quantize unknown node": (lambda c: ["transform", "-c", config(c, """
[passes.quantize]
by = "name"
[passes.quantize.default.config]
name = "NA"
[passes.quantize.seq_blocks_9.config]
name = "integer"
data_in_width = 8
""")], "seq_blocks_9"),
    "passes.redefine unknown key": (lambda c: ["transform", "-c", redefine(
        c, 'by = "name"\nbye = 1\n[passes.redefine.seq_blocks_2.config]\nchannel_multiplier = 2')],
        "passes.redefine.bye"),
    "passes.redefine config unknown key": (lambda c: ["transform", "-c", redefine(
        c, 'by = "name"\n[passes.redefine.seq_blocks_2.config]\nchannel_multiplir = 2')], "'channel_multiplir'"),
    "passes.redefine node unknown key": (lambda c: ["transform", "-c", redefine(
        c, 'by = "name"\n[passes.redefine.seq_blocks_2]\nconfg = {channel_multiplier = 2}')], "confg"),
    "passes.redefine unknown node": (lambda c: ["transform", "-c", redefine(
        c, 'by = "name"\n[passes.redefine.seq_blocks_9.config]\nchannel_multiplier = 2')], "seq_blocks_9"),
    # --- widths and sizes
    "negative width": (lambda c: ["transform", "-c", quantize(c, INTEGER8.replace("data_in_width = 8",
                                                                                  "data_in_width = -4"))],
                       "data_in_width"),
    "zero width": (lambda c: ["transform", "-c", quantize(c, INTEGER8.replace("weight_width = 8",
                                                                              "weight_width = 0"))],
                   "weight_width"),
    "frac beyond its range": (lambda c: ["transform", "-c", quantize(c, INTEGER8 + "weight_frac_width = 41\n")],
                              "weight_frac_width"),
    # --- calibration of frac_width = "auto"
    "calibration unknown method": (lambda c: ["transform", "-c", calibrated(c, 'method = "entropy"')],
                                   "passes.quantize.calibration.method = 'entropy' is invalid"),
    "calibration percentile zero": (lambda c: ["transform", "-c", calibrated(
        c, 'method = "percentile"\npercentile = 0')], "percentile must be a number in (0, 100]"),
    "calibration percentile above 100": (lambda c: ["transform", "-c", calibrated(c, "percentile = 100.5")],
                                         "percentile must be a number in (0, 100]"),
    "calibration num_samples zero": (lambda c: ["transform", "-c", calibrated(c, "num_samples = 0")],
                                     "num_samples must be a positive integer, got 0"),
    "calibration num_samples above the split": (lambda c: ["transform", "-c", calibrated(c, "num_samples = 5000")],
                                                "num_samples = 5000 is larger than the train split"),
    "calibration per-channel activations": (lambda c: ["transform", "-c", calibrated(
        c, 'activation_granularity = "channel"')], "activations (data_in, data_out) are calibrated per tensor"),
    "per-channel frac widths for an activation": (lambda c: ["transform", "-c", quantize(
        c, INTEGER8 + "data_in_frac_width = [4, 4]\n")], "only weight and bias have"),
    "auto frac width for minifloat": (lambda c: ["transform", "-c", quantize(
        c, 'name = "minifloat_ieee"\nweight_width = 8\nweight_exponent_width = 4\nweight_frac_width = "auto"\n')],
        "the minifloat_ieee arithmetic does not have"),
    "auto frac width for binary": (lambda c: ["transform", "-c", quantize(
        c, 'name = "binary"\nweight_frac_width = "auto"\n')], "the binary arithmetic does not have"),
    "search calibration unknown method": (lambda c: ["search", "-c", search(c, replace={
        "bias_width = [8]": 'bias_width = [8]\nweight_frac_width = ["auto"]\n'
                            '[search.search_space.calibration]\nmethod = "kl"'})],
        "search.search_space.calibration.method = 'kl' is invalid"),
    "search calibration num_samples above the split": (lambda c: ["search", "-c", search(c, replace={
        "bias_width = [8]": 'bias_width = [8]\nweight_frac_width = ["auto"]\n'
                            '[search.search_space.calibration]\nnum_samples = 99999'})],
        "num_samples = 99999 is larger than the train split"),
    "exponent width not below width": (lambda c: ["transform", "-c", quantize(
        c, 'name = "minifloat_ieee"\nweight_width = 4\nweight_exponent_width = 4\n')], "weight_exponent_width"),
    "zero block size": (lambda c: ["transform", "-c", quantize(
        c, 'name = "block_fp"\nweight_width = 8\nweight_exponent_width = 4\nweight_block_size = 0\n')],
        "weight_block_size"),
    "block size list with zero": (lambda c: ["transform", "-c", quantize(
        c, 'name = "block_fp"\nweight_width = 8\nweight_exponent_width = 4\nweight_block_size = [1, 0]\n')],
        "weight_block_size"),
    "zero channel multiplier": (lambda c: ["transform", "-c", redefine(
        c, 'by = "name"\n[passes.redefine.seq_blocks_2.config]\nchannel_multiplier = 0')], "channel_multiplier"),
    "negative out_features": (lambda c: ["transform", "-c", redefine(
        c, 'by = "name"\n[passes.redefine.seq_blocks_2.config]\nout_features = -3')], "out_features"),
    "redefine widths that do not line up": (lambda c: ["transform", "-c", redefine(c, """by = "name"
[passes.redefine.seq_blocks_2.config]
name = "output_only"
channel_multiplier = 2
[passes.redefine.seq_blocks_4.config]
name = "input_only"
channel_multiplier = 4
""")], "seq_blocks_4"),
    "redefine output layer": (lambda c: ["transform", "-c", redefine(
        c, 'by = "name"\n[passes.redefine.seq_blocks_6.config]\nchannel_multiplier = 2')], "seq_blocks_6"),
    "search redefine zero multiplier": (lambda c: ["search", "-c", search(c, space="""
[search.search_space]
name = "graph/redefine/channel_multiplier"
[search.search_space.seed.seq_blocks_2.config]
channel_multiplier = [0, 2]
""")], "channel_multiplier"),
    "search seed width zero": (lambda c: ["search", "-c", search(c, replace={
        "weight_width = [2, 4, 8]": "weight_width = [0, 4]"})], "weight_width"),
    "model_args negative width": (lambda c: ["train", "-c", config(c, "[model_args]\nhidden = -3\n")], "hidden"),
    "model_args zero width": (lambda c: ["train", "-c", config(c, "[model_args]\nhidden = 0\n")], "hidden"),
    "user model constructor raises": (lambda c: ["train", user_model(
        c, "def Net(num_classes):\n    raise ValueError('no such size')\n"), "digits"], "no such size"),
    "redefine huge multiplier": (lambda c: ["transform", "-c", redefine(
        c, 'by = "name"\n[passes.redefine.seq_blocks_2.config]\nchannel_multiplier = 1e12')], "largest width"),
    "redefine huge out_features": (lambda c: ["transform", "-c", redefine(
        c, 'by = "name"\n[passes.redefine.seq_blocks_2.config]\nout_features = 100000000000')], "out_features"),
    "quantize invalid regex": (lambda c: ["transform", "-c", config(c, """
[passes.quantize]
by = "regex_name"
[passes.quantize.default.config]
name = "NA"
[passes.quantize."seq_blocks_(".config]
name = "integer"
data_in_width = 8
""")], "seq_blocks_("),
    "quantize width not an integer": (lambda c: ["transform", "-c", quantize(
        c, INTEGER8.replace("data_in_width = 8", "data_in_width = 1.5"))], "data_in_width"),
    "quantize width too large": (lambda c: ["transform", "-c", quantize(
        c, INTEGER8.replace("data_in_width = 8", "data_in_width = 100000"))], "data_in_width"),
    "quantize without default": (lambda c: ["transform", "-c", config(
        c, '[passes.quantize]\nby = "type"\n[passes.quantize.linear.config]\nname = "integer"\n')], "'default'"),
    "quantize pass not a table": (lambda c: ["transform", "-c", config(c, "[passes]\nquantize = 3\n")],
                                  "passes.quantize"),
    "quantize by unknown": (lambda c: ["transform", "-c", config(
        c, '[passes.quantize]\nby = "typ"\n[passes.quantize.default.config]\nname = "NA"\n')], "by = 'typ'"),
    "infinite learning rate": (_train("toy", "toy-tiny", "--lr", "inf"), "'learning_rate'"),
    "nan weight decay": (lambda c: ["train", "-c", config(c, "weight_decay = nan\n")], "'weight_decay'"),
    "project name with a path": (_train("toy", "toy-tiny", "--project", "../../escape"), "'project'"),
    "sw_runner not a table": (lambda c: ["search", "-c", search(c, replace={
        '[search.strategy.sw_runner.basic_evaluation]\ndata_loader = "val_dataloader"\nnum_samples = 64':
            "[search.strategy.sw_runner]\nbasic_evaluation = 3"})], "sw_runner.basic_evaluation"),
    "hw_runner not a table": (lambda c: ["search", "-c", search(
        c, extra='[search.strategy.hw_runner]\nbitops = "x"\n')], "hw_runner.bitops"),
    "sum_scaled_metrics not a boolean": (lambda c: ["search", "-c", search(
        c, replace={"n_trials = 2": 'n_trials = 2\nsum_scaled_metrics = "no"'})], "sum_scaled_metrics"),
    "nan timeout": (lambda c: ["search", "-c", search(c), "--timeout", "nan"], "timeout"),
    "train_base not a boolean": (lambda c: ["search", "-c", config(
        c, '[search]\ntrain_base = "yes"\n' + SPACE + STRATEGY,
        head=f'model = "{JSC3}"\ndataset = "digits"\nmax_epochs = 1\n')], "train_base"),
    "corrupt journal storage": (lambda c: ["search", "-c", search(c), "--storage",
                                           f"journal:{c.write('bad.journal', '{not json')}"], "bad.journal"),
    "journal storage with a corrupt middle line": (lambda c: ["search", "-c", search(c), "--storage", c.write(
        "mid.journal", '{"op_code":0,"worker_id":"w","study_name":"s","directions":[1]}\ngarbage\n{"op_code":0}\n')],
        "corrupt at line 2"),
    "journal storage of JSON lines without op_code": (lambda c: ["search", "-c", search(c), "--storage",
                                                                 c.write("other.journal", '{"a": 1}\n')],
                                                      "other.journal"),
    "journal storage with records of the wrong shape": (lambda c: ["search", "-c", search(c), "--storage",
                                                                   c.write("shape.journal", '{"op_code":0}\n')],
                                                        "shape.journal"),
    "search_space name not a string": (lambda c: ["search", "-c", search(c, replace={
        'name = "graph/quantize/mixed_precision_ptq"': "name = 3"})], "search space 3"),
    "space by not a string": (lambda c: ["search", "-c", search(c, replace={'by = "type"': "by = 3"})], "by = 3"),
    # --- seeds and search tables
    "empty seed choices": (lambda c: ["search", "-c", search(c, replace={"data_in_width = [4, 8]":
                                                                         "data_in_width = []"})],
                           "non-empty list"),
    "non-list seed choices": (lambda c: ["search", "-c", search(c, replace={"data_in_width = [4, 8]":
                                                                            "data_in_width = 8"})],
                              "data_in_width"),
    "repeated seed choice": (lambda c: ["search", "-c", search(c, replace={"data_in_width = [4, 8]":
                                                                           "data_in_width = [4, 4]"})],
                             "twice"),
    "search unknown key": (lambda c: ["search", "-c", search(c, extra="[search.stratgy]\nx = 1\n")], "'stratgy'"),
    "search_space unknown key": (lambda c: ["search", "-c", search(c, replace={
        'name = "graph/quantize/mixed_precision_ptq"':
            'name = "graph/quantize/mixed_precision_ptq"\nsetp = 1'})], "'setp'"),
    "search_space.setup unknown key": (lambda c: ["search", "-c", search(c, replace={
        'by = "type"': 'by = "type"\nshare_by_tipe = true'})], "'share_by_tipe'"),
    "search seed unknown key": (lambda c: ["search", "-c", search(c, replace={
        "[search.search_space.seed.default.config]": "[search.search_space.seed.default.confg]"})], "'confg'"),
    "search seed unknown field": (lambda c: ["search", "-c", search(c, replace={
        "bias_width = [8]": "bias_widht = [8]"})], "bias_widht"),
    "search seed unknown node": (lambda c: ["search", "-c", search(
        c, space=SPACE + "[search.search_space.seed.seq_blocks_9.config]\nname = [\"integer\"]\n")],
        "seq_blocks_9"),
    "composite spaces entry unknown key": (lambda c: ["search", "-c", search(c, space=COMPOSITE.replace(
        'name = "graph/redefine/channel_multiplier"', 'name = "graph/redefine/channel_multiplier"\nsetp = 1'))],
        "'setp'"),
    "composite unknown hyperparameter": (lambda c: ["search", "-c", search(c, space=COMPOSITE.replace(
        "learning_rate = [", "learning_rat = ["))], "learning_rat"),
    "composite negative learning rate": (lambda c: ["search", "-c", search(c, space=COMPOSITE.replace(
        "learning_rate = [1e-3, 1e-2]", "learning_rate = [-1e-3, 1e-2]"))], "learning_rate"),
    "composite zero batch size": (lambda c: ["search", "-c", search(c, space=COMPOSITE.replace(
        "learning_rate = [1e-3, 1e-2]", "batch_size = [0, 32]"))], "batch_size"),
    "channel space setup unknown key": (lambda c: ["search", "-c", search(c, space="""
[search.search_space]
name = "graph/redefine/channel_multiplier"
setup = { by = "name", uniformm = true }
seed.seq_blocks_2.config.channel_multiplier = [1, 2]
""")], "uniformm"),
    "strategy unknown key": (lambda c: ["search", "-c", search(c, replace={'name = "optuna"':
                                                                           'name = "optuna"\nmode = 1'})],
                             "'mode'"),
    "strategy.setup unknown key": (lambda c: ["search", "-c", search(c, replace={"n_trials = 2":
                                                                                 "n_trial = 2"})],
                                   "'n_trial'"),
    "strategy metric unknown key": (lambda c: ["search", "-c", search(
        c, replace={"accuracy.direction": "accuracy.dirction"})], "'dirction'"),
    "runner unknown option": (lambda c: ["search", "-c", search(c, replace={"num_samples = 64":
                                                                            "num_sample = 64"})],
                              "'num_sample'"),
    "hw runner unknown option": (lambda c: ["search", "-c", search(
        c, extra="[search.strategy.hw_runner.bitops]\nfoo = 1\n")], "'foo'"),
    "basic_train learning rate not a number": (lambda c: ["search", "-c", search(c, replace={
        "[search.strategy.sw_runner.basic_evaluation]": "[search.strategy.sw_runner.basic_train]",
        'data_loader = "val_dataloader"': 'learning_rate = "fast"'})], "learning_rate"),
    "basic_train zero epochs": (lambda c: ["search", "-c", search(c, replace={
        "[search.strategy.sw_runner.basic_evaluation]": "[search.strategy.sw_runner.basic_train]",
        'data_loader = "val_dataloader"': "max_epochs = 0"})], "max_epochs"),
    "basic_train unknown scheduler": (lambda c: ["search", "-c", search(c, replace={
        "[search.strategy.sw_runner.basic_evaluation]": "[search.strategy.sw_runner.basic_train]",
        'data_loader = "val_dataloader"': 'lr_scheduler = "step"'})], "basic_train.lr_scheduler"),
    "basic_train negative eta_min": (lambda c: ["search", "-c", search(c, replace={
        "[search.strategy.sw_runner.basic_evaluation]": "[search.strategy.sw_runner.basic_train]",
        'data_loader = "val_dataloader"': "eta_min = -1.0"})], "basic_train.eta_min"),
    "zero trials": (lambda c: ["search", "-c", search(c, replace={"n_trials = 2": "n_trials = 0"})],
                    "n_trials"),
    "unknown direction": (lambda c: ["search", "-c", search(c, replace={'"maximize"': '"maximise"'})],
                          "maximise"),
    "malformed constraint": (lambda c: ["search", "-c", search(
        c, extra='[search.strategy.constraints]\naccuracy = "about 0.9"\n')], "about 0.9"),
    "accuracy drop bound not a number": (lambda c: ["search", "-c", search(
        c, extra='[search.strategy.constraints]\naccuracy_drop = "<= lots"\n')],
        "constraints.accuracy_drop: must be a comparison with a number"),
    "accuracy drop bound two decimal points": (lambda c: ["search", "-c", search(
        c, extra='[search.strategy.constraints]\naccuracy_drop = "<= 1.2.3%"\n')], "'<= 1.2.3%'"),
    "accuracy drop bounded from below": (lambda c: ["search", "-c", search(
        c, extra='[search.strategy.constraints]\naccuracy_drop = ">= 1%"\n')], "bounded from above"),
    "percentage on a plain metric": (lambda c: ["search", "-c", search(
        c, extra='[search.strategy.constraints]\naccuracy = ">= 90%"\n')], "a percentage bounds a drop"),
    "unknown drop constraint": (lambda c: ["search", "-c", search(
        c, extra='[search.strategy.constraints]\nacuracy_drop = "<= 1%"\n')],
        "unknown metric 'acuracy_drop'; did you mean 'accuracy_drop'?"),
    "drop of a minimized metric": (lambda c: ["search", "-c", search(
        c, extra='[search.strategy.constraints]\nloss_drop = "<= 0.1"\n')], "'loss' is minimized"),
    "constraint on a metric no runner produces": (lambda c: ["search", "-c", search(
        c, extra='[search.strategy.constraints]\nbitops = "<= 1e5"\n')],
        "'bitops' is produced by no configured runner"),
    "drop constraint on a metric no runner produces": (lambda c: ["search", "-c", search(
        c, extra='[search.strategy.constraints]\nthroughput_drop = "<= 10%"\n')],
        "'throughput' is produced by no configured runner"),
    "greedy without a cost objective": (lambda c: ["search", "-c", search(c, replace={'"random"': '"greedy"'})],
                                        "sampler 'greedy' lowers a cost that an objective minimizes"),
    "greedy over choices without numbers": (lambda c: ["search", "-c", search(c, replace={
        '"random"': '"greedy"', "accuracy.scale = 1.0\naccuracy.direction": "bitops.scale = 1.0\nbitops.direction",
        '"maximize"': '"minimize"', "bias_width = [8]": 'bias_width = [8]\nweight_frac_width = ["NA", 1]'},
        extra='[search.strategy.hw_runner.bitops]\n[search.strategy.constraints]\naccuracy_drop = "<= 1%"\n')],
        "parameter 'seq_blocks_2/weight_frac_width' has \"NA\""),
    "sensitivity widths not integers": (lambda c: ["analyze", JSC3, "digits", "--sensitivity", "--widths", "4,x"],
                                        "--widths must be comma-separated integers"),
    "sensitivity width zero": (lambda c: ["analyze", JSC3, "digits", "--sensitivity", "--widths", "0,4"],
                               "integer in 1..32, got 0"),
    "widths without sensitivity": (lambda c: ["analyze", JSC3, "digits", "--widths", "4"],
                                   "apply to --sensitivity only"),
    "sensitivity of a minimized metric": (lambda c: ["analyze", JSC3, "digits", "--sensitivity", "--metrics",
                                                     "loss"], "drop of a metric to maximize; got 'loss'"),
    "sensitivity with two metrics": (lambda c: ["analyze", JSC3, "digits", "--sensitivity", "--metrics",
                                                "accuracy,f1"], "measures one metric, got 2"),
    "sensitivity unknown frac rule": (lambda c: ["analyze", JSC3, "digits", "--sensitivity", "--frac-width",
                                                 "half"], "frac width rule 'half'"),
    "sensitivity bad calibration table": (lambda c: ["analyze", "-c", config(
        c, '[passes.quantize.calibration]\nmethod = "mxa"\n'), "--sensitivity"], "method = 'mxa'"),
    "metric no runner produces": (lambda c: ["search", "-c", search(c, replace={
        "accuracy.scale": "latency.scale", "accuracy.direction": "latency.direction"})],
        "'latency' is produced by no configured runner"),
    "cmaes on categorical space": (lambda c: ["search", "-c", search(c, replace={'"random"': '"cmaes"'})],
                                   "needs numeric parameters"),
    "search without search section": (lambda c: ["search", "-c", config(c, "")], "[search.search_space]"),
    "strategy is not a table": (lambda c: ["search", "-c", search(c, strategy="[search]\nstrategy = 3\n")],
                                "search.strategy"),
    "strategy.setup not a table": (lambda c: ["search", "-c", search(c, strategy=STRATEGY.replace(
        '[search.strategy.setup]\nsampler = "random"\nn_trials = 2\n', "").replace(
        'name = "optuna"', 'name = "optuna"\nsetup = 3'))], "setup"),
    "strategy.metrics not a table": (lambda c: ["search", "-c", search(c, strategy=STRATEGY.split(
        "[search.strategy.metrics]")[0].replace('name = "optuna"', 'name = "optuna"\nmetrics = 3'))], "metrics"),
    "strategy.constraints not a table": (lambda c: ["search", "-c", search(
        c, replace={'name = "optuna"': 'name = "optuna"\nconstraints = 3'})], "constraints"),
    "search_space not a table": (lambda c: ["search", "-c", search(c, space="[search]\nsearch_space = 3\n")],
                                 "search_space"),
    "search seed not a table": (lambda c: ["search", "-c", search(c, space="""
[search.search_space]
name = "graph/quantize/mixed_precision_ptq"
seed = 3
""")], "seed"),
    "compare zero repeats": (lambda c: ["compare-samplers", "-c", search(c), "--repeats", "0"], "repeats"),
    "transform without passes": (lambda c: ["transform", JSC3, "digits"], "[passes.<name>]"),
    # --- user models
    "user model missing": (lambda c: ["train", f"{c.tmp}/net.py:Net", "digits"], "does not exist"),
    "user model does not import": (lambda c: ["train", user_model(c, "def broken(:\n"), "digits"],
                                   "failed to import"),
    "user model import raises": (lambda c: ["train", user_model(c, "raise RuntimeError('boom')\n"), "digits"],
                                 "boom"),
    "user model names nothing": (lambda c: ["train", user_model(c, "x = 1\n", "Net"), "digits"],
                                 "defines no 'Net'"),
    "user model not a module": (lambda c: ["train", user_model(c, "def Net():\n    return 42\n"), "digits"],
                                "not a torch.nn.Module"),
    "user model not callable": (lambda c: ["train", user_model(c, "Net = 3\n"), "digits"],
                                "is not a class or function"),
    "user model of the wrong input width": (lambda c: ["train", user_model(
        c, _net("self", "self.fc(x.flatten(1))", "3")), "digits"], "does not run on dataset 'digits'"),
    "user model of the wrong output width": (lambda c: ["analyze", user_model(
        c, _net("self, num_features", "self.fc(x.flatten(1))[:, :3]")), "digits"], "returns shape (2, 3)"),
    "user model returning a tuple": (lambda c: ["train", user_model(
        c, _net("self, num_features", "(self.fc(x.flatten(1)), x)")), "digits"], "returns tuple"),
    "user model without parameters": (lambda c: ["train", user_model(
        c, "from torch import nn\n\nclass Net(nn.Module):\n    def forward(self, x):\n"
           "        return x.flatten(1)[:, :10]\n"), "digits"], "parameters"),
    "user model module missing": (lambda c: ["train", "no_such_pkg.models:Net", "digits"], "no_such_pkg"),
    "user model not traceable (analyze)": (lambda c: ["analyze", user_model(c, NOT_TRACEABLE), "digits",
                                                      "--metrics", "params"], "torch.fx cannot trace"),
    "user model not traceable (search)": (lambda c: ["search", "-c", search(c), user_model(c, NOT_TRACEABLE)],
                                          "torch.fx cannot trace"),
    "user model not traceable (transform)": (lambda c: ["transform", "-c", quantize(c, INTEGER8),
                                                        "--project", "p", user_model(c, NOT_TRACEABLE)],
                                             "torch.fx cannot trace"),
    # --- checkpoints
    "missing checkpoint": (lambda c: ["test", "toy", "toy-tiny", "--load", c.tmp / "none.ckpt"], "does not exist"),
    "test without load": (lambda c: ["test", "toy", "toy-tiny"], "test needs a checkpoint"),
    "corrupt checkpoint": (lambda c: ["test", "toy", "toy-tiny", "--load", c.write("x.ckpt", "garbage")],
                           "corrupt or truncated"),
    "truncated checkpoint": (lambda c: ["test", JSC3, "digits", "--load", _truncated_checkpoint(c)], "half.ckpt"),
    "mismatched checkpoint": (lambda c: ["test", JSC3, "digits", "--load", _jsc_tiny_weights(c)],
                              "does not match the model"),
    "mismatched checkpoint (transform)": (lambda c: ["transform", "-c", quantize(c, INTEGER8), "--load",
                                                     _jsc_tiny_weights(c)], "does not match the model"),
    "mismatched checkpoint (search)": (lambda c: ["search", "-c", search(c), "--load", _jsc_tiny_weights(c)],
                                       "does not match the model"),
    "checkpoint holds no weights": (lambda c: ["test", JSC3, "digits", "--load", _list_checkpoint(c)], "list.pt"),
    "checkpoint of the wrong type": (lambda c: ["test", JSC3, "digits", "--load", _jsc_tiny_weights(c),
                                                "--load-type", "machop"], "jsc_tiny.pt"),
    "machop checkpoint without weights": (lambda c: ["test", "--load", _machop_checkpoint(c, state_dict=None)],
                                          "tampered.ckpt"),
    "machop checkpoint with non-tensor weights": (lambda c: ["test", "--load", _machop_checkpoint(
        c, state_dict=3)], "tampered.ckpt"),
    "machop checkpoint with malformed passes": (lambda c: ["test", "--load", _machop_checkpoint(
        c, passes=[["quantize"]])], "tampered.ckpt"),
    "machop checkpoint with malformed dataset info": (lambda c: ["test", "--load", _machop_checkpoint(
        c, dataset_info={"name": "digits"})], "tampered.ckpt"),
    "machop checkpoint with a non-string model": (lambda c: ["test", "--load", _machop_checkpoint(c, model=3)],
                                                  "'model' field"),
    "machop checkpoint with list model_args": (lambda c: ["test", "--load", _machop_checkpoint(
        c, model_args=[1, 2])], "'model_args' field"),
    "machop checkpoint with dataset info not a table": (lambda c: ["test", "--load", _machop_checkpoint(
        c, dataset_info="digits")], "'dataset_info' field"),
    "machop checkpoint with passes not a list": (lambda c: ["test", "--load", _machop_checkpoint(
        c, passes="quantize")], "'passes' field"),
    "machop checkpoint from a newer format": (lambda c: ["test", "--load", _machop_checkpoint(c, version=99)],
                                              "'version' field"),
    "machop checkpoint with unknown pass": (lambda c: ["test", "--load", _machop_checkpoint(
        c, passes=[["quantise", {}]])], "unknown pass 'quantise'"),
    "machop checkpoint of an unknown model": (lambda c: ["test", "--load", _machop_checkpoint(c, model="nope")],
                                              "unknown model 'nope'"),
    "pickled model that does not fit the dataset": (lambda c: ["test", JSC3, "digits", "--load", _pickled_misfit(c),
                                                               "--load-type", "mz"], "whole.pt"),
    # --- data files
    "missing data file": (lambda c: ["train", "jsc-tiny", "jsc", "--data-dir", c.tmp / "nodata"], "nodata"),
    "corrupt jsc arff": (lambda c: _train("jsc-tiny", "jsc", "--data-dir", _jsc_file(
        c, "jets.arff", "@relation x\n@attribute a numeric\n@data\n1,2,3,oops\n"))(c), "jets.arff"),
    "truncated jsc csv": (lambda c: _train("jsc-tiny", "jsc", "--data-dir", _jsc_file(
        c, "jets.csv", _jsc_csv()[:-200]))(c), "jets.csv"),
    "corrupt jsc csv": (lambda c: _train("jsc-tiny", "jsc", "--data-dir", _jsc_file(
        c, "jets.csv", b"\x00\xff\xfe garbage\n" * 20))(c), "jets.csv"),
    "non-finite jsc feature": (lambda c: _train("jsc-tiny", "jsc", "--data-dir", _jsc_file(
        c, "jets.csv", _non_finite_csv()))(c),
        "non-finite"),
    "truncated jsc parquet": (lambda c: _train("jsc-tiny", "jsc", "--data-dir", _truncated_parquet(c))(c),
                              "jets.parquet"),
    "corrupt jsc hdf5": (lambda c: _train("jsc-tiny", "jsc", "--data-dir", _jsc_file(
        c, "jets.z", b"\x89HDF\r\n\x1a\n" + b"\x00" * 300))(c), "jets.z"),
    "truncated jsc hdf5": (lambda c: _train("jsc-tiny", "jsc", "--data-dir", _truncated_hdf5(c))(c), ".z"),
    "truncated cifar batch": (lambda c: _train("jsc-tiny", "cifar10", "--data-dir", _cifar_batches(
        c, _cifar_batch()[:500]))(c), "data_batch_3"),
    "corrupt cifar batch": (lambda c: _train("jsc-tiny", "cifar10", "--data-dir", _cifar_batches(
        c, b"not a pickle at all"))(c), "data_batch_3"),
    "cifar batch of the wrong shape": (lambda c: _train("jsc-tiny", "cifar10", "--data-dir", _cifar_batches(
        c, pickle.dumps({b"labels": [1], b"data": np.zeros((1, 7), np.uint8)})))(c), "data_batch_3"),
    "truncated cifar archive": (lambda c: _train("jsc-tiny", "cifar10", "--data-dir",
                                                 _cifar_truncated_archive(c))(c), "cifar-10-python.tar.gz"),
    # --- project dir and storage
    "unwritable project dir": (lambda c: ["train", "toy", "toy-tiny", "--max-epochs", "1",
                                          "--project-dir", "/proc/machop"], "is not writable"),
    "project dir is a file": (lambda c: ["train", "toy", "toy-tiny", "--max-epochs", "1",
                                         "--project-dir", c.write("blocker", "x")], "is not a directory"),
    "unwritable project dir (search)": (lambda c: ["search", "-c", search(c), "--project-dir", "/proc/machop"],
                                        "is not writable"),
    "unwritable project dir (analyze)": (lambda c: ["analyze", JSC3, "digits", "--metrics", "params",
                                                    "--project-dir", "/proc/machop"], "is not writable"),
    "unwritable project dir (transform)": (lambda c: ["transform", "-c", quantize(c, INTEGER8), "--project-dir",
                                                      "/proc/machop"], "is not writable"),
    "unwritable project dir (test)": (lambda c: ["test", JSC3, "digits", "--load", _machop_checkpoint(c),
                                                 "--project-dir", "/proc/machop"], "is not writable"),
    "unwritable project dir (compare-samplers)": (lambda c: ["compare-samplers", "-c", search(c), "--repeats", "1",
                                                             "--project-dir", "/proc/machop"], "/proc/machop"),
    "unreachable postgresql storage": (lambda c: ["search", "-c", search(c), "--storage",
                                                  "postgresql://u:p@127.0.0.1:1/x"], "postgresql://"),
    "sqlite storage in a missing folder": (lambda c: ["search", "-c", search(c), "--storage",
                                                      "sqlite:////nonexistent/dir/x.db"], "sqlite:////nonexistent"),
    "bogus storage url": (lambda c: ["search", "-c", search(c), "--storage", "bogus://"], "bogus://"),
    "study with another search space": (_existing_study, "different search"),
    "report of a missing folder": (lambda c: ["report", c.tmp / "nowhere"], "study.journal"),
    "report with a bogus storage": (lambda c: ["report", "--storage", "bogus://"], "bogus://"),
    "report of an unknown study": (_report_unknown_study, "'nope'"),
    "report of a corrupt journal": (lambda c: ["report", "--storage", "journal:" + str(c.write("r.journal",
                                                                                             "x\ny\n"))],
                                    "r.journal"),
    "report without arguments": (lambda c: ["report"], "--storage"),
    "report into an unwritable folder": (lambda c: ["report", _searched(c), "--out", "/proc/machop"],
                                         "/proc/machop"),
    "report into a file": (lambda c: ["report", _searched(c), "--out", c.write("blocker", "x")], "blocker"),
    "analyze with no metric": (lambda c: ["analyze", JSC3, "digits", "--metrics", ","], "no metric named"),
}


XFAIL: dict[str, str] = {}  # case name -> the bug that makes it fail, for a case added before its fix


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.xfail(reason=XFAIL[name], strict=True))
                                  if name in XFAIL else name for name in CASES])
def test_bad_input(cli, tmp_path, monkeypatch, name):
    build_args, expected = CASES[name]
    ctx = Ctx(tmp_path, cli)
    ctx.projects.mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # whatever lands in a relative path is in the snapshot too
    args = build_args(ctx)
    if args[0] not in NO_PROJECT_DIR and "--project-dir" not in args and name not in OWN_PROJECT_DIR:
        args = [*args, "--project-dir", ctx.projects]
    before = snapshot(tmp_path)
    result = cli(*args)
    assert result.code == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert expected in lines[0], lines[0]
    assert snapshot(tmp_path) == before


def test_catalogue_is_large():
    assert len(CASES) >= 40


def test_journal_cut_off_mid_record_resumes(cli, tmp_path):
    """A writer killed inside a record leaves its start; the search resumes and appends after it."""
    path = tmp_path / "study.journal"
    conf = search(Ctx(tmp_path, cli))
    assert cli("search", "-c", conf, "--storage", path, "--study-name", "s", "--project-dir", tmp_path / "p").code == 0
    records = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(records) + records[-1][:20])
    result = cli("search", "-c", conf, "--storage", path, "--study-name", "s", "--project-dir", tmp_path / "p",
                 "--n-trials", "3")
    assert result.code == 0, result.stderr
    assert path.read_bytes().startswith(b"".join(records))
    assert all(line.startswith(b'{"op_code":') for line in path.read_bytes().splitlines())
    study = optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path))))
    assert len([t for t in study.trials if t.state.is_finished()]) == 3
