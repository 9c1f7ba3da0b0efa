"""Search reports read from studies built in code, exactly as records.py says the strategy writes them."""

from __future__ import annotations

import csv
import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from rich.console import Console
from tests.helpers.studies import ACCURACY, BITOPS, WIDTHS, add, make_study

from machop.errors import SearchError
from machop.search import records
from machop.search.report import (
    best_table,
    best_trials,
    param_stats,
    plots,
    print_best,
    trial_rows,
    write_search_outputs,
)
from machop.search.report.files import best_entries, log_entries

optuna.logging.set_verbosity(optuna.logging.WARNING)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def accuracy_of(data_in: int, weight: int) -> float:
    return 0.75 - 0.3 / (data_in * weight) + 0.001 * data_in


def grid_metrics(data_in: int, weight: int) -> dict[str, float]:
    accuracy = accuracy_of(data_in, weight)
    return {"accuracy": accuracy, "loss": 1 - accuracy, "bitops": 1000.0 * data_in * weight,
            "model_size": 50 * weight, "latency": 0.1 + 0.01 * weight}


def grid_study(objectives: list[dict], storage=None) -> optuna.Study:
    """The 4x4 data_in_width x weight_width space, every point once, and one failed trial."""
    study = make_study(objectives, storage=storage)
    for data_in, weight in itertools.product(WIDTHS, WIDTHS):
        metrics = grid_metrics(data_in, weight)
        add(study, {"data_in_width": data_in, "weight_width": weight},
            [metrics[o["name"]] * o["scale"] for o in objectives], metrics)
    add(study, {"data_in_width": 8, "weight_width": 8}, state=TrialState.FAIL,
        reason="NaN in <loss> & friends")
    return study


def numbers(trials) -> list[int]:
    return [trial.number for trial in trials]


def is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0 and path.read_bytes()[:8] == PNG_SIGNATURE


def distinct_colours(path: Path) -> int:
    import matplotlib.image

    rgb = (matplotlib.image.imread(path)[..., :3] * 255).astype(np.uint32)
    return len(np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]))


@pytest.fixture(scope="module")
def multi_outputs(tmp_path_factory) -> tuple[optuna.Study, dict[str, Path]]:
    study = grid_study([ACCURACY, BITOPS])
    return study, write_search_outputs(study, tmp_path_factory.mktemp("multi"))


@pytest.fixture(scope="module")
def single_outputs(tmp_path_factory) -> tuple[optuna.Study, dict[str, Path]]:
    study = grid_study([ACCURACY])
    return study, write_search_outputs(study, tmp_path_factory.mktemp("single"))


# ---- best trials --------------------------------------------------------------------------------


@pytest.mark.parametrize(("direction", "expected"), [("maximize", 1), ("minimize", 2)])
def test_single_objective_best_respects_the_direction(direction, expected):
    study = make_study([{"name": "accuracy", "direction": direction, "scale": 1.0}])
    for width, value in zip(WIDTHS, [0.5, 0.9, 0.1]):
        add(study, {"weight_width": width}, [value], {"accuracy": value})
    assert numbers(best_trials(study)) == [expected]


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_infeasible_and_unfinished_trials_are_never_best(direction):
    study = make_study([{"name": "accuracy", "direction": direction, "scale": 1.0}])
    add(study, {"weight_width": 2}, [0.5], {"accuracy": 0.5})
    add(study, {"weight_width": 4}, [0.99 if direction == "maximize" else 0.01], feasible=False)
    add(study, {"weight_width": 8}, state=TrialState.FAIL, reason="boom")
    add(study, {"weight_width": 16}, state=TrialState.PRUNED)
    assert numbers(best_trials(study)) == [0]


def test_no_feasible_trial_gives_no_best_and_an_empty_table():
    study = make_study([ACCURACY])
    add(study, {"weight_width": 2}, [0.9], feasible=False)
    assert best_trials(study) == []
    assert best_entries(study) == {}
    assert best_table(study).row_count == 0


PARETO_POINTS = {  # (accuracy, bitops) -> on the front of the feasible trials?
    (0.90, 10.0): True, (0.80, 5.0): True, (0.70, 1.0): True, (0.95, 20.0): True,
    (0.70, 6.0): False,  # dominated by (0.80, 5)
    (0.85, 12.0): False,  # dominated by (0.90, 10)
    (0.90, 11.0): False,  # same accuracy as (0.90, 10), more bitops
}


def pareto_study(with_infeasible: bool) -> tuple[optuna.Study, set[int]]:
    study = make_study([ACCURACY, {"name": "bitops", "direction": "minimize", "scale": 1.0}],
                       choices={"weight_width": list(range(10))})
    front = set()
    for index, ((accuracy, bitops), on_front) in enumerate(PARETO_POINTS.items()):
        add(study, {"weight_width": index}, [accuracy, bitops], {"accuracy": accuracy, "bitops": bitops})
        if on_front:
            front.add(index)
    if with_infeasible:  # dominates every trial above, but breaks a constraint
        add(study, {"weight_width": 9}, [0.99, 0.5], {"accuracy": 0.99, "bitops": 0.5}, feasible=False)
    return study, front


@pytest.mark.parametrize("with_infeasible", [False, True])
def test_pareto_front_is_exactly_the_non_dominated_feasible_set(with_infeasible):
    study, front = pareto_study(with_infeasible)
    best = best_trials(study)
    assert set(numbers(best)) == front
    assert [trial.values[0] for trial in best] == sorted(trial.values[0] for trial in best)
    if not with_infeasible:
        assert set(numbers(best)) == set(numbers(study.best_trials))


def test_best_table_titles_and_print_best():
    study, front = pareto_study(with_infeasible=True)
    assert best_table(study).title == f"Pareto front ({len(front)} trials)"
    console = Console(record=True, width=220)
    print_best(study, console)
    text = console.export_text()
    assert "Pareto front (4 trials)" in text and "all: w 0" in text and "bitops (per sample) ↓" in text
    single = make_study([ACCURACY])
    add(single, {"weight_width": 4}, [0.8], {"accuracy": 0.8, "bitops": 9.0})
    table = best_table(single)
    assert table.title == "Best trial"
    assert [str(column.header) for column in table.columns] == [
        "Trial", "accuracy ↑", "Software metrics", "Hardware metrics", "Scaled metrics", "Configuration"]


# ---- rows and files -----------------------------------------------------------------------------


def test_trial_rows_have_one_column_per_metric_and_parameter_and_every_state():
    study = make_study([ACCURACY, BITOPS])
    add(study, {"data_in_width": 8, "weight_width": 4}, [0.9, 0.032], grid_metrics(8, 4))
    for state in (TrialState.FAIL, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING):
        add(study, {"data_in_width": 2, "weight_width": 2}, state=state)
    rows = trial_rows(study)
    assert [row["state"] for row in rows] == ["COMPLETE", "FAIL", "PRUNED", "RUNNING", "WAITING"]
    assert list(rows[0]) == ["number", "state", "values_0", "values_1", "loss", "accuracy", "bitops",
                             "model_size", "latency", "scaled_accuracy", "scaled_bitops", "feasible",
                             "seconds", "fail_reason", "params_data_in_width", "params_weight_width"]
    assert rows[0]["values_1"] == pytest.approx(0.032)
    assert rows[0]["scaled_bitops"] == pytest.approx(32000 * 1e-6)
    assert rows[0]["params_data_in_width"] == 8 and rows[0]["feasible"] is True
    assert rows[1]["values_0"] is None and rows[1]["accuracy"] is None


def test_failed_trials_and_their_reasons_reach_csv_and_html(single_outputs):
    study, written = single_outputs
    with written["trials_csv"].open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 17
    failed = [row for row in rows if row["state"] == "FAIL"]
    assert [row["fail_reason"] for row in failed] == ["NaN in <loss> & friends"]
    assert rows[0]["value"] and rows[0]["params_weight_width"] == "2"
    html_text = written["report_html"].read_text()
    assert "NaN in &lt;loss&gt; &amp; friends" in html_text
    assert "<loss>" not in html_text
    assert "Failed trials (1)" in html_text


def test_log_json_has_one_entry_per_trial_in_the_mase_shape(single_outputs, multi_outputs):
    keys = {"number", "params", "user_attrs", "state", "datetime_start", "datetime_complete", "duration"}
    for (study, written), value_key in ((single_outputs, "value"), (multi_outputs, "values")):
        log = json.loads(written["log_json"].read_text())
        assert list(log) == [str(index) for index in range(17)]
        assert all(set(entry) == keys | {value_key} for entry in log.values())
        assert log["0"]["params"] == {"data_in_width": 2, "weight_width": 2}
        assert log["0"]["user_attrs"][records.TRIAL_CONFIG] == {"data_in_width": 2, "weight_width": 2}
        assert log["16"]["state"] == "FAIL" and log["16"][value_key] is None
    assert len(log["0"]["values"]) == 2


def test_best_json_in_the_mase_shape(single_outputs, multi_outputs):
    keys = {"number", "value", "software_metrics", "hardware_metrics", "scaled_metrics", "sampled_config"}
    study, written = single_outputs
    best = json.loads(written["best_json"].read_text())
    assert list(best) == ["0"] and set(best["0"]) == keys
    assert best["0"]["number"] == 15 and best["0"]["value"] == pytest.approx(accuracy_of(16, 16))
    assert set(best["0"]["software_metrics"]) == {"accuracy", "loss"}
    assert set(best["0"]["hardware_metrics"]) == {"bitops", "model_size", "latency"}
    assert best["0"]["sampled_config"] == {"data_in_width": 16, "weight_width": 16}
    study, written = multi_outputs
    best = json.loads(written["best_json"].read_text())
    assert [entry["number"] for entry in best.values()] == numbers(best_trials(study))
    assert all(set(entry) == keys and len(entry["value"]) == 2 for entry in best.values())


def test_non_finite_values_are_written_as_json_null(tmp_path):
    study = make_study([ACCURACY])
    add(study, {"weight_width": 2}, [0.5], {"accuracy": 0.5, "latency": float("nan")})
    log = log_entries(study)
    assert log["0"]["user_attrs"][records.TRIAL_METRICS]["latency"] is None
    json.dumps(log, allow_nan=False)


def test_outputs_from_a_journal_storage_loaded_by_name(tmp_path):
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    grid_study([ACCURACY, BITOPS], storage=storage)
    loaded = optuna.load_study(study_name="jsc-ptq", storage=storage)
    written = write_search_outputs(loaded, tmp_path / "out")
    assert {"trials_csv", "log_json", "best_json", "history", "pareto", "heatmaps",
            "report_html"} <= set(written)
    assert all(path.is_file() for path in written.values())


def test_a_plain_optuna_study_without_machop_records_still_reports(tmp_path):
    study = optuna.create_study(directions=["minimize", "maximize"])
    study.optimize(lambda trial: (trial.suggest_categorical("x", [1, 2, 3]),
                                  trial.suggest_categorical("y", [1, 2])), n_trials=6)
    written = write_search_outputs(study, tmp_path)
    assert {"history", "pareto", "report_html"} <= set(written)
    assert trial_rows(study)[0]["params_x"] in (1, 2, 3)
    assert "objective 0" in best_table(study).columns[1].header


def test_empty_study_still_writes_files_and_a_page(tmp_path):
    written = write_search_outputs(make_study([ACCURACY]), tmp_path)
    assert set(written) == {"trials_csv", "log_json", "best_json", "report_html"}
    assert written["trials_csv"].read_text().startswith("number,state,value,")
    assert "The study has no trials." in written["report_html"].read_text()


# ---- plots --------------------------------------------------------------------------------------


def test_grid_heatmap_history_pareto_and_importance_pngs(multi_outputs):
    import matplotlib.image

    _, written = multi_outputs
    for name in ("heatmaps", "history", "pareto", "importance"):
        assert is_png(written[name]), name
        assert written[name].parent.name == "plots"
    image = matplotlib.image.imread(written["heatmaps"])
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600
    assert distinct_colours(written["heatmaps"]) > 50


def test_heatmap_cells_are_means_in_sorted_choice_order():
    study = make_study([ACCURACY])
    for data_in, weight, accuracy in [(8, 2, 0.6), (8, 2, 0.8), (2, 16, 0.5)]:
        add(study, {"data_in_width": data_in, "weight_width": weight}, [accuracy], {"accuracy": accuracy})
    trials = study.trials
    axes = tuple(param_stats.param_choices(study, trials, name) for name in ("data_in_width", "weight_width"))
    assert axes == (WIDTHS, WIDTHS)
    grid = param_stats.metric_grid(trials, "accuracy", ["data_in_width", "weight_width"], axes)
    assert grid[2, 0] == pytest.approx(0.7) and grid[0, 3] == pytest.approx(0.5)
    assert np.isnan(grid).sum() == 14


def test_heatmap_picks_two_parameters_or_refuses(tmp_path):
    choices = {"a": [1, 2, 3], "b": [1, 2, 3], "c": [1, 2]}
    study = make_study([ACCURACY], choices=choices)
    for a, b, c in itertools.product(*choices.values()):
        value = a * 0.1 + c * 0.01 + b * 0.001
        add(study, {"a": a, "b": b, "c": c}, [value], {"accuracy": value})
    assert param_stats.heatmap_params(study, study.trials) == ["a", "c"]
    assert is_png(plots.plot_heatmaps(study, tmp_path / "h.png"))
    assert is_png(plots.plot_heatmaps(study, tmp_path / "hb.png", params=["b", "c"]))
    with pytest.raises(SearchError, match="unknown search parameter 'd'"):
        plots.plot_heatmaps(study, tmp_path / "x.png", params=["a", "d"])
    one = make_study([ACCURACY], choices={"a": [1, 2]})
    add(one, {"a": 1}, [0.5], {"accuracy": 0.5})
    add(one, {"a": 2}, [0.6], {"accuracy": 0.6})
    assert plots.plot_heatmaps(one, tmp_path / "none.png") is None


def test_plots_that_do_not_apply_return_none(tmp_path, single_outputs):
    study, written = single_outputs
    assert "pareto" not in written and not (written["history"].parent / "pareto.png").exists()
    assert plots.plot_pareto(study, tmp_path / "p.png") is None
    single_param = make_study([ACCURACY], choices={"a": [1, 2]})
    add(single_param, {"a": 1}, [0.5], {"accuracy": 0.5})
    assert plots.plot_importance(single_param, tmp_path / "i.png") is None
    add(single_param, {"a": 2}, [0.6], {"accuracy": 0.6})
    assert plots.plot_importance(single_param, tmp_path / "i.png") is None
    assert plots.plot_history(make_study([ACCURACY]), tmp_path / "h.png") is None


def test_pareto_grid_for_three_objectives(tmp_path):
    latency = {"name": "latency", "direction": "minimize", "scale": 1.0}
    study = grid_study([ACCURACY, BITOPS, latency])
    assert is_png(plots.plot_pareto(study, tmp_path / "p3.png"))
    assert is_png(plots.plot_history(study, tmp_path / "h3.png"))


def test_sum_of_scaled_metrics_is_one_labelled_objective(tmp_path):
    study = make_study([ACCURACY, {**BITOPS, "scale": -1e-6}], sum_scaled=True, directions=["maximize"])
    for width in WIDTHS:
        metrics = grid_metrics(width, width)
        add(study, {"weight_width": width}, [metrics["accuracy"] - metrics["bitops"] * 1e-6], metrics)
    assert numbers(best_trials(study)) == [1]  # 4-bit: accuracy 0.735 less 0.016 Mbitops
    text = write_search_outputs(study, tmp_path)["report_html"].read_text()
    assert "the sum of scaled metrics" in text


# ---- HTML ---------------------------------------------------------------------------------------


def test_report_html_is_self_contained(multi_outputs):
    study, written = multi_outputs
    text = written["report_html"].read_text()
    assert text.count("data:image/png;base64,") == 4
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    assert "<link" not in text and "<script" not in text
    assert "Pareto front (" in text and "All trials (17)" in text and "jsc-tiny" in text


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="needs Chromium")
def test_report_html_renders_in_headless_chromium(multi_outputs, tmp_path):
    _, written = multi_outputs
    shot = tmp_path / "shot.png"
    subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
         written["report_html"].resolve().as_uri()],
        check=True, timeout=60, capture_output=True)
    assert is_png(shot)
    assert distinct_colours(shot) > 20


# ---- the float base model: the reference of tables, plots and pages -----------------------------


def with_base(study: optuna.Study, metrics: dict, values: list[float]) -> optuna.Study:
    """Record a float base model the way the strategy does (records.STUDY_BASE)."""
    objectives = study.user_attrs[records.STUDY_OBJECTIVES]
    study.set_user_attr(records.STUDY_BASE, {
        "metrics": metrics, "values": values, "feasible": True, "seconds": 0.5,
        "scaled": {o["name"]: metrics[o["name"]] * o["scale"] for o in objectives}})
    return study


def base_grid_study(objectives: list[dict]) -> optuna.Study:
    """The grid study with a float base: 32-bit everything, a little more accurate than any trial."""
    metrics = {"accuracy": 0.76, "loss": 0.24, "bitops": 1000.0 * 32 * 32, "model_size": 50 * 32,
               "latency": 0.42}
    values = [metrics[o["name"]] * o["scale"] for o in objectives]
    return with_base(grid_study(objectives), metrics, values)


def test_pareto_table_has_the_float_base_reference_row():
    study = base_grid_study([ACCURACY, BITOPS])
    console = Console(record=True, width=220)
    print_best(study, console)
    text = console.export_text()
    lines = [line for line in text.splitlines() if "float base" in line]
    assert len(lines) == 1 and "0.76" in lines[0] and "1.024" in lines[0]  # bitops x 1e-6
    assert text.index("Pareto front") < text.index("float base")  # under the front's rows
    front = best_trials(study)
    assert all(re.search(rf"│\s+{trial.number}\s+│", text) for trial in front)
    assert len(front) == len(best_trials(grid_study([ACCURACY, BITOPS])))  # a reference, not a trial


def test_single_objective_best_table_and_sweep_table_show_the_base():
    study = make_study([ACCURACY], choices={"m": [1, 2], "fixed": [8]})
    for m, accuracy in [(1, 0.8), (2, 0.9)]:
        add(study, {"m": m, "fixed": 8}, [accuracy], {"accuracy": accuracy, "params": 100.0 * m})
    with_base(study, {"accuracy": 0.85, "params": 50.0}, [0.85])
    console = Console(record=True, width=200)
    print_best(study, console)
    text = console.export_text()
    assert re.search(r"float base\s+│\s+0\.85", text)  # best-trial table
    assert re.search(r"params\s+│\s+100\s+│\s+200\s+│\s+50\b", text)  # sweep table: its own column


def test_base_metrics_json_page_and_plots_mark_the_reference(tmp_path):
    study = base_grid_study([ACCURACY, BITOPS])
    plain = write_search_outputs(grid_study([ACCURACY, BITOPS]), tmp_path / "plain")
    written = write_search_outputs(study, tmp_path / "base")
    saved = json.loads(written["base_json"].read_text())
    assert saved["label"] == "float base" and saved["values"] == [0.76, pytest.approx(1.024)]
    assert saved["metrics"]["bitops"] == 1024000.0 and saved["directions"] == ["maximize", "minimize"]
    assert [o["name"] for o in saved["objectives"]] == ["accuracy", "bitops"]
    assert "base_json" not in plain and not (tmp_path / "plain" / "base_metrics.json").exists()
    for name in ("pareto", "history", "heatmaps"):
        assert is_png(written[name]) and written[name].read_bytes() != plain[name].read_bytes(), name
    page = written["report_html"].read_text()
    assert '<tr class="reference">' in page and "float base" in page
    assert "Float base" in page and "accuracy 0.76" in page
    assert '<tr class="reference">' not in plain["report_html"].read_text()


def test_an_older_base_file_is_removed_when_the_study_has_no_record(tmp_path):
    write_search_outputs(base_grid_study([ACCURACY]), tmp_path)
    assert (tmp_path / "base_metrics.json").is_file()
    write_search_outputs(grid_study([ACCURACY]), tmp_path)
    assert not (tmp_path / "base_metrics.json").exists()


def test_a_base_that_could_not_be_evaluated_is_said_and_left_out(tmp_path):
    from machop.search.report.study_info import base_summary

    study = grid_study([ACCURACY, BITOPS])
    study.set_user_attr(records.STUDY_BASE, {"error": "RuntimeError: boom"})
    assert base_summary(study.user_attrs[records.STUDY_BASE], study) == [
        "Float base model: not evaluated (RuntimeError: boom)"]
    written = write_search_outputs(study, tmp_path)
    assert json.loads(written["base_json"].read_text())["error"] == "RuntimeError: boom"
    assert '<tr class="reference">' not in written["report_html"].read_text()
    assert is_png(written["pareto"])


def test_sweep_plot_renders_with_the_base_line(tmp_path):
    study = make_study([ACCURACY], choices={"m": [1, 2, 3], "fixed": [8]})
    for m in (1, 2, 3):
        add(study, {"m": m, "fixed": 8}, [0.7 + 0.05 * m], {"accuracy": 0.7 + 0.05 * m, "params": 10.0 * m})
    with_base(study, {"accuracy": 0.9, "params": 5.0}, [0.9])
    assert is_png(plots.plot_sweep(study, tmp_path / "sweep.png"))


def test_search_records_the_float_base_as_an_evaluation_of_the_base_model(cli, tmp_path, checkpoint,
                                                                            monkeypatch):
    import torch
    from tests.helpers.search import load, search_config

    from machop.api import prepare
    from machop.config.schema import RunConfig
    from machop.search.evaluator import TrialEvaluator

    config = search_config(tmp_path, setup='sampler = "random"\nn_trials = 2')
    result = cli("search", "-c", config, "--load", checkpoint, "--project-dir", tmp_path, "--project", "b")
    assert result.code == 0, result.stderr
    study = load(tmp_path / "b")
    base = study.user_attrs[records.STUDY_BASE]
    # The same model evaluated by hand: the checkpoint on the validation split, float32 throughout.
    prepared = prepare(RunConfig.model_validate({"model": "jsc-three-linear-layers", "dataset": "digits",
                                                 "seed": 3, "load_name": str(checkpoint)}))
    model, split = prepared.model.eval(), prepared.dataset.validation
    with torch.no_grad():
        accuracy = (model(split.x).argmax(dim=1) == split.y).float().mean().item()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert base["metrics"]["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert base["metrics"]["bitops"] == sum(m.in_features * m.out_features for m in linears) * 32 * 32
    assert base["metrics"]["params"] == sum(p.numel() for p in model.parameters())
    assert base["values"] == [pytest.approx(accuracy, abs=1e-6)] and base["feasible"] is True
    saved = json.loads((tmp_path / "b" / "search" / "base_metrics.json").read_text())
    assert saved["metrics"] == pytest.approx(base["metrics"])
    # Printed before the trials, and the reference row of the best-trial table.
    out = result.stdout
    assert out.index("Float base model") < out.index("Best trial") < out.index("float base")
    # Resuming keeps the record: the base is not evaluated again.
    monkeypatch.setattr(TrialEvaluator, "evaluate_base", lambda self: pytest.fail("evaluated twice"))
    again = cli("search", "-c", config, "--load", checkpoint, "--project-dir", tmp_path, "--project", "b",
                "--n-trials", "3")
    assert again.code == 0, again.stderr
    assert load(tmp_path / "b").user_attrs[records.STUDY_BASE] == base and "Float base model" in again.stdout
    # `machop report` reads the record back: the reference row and base_metrics.json.
    (tmp_path / "b" / "search" / "base_metrics.json").unlink()
    report = cli("report", tmp_path / "b")
    assert report.code == 0, report.stderr
    assert "float base" in report.stdout and "base_json" in report.stdout
    assert json.loads((tmp_path / "b" / "search" / "base_metrics.json").read_text())["metrics"] == base["metrics"]


def test_train_base_shows_its_epochs_then_the_base_before_the_trials(cli, tmp_path):
    config = tmp_path / "tb.toml"
    config.write_text(f"""
model = "jsc-toy"
dataset = "digits"
max_epochs = 2
seed = 1
[search]
train_base = true
{search_config_body()}""")
    result = cli("search", "-c", config, "--project-dir", tmp_path, "--project", "tb", "--n-trials", "1")
    assert result.code == 0, result.stderr
    out = result.stdout
    assert out.index("Training the base model jsc-toy") < out.index("epoch 1/2") < out.index("epoch 2/2")
    assert out.index("epoch 2/2") < out.index("Float base model") < out.index("Best trial")
    from machop.search.report.study_info import format_number

    trained = json.loads((tmp_path / "tb" / "metrics.json").read_text())["best"]["val_accuracy"]
    assert f"accuracy {format_number(trained)}" in out.split("Float base model")[1].splitlines()[0]


def search_config_body() -> str:
    """The [search.*] tables of a small quantization search on every linear layer."""
    return """[search.search_space]
name = "graph/quantize/mixed_precision_ptq"
setup = { by = "type", share_by_type = true }
[search.search_space.seed.default.config]
name = ["NA"]
[search.search_space.seed.linear.config]
name = ["integer"]
data_in_width = [8]
weight_width = [4, 8]
[search.strategy]
name = "optuna"
[search.strategy.sw_runner.basic_evaluation]
[search.strategy.hw_runner.bitops]
[search.strategy.setup]
sampler = "random"
[search.strategy.metrics]
accuracy.scale = 1.0
accuracy.direction = "maximize"
"""


# ---- constraints relative to the float base ------------------------------------------------------


def bounded_study(accuracies: list[float]) -> optuna.Study:
    """A study bounded by accuracy_drop <= 1% against a float base of 0.95, one trial per accuracy."""
    from optuna.distributions import CategoricalDistribution

    from machop.search.settings import parse_constraint

    study = make_study([BITOPS])
    study.set_user_attr(records.STUDY_CONFIG, {"strategy": {"constraints": {"accuracy_drop": "<= 1%"}}})
    study.set_user_attr(records.STUDY_BASE, {"metrics": {"accuracy": 0.95, "bitops": 1e6}, "values": [1.0]})
    bound, base = parse_constraint("accuracy_drop", "<= 1%"), {"accuracy": 0.95}
    for width, accuracy in zip(WIDTHS, accuracies):
        metrics = {"accuracy": accuracy, "bitops": 1000.0 * width}
        violation = bound.violation(metrics, base)
        study.add_trial(optuna.trial.create_trial(
            params={"weight_width": width}, distributions={"weight_width": CategoricalDistribution(WIDTHS)},
            values=[metrics["bitops"] * 1e-6], system_attrs={f"constraints:{bound.label}": violation},
            user_attrs={records.TRIAL_METRICS: metrics, records.TRIAL_CONFIG: {"weight_width": width},
                        records.TRIAL_FEASIBLE: violation <= 0, records.TRIAL_CONSTRAINTS: [violation],
                        records.TRIAL_CONSTRAINED: {"accuracy_drop": bound.measured(metrics, base)}}))
    return study


def test_reports_mark_infeasible_trials_and_say_what_the_bound_means():
    study = bounded_study([0.90, 0.95, 0.9405, 0.96])  # widths 2, 4, 8, 16: the first breaks the bound
    assert numbers(best_trials(study)) == [1]  # 2 bits is cheaper but infeasible
    entry = best_entries(study)["0"]
    assert entry["feasible"] is True and entry["constraints"] == {"accuracy_drop": 0.0}
    rows = trial_rows(study)
    assert [row["feasible"] for row in rows] == [False, True, True, True]
    assert rows[0]["accuracy_drop"] == pytest.approx(0.05 / 0.95)
    assert list(rows[0]).index("accuracy_drop") == list(rows[0]).index("feasible") + 1
    console = Console(record=True, width=220)
    print_best(study, console)
    assert ("Constraints: accuracy_drop <= 1% (accuracy >= 0.9405, from the float base's 0.95); "
            "3 of 4 COMPLETE trials feasible") in console.export_text()


def test_without_a_feasible_trial_the_table_names_the_closest():
    study = bounded_study([0.90, 0.93, 0.92, 0.80])
    assert best_trials(study) == [] and best_entries(study) == {}
    caption = str(best_table(study).caption)
    assert caption.startswith("no feasible COMPLETE trial yet: every COMPLETE trial breaks a constraint; "
                              "the closest is trial 1 (accuracy_drop 0.02105)")
