"""Read what the search strategy recorded (records.py) from a study and its trials."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from machop.errors import SearchError
from machop.metrics.registry import METRICS
from machop.search import records
from machop.search.settings import DROP_SUFFIX, Constraint, parse_constraint

SUM_SCALED_NAME = "sum of scaled metrics"


def all_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Every trial of the study, by number."""
    return sorted(study.get_trials(deepcopy=False), key=lambda trial: trial.number)


def complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The COMPLETE trials, by number."""
    return [trial for trial in all_trials(study) if trial.state == TrialState.COMPLETE]


def is_feasible(trial: FrozenTrial) -> bool:
    """False only when the strategy recorded a violated constraint."""
    return trial.user_attrs.get(records.TRIAL_FEASIBLE, True) is not False


def constraints(study: optuna.Study) -> list[Constraint]:
    """The study's [search.strategy.constraints], parsed (entries that no longer parse are left out)."""
    strategy = (study.user_attrs.get(records.STUDY_CONFIG) or {}).get("strategy") or {}
    table = strategy.get("constraints") or {}
    parsed = []
    for name, text in table.items() if isinstance(table, dict) else ():
        try:
            parsed.append(parse_constraint(name, text))
        except SearchError:
            continue
    return parsed


def trial_constrained(trial: FrozenTrial) -> dict[str, Any]:
    """Per constraint key, the bounded quantity the strategy measured (accuracy_drop, ...)."""
    return dict(trial.user_attrs.get(records.TRIAL_CONSTRAINED) or {})


def drop_names(trials: Sequence[FrozenTrial]) -> list[str]:
    """The drop constraints' keys recorded by any trial (accuracy_drop, ...), in first-seen order."""
    names: dict[str, None] = {}
    for trial in trials:
        names.update((key, None) for key in trial_constrained(trial) if key.endswith(DROP_SUFFIX))
    return list(names)


def constraints_line(study: optuna.Study) -> str | None:
    """'Constraints: accuracy_drop <= 1% (accuracy >= 0.9405, from the float base's 0.95); 12 of 40
    COMPLETE trials feasible', or None without constraints."""
    parsed = constraints(study)
    if not parsed:
        return None
    base = base_metrics(study)
    parts = []
    for constraint in parsed:
        reference = finite(base.get(constraint.metric))
        if constraint.drop and reference is not None:
            drop = constraint.bound * abs(reference) if constraint.relative else constraint.bound
            parts.append(f"{constraint.label} ({constraint.metric} >= {format_number(reference - drop)}, "
                         f"from the float base's {format_number(reference)})")
        else:
            parts.append(constraint.label)
    complete = complete_trials(study)
    feasible = sum(is_feasible(trial) for trial in complete)
    return f"Constraints: {'; '.join(parts)}; {feasible} of {len(complete)} COMPLETE trials feasible"


def is_multi_objective(study: optuna.Study) -> bool:
    """True when the study has more than one objective."""
    return len(study.directions) > 1


def directions(study: optuna.Study) -> list[str]:
    """'minimize' or 'maximize' per objective."""
    return [direction.name.lower() for direction in study.directions]


def objectives(study: optuna.Study) -> list[dict[str, Any]]:
    """The recorded objectives [{"name", "direction", "scale"}] (empty when not recorded)."""
    recorded = study.user_attrs.get(records.STUDY_OBJECTIVES) or []
    return [dict(objective) for objective in recorded if isinstance(objective, dict)]


def sums_scaled_metrics(study: optuna.Study) -> bool:
    """True when the single objective is a weighted sum of scaled metrics."""
    return bool(study.user_attrs.get(records.STUDY_SUM_SCALED, False))


def objective_names(study: optuna.Study) -> list[str]:
    """One metric name per study objective (a generic name where none is recorded)."""
    recorded = objectives(study)
    count = len(study.directions)
    if sums_scaled_metrics(study) and count == 1 and len(recorded) != 1:
        return [SUM_SCALED_NAME]
    if len(recorded) == count:
        return [str(objective.get("name", f"objective {i}")) for i, objective in enumerate(recorded)]
    return ["objective"] if count == 1 else [f"objective {i}" for i in range(count)]


def objective_scales(study: optuna.Study) -> list[float]:
    """The scale applied to each objective's metric (1.0 where none is recorded)."""
    recorded = objectives(study)
    if len(recorded) != len(study.directions):
        return [1.0] * len(study.directions)
    return [float(objective.get("scale", 1.0) or 1.0) for objective in recorded]


def metric_unit(name: str) -> str:
    """The metric's unit from the registry ('' when unitless or unknown)."""
    metric = METRICS.get(name)
    return metric.unit if metric else ""


def metric_label(name: str, scale: float = 1.0) -> str:
    """Axis label such as 'bitops x 1e-06 (per sample)'."""
    label = name if scale == 1.0 else f"{name} × {scale:g}"
    unit = metric_unit(name)
    return f"{label} ({unit})" if unit else label


def objective_labels(study: optuna.Study) -> list[str]:
    """Axis label per objective: metric, scale, unit and an arrow pointing the better way."""
    names, scales = objective_names(study), objective_scales(study)
    return [f"{metric_label(name, scale)} {'↑' if direction == 'maximize' else '↓'}"
            for name, scale, direction in zip(names, scales, directions(study))]


def metric_direction(name: str) -> str:
    """The metric's natural direction ('minimize' for unknown metrics)."""
    metric = METRICS.get(name)
    return metric.direction if metric else "minimize"


def is_software_metric(name: str) -> bool:
    """Classification metrics are software metrics; every other group is hardware."""
    metric = METRICS.get(name)
    return metric is not None and metric.group == "classification"


def trial_metrics(trial: FrozenTrial) -> dict[str, Any]:
    """The raw metrics the strategy recorded for the trial."""
    return dict(trial.user_attrs.get(records.TRIAL_METRICS) or {})


def trial_scaled(trial: FrozenTrial) -> dict[str, Any]:
    """The scaled objective metrics the strategy recorded for the trial."""
    return dict(trial.user_attrs.get(records.TRIAL_SCALED) or {})


def trial_config(trial: FrozenTrial) -> dict[str, Any]:
    """The sampled choices: the recorded config, else the trial's Optuna params."""
    config = trial.user_attrs.get(records.TRIAL_CONFIG)
    return dict(config) if isinstance(config, dict) else dict(trial.params)


def trial_derived(trial: FrozenTrial) -> dict[str, Any]:
    """What the space chose beyond the sample (calibrated frac widths), by parameter-like name."""
    derived = trial.user_attrs.get(records.TRIAL_DERIVED)
    return dict(derived) if isinstance(derived, dict) else {}


def derived_names(trials: Sequence[FrozenTrial]) -> list[str]:
    """Every derived name any trial recorded, in first-seen order."""
    return first_seen([list(trial_derived(trial)) for trial in trials], [])


def split_metrics(metrics: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(software, hardware) metrics."""
    software = {name: value for name, value in metrics.items() if is_software_metric(name)}
    hardware = {name: value for name, value in metrics.items() if not is_software_metric(name)}
    return software, hardware


STALE = "failed by the heartbeat check: its worker stopped (crashed, frozen or cut off); re-queued"


def fail_reason(trial: FrozenTrial) -> str | None:
    """Why a trial failed, as the strategy recorded it."""
    reason = trial.user_attrs.get(records.TRIAL_FAIL)
    if reason is None and trial.state == TrialState.FAIL:
        reason = trial.system_attrs.get("fail_reason") or STALE
    return None if reason is None else str(reason)


def first_seen(keys_per_trial: list[list[str]], preferred: Sequence[str] = ()) -> list[str]:
    """Union of keys, `preferred` ones first, then in the order they first appear."""
    return list(dict.fromkeys([*preferred, *(key for keys in keys_per_trial for key in keys)]))


def metric_names(trials: list[FrozenTrial]) -> list[str]:
    """Every raw metric recorded by any trial, in registry order, then unknown ones."""
    seen = first_seen([list(trial_metrics(trial)) for trial in trials])
    return sorted(seen, key=lambda name: (list(METRICS).index(name) if name in METRICS else len(METRICS)))


def scaled_names(trials: list[FrozenTrial]) -> list[str]:
    """Every scaled metric recorded by any trial."""
    return first_seen([list(trial_scaled(trial)) for trial in trials])


def space_choices(study: optuna.Study) -> dict[str, list[Any]]:
    """The space's choices per parameter as recorded ({} when not recorded)."""
    space = study.user_attrs.get(records.STUDY_SPACE) or {}
    choices = space.get("choices") if isinstance(space, dict) else None
    return dict(choices) if isinstance(choices, dict) else {}


def param_names(study: optuna.Study, trials: list[FrozenTrial]) -> list[str]:
    """Every sampled parameter, in the space's order, then in order of appearance."""
    return first_seen([list(trial_config(trial)) for trial in trials], list(space_choices(study)))


def model_info(study: optuna.Study) -> dict[str, Any]:
    """The recorded {"model", "dataset", "load_name"} ({} when not recorded)."""
    info = study.user_attrs.get(records.STUDY_MODEL)
    return dict(info) if isinstance(info, dict) else {}


def study_title(study: optuna.Study) -> str:
    """'study — model on dataset' (as much as is recorded)."""
    info = model_info(study)
    model, dataset = info.get("model"), info.get("dataset")
    what = " on ".join(str(part) for part in (model, dataset) if part)
    return f"{study.study_name} — {what}" if what else study.study_name


def finite(value: Any) -> float | None:
    """The value as a float when it is a finite number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def format_number(value: Any) -> str:
    """Compact, readable text for a metric or objective value."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e6:
        return f"{int(value):,}"
    return f"{value:.4g}"


def format_mapping(values: dict[str, Any], separator: str = "\n") -> str:
    """'k=v' lines (or one line with another separator)."""
    return separator.join(f"{key}={format_number(value)}" for key, value in values.items())


def trial_value_list(trial: FrozenTrial) -> list[float | None]:
    """The trial's objective values (Nones when it has none)."""
    return list(trial.values) if trial.values is not None else []


# ---- the float base model, the reports' reference (records.STUDY_BASE) --------------------------

BASE_LABEL = "float base"


def base_record(study: optuna.Study) -> dict[str, Any] | None:
    """The recorded evaluation of the float base model; None in older studies or when it failed."""
    record = study.user_attrs.get(records.STUDY_BASE)
    if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
        return None
    return record


def base_metrics(study: optuna.Study) -> dict[str, Any]:
    """The float base model's raw metrics ({} when not recorded)."""
    record = base_record(study)
    return dict(record["metrics"]) if record else {}


def base_values(study: optuna.Study) -> list[float] | None:
    """The float base model's objective values, scored like a trial's (None when not recorded)."""
    record = base_record(study)
    values = record.get("values") if record else None
    if not isinstance(values, list) or len(values) != len(study.directions):
        return None
    numbers = [finite(value) for value in values]
    return None if any(number is None for number in numbers) else numbers  # type: ignore[return-value]


def _metric_text(name: str, value: Any) -> str:
    unit = metric_unit(name)
    return f"{name} {format_number(value)}" + (f" {unit}" if unit else "")


REFERENCE_COSTS = ("bitops", "model_size", "params")  # shown with the objectives when recorded


def base_summary(record: Any, study: optuna.Study) -> list[str]:
    """Two lines: the float base model's objective metrics (and costs), then its objective value(s)."""
    if not isinstance(record, dict):
        return []
    if not isinstance(record.get("metrics"), dict):
        return [f"Float base model: not evaluated ({record.get('error', 'no record')})"]
    metrics = record["metrics"]
    names = [str(objective.get("name")) for objective in objectives(study)]
    names += [name for name in REFERENCE_COSTS if name in metrics and name not in names]
    shown = ", ".join(_metric_text(name, metrics.get(name)) for name in names)
    lines = [f"Float base model (untransformed, scored like a trial): {shown}"]
    values = base_values(study)
    seconds = record.get("seconds")
    took = f" in {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
    if values is not None:
        pairs = ", ".join(f"{label} {format_number(value)}"
                          for label, value in zip(objective_labels(study), values))
        lines.append(f"  objective: {pairs} (evaluated{took})")
    return lines
