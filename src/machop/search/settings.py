"""The [search.strategy] section, validated: samplers, budget, objectives, runners, constraints.

MASE's keys are kept: `setup.{sampler, n_trials, n_jobs, timeout, sum_scaled_metrics,
direction}`, `sw_runner.<name>`, `hw_runner.<name>`, `metrics.<name>.{scale, direction}`, and
`name = "bruteforce"` meaning an exhaustive search. machop adds `setup.pruner`,
`setup.seed`, `setup.heartbeat_interval`/`setup.grace_period` (how fast workers sharing a database
notice a dead one) and `[search.strategy.constraints]`.
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
CONSTRAINT = re.compile(r"^\s*(<=|>=|<|>)\s*([-+0-9.eE_]+)\s*$")


@dataclass(frozen=True)
class Objective:
    """One metric the search optimises, with its scale and direction."""

    name: str
    direction: str
    scale: float = 1.0


@dataclass(frozen=True)
class Constraint:
    """`metric <= bound` or `metric >= bound`; violated trials are infeasible."""

    metric: str
    op: str
    bound: float

    def violation(self, value: float | None) -> float:
        """<= 0 when satisfied, the amount of violation otherwise (Optuna's convention)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return math.inf
        return value - self.bound if self.op.startswith("<") else self.bound - value


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


def _constraints(table: Any) -> list[Constraint]:
    from machop.metrics.registry import METRICS

    if not isinstance(table, dict):
        raise _fail("constraints", f"must be a table like accuracy = \">= 0.9\", got {table!r}")
    constraints = []
    for name, text in table.items():
        if name not in METRICS:
            raise _fail(f"constraints.{name}", unknown_name("metric", name, METRICS))
        match = CONSTRAINT.match(str(text))
        if not match:
            raise _fail(f"constraints.{name}", f"must look like \">= 0.9\" or \"<= 1e6\", got {text!r}")
        constraints.append(Constraint(name, match.group(1), float(match.group(2))))
    return constraints


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
