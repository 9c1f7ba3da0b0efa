"""The table of every metric against the one parameter a search varies (mean per choice)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import optuna
from rich.table import Table

from machop.io_atomic import write_text_atomic
from machop.search.report import param_stats as stats
from machop.search.report import study_info as info

MAX_ROWS = 50


def sweep_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per choice of the only varying parameter: the choice, trial count, mean metrics."""
    trials = info.complete_trials(study)
    param = stats.sweep_param(study, trials)
    if param is None:
        return []
    choices = stats.param_choices(study, trials, param)
    if len(choices) > MAX_ROWS:
        return []
    metrics = stats.sweep_metrics(trials)
    columns = {name: stats.sweep_values(trials, name, param, choices) for name in metrics}
    counts = [sum(stats.hashable(info.trial_config(t).get(param)) == choice for t in trials)
              for choice in choices]
    return [{param: choice, "trials": count,
             **{name: (None if math.isnan(values[i]) else float(values[i])) for name, values in columns.items()}}
            for i, (choice, count) in enumerate(zip(choices, counts)) if count]


def sweep_table(study: optuna.Study) -> Table | None:
    """sweep_rows as a rich table, one row per metric and one column per choice (narrow terminals).

    None when the search does not vary exactly one parameter.
    """
    rows = sweep_rows(study)
    if not rows:
        return None
    param = next(iter(rows[0]))
    table = Table(title=f"Metrics against {param} (mean over the trials of each choice)",
                  title_justify="left")
    table.add_column(param, justify="left")
    for row in rows:
        table.add_column(info.format_number(row[param]), justify="right")
    base = info.base_metrics(study)
    if base:
        table.add_column(info.BASE_LABEL, justify="right", style="italic")
    for name in list(rows[0])[1:]:
        unit = info.metric_unit(name)
        cells = [info.format_number(row[name]) for row in rows]
        if base:
            cells.append("" if name == "trials" else info.format_number(info.finite(base.get(name))))
        table.add_row(f"{name} ({unit})" if unit else name, *cells)
    return table


def write_sweep_csv(study: optuna.Study, path: Path) -> Path | None:
    """sweep.csv (the sweep table) when exactly one parameter varies; else nothing, and None."""
    rows = sweep_rows(study)
    if not rows:
        Path(path).unlink(missing_ok=True)
        return None
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())
