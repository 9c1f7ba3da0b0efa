"""The examples in README.md, docs/ and examples/README.md run as written.

Python blocks are executed. Shell commands are taken from the ```bash blocks of every page (and,
in examples/README.md, from its `machop ...` code spans), in page order. Each `machop` command is
either run, in one scratch folder holding copies of configs/ and examples/ so that a command
finds what the commands above it wrote, and checked against EXPECT (exit status, the files it
promises, key output, and every accuracy its comment quotes), or it is listed in EXCLUDED with
the reason it does not run here. A newly documented command fails the test until it is one or
the other. Commands of other tools (make, pip, ...) are excluded by their first word.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples" / "README.md"]


def code_blocks(text: str, languages: set[str]) -> list[str]:
    """The fenced code blocks of `text` in one of `languages`."""
    blocks, inside, current = [], False, []
    for line in text.splitlines():
        fence = line.strip()
        if not inside and fence.startswith("```") and fence[3:] in languages:
            inside, current = True, []
        elif inside and fence == "```":
            inside = False
            blocks.append("\n".join(current))
        elif inside:
            current.append(line)
    return blocks


def python_blocks(text: str) -> list[str]:
    return code_blocks(text, {"python"})


@dataclass(frozen=True)
class Command:
    page: str
    text: str      # the words of the command, single-spaced, continuation lines joined
    comment: str   # what follows its '#', if anything


def shell_commands(page: Path) -> list[Command]:
    """Every command of the page's shell blocks; inside a script (#!) only machop's lines."""
    text, found = page.read_text(), []
    for block in code_blocks(text, {"bash", "sh", "shell"}):
        script = block.lstrip().startswith("#!")
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            words = shlex.split(line, comments=True)
            if words and (not script or "machop" in words):
                comment = line.split(" #", 1)[1].strip() if " #" in line else ""
                found.append(Command(page.name, " ".join(words), comment))
    if page.parent.name == "examples":  # its table lists one command per experiment, inline
        found += [Command(page.name, " ".join(shlex.split(span)), "")
                  for span in re.findall(r"`(machop [^`]+)`", text)]
    return found


def documented_commands() -> list[Command]:
    return [command for page in PAGES for command in shell_commands(page)]


# ---------------------------------------------------------------- what is not run, and why

OTHER_TOOLS = {
    "make": "builds the environment, then runs the demo, the whole suite or the benchmarks",
    "pip": "installs packages (no test downloads anything)",
    "sudo": "installs and configures a PostgreSQL server",
    "torchrun": "a multi-process launcher; tests/train/test_distributed.py covers launcher ranks",
    "srun": "a SLURM job step",
}

MINUTE_SEARCH = "a search of tens of seconds to minutes; tests/search/test_example_configs.py runs it small"
EXPERIMENT = "an experiment of tens of seconds; tests/experiments/test_examples.py runs it small"
NEEDS_DATABASE = "needs a PostgreSQL server; tests/search/test_postgres.py runs one when available"
PROCESSES = ("starts several training processes (tens of seconds on 2 cores); "
             "tests/train/test_distributed.py covers them")
NEEDS_CIFAR = "needs the CIFAR-10 batches; tests/experiments/test_examples.py generates them"
NEEDS_CLUSTER = "runs on several machines"

EXCLUDED: dict[str, str] = {
    "machop export --config cfg.toml --per-layer":
        "cfg.toml is shown in prose on docs/deploy.md; tests/cli/test_export.py exports the same config",
    ".venv/bin/python benchmarks/onnx_runtime.py --threads 2":
        "benchmark: full-width VGG7 in four runtimes, minutes on 2 cores",
    "machop search --config configs/search_quant_jsc_tpe.toml --load "
    "outputs/jsc-three-linear-layers_classification_digits/checkpoints/best.ckpt":
        "the search of docs/fpga.md (40 trials over the digits data); tests/search/test_example_configs.py "
        "runs the config small",
    "machop export --config configs/search_quant_jsc_tpe.toml --trial 28 --format hls4ml --out hls_jsc --csim":
        "exports a trial of the search above and builds hls4ml's C simulation (14 s with g++); "
        "tests/search/test_trial_export.py exports a trial of a small search in-process",
    "machop search --config configs/search_vgg7_onnx.toml":
        "trains VGG7 and measures 16 candidates in ONNX Runtime (about a minute on 2 cores); "
        "tests/search/test_onnx_search.py runs such a search on VGG7 at small size",
    "machop export --config configs/search_vgg7_onnx.toml --trial 15":
        "exports a trial of the VGG7 search above; tests/search/test_trial_export.py exports a trial in-process",
    "machop transform --config chosen.toml --load outputs/jsc-three-linear-layers_classification_digits/"
    "checkpoints/best.ckpt":
        "chosen.toml is the reader's own config of a chosen trial; tests/export/test_hls4ml_cli.py "
        "transforms and exports a config like it",
    "machop export --config chosen.toml --load outputs/jsc-three-linear-layers_classification_digits/"
    "transformed/quantize/model.machop --format hls4ml --out hls_jsc --csim":
        "builds hls4ml's C simulation (15 s with g++) from the reader's chosen.toml; "
        "tests/export/test_hls4ml_cli.py runs machop export --format hls4ml --csim in-process",
    "machop search --config configs/quickstart.toml":
        "trains jsc-s and runs 60 trials with plots (about a minute); "
        "tests/search/test_example_configs.py runs it small",
    "machop report outputs/quickstart": "reads the quickstart search, which is not run here",
    "machop search jsc-s digits --config configs/search_quant_jsc_mase.toml "
    "--load outputs/jsc-s_classification_digits/checkpoints/best.ckpt":
        "20 trials plus plots and report (about 20 s); tests/search/test_search.py runs this "
        "config with 5 trials",
    "machop search --config examples/width_nonuniform.toml --workers 2": PROCESSES,
    "machop search --config examples/width_nonuniform.toml --workers 3": PROCESSES,
    "machop search --config examples/width_nonuniform.toml --storage "
    "postgresql://user:pw@db/machop --study-name width-jsc": NEEDS_DATABASE,
    "machop search --config examples/width_nonuniform.toml --storage "
    "postgresql://user:pw@db/machop --study-name width-jsc --worker": NEEDS_DATABASE,
    "machop search --config examples/width_nonuniform.toml --storage "
    "postgresql://machop:pw@db:5432/machop --study-name width-jsc": NEEDS_DATABASE,
    "machop search --config examples/width_nonuniform.toml --storage "
    "postgresql://machop:pw@db:5432/machop --study-name width-jsc --worker": NEEDS_DATABASE,
    "machop train jsc-s digits --devices 2 --strategy ddp --batch-size 32 --learning-rate 1e-2":
        PROCESSES,
    "machop train jsc-s digits --devices 4 --accelerator cpu --batch-size 16 --learning-rate 1e-2":
        PROCESSES,
    "machop test --load outputs/jsc-s_classification_digits/checkpoints/best.ckpt --devices 2":
        PROCESSES,
    "MASTER_ADDR=node0.example MASTER_PORT=29500 NODE_RANK=1 machop train jsc-s jsc --devices 4 "
    "--num-nodes 2 --learning-rate 1e-2": NEEDS_CLUSTER,
    "machop search jsc-toy jsc --config examples/quant_grid.toml --data-dir data "
    "--project exp1-quant-grid-jsc":
        "the quantization grid on JSC files; test_other_data_needs_a_project_of_its_own "
        "runs it up to the base model",
    "machop search --config examples/quant_grid.toml": EXPERIMENT,
    "machop compare-samplers --config examples/samplers_small.toml": EXPERIMENT,
    "machop compare-samplers --config examples/samplers_large.toml": EXPERIMENT,
    "machop search --config examples/width_uniform.toml": EXPERIMENT,
    "machop search --config examples/width_nonuniform.toml": EXPERIMENT,
    "machop search --config examples/joint_width_precision.toml": EXPERIMENT,
    "machop compare-samplers --config examples/greedy_vs_tpe.toml --samplers greedy,tpe --repeats 10": EXPERIMENT,
    ".venv/bin/python benchmarks/calibration_table.py --threads 1 --seeds 0 1 2 3 4 5 6 7 8 9 --sequential":
        "trains jsc-s five times and measures 56 configurations each (about a minute); "
        "tests/passes/test_calibrate.py checks the same properties on a model trained in seconds",
    "machop search --config examples/vgg7_cifar_tpe.toml --data-dir data": NEEDS_CIFAR,
    "machop search --config examples/vgg7_cifar_tpe.toml --data-dir data --accelerator gpu "
    "--max-epochs 20": NEEDS_CIFAR,
}

# ---------------------------------------------------------------- what is run, and what it promises

JSC_S = "outputs/jsc-s_classification_digits"
JSC3 = "outputs/jsc-three-linear-layers_classification_digits"
WIDE = "outputs/jsc-three-linear-layers-wide"
RANDOM_WEIGHTS = "random, untrained weights"


def read_json(path: Path, *keys: str) -> Any:
    value = json.loads(path.read_text())
    for key in keys:
        value = value[key]
    return value


def near(value: float, claim: float) -> bool:
    """A documented accuracy (2-4 decimals) against the measured one: within a few samples."""
    return abs(value - claim) <= 0.015


def transformed_accuracies(path: Path) -> tuple[float, float]:
    from machop.train import read_checkpoint

    extra = read_checkpoint(path).extra
    return extra["metrics_before"]["accuracy"], extra["metrics_after"]["accuracy"]


def quantized_as_documented(cwd: Path) -> None:
    before, after = transformed_accuracies(cwd / JSC3 / "transformed/quantize/model.machop")
    assert near(before, 0.967) and near(after, 0.950), (before, after)   # README and transforms.md


def widened_as_documented(cwd: Path) -> None:
    before, after = transformed_accuracies(cwd / JSC3 / "transformed/redefine/model.machop")
    assert before == after and near(before, 0.967), (before, after)     # inherit = true


def quantized_tests_as_documented(cwd: Path) -> None:
    accuracy = read_json(cwd / JSC3 / "test_metrics.json", "test", "accuracy")
    assert near(accuracy, 0.94), accuracy                                # README, transforms.md


def fine_tuned_as_documented(cwd: Path) -> None:
    accuracy = read_json(cwd / WIDE / "metrics.json", "test", "accuracy")
    assert near(accuracy, 0.96), accuracy                                # README


@dataclass(frozen=True)
class Expect:
    """What one documented command promises."""

    code: int = 0
    files: tuple[str, ...] = ()
    stdout: tuple[str, ...] = ()
    stderr: tuple[str, ...] = ()
    accuracy: tuple[str, ...] = ()   # JSON file and keys of the accuracy its comment quotes
    check: Callable[[Path], None] | None = None


EXPECT: dict[str, Expect] = {
    "machop info models": Expect(stdout=("jsc-s", "jsc-three-linear-layers")),
    "machop info datasets": Expect(stdout=("digits", "jsc")),
    "machop info metrics": Expect(stdout=("bitops", "latency")),
    "machop --version": Expect(stdout=("machop",)),
    "machop train jsc-s digits --max-epochs 20 --batch-size 64 --learning-rate 1e-2": Expect(
        files=(f"{JSC_S}/checkpoints/best.ckpt", f"{JSC_S}/metrics.json", f"{JSC_S}/config.toml"),
        accuracy=(f"{JSC_S}/metrics.json", "test", "accuracy")),
    f"machop test jsc-s digits --load {JSC_S}/checkpoints/best.ckpt": Expect(
        files=(f"{JSC_S}/test_metrics.json",), stdout=("Test",)),
    f"machop test --load {JSC_S}/checkpoints/best.ckpt": Expect(
        files=(f"{JSC_S}/test_metrics.json",), stdout=("Test",)),
    "machop train --config configs/train_jsc_tiny.toml": Expect(  # "needs the JSC file"
        code=2, stderr=("jsc",)),
    "machop train jsc-tiny digits --config configs/train_jsc_tiny.toml": Expect(
        files=("outputs/jsc-tiny/checkpoints/best.ckpt",),
        accuracy=("outputs/jsc-tiny/metrics.json", "test", "accuracy")),
    "machop train --config configs/quantize_jsc_by_type.toml": Expect(
        files=(f"{JSC3}/checkpoints/best.ckpt",),
        accuracy=(f"{JSC3}/metrics.json", "test", "accuracy")),
    "machop transform --config configs/quantize_jsc_by_type.toml "
    f"--load {JSC3}/checkpoints/best.ckpt": Expect(
        files=(f"{JSC3}/transformed/quantize/model.machop",
               f"{JSC3}/transformed/quantize/quantize_summary.csv"),
        stdout=("Pass quantize", "Validation split",
                f"Transformed model: {JSC3}/transformed/quantize/model.machop"),
        check=quantized_as_documented),
    f"machop test --load {JSC3}/transformed/quantize/model.machop": Expect(
        files=(f"{JSC3}/test_metrics.json",),
        check=quantized_tests_as_documented),
    "machop transform --config configs/redefine_jsc_three_linear.toml "
    f"--load {JSC3}/checkpoints/best.ckpt": Expect(
        files=(f"{JSC3}/transformed/redefine/model.machop",
               f"{JSC3}/transformed/redefine/redefine_summary.csv",
               f"{JSC3}/transformed/quantize/model.machop"),   # the quantized model stays
        stdout=("Pass redefine",), check=widened_as_documented),
    "machop train --config configs/redefine_jsc_three_linear.toml --project "
    f"jsc-three-linear-layers-wide --load {JSC3}/transformed/redefine/model.machop": Expect(
        files=(f"{WIDE}/checkpoints/best.ckpt",),
        check=fine_tuned_as_documented),
    f"machop analyze --load {JSC_S}/checkpoints/best.ckpt "
    "--metrics accuracy,macs,flops,bitops,model_size,latency": Expect(
        files=(f"{JSC_S}/analysis.json",), stdout=("Per layer", "Metrics", "latency")),
    "machop analyze --config configs/quantize_jsc_by_type.toml --per-class "
    f"--load {JSC3}/checkpoints/best.ckpt": Expect(
        files=(f"{JSC3}/analysis.json",), stdout=("Per class", "in:integ8")),
    f"machop analyze --load {JSC_S}/checkpoints/best.ckpt --sensitivity": Expect(
        files=(f"{JSC_S}/analysis/sensitivity.json", f"{JSC_S}/analysis/sensitivity.png"),
        stdout=("accuracy drop (percentage points)", "Most sensitive at 2 bits")),
    f"machop analyze --load {JSC_S}/checkpoints/best.ckpt --per-class": Expect(
        files=(f"{JSC_S}/analysis.json",), stdout=("Per class",),
        accuracy=(f"{JSC_S}/analysis.json", "metrics", "accuracy")),
}


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str


def run_machop(words: list[str]) -> Ran:
    """`machop WORDS...` in this process, with its output captured."""
    from machop.cli.app import run

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = run(words)
    return Ran(code, stdout.getvalue(), stderr.getvalue())


def runnable(commands: list[Command]) -> list[Command]:
    """The machop commands to run, each once, in the order they are first documented."""
    seen: dict[str, Command] = {}
    for command in commands:
        if command.text.split()[0] not in OTHER_TOOLS and command.text not in EXCLUDED:
            seen.setdefault(command.text, command)
    return list(seen.values())


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A clean folder with the repository's configs/ and examples/, as a fresh clone has them."""
    folder = tmp_path_factory.mktemp("clone")
    for name in ("configs", "examples"):
        shutil.copytree(ROOT / name, folder / name)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("COLUMNS", "200")
        patch.delenv("MACHOP_DATA_DIR", raising=False)
        yield folder


def test_docs_python_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pages = sorted((ROOT / "docs").glob("*.md"))
    blocks = [(page.name, block) for page in pages for block in python_blocks(page.read_text())]
    assert blocks
    for name, block in blocks:
        exec(compile(block, name, "exec"), {})


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks((ROOT / "README.md").read_text())
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "outputs" / "demo-digits" / "checkpoints" / "best.ckpt").is_file()
    assert "accuracy" in capsys.readouterr().out


def test_every_documented_command_is_run_or_excluded_with_a_reason():
    commands = documented_commands()
    texts = {command.text for command in commands}
    unknown = [f"{c.page}: {c.text}" for c in runnable(commands) if c.text not in EXPECT]
    assert not unknown, "documented but in none of EXPECT, EXCLUDED, OTHER_TOOLS: " + "; ".join(unknown)
    assert not [text for text in EXCLUDED if text not in texts], "EXCLUDED lists undocumented commands"
    assert not [text for text in EXPECT if text not in texts], "EXPECT lists undocumented commands"


def test_documented_commands_do_what_the_pages_say(scratch):
    for command in runnable(documented_commands()):
        expect = EXPECT[command.text]
        ran = run_machop(shlex.split(command.text)[1:])
        where = f"{command.page}: {command.text}"
        assert ran.code == expect.code, f"{where}\n{ran.stderr}"
        if expect.code:
            assert len(ran.stderr.strip().splitlines()) == 1, where
        for path in expect.files:
            assert (scratch / path).is_file(), f"{where}: no {path}"
        for text in expect.stdout:
            assert text in ran.stdout, f"{where}: {text!r} not printed"
        for text in expect.stderr:
            assert text in ran.stderr, f"{where}: {text!r} not in {ran.stderr!r}"
        assert RANDOM_WEIGHTS not in ran.stderr, f"{where}: ran on untrained weights"
        claim = re.search(r"accuracy (\d\.\d+)", command.comment)
        assert bool(claim) == bool(expect.accuracy), f"{where}: quoted accuracy without a check"
        if claim:
            value = read_json(scratch / expect.accuracy[0], *expect.accuracy[1:])
            assert near(value, float(claim[1])), f"{where}: accuracy {value:.4f}, documented {claim[1]}"
        if expect.check is not None:
            expect.check(scratch)


def test_transform_warnings_are_the_documented_lines(scratch):
    """docs/transforms.md quotes what transform says when it replaces a result or loads nothing."""
    page = (ROOT / "docs" / "transforms.md").read_text()
    replaced = [line for block in code_blocks(page, {"text"}) for line in block.splitlines()
                if "transform: replaced" in line]
    untrained = re.search(r"`(WARNING: transform: no\s+checkpoint[^`]+)`", page)
    assert replaced and untrained
    checkpoint = scratch / JSC3 / "checkpoints" / "best.ckpt"
    if not checkpoint.is_file():  # this test alone: the documented training first
        assert run_machop(["train", "--config", "configs/quantize_jsc_by_type.toml"]).code == 0
    load = ["--load", f"{JSC3}/checkpoints/best.ckpt"]
    assert run_machop(["transform", "--config", "configs/quantize_jsc_by_type.toml", *load]).code == 0
    again = run_machop(["transform", "--config", "configs/quantize_jsc_by_type.toml", *load])
    assert again.code == 0 and again.stderr == ""   # the same transform again: nothing to say
    random = run_machop(["transform", "--config", "configs/quantize_jsc_by_type.toml"])
    assert random.code == 0
    assert random.stderr.splitlines() == [replaced[0], " ".join(untrained[1].split())]


def write_jsc_csv(path: Path, rows: int = 200) -> Path:
    """A small table in the OpenML JSC CSV format (16 features, class letters)."""
    import numpy as np

    from machop.data.jsc import FEATURES

    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, len(FEATURES)))
    letters = rng.choice(list("gqwzt"), rows)
    lines = [",".join([*(name.removeprefix("j_") for name in FEATURES), "class"])]
    lines += [",".join([*(f"{v:.6f}" for v in row), str(c)]) for row, c in zip(x, letters)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_other_data_needs_a_project_of_its_own(tmp_path, monkeypatch):
    """examples/README.md: without --project a JSC run finds the digits run's base model."""
    documented = ("machop search jsc-toy jsc --config examples/quant_grid.toml --data-dir data "
                  "--project exp1-quant-grid-jsc")
    assert documented in {c.text for c in shell_commands(ROOT / "examples" / "README.md")}
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)  # not the shared scratch folder: its commands run without JSC files
    write_jsc_csv(tmp_path / "data" / "jsc.csv")
    # the digits run of experiment 1 left its base model in outputs/exp1-quant-grid/
    assert run_machop(["train", "--config", "examples/quant_grid.toml", "--max-epochs", "1"]).code == 0
    words = shlex.split(documented)[1:]
    without = run_machop(words[:-2])
    assert without.code == 2 and len(without.stderr.strip().splitlines()) == 1
    assert "holds the base checkpoint of another run (jsc-toy on digits" in without.stderr
    assert "pass --project NAME" in without.stderr
