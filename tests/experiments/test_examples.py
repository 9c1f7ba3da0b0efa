"""Every example of docs/experiments.md runs at a tiny size and writes what the page promises."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest
import tomllib
import torch

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"
PAGE = ROOT / "docs" / "experiments.md"
GRID_METRICS = ("accuracy", "loss", "precision", "recall", "f1", "latency", "inference_time",
                "throughput", "flops", "bitops", "model_size", "memory_inference")
PAIRS = ["16,8", "8,6", "8,4", "4,2"]


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def search(cli, tmp_path: Path, name: str, *extra: str):
    result = cli("search", "-c", EXAMPLES / f"{name}.toml", "--project-dir", tmp_path, *extra)
    assert result.code == 0, result.stderr
    project = tomllib.loads((EXAMPLES / f"{name}.toml").read_text())["project"]
    return result, tmp_path / project / "search"


def tiny(tiny_runs, name: str, folder: str = "search"):
    """The tiny run of one example (conftest.TINY): its output and its outputs folder."""
    result = tiny_runs.runs[name]
    assert result.code == 0, result.stderr
    project = tomllib.loads((EXAMPLES / f"{name}.toml").read_text())["project"]
    return result, tiny_runs.out / project / folder


def test_quant_grid_records_every_metric_over_width_frac_pairs(tiny_runs):
    from machop.search.spaces import build_space

    # Four of the sixteen points here (each measures latency); the space itself has all sixteen.
    _, out = tiny(tiny_runs, "quant_grid")
    table = rows(out / "trials.csv")
    assert len(table) == 4 and all(row["state"] == "COMPLETE" for row in table)
    for metric in GRID_METRICS:  # rates lie in [0, 1]; losses, times, counts and sizes are positive
        bounded = metric in ("accuracy", "precision", "recall", "f1")
        assert all(0 <= float(row[metric]) <= 1 if bounded else 0 < float(row[metric]) < math.inf
                   for row in table), metric
    # torch's allocations of a forward and a training step: a few kB, never rounded away to 0
    assert all(float(row["memory_inference"]) > 0 and float(row["memory_training"]) > 0 for row in table)
    pairs = {(row["params_linear/data_in_width+data_in_frac_width"],
              row["params_linear/weight_width+weight_frac_width"]) for row in table}
    assert len(pairs) == 4 and all(a in PAIRS and w in PAIRS for a, w in pairs)
    assert len({row["flops"] for row in table}) == 1  # simulated quantization: FLOPs never change
    assert is_png(out / "plots" / "heatmaps.png")
    from machop.data import load_dataset
    from machop.graph.graph import Graph
    from machop.models import build_model

    config = tomllib.loads((EXAMPLES / "quant_grid.toml").read_text())
    info = load_dataset("digits").info
    graph = Graph(build_model("jsc-toy", info), torch.randn(4, info.num_features))
    space = build_space(config["search"]["search_space"], graph)
    assert space.size() == 16 and list(space.choices().values()) == [PAIRS, PAIRS]


@pytest.mark.parametrize(("name", "size"), [("samplers_small", 18), ("samplers_large", 13_824)])
def test_sampler_comparison_writes_curves_and_seconds_per_trial(tiny_runs, name, size):
    result, out = tiny(tiny_runs, name, "compare_samplers")
    results = json.loads((out / "results.json").read_text())
    assert results["space"]["size"] == size and results["dataset"] == "digits"
    summary = {row["sampler"]: row for row in results["summary"]}
    assert set(summary) == {"tpe", "random", "bruteforce"}
    for row in summary.values():
        assert row["repeats"] == 2 and row["median_seconds_per_trial"] > 0
        assert isinstance(row["median_final_best"], float) and math.isfinite(row["median_final_best"])
    assert is_png(out / "best_so_far.png") and is_png(out / "seconds_per_trial.png")
    assert "median trials to best" in result.stdout


def test_greedy_and_tpe_are_compared_under_the_relative_accuracy_bound(tiny_runs):
    result, out = tiny(tiny_runs, "greedy_vs_tpe", "compare_samplers")
    results = json.loads((out / "results.json").read_text())
    assert results["space"]["size"] == 7 ** 10 and results["constraints"] == ["accuracy_drop <= 1%"]
    assert [row["sampler"] for row in results["summary"]] == ["greedy", "tpe"]
    greedy = results["samplers"]["greedy"]["runs"]
    assert greedy[0]["keys"] == greedy[1]["keys"]  # no randomness: every seed walks the same path
    widest = {name: max(choices) for name, choices in results["space"]["choices"].items()}
    assert len(widest) == 10 and set(widest.values()) == {8}
    accuracy = results["base"]["accuracy"]
    best = results["best"]["metrics"]
    assert best["accuracy"] >= 0.99 * accuracy - 1e-9 and best["bitops"] < results["base"]["bitops"]
    assert is_png(out / "best_so_far.png") and "greedy" in result.stdout


def test_uniform_multiplier_table_and_plot(tiny_runs):
    result, out = tiny(tiny_runs, "width_uniform")
    table = rows(out / "sweep.csv")
    assert [row["channel_multiplier"] for row in table] == ["1", "2", "3", "4"]
    params = [int(float(row["params"])) for row in table]
    # digits: 64 features, 10 classes; hidden widths 8m, 8m (jsc-three-linear-layers), BN on inputs.
    assert params == sorted(params) and len(set(params)) == 4
    flops = [float(row["flops"]) for row in table]
    assert flops == sorted(flops) and all(0 <= float(row["accuracy"]) <= 1 for row in table)
    assert is_png(out / "plots" / "sweep.png")
    assert "Metrics against channel_multiplier" in result.stdout


def test_nonuniform_multipliers_heatmap_and_best_pair(tiny_runs):
    result, out = tiny(tiny_runs, "width_nonuniform")
    table = rows(out / "trials.csv")
    pairs = {(row["params_seq_blocks_2/channel_multiplier"], row["params_seq_blocks_4/channel_multiplier"])
             for row in table}
    assert len(pairs) == 8 == len(table)
    assert is_png(out / "plots" / "heatmaps.png")
    best = json.loads((out / "best.json").read_text())["0"]["sampled_config"]
    assert re.search(rf"seq_blocks_2: ch ×{best['seq_blocks_2/channel_multiplier']:g}\b", result.stdout)


def test_vgg7_on_generated_cifar10_batches(cli, tmp_path):
    from tests.helpers.cifar10 import write_batches

    write_batches(tmp_path / "data" / "cifar-10-batches-py")
    _, out = search(cli, tmp_path, "vgg7_cifar_tpe", "--n-trials", "2", "--max-epochs", "1",
                    "--data-dir", str(tmp_path / "data"), "--batch-size", "16")
    table = rows(out / "trials.csv")
    assert len(table) == 2 and all(row["state"] == "COMPLETE" for row in table)
    assert {"accuracy", "flops"} <= set(table[0])


def test_joint_width_precision_pareto(tiny_runs):
    result, out = tiny(tiny_runs, "joint_width_precision")
    table = rows(out / "trials.csv")
    assert len(table) == 4 and {"values_0", "values_1", "bitops"} <= set(table[0])
    assert is_png(out / "plots" / "pareto.png")
    assert "Pareto front" in result.stdout


def test_the_page_shows_every_committed_figure_and_command():
    page = PAGE.read_text()
    figures = re.findall(r"\]\((figures/[^)]+\.png)\)", page)
    assert len(figures) >= 8
    for figure in figures:
        path = PAGE.parent / figure
        assert is_png(path), figure
        assert path.stat().st_size < 300_000, figure
    for example in EXAMPLES.glob("*.toml"):
        assert f"examples/{example.name}" in page, example.name
