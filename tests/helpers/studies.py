"""Optuna studies built in code, recorded exactly as records.py says the search strategy records them."""

from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from machop.search import records

WIDTHS = [2, 4, 8, 16]
ACCURACY = {"name": "accuracy", "direction": "maximize", "scale": 1.0}
BITOPS = {"name": "bitops", "direction": "minimize", "scale": 1e-6}


def make_study(objectives: list[dict], storage=None, name: str = "jsc-ptq", choices=None,
               sum_scaled: bool = False, directions: list[str] | None = None) -> optuna.Study:
    """A study with the user attributes the strategy records."""
    directions = directions or [objective["direction"] for objective in objectives]
    study = optuna.create_study(study_name=name, storage=storage or optuna.storages.InMemoryStorage(),
                                directions=directions)
    choices = choices or {"data_in_width": WIDTHS, "weight_width": WIDTHS}
    study.set_user_attr(records.STUDY_OBJECTIVES, objectives)
    study.set_user_attr(records.STUDY_SUM_SCALED, sum_scaled)
    study.set_user_attr(records.STUDY_SPACE, {"name": "quantize", "choices": choices})
    study.set_user_attr(records.STUDY_MODEL, {"model": "jsc-tiny", "dataset": "jsc", "load_name": None})
    study.set_user_attr(records.STUDY_CONFIG, {"setup": {"n_trials": 20}})
    return study


def add(study: optuna.Study, params: dict, values=None, metrics=None, feasible: bool = True,
        state: TrialState = TrialState.COMPLETE, reason: str | None = None, attrs: dict | None = None) -> None:
    """One trial recorded like the strategy records it."""
    choices = study.user_attrs[records.STUDY_SPACE]["choices"]
    objectives = study.user_attrs[records.STUDY_OBJECTIVES]
    metrics = metrics or {}
    extra = dict(attrs or {})
    attrs = {records.TRIAL_METRICS: metrics, records.TRIAL_CONFIG: dict(params),
             records.TRIAL_FEASIBLE: feasible, records.TRIAL_SECONDS: 0.1,
             records.TRIAL_SCALED: {o["name"]: metrics[o["name"]] * o["scale"]
                                    for o in objectives if o["name"] in metrics}, **extra}
    if reason is not None:
        attrs[records.TRIAL_FAIL] = reason
    study.add_trial(create_trial(
        params=params, distributions={name: CategoricalDistribution(choices[name]) for name in params},
        values=values, user_attrs=attrs, state=state))
