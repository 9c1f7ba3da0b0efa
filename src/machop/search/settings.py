"""The [search.strategy] section, validated: samplers, budget, objectives, runners, constraints.

MASE's keys are kept: `setup.{sampler, n_trials, n_jobs, timeout, sum_scaled_metrics,
direction}`, `sw_runner.<name>`, `hw_runner.<name>`, `metrics.<name>.{scale, direction}`, and
`name = "bruteforce"` meaning an exhaustive search. machop adds `setup.pruner`,
`setup.seed`, `setup.heartbeat_interval`/`setup.grace_period` (how fast workers sharing a database
notice a dead one) and `[search.strategy.constraints]`: a bound on a metric (`bitops = "<= 1e5"`)
or on how far a metric to maximize falls below the float base model's (`accuracy_drop = "<= 0.01"`
absolute, `"<= 1%"` relative to the base's value).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from machop.errors import SearchError, did_you_mean, unknown_name
from machop.search.pruners import PRUNERS
from machop.search.samplers import SAMPLERS

DIRECTIONS = ("maximize", "minimize")
SETUP_KEYS = ("sampler", "n_trials", "n_jobs", "timeout", "sum_scaled_metrics", "direction",
              "pruner", "seed", "heartbeat_interval", "grace_period")
STRATEGY_KEYS = ("name", "eval_mode", "setup", "sw_runner", "hw_runner", "metrics", "constraints")
SPLITS = {"train_dataloader": "train", "val_dataloader": "validation", "test_dataloader": "test",
          "train": "train", "val": "validation", "validation": "validation", "test": "test"}
CONSTRAINT = re.compile(r"^\s*(<=|>=|<|>)\s*([-+0-9.eE_]+)\s*(%?)\s*$")
DROP_SUFFIX = "_drop"
BOUND_TOLERANCE = 1e-9  # relative: a value this close to its bound meets it


@dataclass(frozen=True)
class Objective:
    """One metric the search optimises, with its scale and direction."""

    name: str
    direction: str
    scale: float = 1.0


@dataclass(frozen=True)
class Constraint:
    """`metric <= bound`, `metric >= bound`, or a bound on the metric's drop below the float base.

    A drop is `base - value` (`relative`: as a fraction of the base's value, written "<= 1%"),
    where base is the float base model's value of the metric, measured once per study.
    """

    metric: str
    op: str
    bound: float
    drop: bool = False
    relative: bool = False

    @property
    def key(self) -> str:
        """The key as written in [search.strategy.constraints]: `bitops` or `accuracy_drop`."""
        return self.metric + DROP_SUFFIX if self.drop else self.metric

    @property
    def label(self) -> str:
        """`accuracy_drop <= 1%`: the constraint's name in Optuna's records and in reports."""
        bound = f"{self.bound * 100:g}%" if self.relative else f"{self.bound:g}"
        return f"{self.key} {self.op} {bound}"

    def measured(self, metrics: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> float | None:
        """The bounded quantity: the metric, or its (relative) drop below `base`; None if unknown."""
        value = _number(metrics.get(self.metric))
        if not self.drop or value is None:
            return value
        reference = _number((base or {}).get(self.metric))
        if reference is None or (self.relative and reference == 0):
            return None
        return (reference - value) / abs(reference) if self.relative else reference - value

    def violation(self, metrics: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> float:
        """<= 0 when satisfied, the amount of violation otherwise (Optuna's convention)."""
        value = self.measured(metrics, base)
        if value is None:
            return math.inf
        excess = value - self.bound if self.op.startswith("<") else self.bound - value
        # A drop of exactly the bound (0.95 - 0.94 <= 0.01) must not fail by a rounding error.
        return 0.0 if abs(excess) <= BOUND_TOLERANCE * max(1.0, abs(self.bound)) else excess


def _number(value: Any) -> float | None:
    """The value as a float when it is a finite number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


@dataclass
class StrategySettings:
    """Everything the strategy needs from [search.strategy]."""

    sampler: str = "tpe"
    n_trials: int = 20
    n_jobs: int = 1
    timeout: float | None = None
    sum_scaled_metrics: bool = True
    direction: str = "maximize"
    pruner: str = "none"
    seed: int | None = None
    heartbeat_interval: int = 10
    grace_period: int = 40
    objectives: list[Objective] = field(default_factory=list)
    sw_runners: dict[str, dict[str, Any]] = field(default_factory=dict)
    hw_runners: dict[str, dict[str, Any]] = field(default_factory=dict)
    constraints: list[Constraint] = field(default_factory=list)

    @property
    def needs_base(self) -> bool:
        """True when a constraint is measured against the float base model."""
        return any(constraint.drop for constraint in self.constraints)

    @property
    def multi_objective(self) -> bool:
        return not self.sum_scaled_metrics and len(self.objectives) > 1

    @property
    def directions(self) -> list[str]:
        """Optuna study directions."""
        if self.sum_scaled_metrics or len(self.objectives) == 1:
            return [self.direction if self.sum_scaled_metrics else self.objectives[0].direction]
        return [objective.direction for objective in self.objectives]


def _fail(path: str, message: str) -> SearchError:
    return SearchError(f"search.strategy.{path}: {message}")


def _check_keys(table: dict[str, Any], valid: tuple[str, ...], path: str) -> None:
    for key in table:
        if key not in valid:
            raise _fail(path, f"unknown key {key!r}{did_you_mean(key, valid)} (valid: {', '.join(valid)})")


def _int(value: Any, path: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(path, f"must be an integer >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise _fail(path, f"must be an integer <= {maximum}, got {value!r}")
    return value


def _choice(value: Any, valid: Collection[str], path: str, what: str) -> str:
    text = str(value).lower()
    if text not in valid:
        raise _fail(path, unknown_name(what, str(value), valid))
    return text


def _objectives(metrics: Any) -> list[Objective]:
    if not isinstance(metrics, dict) or not metrics:
        raise _fail("metrics", "needs at least one metric, e.g. accuracy.scale = 1.0 and "
                               "accuracy.direction = \"maximize\"")
    from machop.metrics.registry import METRICS

    objectives = []
    for name, spec in metrics.items():
        if name not in METRICS:
            raise _fail(f"metrics.{name}", unknown_name("metric", name, METRICS))
        spec = spec or {}
        if not isinstance(spec, dict):
            raise _fail(f"metrics.{name}", f"must be a table with scale and direction, got {spec!r}")
        _check_keys(spec, ("scale", "direction"), f"metrics.{name}")
        direction = _choice(spec.get("direction", METRICS[name].direction), DIRECTIONS,
                            f"metrics.{name}.direction", "direction")
        scale = spec.get("scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
            raise _fail(f"metrics.{name}.scale", f"must be a number, got {scale!r}")
        objectives.append(Objective(name, direction, float(scale)))
    return objectives


def constraint_keys() -> list[str]:
    """Every valid key of [search.strategy.constraints]: metric names, then `<metric>_drop`."""
    from machop.metrics.registry import METRICS

    return [*METRICS, *(name + DROP_SUFFIX for name, m in METRICS.items() if m.direction == "maximize")]


def _constraint_target(name: str) -> tuple[str, bool]:
    """(metric, is a drop) of a constraint key; an unknown key or a drop of a minimized metric fails."""
    from machop.metrics.registry import METRICS

    if name in METRICS:
        return name, False
    metric = name.removesuffix(DROP_SUFFIX)
    if name.endswith(DROP_SUFFIX) and metric in METRICS:
        if METRICS[metric].direction != "maximize":
            drops = ", ".join(key for key in constraint_keys() if key.endswith(DROP_SUFFIX))
            raise _fail(f"constraints.{name}", f"{metric!r} is minimized, so it has no drop; bound it "
                                               f"directly, e.g. {metric} = \"<= 1e6\" (drops: {drops})")
        return metric, True
    raise _fail(f"constraints.{name}", unknown_name("metric", name, constraint_keys()))


def parse_constraint(name: str, text: Any) -> Constraint:
    """One [search.strategy.constraints] entry: `metric = ">= 0.9"` or `metric_drop = "<= 1%"`."""
    metric, drop = _constraint_target(name)
    path = f"constraints.{name}"
    match = CONSTRAINT.match(str(text)) if isinstance(text, str) else None
    bound = _number(_float_or_none(match.group(2))) if match else None
    example = '"<= 0.01" (absolute) or "<= 1%" (relative to the float base)' if drop \
        else '">= 0.9" or "<= 1e6"'
    if match is None or bound is None:
        raise _fail(path, f"must be a comparison with a number, like {example}, got {text!r}")
    op, percent = match.group(1), match.group(3) == "%"
    if drop and not op.startswith("<"):
        raise _fail(path, f"a drop below the float base is bounded from above, like {example}, got {text!r}")
    if percent and not drop:
        raise _fail(path, f"a percentage bounds a drop relative to the float base model "
                          f"({metric}_drop = \"<= 1%\"); bound {metric} with a number, like {example}, "
                          f"got {text!r}")
    return Constraint(metric, op, bound / 100 if percent else bound, drop=drop, relative=percent)


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _constraints(table: Any) -> list[Constraint]:
    if not isinstance(table, dict):
        raise _fail("constraints", f"must be a table like accuracy = \">= 0.9\", got {table!r}")
    return [parse_constraint(name, text) for name, text in table.items()]


def _runners(table: Any, path: str) -> dict[str, dict[str, Any]]:
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise _fail(path, f"must be a table of runners, got {table!r}")
    runners = {}
    for name, options in table.items():
        if options is not None and not isinstance(options, dict):
            raise _fail(f"{path}.{name}", f"must be a table of runner options, got {options!r}")
        runners[name] = dict(options or {})
    return runners


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, f"must be true or false, got {value!r}")
    return value


def parse_strategy(strategy: dict[str, Any], overrides: Mapping[str, Any] | None = None) -> StrategySettings:
    """Validate [search.strategy] into StrategySettings (runner names are checked by runners).

    `overrides` (command-line flags such as --n-trials) replace keys of `setup` and are checked
    like them.
    """
    if not isinstance(strategy, dict):
        raise SearchError("search.strategy must be a table")
    _check_keys(strategy, STRATEGY_KEYS, "")
    setup = strategy.get("setup", {})
    if not isinstance(setup, dict):
        raise _fail("setup", f"must be a table, got {setup!r}")
    setup = {**setup, **(overrides or {})}
    _check_keys(setup, SETUP_KEYS, "setup")
    exhaustive = str(strategy.get("name", "optuna")).lower() in ("bruteforce", "brute_force", "brute-force")
    settings = StrategySettings(
        sampler="bruteforce" if exhaustive else _choice(setup.get("sampler", "tpe"), SAMPLERS,
                                                        "setup.sampler", "sampler"),
        n_trials=_int(setup.get("n_trials", 20), "setup.n_trials", 1),
        n_jobs=_int(setup.get("n_jobs", 1), "setup.n_jobs", 1),
        timeout=_timeout(setup.get("timeout")),
        sum_scaled_metrics=_bool(setup.get("sum_scaled_metrics", True), "setup.sum_scaled_metrics"),
        direction=_choice(setup.get("direction", "maximize"), DIRECTIONS, "setup.direction", "direction"),
        pruner=_choice(setup.get("pruner", "none"), PRUNERS, "setup.pruner", "pruner"),
        seed=_int(setup["seed"], "setup.seed", 0, 2**32 - 1) if "seed" in setup else None,
        heartbeat_interval=_int(setup.get("heartbeat_interval", 10), "setup.heartbeat_interval", 1),
        objectives=_objectives(strategy.get("metrics")),
        sw_runners=_runners(strategy.get("sw_runner"), "sw_runner"),
        hw_runners=_runners(strategy.get("hw_runner"), "hw_runner"),
        constraints=_constraints(strategy.get("constraints") or {}),
    )
    settings.grace_period = _grace_period(setup.get("grace_period"), settings.heartbeat_interval)
    if not settings.sw_runners and not settings.hw_runners:
        raise _fail("sw_runner", "no runner configured; add [search.strategy.sw_runner.basic_evaluation]")
    return settings


def _timeout(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise _fail("setup.timeout", f"must be a positive number of seconds, got {value!r}")
    return float(value)


def _grace_period(value: Any, heartbeat_interval: int) -> int:
    if value is None:
        return 4 * heartbeat_interval
    grace = _int(value, "setup.grace_period", 1)
    if grace <= heartbeat_interval:
        raise _fail("setup.grace_period", f"must exceed setup.heartbeat_interval ({heartbeat_interval} s) "
                                          f"or live workers look dead, got {grace}")
    return grace
