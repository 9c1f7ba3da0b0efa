"""Terminal output that reads well in narrow terminals and in log files (no terminal at all)."""

from __future__ import annotations

import io
import json
import re

import pytest
import torch
from rich.console import Console
from tests.helpers.studies import ACCURACY, BITOPS, add, make_study

from machop.cli.console import config_table, config_table_text, print_config_table
from machop.cli.setup_run import device_notes
from machop.config import resolve_config
from machop.config.resolve import ValueNote, table_rows
from machop.config.schema import SCALAR_KEYS
from machop.progress import FILE_WIDTH, new_console
from machop.search.report import best_table
from machop.search.report.tables import compact_config, config_legend, field_label
from machop.train.progress import EpochProgress

NARROW = 80
QUICKSTART_NODES = ("seq_blocks_2", "seq_blocks_5", "seq_blocks_7", "seq_blocks_9", "seq_blocks_11")


def render(renderable, width: int = NARROW) -> str:
    """What a `width`-column terminal shows."""
    console = Console(width=width, file=io.StringIO(), color_system=None, highlight=False)
    console.print(renderable)
    return console.file.getvalue()


# ---- console width ------------------------------------------------------------------------------


def test_a_console_writing_to_a_file_is_120_columns_or_COLUMNS(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    console = new_console(file=io.StringIO())
    assert console.width == FILE_WIDTH == 120
    monkeypatch.setenv("COLUMNS", "150")  # read at every use, not only when the console was made
    assert console.width == 150
    monkeypatch.setenv("COLUMNS", "93")
    assert new_console(file=io.StringIO()).width == 93


# ---- compact configurations ---------------------------------------------------------------------


def test_compact_config_exact_output():
    config = {"seq_blocks_2/data_in_width": 4, "seq_blocks_2/weight_width": 3,
              "seq_blocks_2/data_in_frac_width": None, "seq_blocks_2/bias_frac_width": 2,
              "seq_blocks_5/name": None, "seq_blocks_5/data_out_width": 8,
              "seq_blocks_7/weight_width+weight_frac_width": "8,4",
              "redefine:seq_blocks_2/channel_multiplier": 2, "channel_multiplier": 1.5,
              "quantize2:linear/weight_exponent_width": 3, "train/learning_rate": 0.001,
              "train/batch_size": 256}
    assert compact_config(config) == (
        "seq_blocks_2: in 4, w 3, in/f NA, b/f 2, ch ×2\n"
        "seq_blocks_5: float, out 8\n"
        "seq_blocks_7: w+w/f 8,4\n"
        "all: ch ×1.5\n"
        "quantize2:linear: w/e 3\n"
        "train: lr 0.001, batch 256")
    assert compact_config({"a/data_in_width": 8, "b/weight_width": 2}, "; ") == "a: in 8; b: w 2"
    assert config_legend([config]).startswith("in = data_in_width, w = weight_width, in/f = data_in_frac_width")
    assert "weight_frac_width" in config_legend([config]) and "name" not in config_legend([config])


@pytest.mark.parametrize("field, label", [
    ("data_in_width", "in"), ("weight_width", "w"), ("bias_width", "b"), ("data_out_width", "out"),
    ("data_in_frac_width", "in/f"), ("weight_block_size", "w/bs"), ("weight_exponent_bias", "w/eb"),
    ("weight_mean", "w/mean"), ("channel_multiplier", "ch"), ("max_epochs", "epochs"),
    ("something_else", "something_else")])
def test_field_labels(field, label):
    assert field_label(field) == label


def quickstart_study():
    """Five Pareto trials over the quickstart's space (5 linear nodes, data_in and weight widths)."""
    choices = {f"{node}/{key}": [2, 3, 4, 6, 8] for node in QUICKSTART_NODES
               for key in ("data_in_width", "weight_width")}
    study = make_study([ACCURACY, BITOPS], choices=choices)
    configs = []
    widths = [2, 3, 4, 6, 8]
    for index, width in enumerate(widths):
        config = {param: width if i % 2 else widths[(index + i) % 5] for i, param in enumerate(choices)}
        bitops = 1e5 * (index + 1)
        add(study, config, [0.5 + 0.1 * index, bitops * 1e-6], {"accuracy": 0.5 + 0.1 * index, "bitops": bitops})
        configs.append(config)
    return study, configs


def test_quickstart_pareto_table_at_80_columns_splits_no_parameter_name():
    study, configs = quickstart_study()
    text = render(best_table(study, compact=True))
    assert all(len(line) <= NARROW for line in text.splitlines())
    for config in configs:  # every node's line is whole: `seq_blocks_11: in 4, w 6`
        for line in compact_config(config).splitlines():
            assert re.search(rf"│ {re.escape(line)} +│", text), line
    assert "data_in_width" not in text.replace("in = data_in_width", "")
    assert "in = data_in_width, w = weight_width" in text


# ---- the configuration table --------------------------------------------------------------------


@pytest.fixture
def quickstart_like(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('model = "jsc-s"\ndataset = "digits"\nbatch_size = 32\ntraining_optimizer = "adamw"\n'
                    'accumulate_grad_batches = 1\n'  # set to its default: still shown
                    '[passes.quantize]\nby = "type"\n[search]\ntrain_base = true\n'
                    '[search.strategy]\nname = "optuna"\n')
    return resolve_config(path, {"project_dir": str(tmp_path / "a-rather-long-project-directory")})


SET = ("model", "dataset", "batch_size", "training_optimizer", "accumulate_grad_batches", "project_dir")


def test_configuration_table_shows_what_was_set_and_counts_the_rest(quickstart_like, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(NARROW))
    print_config_table(quickstart_like)
    text = capsys.readouterr().out
    names = [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│ ")]
    assert [name for name in names if name] == list(SET)
    hidden = len(SCALAR_KEYS) - len(SET)
    assert f"\n{hidden} key(s) at their default not shown (--show-config all shows every key)\n" in text
    assert "Sections handed on: [passes] 1 key(s), [search] 2 key(s)\n" in text


def test_full_configuration_table_at_80_columns_splits_no_key_name(quickstart_like, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(NARROW))
    print_config_table(quickstart_like, show_all=True)
    text = capsys.readouterr().out
    assert all(len(line) <= NARROW for line in text.splitlines())
    names = [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│ ")]
    assert [name for name in names if name] == list(SCALAR_KEYS)  # each whole, on its own line
    assert "not shown" not in text


def test_written_table_has_every_key_on_one_line(quickstart_like):
    text = config_table_text(quickstart_like)
    rows = [line for line in text.splitlines() if line.startswith("│ ")]
    assert len(rows) == len(SCALAR_KEYS)
    assert any("a-rather-long-project-directory" in row for row in rows)
    assert text.endswith("Sections handed on: [passes] 1 key(s), [search] 2 key(s)\n")


def test_notes_follow_the_effective_value_and_flag_rows(quickstart_like):
    quickstart_like.notes["trainer_precision"] = ValueNote("fp32 on cpu")
    quickstart_like.notes["accelerator"] = ValueNote("cpu", notable=False)
    rows = {row[0]: row for row in table_rows(quickstart_like, notable_only=True)}
    assert rows["trainer_precision"] == ("trainer_precision", "16-mixed", "", "", "16-mixed (fp32 on cpu)")
    assert "accelerator" not in rows
    assert table_rows(quickstart_like)[SCALAR_KEYS.index("accelerator")][-1] == "auto (cpu)"
    assert "16-mixed (fp32 on cpu)" in render(config_table(quickstart_like, notable_only=True), 120)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks what the precision means on a CPU")
def test_device_notes_on_a_cpu():
    notes = device_notes(resolve_config(None, {}).config)
    assert notes["trainer_precision"] == ValueNote("fp32 on cpu", notable=True)
    assert notes["accelerator"] == ValueNote("cpu", notable=False)
    notes = device_notes(resolve_config(None, {"trainer_precision": "32", "accelerator": "gpu"}).config)
    assert notes["trainer_precision"] == ValueNote("fp32 on cpu", notable=False)
    assert notes["accelerator"] == ValueNote("no CUDA device: cpu")
    notes = device_notes(resolve_config(None, {"trainer_precision": "bf16-mixed", "accelerator": "cpu"}).config)
    assert notes == {"trainer_precision": ValueNote("bf16 mixed on cpu", notable=False)}


# ---- the CLI ------------------------------------------------------------------------------------


def test_show_config_all_and_the_written_table(cli, tmp_path):
    args = ("train", "toy", "toy-tiny", "--max-epochs", "1", "--project-dir", tmp_path)
    short = cli(*args)
    assert short.code == 0, short.stderr
    assert "disable_dataset_cache" not in short.stdout and "key(s) at their default not shown" in short.stdout
    written = (tmp_path / "toy_classification_toy-tiny" / "config_table.txt").read_text()
    assert "disable_dataset_cache" in written and "max_epochs" in written
    full = cli(*args, "--show-config", "all")
    assert full.code == 0 and "disable_dataset_cache" in full.stdout and "not shown" not in full.stdout
    bad = cli(*args, "--show-config", "everything")
    assert bad.code == 2 and bad.stderr.count("\n") == 1
    assert "--show-config 'everything' is invalid (valid: changed, all)" in bad.stderr


def test_a_failed_run_writes_no_table(cli, tmp_path):
    result = cli("train", "nope", "toy-tiny", "--project-dir", tmp_path)
    assert result.code == 2 and not list(tmp_path.rglob("config_table.txt"))


def test_test_shows_the_model_and_dataset_of_the_checkpoint(cli, tmp_path):
    trained = cli("train", "toy", "toy-tiny", "--max-epochs", "1", "--project-dir", tmp_path)
    assert trained.code == 0, trained.stderr
    checkpoint = tmp_path / "toy_classification_toy-tiny" / "checkpoints" / "best.ckpt"
    result = cli("test", "--load", checkpoint, "--project-dir", tmp_path)
    assert result.code == 0, result.stderr
    rows = {cells[0]: cells for line in result.stdout.splitlines() if line.startswith("│ ")
            for cells in [[cell.strip() for cell in line.strip("│ ").split("│")]]}
    assert rows["model"] == ["model", "NA", "", "", "toy (from checkpoint)"]
    assert rows["dataset"] == ["dataset", "NA", "", "", "toy-tiny (from checkpoint)"]
    assert (tmp_path / "toy_classification_toy-tiny" / "test_metrics.json").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_gpu_request_on_a_cpu_warns_once(cli, tmp_path):
    result = cli("train", "toy", "toy-tiny", "--accelerator", "gpu", "--max-epochs", "2",
                 "--project-dir", tmp_path)
    assert result.code == 0, result.stderr
    assert result.stderr.count("no CUDA device is available") == 1
    assert "gpu (no CUDA device: cpu)" in result.stdout


# ---- epochs and the analyze layer table ---------------------------------------------------------


def test_epoch_lines_stay_on_one_line_in_a_narrow_log(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    metrics = {"train_loss": 0.12345, "train_accuracy": 0.9, "val_loss": 0.2, "val_accuracy": 0.875}
    with EpochProgress(True, 12) as progress:
        for epoch in range(2):
            progress.start_epoch(epoch, 3)
            progress.advance(3, loss=0.1)
            progress.end_epoch(epoch, metrics)
    assert capsys.readouterr().out.splitlines() == [
        f"epoch {n}/12  train_loss 0.1235  train_accuracy 0.9000  val_loss 0.2000  val_accuracy 0.8750"
        for n in (1, 2)]


def layer_lines(stdout: str) -> list[str]:
    """The lines of analyze's per-layer table."""
    lines = stdout.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("Per layer")))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("└"))
    return lines[start:end + 1]


@pytest.mark.parametrize("width", [60, NARROW, 200])
def test_analyze_layer_table_keeps_every_number_whole(cli, tmp_path, monkeypatch, width):
    monkeypatch.setenv("COLUMNS", str(width))
    result = cli("analyze", "vgg7", "digits", "--metrics", "params,macs,bitops", "--project-dir", tmp_path)
    assert result.code == 0, result.stderr
    lines = layer_lines(result.stdout)
    text = "\n".join(lines)
    assert "…" not in text and all(len(line) <= width for line in lines)
    rows = json.loads((tmp_path / "vgg7_classification_digits" / "analysis.json").read_text())["per_node"]
    for row in rows:
        if width >= NARROW:  # node names stay whole too (below that only the numbers must)
            assert re.search(rf"│ {row['node']} +│", text)
        for key in ("params", "macs", "bitops"):
            assert re.search(rf"│ +{row[key]:,} │", text)
    assert "9,663,676,416" in text
    header = next(line for line in lines if "params" in line)
    if width == 200:  # one column per field
        assert [cell.strip() for cell in header.strip("┃ ").split("┃")] == [
            "node", "op", "in", "out", "params", "MACs", "BitOPs", "precision"]
    else:  # node, then op and shapes, then precision, stacked in one column
        assert [cell.strip() for cell in header.strip("┃ ").split("┃")] == ["layer", "params", "MACs", "BitOPs"]
        assert re.search(r"│ feature_layers_3 +│ +147,584 │ 9,437,184 │ 9,663,676,416 │", text)
        assert "│ conv2d (N, 128, " in text and "│ in:float32 " in text
