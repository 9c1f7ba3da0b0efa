"""Report features the experiments rely on: tied-label order, flat panels, the one-parameter sweep."""

from __future__ import annotations

import csv

from tests.helpers.studies import ACCURACY, add, make_study

from machop.search.report import param_stats, plots, print_best, write_search_outputs
from machop.search.report.sweep import sweep_rows

PAIRS = ["16,8", "8,6", "4,2", "8,4"]


def test_tied_labels_sort_by_their_numbers_not_as_text():
    study = make_study([ACCURACY], choices={"a": PAIRS, "b": ["x", "y"]})
    add(study, {"a": "16,8", "b": "x"}, [0.5], {"accuracy": 0.5})
    assert param_stats.param_choices(study, study.trials, "a") == ["4,2", "8,4", "8,6", "16,8"]
    assert param_stats.param_choices(study, study.trials, "b") == ["x", "y"]


def test_constant_metrics_get_a_flat_panel_and_are_not_hidden(tmp_path):
    study = make_study([ACCURACY], choices={"a": [1, 2], "b": [1, 2]})
    for a in (1, 2):
        for b in (1, 2):
            add(study, {"a": a, "b": b}, [0.1 * a + 0.01 * b],
                {"accuracy": 0.1 * a + 0.01 * b, "flops": 1312.0})
    metrics, constant = param_stats.split_constant_metrics(study.trials)
    assert metrics == ["accuracy"] and constant == {"flops": 1312.0}
    assert param_stats.heatmap_metrics(study.trials) == (["accuracy", "flops"], {})
    path = plots.plot_heatmaps(study, tmp_path / "h.png")
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
    crowded = {f"m{i}": float(i) for i in range(param_stats.MAX_PANELS)}  # constant, and too many
    add(study, {"a": 1, "b": 1}, [0.5], {"accuracy": 0.5, "flops": 1312.0, **crowded})
    trials = [t for t in study.trials if "m0" in t.user_attrs.get("machop_metrics", {})]
    shown, hidden = param_stats.heatmap_metrics(study.trials[:4] + trials)
    assert shown == ["accuracy"] and "flops" in hidden and len(hidden) == param_stats.MAX_PANELS + 1


def test_one_varying_parameter_gives_a_sweep_table_csv_and_plot(tmp_path, capsys):
    study = make_study([ACCURACY], choices={"m": [1, 2, 3, 4], "fixed": [8]})
    for m, accuracy in [(1, 0.8), (2, 0.9), (2, 0.7), (4, 0.95)]:
        add(study, {"m": m, "fixed": 8}, [accuracy], {"accuracy": accuracy, "params": 100.0 * m * m})
    rows = sweep_rows(study)
    assert [row["m"] for row in rows] == [1, 2, 4]  # a choice no trial took has no row
    assert [row["trials"] for row in rows] == [1, 2, 1]
    assert rows[1]["accuracy"] == 0.8 and rows[2]["params"] == 1600.0
    written = write_search_outputs(study, tmp_path)
    with written["sweep_csv"].open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["m"] for r in table] == ["1", "2", "4"] and list(table[0]) == ["m", "trials", "accuracy", "params"]
    assert written["sweep"].name == "sweep.png" and written["sweep"].is_file()
    print_best(study)
    assert "Metrics against m" in capsys.readouterr().out


def test_no_sweep_when_two_parameters_vary(tmp_path):
    study = make_study([ACCURACY], choices={"a": [1, 2], "b": [1, 2]})
    add(study, {"a": 1, "b": 1}, [0.5], {"accuracy": 0.5})
    add(study, {"a": 2, "b": 2}, [0.6], {"accuracy": 0.6})
    assert sweep_rows(study) == [] and plots.plot_sweep(study, tmp_path / "s.png") is None
    (tmp_path / "sweep.csv").write_text("stale")
    written = write_search_outputs(study, tmp_path)
    assert "sweep_csv" not in written and not (tmp_path / "sweep.csv").exists()
