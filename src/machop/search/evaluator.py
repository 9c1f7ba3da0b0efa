"""Evaluate one Optuna trial: sample the space, build the candidate, run the runners, record."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import optuna

from machop.graph.graph import Graph
from machop.search import records
from machop.search.claims import claim_grid_point
from machop.search.journal import held_writes
from machop.search.objective import (
    config_key,
    constrained_values,
    constraint_violations,
    finite,
    objective_values,
    scaled_metrics,
)
from machop.search.runners import RunContext, first_nan, run_all
from machop.search.settings import StrategySettings
from machop.search.space import SearchSpace
from machop.search.trial_index import trial_index


class TrialFailed(Exception):
    """A trial produced no usable result (NaN metric, non-finite objective)."""


@dataclass
class TrialEvaluator:
    """Everything needed to turn a trial into objective values."""

    space: SearchSpace
    base: Graph
    runners: list[Any]
    settings: StrategySettings
    run: RunContext
    claim_patience: float | None = None  # set for exhaustive samplers: workers claim grid points
    reference: dict[str, Any] | None = None  # the float base's metrics, once a drop constraint read them

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """One categorical suggestion per space parameter."""
        return {name: trial.suggest_categorical(name, choices)
                for name, choices in self.space.choices().items()}

    def __call__(self, trial: optuna.Trial) -> list[float]:
        with held_writes(trial.study):
            sample = self.sample(trial)
        return self.evaluate(trial, sample)

    def evaluate(self, trial: optuna.Trial, sample: dict[str, Any]) -> list[float]:
        """Objective values of a sampled trial; machop's attributes are written in one go at the end."""
        if self.claim_patience is not None:
            claim_grid_point(trial, sample, patience=self.claim_patience)
        with held_writes(trial.study):
            key = config_key(sample)
            trial.set_user_attr(records.TRIAL_CONFIG, sample)
            trial.set_user_attr(records.TRIAL_CONFIG_KEY, key)
            earlier = _completed_with_key(trial.study, key)
            if earlier is not None:
                return self._reuse(trial, earlier)
            started = time.perf_counter()
            candidate = self.space.build(sample, self.base)
            if candidate.derived:
                trial.set_user_attr(records.TRIAL_DERIVED, candidate.derived)
            self.run.report_epoch = self._pruning_reporter(trial)
            metrics = run_all(self.runners, candidate.graph, self.run, candidate.train_overrides)
            return self._record(trial, metrics, time.perf_counter() - started)

    def _record(self, trial: optuna.Trial, metrics: dict[str, Any], seconds: float) -> list[float]:
        trial.set_user_attr(records.TRIAL_METRICS, metrics)
        trial.set_user_attr(records.TRIAL_SECONDS, seconds)
        needed = [o.name for o in self.settings.objectives]
        missing = first_nan(metrics, needed)
        if missing is not None:
            raise TrialFailed(f"metric {missing!r} is NaN or missing")
        values = objective_values(metrics, self.settings)
        if not finite(values):
            raise TrialFailed(f"objective is not finite: {values}")
        base = self.reference_metrics(trial.study)
        violations = constraint_violations(metrics, self.settings, base)
        trial.set_user_attr(records.TRIAL_SCALED, scaled_metrics(metrics, self.settings))
        trial.set_user_attr(records.TRIAL_FEASIBLE, all(v <= 0 for v in violations))
        trial.set_user_attr(records.TRIAL_CONSTRAINTS, violations)
        if self.settings.constraints:
            trial.set_user_attr(records.TRIAL_CONSTRAINED, constrained_values(metrics, self.settings, base))
        for constraint, violation in zip(self.settings.constraints, violations):
            trial.set_constraint(constraint.label, violation)
        return values

    def reference_metrics(self, study: optuna.Study) -> dict[str, Any] | None:
        """The float base model's metrics, which drop constraints are measured against (None: none is).

        Read once from the study (records.STUDY_BASE). A worker that joined before the study's
        first process recorded the base evaluates and records it itself: the same model scored
        the same way, so both records agree.
        """
        if not self.settings.needs_base:
            return None
        if self.reference is None:
            record = study.user_attrs.get(records.STUDY_BASE)
            if not isinstance(record, dict):
                record = self.evaluate_base()
                study.set_user_attr(records.STUDY_BASE, record)
            metrics = record.get("metrics")
            self.reference = dict(metrics) if isinstance(metrics, dict) else {}  # failed: every drop unknown
        return self.reference

    def _reuse(self, trial: optuna.Trial, earlier: optuna.trial.FrozenTrial) -> list[float]:
        trial.set_user_attr(records.TRIAL_CACHED_FROM, earlier.number)
        if records.TRIAL_DERIVED in earlier.user_attrs:
            trial.set_user_attr(records.TRIAL_DERIVED, earlier.user_attrs[records.TRIAL_DERIVED])
        return self._record(trial, dict(earlier.user_attrs[records.TRIAL_METRICS]), 0.0)

    def evaluate_base(self) -> dict[str, Any]:
        """Score the unquantized base model like a trial (the reports' reference; STUDY_BASE)."""
        started = time.perf_counter()
        self.run.report_epoch = None  # the base is no trial: nothing to prune
        metrics = run_all(self.runners, self.base.copy(), self.run, {})
        return base_record(metrics, self.settings, time.perf_counter() - started)

    def _pruning_reporter(self, trial: optuna.Trial):
        if self.settings.pruner == "none" or self.settings.multi_objective:
            return None
        watched = self.settings.objectives[0]
        sign = 1.0 if watched.direction == self.settings.directions[0] else -1.0

        def report(epoch: int, metrics: dict[str, float]) -> None:
            value = metrics.get(f"val_{watched.name}")
            if value is None:
                return
            trial.report(sign * watched.scale * value, step=epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")
        return report


def base_record(metrics: dict[str, Any], settings: StrategySettings, seconds: float) -> dict[str, Any]:
    """STUDY_BASE: the metrics, and objective values and scaled metrics where they are finite."""
    usable = first_nan(metrics, [o.name for o in settings.objectives]) is None
    values = objective_values(metrics, settings) if usable else None
    violations = constraint_violations(metrics, settings, metrics)  # the base is its own reference
    return {"metrics": metrics, "values": values if values is not None and finite(values) else None,
            "scaled": scaled_metrics(metrics, settings) if usable else {},
            "feasible": all(v <= 0 for v in violations), "seconds": seconds}


def _completed_with_key(study: optuna.Study, key: str) -> optuna.trial.FrozenTrial | None:
    return trial_index(study).completed_with_key(study, key)
