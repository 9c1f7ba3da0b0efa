"""Trials as rows, the best trial or Pareto front, and the terminal table of the best."""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.table import Table
from rich.text import Text

from machop.search import records
from machop.search.report import study_info as info


def value_columns(study: optuna.Study) -> list[str]:
    """'value', or 'values_0', 'values_1', ... as Optuna's trials_dataframe names them."""
    count = len(study.directions)
    return ["value"] if count == 1 else [f"values_{i}" for i in range(count)]


def row_columns(study: optuna.Study, trials: list[FrozenTrial]) -> list[str]:
    """The stable column order of trial_rows."""
    return ["number", "state", *value_columns(study),
            *info.metric_names(trials),
            *(f"scaled_{name}" for name in info.scaled_names(trials)),
            "feasible", "seconds", "fail_reason",
            *(f"params_{name}" for name in info.param_names(study, trials))]


def _feasible_cell(trial: FrozenTrial) -> bool | None:
    recorded = trial.user_attrs.get(records.TRIAL_FEASIBLE)
    if recorded is None and trial.state != TrialState.COMPLETE:
        return None
    return info.is_feasible(trial)


def _trial_row(study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
    values = trial.values or [None] * len(study.directions)
    config = info.trial_config(trial)
    return {"number": trial.number, "state": trial.state.name,
            **dict(zip(value_columns(study), values)),
            **info.trial_metrics(trial),
            **{f"scaled_{name}": value for name, value in info.trial_scaled(trial).items()},
            "feasible": _feasible_cell(trial),
            "seconds": trial.user_attrs.get(records.TRIAL_SECONDS),
            "fail_reason": info.fail_reason(trial),
            **{f"params_{name}": value for name, value in config.items()}}


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial: state, values, raw and scaled metrics, feasibility, time, reason, params."""
    trials = info.all_trials(study)
    columns = row_columns(study, trials)
    rows = []
    for trial in trials:
        row = _trial_row(study, trial)
        rows.append({column: row.get(column) for column in columns})
    return rows


def _minimized(study: optuna.Study, trials: list[FrozenTrial]) -> np.ndarray:
    signs = np.array([1.0 if direction == "minimize" else -1.0 for direction in info.directions(study)])
    return np.array([trial.values for trial in trials], dtype=float).reshape(len(trials), -1) * signs


def pareto_front(study: optuna.Study, trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that no other trial in `trials` dominates."""
    points = _minimized(study, trials)
    front = []
    for index, point in enumerate(points):
        dominated = np.all(points <= point, axis=1) & np.any(points < point, axis=1)
        if not dominated.any():
            front.append(trials[index])
    return front


def feasible_complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials with objective values and no violated constraint."""
    return [trial for trial in info.complete_trials(study) if trial.values and info.is_feasible(trial)]


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best feasible trial (single objective) or the feasible Pareto front, by first objective."""
    candidates = feasible_complete_trials(study)
    if not candidates:
        return []
    if info.is_multi_objective(study):
        # The front of the feasible trials: an infeasible trial must not hide a feasible one.
        return sorted(pareto_front(study, candidates), key=lambda trial: (trial.values[0], trial.number))
    sign = 1.0 if info.directions(study)[0] == "minimize" else -1.0
    return [min(candidates, key=lambda trial: (sign * trial.values[0], trial.number))]


def best_headers(study: optuna.Study) -> list[str]:
    """Column headers of the best-trial table."""
    return ["Trial", *info.objective_labels(study),
            "Software metrics", "Hardware metrics", "Scaled metrics", "Configuration"]


def best_cells(trial: FrozenTrial, separator: str = "\n") -> list[str]:
    """The best-trial table's cells for one trial, as text."""
    software, hardware = info.split_metrics(info.trial_metrics(trial))
    return [str(trial.number), *(info.format_number(value) for value in info.trial_value_list(trial)),
            info.format_mapping(software, separator), info.format_mapping(hardware, separator),
            info.format_mapping(info.trial_scaled(trial), separator),
            info.format_mapping(info.trial_config(trial), ", ")]


def best_title(study: optuna.Study, count: int) -> str:
    """'Best trial' or 'Pareto front (N trials)'."""
    if not info.is_multi_objective(study):
        return "Best trial"
    return f"Pareto front ({count} trial{'' if count == 1 else 's'})"


COMPACT_COLUMNS = ("Software metrics", "Hardware metrics", "Scaled metrics")


def best_table(study: optuna.Study, compact: bool = False) -> Table:
    """A rich table of the best trial or the Pareto front (compact: objectives and configuration)."""
    trials = best_trials(study)
    table = Table(title=best_title(study, len(trials)), title_justify="left", show_lines=True)
    headers = best_headers(study)
    keep = [i for i, h in enumerate(headers) if not (compact and h in COMPACT_COLUMNS)]
    for index in keep:
        header = headers[index]
        numeric = header == "Trial" or header in info.objective_labels(study)
        table.add_column(Text(header), justify="right" if numeric else "left", overflow="fold")
    for trial in trials:
        cells = best_cells(trial)
        # Text, not markup: configuration values may contain brackets.
        table.add_row(*(Text(cells[index]) for index in keep))
    if not trials:
        table.caption = "no feasible COMPLETE trial yet"
    return table
