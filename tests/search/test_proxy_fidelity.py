"""Proxy fidelity in reports: Spearman's rank correlation of proxy costs with measured ONNX costs."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState
from tests.helpers.studies import ACCURACY, add, make_study

from machop.search import records
from machop.search.report import write_search_outputs
from machop.search.report.proxy_fidelity import fidelity_table, proxy_fidelity
from machop.search.study import DEFAULT_STORAGE_FILE

optuna.logging.set_verbosity(optuna.logging.WARNING)

LATENCY = {"name": "onnx_latency", "direction": "minimize", "scale": 1.0}
# Five candidates: bitops ranks them 1..5, the measured latency 1, 3, 2, 5, 4 (two adjacent swaps);
# model_size ties the first two and the last two; onnx_size is the same for all.
BITOPS = [10.0, 20.0, 30.0, 40.0, 50.0]
MODEL_SIZE = [100, 100, 200, 300, 300]
LATENCY_MS = [1.0, 3.0, 2.0, 5.0, 4.0]


def hand_spearman(xs: list[float], ys: list[float]) -> float:
    """Pearson correlation of average ranks, written out (no scipy)."""
    def ranks(values):
        order = sorted(values)
        return [sum(i + 1 for i, v in enumerate(order) if v == value) / order.count(value) for value in values]
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    return cov / (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5


def fidelity_study(storage=None, trials: int = 5) -> optuna.Study:
    study = make_study([ACCURACY, LATENCY], storage=storage, choices={"w": [2, 3, 4, 5, 6]})
    for i in range(trials):
        metrics = {"accuracy": 0.9 - 0.01 * i, "bitops": BITOPS[i], "model_size": MODEL_SIZE[i],
                   "onnx_latency": LATENCY_MS[i], "onnx_size": 2000}
        add(study, {"w": i + 2}, [metrics["accuracy"], metrics["onnx_latency"]], metrics)
    # Reused configurations and failed trials do not count: if they did, rho would change.
    add(study, {"w": 2}, [0.9, 9.0], {"accuracy": 0.9, "bitops": 10.0, "model_size": 100,
                                      "onnx_latency": 9.0, "onnx_size": 2000},
        attrs={records.TRIAL_CACHED_FROM: 0})
    add(study, {"w": 3}, state=TrialState.FAIL, reason="NaN")
    return study


def test_spearman_values_match_the_hand_computed_rank_correlation():
    correlations = {(c.proxy, c.real): c for c in proxy_fidelity(fidelity_study())}
    assert set(correlations) == {(p, r) for p in ("bitops", "model_size") for r in ("onnx_latency", "onnx_size")}
    bitops = correlations["bitops", "onnx_latency"]
    # Without ties: 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 4 / 120.
    assert bitops.trials == 5 and bitops.rho == pytest.approx(0.8, abs=1e-12)
    assert hand_spearman(BITOPS, LATENCY_MS) == pytest.approx(0.8, abs=1e-12)
    size = correlations["model_size", "onnx_latency"]
    # With ties (average ranks): 7.5 / sqrt(9 * 10).
    assert size.rho == pytest.approx(7.5 / 90 ** 0.5, abs=1e-12)
    assert size.rho == pytest.approx(hand_spearman(MODEL_SIZE, LATENCY_MS), abs=1e-12)
    constant = correlations["bitops", "onnx_size"]
    assert constant.rho is None and constant.reason == "onnx_size constant"


def test_fewer_than_three_trials_is_one_line():
    table = fidelity_table(fidelity_study(trials=2))
    assert isinstance(table, str) and "needs at least 3" in table and "\n" not in table
    assert fidelity_table(make_study([ACCURACY])) is None  # no real cost: no section at all


def test_report_prints_the_table_and_writes_json_png_and_html(cli, tmp_path):
    from optuna.storages.journal import JournalFileBackend

    folder = tmp_path / "search"
    folder.mkdir()
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(folder / DEFAULT_STORAGE_FILE)))
    fidelity_study(storage)
    result = cli("report", tmp_path)
    assert result.code == 0, result.stderr
    out = result.stdout
    assert "Proxy fidelity" in out and "+0.800 (n=5)" in out and "+0.791 (n=5)" in out
    assert "onnx_size constant" in out
    saved = json.loads((folder / "proxy_fidelity.json").read_text())
    rows = {(row["proxy"], row["real"]): row for row in saved["correlations"]}
    assert rows["bitops", "onnx_latency"]["spearman"] == pytest.approx(0.8)
    assert rows["bitops", "onnx_size"]["spearman"] is None
    assert (folder / "plots" / "proxy_fidelity.png").read_bytes()[:4] == b"\x89PNG"
    html = (folder / "report.html").read_text()
    assert "<h2>Proxy fidelity</h2>" in html and "+0.800 (n=5)" in html


def test_a_study_without_real_costs_writes_no_fidelity_files(tmp_path):
    study = make_study([ACCURACY])
    add(study, {"data_in_width": 2, "weight_width": 2}, [0.5], {"accuracy": 0.5, "bitops": 4.0})
    (tmp_path / "proxy_fidelity.json").write_text("{}")  # stale, from another study
    written = write_search_outputs(study, tmp_path)
    assert "proxy_fidelity_json" not in written and not (tmp_path / "proxy_fidelity.json").exists()
    assert "Proxy fidelity" not in (tmp_path / "report.html").read_text()
