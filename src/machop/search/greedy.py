"""Sensitivity-guided greedy bit allocation, as an Optuna sampler that reads its path from the study.

Every parameter's choices are ordered by their numbers (a width, or a tied label such as "8,4"
by its width first). The search starts with every parameter at its widest choice and lowers one
parameter at a time, choosing the step whose measured quality loss per unit of cost saved is
smallest, and stops at the bound (as automatic mixed precision in AIMET does):

1. `top`: the configuration with every parameter at its widest choice.
2. Sensitivity: each parameter alone at each of its lower choices ("top with p = b"), one trial
   each. Lowering p from choice a to any lower b is priced by these measurements: the quality of
   "top with p = a" minus that of "top with p = b" (a gain counts as no loss), per unit of cost
   saved between the two. A choice whose own measurement breaks a constraint, fails or saves no
   cost is never taken.
3. From the current configuration the cheapest step is tried as a trial (on equal prices, the
   larger saving first). When it keeps to every constraint it becomes the current
   configuration; otherwise the parameter stays above that choice for the rest of the search.
   Steps may skip choices, so one noisy measurement does not stop a layer.
4. When no step is left the search is finished; the last feasible configuration of the path is
   its result.

Quality is the metric of the first constraint on a metric to maximize (`accuracy_drop = "<= 1%"`
bounds accuracy), else the first objective to maximize; cost is the first objective to minimize
(e.g. bitops). Both are read from the study's records, so the sampler is a function of the
study's trials: a resumed study or a second worker continues the same path. A measurement another
worker is evaluating is not proposed again while another one is still due, but a step of the path
can only follow its predecessor, so extra workers mainly speed up the measurements. A
configuration the path already evaluated is reused by the trial loop, never run again.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from machop.errors import SearchError
from machop.search import records
from machop.search.claims import counting
from machop.search.settings import Constraint, parse_constraint

if TYPE_CHECKING:
    from machop.search.settings import StrategySettings

NAME = "greedy"
Key = tuple[Any, ...]


# ---- what the search lowers and what it watches ------------------------------------------------


@dataclass(frozen=True)
class Roles:
    """The metric whose loss a step costs (quality) and the metric a step lowers (cost)."""

    quality: str
    cost: str


def roles_of(objectives: Iterable[tuple[str, str]], constraints: Iterable[Constraint]) -> Roles:
    """Quality and cost metrics from (name, direction) objectives and the constraints."""
    from machop.metrics.registry import METRICS

    objectives = list(objectives)
    cost = next((name for name, direction in objectives if direction == "minimize"), None)
    bounded = [c.metric for c in constraints if METRICS[c.metric].direction == "maximize"]
    quality = next(iter(bounded), None) or next(
        (name for name, direction in objectives if direction == "maximize"), None)
    if cost is None:
        raise SearchError(f"sampler {NAME!r} lowers a cost that an objective minimizes; add one to "
                          "[search.strategy.metrics], e.g. bitops.direction = \"minimize\"")
    if quality is None:
        raise SearchError(f"sampler {NAME!r} weighs each step by the quality it loses; bound a metric "
                          "to maximize (e.g. [search.strategy.constraints] accuracy_drop = \"<= 1%\") "
                          "or add an objective to maximize")
    return Roles(quality, cost)


def check_settings(settings: StrategySettings) -> None:
    """Refuse a strategy the greedy search cannot follow (no cost to lower or no quality to watch)."""
    roles_of(((o.name, o.direction) for o in settings.objectives), settings.constraints)


def study_roles(study: optuna.Study) -> Roles:
    """The roles recorded by the study (its objectives and [search.strategy.constraints])."""
    attrs = study.user_attrs
    recorded = attrs.get(records.STUDY_OBJECTIVES) or []
    objectives = [(str(o.get("name")), str(o.get("direction"))) for o in recorded]
    strategy = (attrs.get(records.STUDY_CONFIG) or {}).get("strategy") or {}
    constraints = [parse_constraint(name, text) for name, text in (strategy.get("constraints") or {}).items()]
    return roles_of(objectives, constraints)


# ---- the ordered choices -------------------------------------------------------------------------


def _order_key(value: Any) -> tuple[float, str] | None:
    """Sort key of one choice: its number, or a tied label's first number; None if it has none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value), ""
    if isinstance(value, str):
        first, _, rest = value.partition(",")
        try:
            return float(first), rest
        except ValueError:
            return None
    return None


def ordered_levels(choices: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """Every parameter's choices from the narrowest to the widest; a choice without a number fails."""
    levels = {}
    for name, values in choices.items():
        keys = [_order_key(value) for value in values]
        if any(key is None for key in keys):
            bad = next(value for value, key in zip(values, keys) if key is None)
            shown = '"NA"' if bad is None else repr(bad)
            raise SearchError(f"sampler {NAME!r} lowers every parameter step by step, so each choice must "
                              f"be a number (a width, or a tied label such as \"8,4\"); parameter "
                              f"{name!r} has {shown}")
        levels[name] = [value for _, value in sorted(zip(keys, values), key=lambda pair: pair[0])]
    return levels


# ---- the path, from the outcomes of the trials so far --------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one evaluated configuration gave: quality and cost (None: failed) and feasibility."""

    quality: float | None
    cost: float | None
    feasible: bool

    @property
    def usable(self) -> bool:
        """True when the trial gave both numbers and kept to every constraint."""
        return self.feasible and self.quality is not None and self.cost is not None


@dataclass
class Step:
    """The sampler's next proposal: a configuration to evaluate, or the end of the path."""

    config: dict[str, Any]
    finished: bool = False
    path: list[dict[str, Any]] = field(default_factory=list)  # the feasible configurations walked so far


class Planner:
    """Replays the greedy path over the evaluated configurations and says what to evaluate next."""

    def __init__(self, levels: Mapping[str, Sequence[Any]]) -> None:
        self.levels = {name: list(values) for name, values in levels.items()}
        self.params = list(self.levels)
        self.top = {name: values[-1] for name, values in self.levels.items()}

    def key(self, config: Mapping[str, Any]) -> Key:
        """The hashable identity of a configuration."""
        return tuple(config[name] for name in self.params)

    def single(self, param: str, value: Any) -> dict[str, Any]:
        """The widest configuration with one parameter set to `value` (a sensitivity measurement)."""
        return {**self.top, param: value}

    def measurements(self) -> list[dict[str, Any]]:
        """Every sensitivity measurement: each parameter alone at each of its lower choices."""
        return [self.single(param, value) for param in self.params for value in reversed(self.levels[param][:-1])]

    def next_step(self, outcomes: Mapping[Key, Outcome], pending: Collection[Key] = frozenset()) -> Step:
        """The configuration to evaluate next, or the finished path (outcomes by configuration key)."""
        top = outcomes.get(self.key(self.top))
        if top is None:
            return Step(dict(self.top))
        if not top.usable:
            return Step(dict(self.top), finished=True)
        needed = [config for config in self.measurements() if self.key(config) not in outcomes]
        if needed:
            waiting = [config for config in needed if self.key(config) not in pending]
            return Step((waiting or needed)[0])
        current, floor, path = dict(self.top), {}, [dict(self.top)]
        while True:
            moves = self._moves(current, floor, outcomes)
            if not moves:
                return Step(dict(current), finished=True, path=path)
            *_, param, index = min(moves)
            lowered = {**current, param: self.levels[param][index]}
            outcome = outcomes.get(self.key(lowered))
            if outcome is None:
                return Step(lowered, path=path)
            if outcome.usable:
                current = lowered
                path.append(dict(current))
            else:  # with the others where they are, this parameter stays above that choice
                floor[param] = index

    def _moves(self, current: Mapping[str, Any], floor: Mapping[str, int],
               outcomes: Mapping[Key, Outcome]) -> list[tuple[float, float, int, int, str, int]]:
        """Every step that can be taken, as (price, -cost saved, order, -choice, param, choice index).

        A step lowers one parameter from its current choice to any lower one whose measurement
        kept to the bound and saved cost, above the parameter's floor (set by a step that broke
        the bound). Its price is the measured quality loss per cost saved; a measured gain counts
        as no loss, and among equal prices the larger saving goes first.
        """
        moves = []
        for order, param in enumerate(self.params):
            values = self.levels[param]
            at = values.index(current[param])
            before = outcomes[self.key(self.single(param, current[param]))]
            for index in range(floor.get(param, -1) + 1, at):
                measured = outcomes[self.key(self.single(param, values[index]))]
                saved = before.cost - measured.cost if measured.usable else 0.0
                if saved > 0:
                    loss = max(0.0, before.quality - measured.quality)
                    moves.append((loss / saved, -saved, order, -index, param, index))
        return moves


# ---- reading the study ------------------------------------------------------------------------------


def _params(trial: FrozenTrial) -> dict[str, Any]:
    if trial.state == TrialState.WAITING:
        return dict(trial.system_attrs.get("fixed_params") or {})
    return dict(trial.params)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _outcome(trial: FrozenTrial, roles: Roles) -> Outcome:
    if trial.state != TrialState.COMPLETE:
        return Outcome(None, None, False)
    metrics = trial.user_attrs.get(records.TRIAL_METRICS) or {}
    feasible = all(value <= 0 for value in trial.constraints.values())
    return Outcome(_number(metrics.get(roles.quality)), _number(metrics.get(roles.cost)), feasible)


def study_outcomes(study: optuna.Study, planner: Planner, roles: Roles,
                   exclude: int | None = None) -> tuple[dict[Key, Outcome], set[Key]]:
    """Outcomes of the finished trials by configuration (a COMPLETE one wins), and the pending ones.

    Trials that do not count (re-queued after their worker died, over budget) are left out: the
    re-queued copy stands for them.
    """
    outcomes: dict[Key, Outcome] = {}
    pending: set[Key] = set()
    for trial in counting(study.get_trials(deepcopy=False)):
        params = _params(trial)
        if trial.number == exclude or not set(planner.params) <= params.keys():
            continue
        key = planner.key(params)
        if trial.state in (TrialState.RUNNING, TrialState.WAITING):
            pending.add(key)
        elif key not in outcomes or trial.state == TrialState.COMPLETE:
            outcomes[key] = _outcome(trial, roles)
    return outcomes, pending


# ---- the sampler ------------------------------------------------------------------------------------


class GreedySampler(optuna.samplers.BaseSampler):
    """Proposes the next configuration of the greedy path from the study's trials (no randomness)."""

    def __init__(self, choices: Mapping[str, Sequence[Any]]) -> None:
        self.planner = Planner(ordered_levels(choices))
        self.distributions = {name: CategoricalDistribution(list(values)) for name, values in choices.items()}
        self._proposed: dict[int, dict[str, Any]] = {}

    def plan(self, study: optuna.Study, exclude: int | None = None) -> Step:
        """Where the path stands in `study`: the next configuration, or the end."""
        outcomes, pending = study_outcomes(study, self.planner, study_roles(study), exclude)
        return self.planner.next_step(outcomes, pending)

    def finished(self, study: optuna.Study) -> bool:
        """True when the path has ended: no parameter can be lowered within the bound."""
        return self.plan(study).finished

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self.distributions)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        # Once the path has ended, a further trial repeats its result (reused, not evaluated again).
        config = self.plan(study, exclude=trial.number).config
        self._proposed[trial.number] = config
        return {name: value for name, value in config.items() if name in search_space}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        proposed = self._proposed.get(trial.number) or self.planner.top
        if param_name in proposed:
            return proposed[param_name]
        # A parameter outside the space the sampler was built for: its widest (last) choice.
        return param_distribution.choices[-1]

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._proposed.pop(trial.number, None)
