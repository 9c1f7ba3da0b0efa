"""Write a search's outputs: trials.csv, MASE-compatible log.json and best.json, base_metrics.json,
plots, report.html."""

from __future__ import annotations

import csv
import io
import math
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from machop.io_atomic import write_json_atomic, write_text_atomic
from machop.search import records
from machop.search.report import plots
from machop.search.report import study_info as info
from machop.search.report.html import write_html
from machop.search.report.param_stats import all_importances
from machop.search.report.proxy_fidelity import plot_fidelity, write_fidelity_json
from machop.search.report.sweep import write_sweep_csv
from machop.search.report.tables import best_trials, row_columns, trial_rows

PLOT_FILES = {"history": "history.png", "pareto": "pareto.png", "heatmaps": "heatmaps.png",
              "sweep": "sweep.png", "importance": "importance.png", "proxy_fidelity": "proxy_fidelity.png"}


def json_safe(value: Any) -> Any:
    """The value with non-finite floats as null and every container as plain JSON types."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def write_trials_csv(study: optuna.Study, path: Path) -> Path:
    """trials.csv: one row per trial, columns in trial_rows' stable order."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=row_columns(study, info.all_trials(study)),
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(trial_rows(study))
    return write_text_atomic(path, buffer.getvalue())


def _epoch_ms(moment: datetime | None) -> int | None:
    return None if moment is None else round(moment.timestamp() * 1000)


def _duration_ms(trial: FrozenTrial) -> int | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return round((trial.datetime_complete - trial.datetime_start).total_seconds() * 1000)


def _value_entry(study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
    if info.is_multi_objective(study):
        return {"values": None if trial.values is None else list(trial.values)}
    return {"value": trial.value if trial.values is not None else None}


def log_entries(study: optuna.Study) -> dict[str, dict[str, Any]]:
    """log.json: {index: number, value(s), params, user_attrs, state, times} per trial."""
    entries = {}
    for index, trial in enumerate(info.all_trials(study)):
        entries[str(index)] = json_safe({
            "number": trial.number, **_value_entry(study, trial), "params": dict(trial.params),
            "user_attrs": dict(trial.user_attrs), "state": trial.state.name,
            # Times as pandas' to_json writes them for MASE: epoch and duration in milliseconds.
            "datetime_start": _epoch_ms(trial.datetime_start),
            "datetime_complete": _epoch_ms(trial.datetime_complete),
            "duration": _duration_ms(trial)})
    return entries


def best_entries(study: optuna.Study) -> dict[str, dict[str, Any]]:
    """best.json: {index: number, value, software/hardware/scaled metrics, sampled_config}, and with
    constraints, `feasible` and the bounded quantities (`constraints`: {accuracy_drop: ...})."""
    entries = {}
    bounded = bool(info.constraints(study))
    for index, trial in enumerate(best_trials(study)):
        software, hardware = info.split_metrics(info.trial_metrics(trial))
        value = list(trial.values) if info.is_multi_objective(study) else trial.value
        entry = {"number": trial.number, "value": value, "software_metrics": software,
                 "hardware_metrics": hardware, "scaled_metrics": info.trial_scaled(trial),
                 "sampled_config": info.trial_config(trial)}
        if bounded:
            entry.update(feasible=info.is_feasible(trial), constraints=info.trial_constrained(trial))
        entries[str(index)] = json_safe(entry)
    return entries


def base_entry(study: optuna.Study) -> dict[str, Any] | None:
    """base_metrics.json: the float base model scored like a trial (None in older studies)."""
    record = study.user_attrs.get(records.STUDY_BASE)
    if not isinstance(record, dict):
        return None
    return json_safe({"label": info.BASE_LABEL, "objectives": info.objectives(study),
                      "directions": info.directions(study), **record})


def write_base_json(study: optuna.Study, path: Path) -> Path | None:
    """Write base_metrics.json when the study recorded its base; else remove a stale one."""
    entry = base_entry(study)
    if entry is None:
        Path(path).unlink(missing_ok=True)
        return None
    return write_json_atomic(path, entry)


def write_plots(study: optuna.Study, plot_dir: Path) -> dict[str, Path | None]:
    """Every plot as PNG under plot_dir; None for a plot that does not apply."""
    importances = all_importances(study)  # computed once: the slowest part of a report
    makers = {"history": plots.plot_history, "pareto": plots.plot_pareto,
              "heatmaps": partial(plots.plot_heatmaps, importances=importances),
              "sweep": plots.plot_sweep,
              "importance": partial(plots.plot_importance, importances=importances),
              "proxy_fidelity": plot_fidelity}
    written = {}
    for name, make in makers.items():
        path = plot_dir / PLOT_FILES[name]
        written[name] = make(study, path)
        if written[name] is None:
            # A plot left from an earlier report of another study would contradict this one.
            path.unlink(missing_ok=True)
    return written


def write_search_outputs(study: optuna.Study, out_dir: Path) -> dict[str, Path]:
    """Write trials.csv, log.json, best.json, base_metrics.json (when recorded), proxy_fidelity.json
    (proxy and real costs), sweep.csv (one varying parameter), plots/*.png and report.html; return
    what was written."""
    out_dir = Path(out_dir)
    written = {"trials_csv": write_trials_csv(study, out_dir / "trials.csv"),
               "log_json": write_json_atomic(out_dir / "log.json", log_entries(study)),
               "best_json": write_json_atomic(out_dir / "best.json", best_entries(study))}
    base = write_base_json(study, out_dir / "base_metrics.json")
    if base is not None:
        written["base_json"] = base
    fidelity = write_fidelity_json(study, out_dir / "proxy_fidelity.json")
    if fidelity is not None:
        written["proxy_fidelity_json"] = fidelity
    sweep = write_sweep_csv(study, out_dir / "sweep.csv")
    if sweep is not None:
        written["sweep_csv"] = sweep
    figures = write_plots(study, out_dir / "plots")
    written.update({name: path for name, path in figures.items() if path is not None})
    written["report_html"] = write_html(study, out_dir, figures)
    return written
