"""docs/experiments.md's numbers come from the runs: the generator on the tiny runs' outputs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import tomllib

from machop.errors import MachopError
from machop.search.report import experiments_page as page_gen
from machop.search.report.experiments_page import BLOCK, STEPS, number, replace_blocks, write_page

ROOT = Path(__file__).parents[2]
PAGE = ROOT / "docs" / "experiments.md"


def blocks_of(text: str) -> dict[str, str]:
    return {match.group("key"): match.group("body") for match in BLOCK.finditer(text)}


def prose_of(text: str) -> str:
    """The page without its generated blocks and code fences."""
    text = BLOCK.sub("", text)
    return re.sub(r"```.*?```", "", text, flags=re.S)


def project_dir(tiny_runs, example: str) -> Path:
    return tiny_runs.out / tomllib.loads((ROOT / "examples" / f"{example}.toml").read_text())["project"]


@pytest.fixture(scope="module")
def written(tiny_runs, tmp_path_factory) -> tuple[str, Path]:
    """The real page rewritten from the tiny runs (in a copy), and the figures folder."""
    folder = tmp_path_factory.mktemp("page")
    page = shutil.copyfile(PAGE, folder / "experiments.md")
    write_page(tiny_runs.out, Path(page), ROOT, folder / "figures")
    return Path(page).read_text(), folder / "figures"


def test_every_block_is_rewritten_and_the_prose_is_untouched(written):
    text, _ = written
    original = PAGE.read_text()
    assert set(blocks_of(text)) == {"run", *(step.key for step in STEPS)}
    assert prose_of(text) == prose_of(original)
    for key, body in blocks_of(text).items():
        assert body.strip(), key


def test_blocks_quote_the_outputs_seeds_and_threads(written, tiny_runs):
    blocks = blocks_of(written[0])
    assert "OMP_NUM_THREADS=1" in blocks["run"]
    timings = json.loads((tiny_runs.out / page_gen.TIMINGS_FILE).read_text())
    assert f"torch {timings['torch']}" in blocks["run"] and timings["date"] in blocks["run"]
    for step in STEPS:
        assert f"`{step.shown_command()}`" in blocks["run"]
    assert blocks["run"].count("training 0, sampler 0") == 4  # the four searches; seed 0 each
    assert blocks["run"].count("training 0, samplers 0–1") == 3  # two repeats each here
    # Experiment 1: the float base and the best trial, as base_metrics.json and best.json have them.
    search = project_dir(tiny_runs, "quant_grid") / "search"
    base = json.loads((search / "base_metrics.json").read_text())["metrics"]
    best = json.loads((search / "best.json").read_text())["0"]
    assert f"accuracy {number(base['accuracy'])}" in blocks["exp1"]
    assert f"{number(base['bitops'])} BitOPs" in blocks["exp1"] or number(base["bitops"]) in blocks["exp1"]
    assert f"(trial {best['number']}): accuracy {number(best['software_metrics']['accuracy'])}" in blocks["exp1"]
    assert "trained 1 epoch with seed 0" in blocks["exp1"]
    # Experiment 2: every sampler's median best after the budget.
    for example, key in (("samplers_small", "exp2a"), ("samplers_large", "exp2b")):
        results = json.loads((project_dir(tiny_runs, example) / "compare_samplers" / "results.json").read_text())
        assert "sampler seeds 0–1" in blocks[key] and "4 trials per run" in blocks[key]
        for row in results["summary"]:
            assert re.search(rf"\| {row['sampler']} \|[^\n]*\| {re.escape(number(row['median_final_best']))} \|",
                             blocks[key]), (key, row["sampler"])
    # Experiments 3, 4 and 6: one row per multiplier, the grid, the front and the float base.
    sweep = (project_dir(tiny_runs, "width_uniform") / "search" / "sweep.csv").read_text().splitlines()
    assert len(re.findall(r"^\| [1-4] \|", blocks["exp3"], flags=re.M)) == len(sweep) - 1 == 4
    assert "| float base |" in blocks["exp3"] and "| float base |" in blocks["exp6"]
    assert blocks["exp4"].count("**") >= 4  # the best cell and the row labels are bold
    # Experiment 7: the bound, the float base and each sampler's row.
    results = json.loads((project_dir(tiny_runs, "greedy_vs_tpe") / "compare_samplers" / "results.json").read_text())
    assert "subject to accuracy_drop <= 1%" in blocks["exp7"]
    assert f"float base accuracy {number(results['base']['accuracy'])}" in blocks["exp7"]
    for row in results["summary"]:
        assert re.search(rf"^\| {row['sampler']} \|[^\n]*\| {re.escape(number(row['median_final_best']))} \|",
                         blocks["exp7"], flags=re.M), row["sampler"]
    front = json.loads((project_dir(tiny_runs, "joint_width_precision") / "search" / "best.json").read_text())
    for entry in front.values():
        assert re.search(rf"^\| ([\d, ]*\b{entry['number']}\b[\d, ]*) \|", blocks["exp6"], flags=re.M)


def test_figures_are_copied_and_writing_again_changes_nothing(written, tiny_runs, tmp_path):
    text, figures = written
    for step in STEPS:
        for _, name in step.figures:
            assert (figures / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    again = Path(shutil.copyfile(PAGE, tmp_path / "experiments.md"))
    write_page(tiny_runs.out, again, ROOT)
    assert again.read_text() == text


def test_a_page_without_a_block_or_with_an_unknown_one_is_refused():
    text = PAGE.read_text()
    blocks = {key: "x" for key in blocks_of(text)}
    without = re.sub(r"<!-- results:exp4 -->.*?<!-- /results:exp4 -->\n", "", text, flags=re.S)
    with pytest.raises(MachopError, match=r"missing \['exp4'\]"):
        replace_blocks(without, blocks)
    with pytest.raises(MachopError, match=r"unknown \['extra'\]"):
        replace_blocks(text + "<!-- results:extra -->\n<!-- /results:extra -->\n", blocks)


def test_missing_outputs_are_a_one_line_error(tmp_path, capsys):
    page = Path(shutil.copyfile(PAGE, tmp_path / "experiments.md"))
    assert page_gen.main(["write", str(tmp_path / "nothing"), "--page", str(page)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: no ") and "run the experiments first" in error
    assert page.read_text() == PAGE.read_text()


def test_the_prose_quotes_no_result():
    """Results (accuracies, times, counts of a run) live in the generated blocks only."""
    prose = prose_of(PAGE.read_text())
    assert not re.findall(r"\b0\.\d{2,}\b", prose)  # accuracies and objective values
    assert not re.findall(r"\b\d+(\.\d+)? ?(s|ms|min)\b(?! [a-z]*\))", prose)  # times
    assert not re.findall(r"\b\d{1,3}(,\d{3})+ (BitOPs|parameters|FLOPs)", prose)
    assert "make experiments" in prose
