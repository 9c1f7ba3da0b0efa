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
            "feasible", *info.drop_names(trials), "seconds", "fail_reason",
            *(f"params_{name}" for name in info.param_names(study, trials)),
            *(f"derived_{name}" for name in info.derived_names(trials))]


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
            **info.trial_constrained(trial),
            "seconds": trial.user_attrs.get(records.TRIAL_SECONDS),
            "fail_reason": info.fail_reason(trial),
            **{f"params_{name}": value for name, value in config.items()},
            **{f"derived_{name}": value for name, value in info.trial_derived(trial).items()}}


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


def _total_violation(trial: FrozenTrial) -> float:
    """The sum of the trial's positive constraint violations (how Optuna ranks infeasible trials)."""
    return sum(max(0.0, float(value)) for value in trial.user_attrs.get(records.TRIAL_CONSTRAINTS) or [])


def closest_infeasible(study: optuna.Study) -> FrozenTrial | None:
    """The COMPLETE infeasible trial that breaks its constraints by the least."""
    broken = [trial for trial in info.complete_trials(study) if not info.is_feasible(trial)]
    return min(broken, key=lambda trial: (_total_violation(trial), trial.number)) if broken else None


def no_feasible_text(study: optuna.Study) -> str:
    """Why the best-trial table is empty: no COMPLETE trial, or every one breaks a constraint."""
    closest = closest_infeasible(study)
    if closest is None:
        return "no feasible COMPLETE trial yet"
    measured = ", ".join(f"{key} {info.format_number(value)}"
                         for key, value in info.trial_constrained(closest).items())
    return (f"no feasible COMPLETE trial yet: every COMPLETE trial breaks a constraint; the closest is trial "
            f"{closest.number}" + (f" ({measured})" if measured else ""))


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
            info.format_mapping(shown_config(trial), ", ")]


def _per_channel_text(values: list[Any]) -> str:
    """A per-channel list as its range: "3..5 per channel" (dozens of numbers read badly)."""
    low, high = min(values), max(values)
    return f"{low} per channel" if low == high else f"{low}..{high} per channel"


def shown_config(trial: FrozenTrial) -> dict[str, Any]:
    """The sampled choices, then what the space derived (calibrated frac widths), lists as ranges."""
    derived = {name: _per_channel_text(value) if isinstance(value, list) and value else value
               for name, value in info.trial_derived(trial).items()}
    return {**info.trial_config(trial), **derived}


def best_title(study: optuna.Study, count: int) -> str:
    """'Best trial' or 'Pareto front (N trials)'."""
    if not info.is_multi_objective(study):
        return "Best trial"
    return f"Pareto front ({count} trial{'' if count == 1 else 's'})"


COMPACT_COLUMNS = ("Software metrics", "Hardware metrics", "Scaled metrics")

# ---- compact configurations: one line per node ---------------------------------------------------
#
# A parameter `[space:]node/field` is shown as `node: label value` with the fields of one node on
# one line, e.g. `seq_blocks_2: in 4, w 3`. Labels: an operand's width is the operand's short
# name (data_in -> in, weight -> w, bias -> b, data_out -> out); its other fields add a suffix
# (frac_width /f, exponent_width /e, exponent_bias /eb, block_size /bs): `in/f 2`. Other fields:
# channel_multiplier -> `ch ×2`, name (the arithmetic) -> its value alone (`integer`; "NA" reads
# `float`), training hyperparameters (`train/...`) -> lr, batch, epochs, wd, opt. A tied key
# joins its labels with "+" (`in+in/f 8,4`). Parameters without a node (a uniform multiplier)
# go on an `all:` line. A composite space's prefix is dropped (its fields tell redefine from
# quantize) unless it is numbered (`quantize2:seq_blocks_2`). Unknown fields keep their name.

OPERAND_LABELS = {"data_in": "in", "weight": "w", "bias": "b", "data_out": "out"}
OPERAND_FIELD_LABELS = {"width": "", "frac_width": "/f", "exponent_width": "/e",
                        "exponent_bias": "/eb", "block_size": "/bs"}
FIELD_LABELS = {"channel_multiplier": "ch", "learning_rate": "lr", "batch_size": "batch",
                "max_epochs": "epochs", "weight_decay": "wd", "optimizer": "opt"}
NO_NODE = "all"


def field_label(field: str) -> str:
    """The short label of one config field: data_in_frac_width -> in/f, weight_width -> w."""
    if "+" in field:  # a tied key
        return "+".join(field_label(part) for part in field.split("+"))
    for operand, short in OPERAND_LABELS.items():
        if field.startswith(operand + "_"):
            rest = field[len(operand) + 1:]
            return short + OPERAND_FIELD_LABELS.get(rest, "/" + rest)
    return FIELD_LABELS.get(field, field)


def _split_param(param: str) -> tuple[str, str]:
    """(node, field) of `[space:]node/field`; the node is NO_NODE for a space-wide parameter."""
    space, _, rest = param.partition(":") if ":" in param.split("/")[0] else ("", "", param)
    node, _, field = rest.rpartition("/")
    node = node or NO_NODE
    if space and space[-1].isdigit():  # a second space of one kind: keep them apart
        node = f"{space}:{node}"
    return node, field


def _value_text(field: str, value: Any) -> str:
    if field == "name":
        return "float" if value is None else str(value)
    text = "NA" if value is None else info.format_number(value)
    return f"×{text}" if field == "channel_multiplier" else text


def compact_config(config: dict[str, Any], separator: str = "\n") -> str:
    """A trial's sampled configuration, one `node: label value, ...` line per node."""
    lines: dict[str, list[str]] = {}
    for param, value in config.items():
        node, field = _split_param(param)
        text = _value_text(field, value)
        lines.setdefault(node, []).append(text if field == "name" else f"{field_label(field)} {text}")
    return separator.join(f"{node}: {', '.join(items)}" for node, items in lines.items())


def config_legend(configs: list[dict[str, Any]]) -> str:
    """'in = data_in_width, w = weight_width' for the abbreviations `compact_config` used."""
    fields = dict.fromkeys(field for config in configs for param in config
                           for field in _split_param(param)[1].split("+"))
    pairs = [f"{field_label(field)} = {field}" for field in fields
             if field != "name" and field_label(field) != field]
    return ", ".join(pairs)


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
    configs = [shown_config(trial) for trial in trials]
    for trial, config in zip(trials, configs):
        cells = best_cells(trial)
        cells[headers.index("Configuration")] = compact_config(config)
        # Text, not markup: configuration values may contain brackets.
        table.add_row(*(Text(cells[index]) for index in keep))
    if not trials:
        table.caption = no_feasible_text(study)
    elif legend := config_legend(configs):
        table.caption, table.caption_justify = legend, "left"
    return table


# ---- the float base model as the reference row of the best-trial table -------------------------

BASE_CONFIGURATION = "the base model, untransformed (reference)"


def base_cells(study: optuna.Study, separator: str = "\n") -> list[str] | None:
    """The best-trial table's cells for the float base model; None when the study has no record."""
    record = info.base_record(study)
    if record is None:
        return None
    software, hardware = info.split_metrics(record["metrics"])
    values = info.base_values(study) or [None] * len(study.directions)
    return [info.BASE_LABEL, *(info.format_number(value) for value in values),
            info.format_mapping(software, separator), info.format_mapping(hardware, separator),
            info.format_mapping(record.get("scaled") or {}, separator), BASE_CONFIGURATION]


def add_base_row(table: Table, study: optuna.Study) -> Table:
    """Append the float base model under the trials of a best-trial table, cell by column header."""
    cells = base_cells(study)
    if cells is not None:
        by_header = dict(zip(best_headers(study), cells))
        table.add_row(*(Text(by_header.get(str(column.header), "")) for column in table.columns),
                      style="italic")
    return table
