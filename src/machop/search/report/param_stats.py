"""Statistics of the trials of a study by parameter, behind the report's plots and tables.

Each parameter's choices in a stable order, the parameters that vary, mean metric values per
choice and per pair of choices, which metrics are constant, and fANOVA parameter importances.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial

from machop.search.report import study_info as info

# ---- parameters and their choices ---------------------------------------------------------------


def hashable(value: Any) -> Any:
    """`value` itself when it can be a dict key (a choice), else its repr."""
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def _number_tuple(text: str) -> tuple[float, ...] | None:
    """"8,4" -> (8.0, 4.0): the label of a tied choice sorts by its numbers, not as text."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        return None


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, (bool, int, float)):
        return (1, (float(value),))
    numbers = _number_tuple(value) if isinstance(value, str) else None
    if numbers is not None:
        return (1, numbers)
    return (2, str(value))


def param_choices(study: optuna.Study, trials: list[FrozenTrial], name: str) -> list[Any]:
    """Every choice of a parameter (space, distributions and sampled values), sorted."""
    values = [hashable(value) for value in info.space_choices(study).get(name, [])]
    for trial in trials:
        distribution = trial.distributions.get(name)
        if isinstance(distribution, CategoricalDistribution):
            values.extend(hashable(value) for value in distribution.choices)
        if name in (config := info.trial_config(trial)):
            values.append(hashable(config[name]))
    return sorted(dict.fromkeys(values), key=_sort_key)


def varying_params(study: optuna.Study, trials: list[FrozenTrial]) -> list[str]:
    """Parameters that take more than one value among `trials`."""
    return [name for name in info.param_names(study, trials)
            if len({hashable(info.trial_config(trial).get(name)) for trial in trials}) > 1]


# ---- parameter importance -----------------------------------------------------------------------


Importances = list[dict[str, float] | None]


def param_importances(study: optuna.Study, objective: int = 0) -> dict[str, float] | None:
    """fANOVA importance of each parameter for one objective; None when it cannot be computed."""
    if len([trial for trial in info.complete_trials(study) if trial.values]) < 2:
        return None
    # Optuna's 64 trees of unbounded depth take ~20 s on 2000 trials; 32 trees of depth 8 rank the
    # parameters the same in ~2.5 s.
    evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=32, max_depth=8, seed=0)
    try:
        importances = optuna.importance.get_param_importances(
            study, evaluator=evaluator, target=lambda trial: trial.values[objective])
    except Exception:  # noqa: BLE001 - an importance we cannot compute only drops one plot
        return None
    return importances if len(importances) >= 2 else None


def all_importances(study: optuna.Study) -> Importances:
    """param_importances for every objective, in objective order."""
    return [param_importances(study, index) for index in range(len(study.directions))]


def heatmap_params(study: optuna.Study, trials: list[FrozenTrial],
                   importances: Importances | None = None) -> list[str] | None:
    """The two varying parameters, or the two most important; None when neither applies."""
    varying = varying_params(study, trials)
    if len(varying) == 2:
        return varying
    if len(varying) < 2:
        return None
    first = (param_importances(study) if importances is None else importances[0]) or {}
    ranked = [name for name in first if name in varying]
    return ranked[:2] if len(ranked) >= 2 else None


# ---- metrics over parameters --------------------------------------------------------------------


def metric_grid(trials: list[FrozenTrial], metric: str, params: list[str],
                axes: tuple[list[Any], list[Any]]) -> np.ndarray:
    """Mean metric value per (row choice, column choice); NaN where no trial has a value."""
    rows, columns = ({hashable(v): i for i, v in enumerate(choices)} for choices in axes)
    total = np.zeros((len(rows), len(columns)))
    count = np.zeros_like(total)
    for trial in trials:
        config, value = info.trial_config(trial), info.finite(info.trial_metrics(trial).get(metric))
        row, column = rows.get(hashable(config.get(params[0]))), columns.get(hashable(config.get(params[1])))
        if value is not None and row is not None and column is not None:
            total[row, column] += value
            count[row, column] += 1
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def metric_values(trials: list[FrozenTrial], name: str) -> list[float]:
    """The finite values of one raw metric over `trials`."""
    values = (info.finite(info.trial_metrics(trial).get(name)) for trial in trials)
    return [value for value in values if value is not None]


def split_constant_metrics(trials: list[FrozenTrial]) -> tuple[list[str], dict[str, float]]:
    """(metrics that vary, {metric: value} for those that never change) among recorded metrics."""
    varying, constant = [], {}
    for name in info.metric_names(trials):
        values = metric_values(trials, name)
        if values and max(values) == min(values):
            constant[name] = values[0]
        elif values:
            varying.append(name)
    return varying, constant


MAX_PANELS = 24  # constant metrics get a (flat) panel of their own while the figure stays this small


def heatmap_metrics(trials: list[FrozenTrial]) -> tuple[list[str], dict[str, float]]:
    """(metrics drawn as panels, constant metrics only named in the title)."""
    metrics, hidden = split_constant_metrics(trials)
    if metrics and len(metrics) + len(hidden) > MAX_PANELS:
        return metrics, hidden
    # A flat panel says "this metric does not depend on these parameters" (FLOPs under simulated
    # quantization); only a crowded figure lists the constants in its title instead.
    shown = set(metrics) | set(hidden)
    return [name for name in info.metric_names(trials) if name in shown], {}


# ---- one-parameter sweep ------------------------------------------------------------------------


def sweep_param(study: optuna.Study, trials: list[FrozenTrial]) -> str | None:
    """The only parameter that varies among `trials`, else None."""
    varying = varying_params(study, trials)
    return varying[0] if len(varying) == 1 else None


def sweep_values(trials: list[FrozenTrial], metric: str, param: str, choices: list[Any]) -> np.ndarray:
    """Mean metric value per choice of `param` (NaN where no trial has a value)."""
    sums, counts = np.zeros(len(choices)), np.zeros(len(choices))
    index = {hashable(choice): i for i, choice in enumerate(choices)}
    for trial in trials:
        position = index.get(hashable(info.trial_config(trial).get(param)))
        value = info.finite(info.trial_metrics(trial).get(metric))
        if position is not None and value is not None:
            sums[position] += value
            counts[position] += 1
    with np.errstate(invalid="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def sweep_metrics(trials: list[FrozenTrial]) -> list[str]:
    """The metrics a sweep shows: every recorded one while few, else those that vary."""
    return heatmap_metrics(trials)[0]
