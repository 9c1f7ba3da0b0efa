"""Compare samplers on one space: how many trials each needs to find the best configuration.

Every distinct configuration is evaluated once (`EvaluationCache`); each sampler then runs
`repeats` seeded in-memory Optuna studies (seed = repeat index 0, 1, ...) of `budget` trials whose
objective looks the sampled configuration up in the cache, evaluating it on a miss. The results
are therefore exactly what `machop search` would have recorded for those seeds, at the cost of
evaluating each configuration once instead of once per study.

Timing, per trial of a run:
  sampler_seconds  measured: the wall time of the trial (Optuna's ask, the objective, tell and
                   callbacks) minus the evaluation work actually done inside it, i.e. what the
                   sampler and Optuna cost
  eval_seconds     charged: the measured time of the configuration's one real evaluation when the
                   configuration is new to this run, 0 when the run sampled it before (`machop
                   search` reuses an identical configuration's metrics). Which run happened to
                   pay the real evaluation (the first one to sample it) does not matter, so the
                   samplers are compared as if each had run alone.
  seconds          sampler_seconds + eval_seconds, the "seconds per trial" that is reported
                   (per run its mean; per sampler the median of those means).

A sampler "reaches the best" in a run at the first trial whose best-so-far value equals the
best value any run of any sampler found (for the exhaustive samplers, given a budget of at least
the space size, that is the optimum of the space). The median number of trials to reach it counts
a run that never did as infinitely many ("> budget" when that is the median).

This module is the engine; search.report.compare_samplers writes its outputs (results.json, the
plots) and its table.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from machop.config.schema import RunConfig
from machop.errors import SearchError, exception_line, unknown_name
from machop.search import records
from machop.search.evaluator import TrialEvaluator
from machop.search.objective import config_key, constraint_violations, finite, objective_values
from machop.search.runners import first_nan, run_all
from machop.search.samplers import SAMPLERS, build_sampler
from machop.search.setup import SearchSetup

OUTPUT_DIR = "compare_samplers"
TOLERANCE = 1e-9
REASON_CHARS = 300  # a failure reason is a table cell, not a traceback
COMMAND = "compare-samplers"


# ---- what to compare --------------------------------------------------------------------------


def _sampler_names(text: str | Iterable[str]) -> tuple[str, ...]:
    parts = text.split(",") if isinstance(text, str) else list(text)
    names = tuple(dict.fromkeys(part.strip().lower() for part in parts if part.strip()))
    if not names:
        raise SearchError("--samplers needs at least one sampler name, e.g. tpe,random,bruteforce")
    for name in names:
        if name not in SAMPLERS:
            raise SearchError(unknown_name("sampler", name, SAMPLERS))
    return names


def _count(value: Any, flag: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SearchError(f"{flag} must be an integer >= 1, got {value!r}")
    return value


@dataclass(frozen=True)
class ComparisonRequest:
    """Which samplers to compare, seeded runs per sampler and trials per run (None: the config's)."""

    samplers: tuple[str, ...]
    repeats: int
    n_trials: int | None = None

    @classmethod
    def parse(cls, samplers: str | Iterable[str], repeats: int,
              n_trials: int | None = None) -> ComparisonRequest:
        """Check sampler names ("tpe,random": lower case, duplicates dropped) and counts."""
        return cls(_sampler_names(samplers), _count(repeats, "--repeats"),
                   None if n_trials is None else _count(n_trials, "--n-trials"))


# ---- evaluating each configuration once -------------------------------------------------------


@dataclass
class Evaluation:
    """One distinct configuration, evaluated once."""

    config: dict[str, Any]
    value: float | None
    metrics: dict[str, Any]
    violations: list[float]
    seconds: float
    error: str | None = None

    @property
    def feasible(self) -> bool:
        """True when the evaluation succeeded and every constraint holds."""
        return self.value is not None and all(v <= 0 for v in self.violations)


class EvaluationCache:
    """Objective values by configuration; a configuration is evaluated on its first request only."""

    def __init__(self, evaluator: TrialEvaluator, reference: dict[str, Any] | None = None,
                 study_attrs: dict[str, Any] | None = None) -> None:
        self.evaluator = evaluator
        self.settings = evaluator.settings
        self.reference = reference  # the float base's metrics, for drop constraints
        self.study_attrs = study_attrs or {}  # what a search's study records (samplers such as greedy read it)
        self.entries: dict[str, Evaluation] = {}

    def get(self, sample: dict[str, Any]) -> tuple[str, Evaluation, float]:
        """(key, evaluation, seconds of real evaluation done by this call: 0 on a hit)."""
        key = config_key(sample)
        if key in self.entries:
            return key, self.entries[key], 0.0
        entry = self._evaluate(sample)
        self.entries[key] = entry
        return key, entry, entry.seconds

    def _evaluate(self, sample: dict[str, Any]) -> Evaluation:
        evaluator, settings = self.evaluator, self.settings
        started = time.perf_counter()
        metrics: dict[str, Any] = {}
        try:
            candidate = evaluator.space.build(sample, evaluator.base)
            evaluator.run.report_epoch = None  # no pruning: every evaluation runs to the end
            metrics = run_all(evaluator.runners, candidate.graph, evaluator.run, candidate.train_overrides)
            missing = first_nan(metrics, [o.name for o in settings.objectives])
            if missing is not None:
                raise ValueError(f"metric {missing!r} is NaN or missing")
            values = objective_values(metrics, settings)
            if not finite(values):
                raise ValueError(f"objective is not finite: {values}")
        except Exception as exc:  # noqa: BLE001 - recorded; the sampler sees a FAIL trial
            return Evaluation(dict(sample), None, metrics, [], time.perf_counter() - started,
                              exception_line(exc, REASON_CHARS))
        return Evaluation(dict(sample), values[0], metrics,
                          constraint_violations(metrics, settings, self.reference),
                          time.perf_counter() - started)

    def all_configs(self) -> Iterable[dict[str, Any]]:
        """Every configuration of the space, in the order of its choices."""
        choices = self.evaluator.space.choices()
        for values in itertools.product(*choices.values()):
            yield dict(zip(choices, values))

    def evaluate_all(self, on_done: Callable[[int], None] | None = None) -> None:
        """Evaluate every configuration of the space (the brute-force result)."""
        for count, sample in enumerate(self.all_configs(), start=1):
            self.get(sample)
            if on_done is not None:
                on_done(count)

    def best(self, direction: str) -> tuple[str, Evaluation] | None:
        """The best feasible evaluated configuration (first one on ties)."""
        feasible = [(key, entry) for key, entry in self.entries.items() if entry.feasible]
        if not feasible:
            return None
        pick = max if direction == "maximize" else min
        return pick(feasible, key=lambda item: item[1].value)


# ---- one seeded run of one sampler ------------------------------------------------------------


@dataclass
class Run:
    """One seeded study of one sampler against the cache."""

    sampler: str
    seed: int
    keys: list[str] = field(default_factory=list)
    values: list[float | None] = field(default_factory=list)
    best_so_far: list[float | None] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    sampler_seconds: list[float] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)
    new_config: list[bool] = field(default_factory=list)
    real_eval_seconds: float = 0.0
    trials_to_best: int | None = None

    def mean_seconds(self) -> float:
        """Mean charged seconds per trial."""
        return statistics.fmean(self.seconds) if self.seconds else 0.0

    def mean_sampler_seconds(self) -> float:
        """Mean sampler/Optuna overhead per trial."""
        return statistics.fmean(self.sampler_seconds) if self.sampler_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {"seed": self.seed, "trials": len(self.values), "trials_to_best": self.trials_to_best,
                "distinct_configs": len(set(self.keys)), "mean_seconds_per_trial": self.mean_seconds(),
                "mean_sampler_seconds_per_trial": self.mean_sampler_seconds(),
                **{name: getattr(self, name) for name in ("best_so_far", "values", "seconds",
                                                          "sampler_seconds", "eval_seconds",
                                                          "new_config", "keys")}}


def _better(a: float, b: float, direction: str) -> bool:
    """True when `a` is strictly better than `b` in `direction`."""
    return a > b if direction == "maximize" else a < b


def run_sampler(cache: EvaluationCache, name: str, seed: int, budget: int, direction: str) -> Run:
    """Run `budget` trials (fewer when an exhaustive sampler runs out) of one seeded sampler."""
    evaluator = cache.evaluator
    sampler = build_sampler(name, seed, evaluator.space.choices())
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), sampler=sampler,
                                directions=[direction])
    for key, value in cache.study_attrs.items():
        study.set_user_attr(key, value)
    run = Run(name, seed)
    seen: set[str] = set()
    state = {"last": 0.0, "spent": 0.0, "best": None}

    def objective(trial: optuna.Trial) -> float:
        key, entry, spent = cache.get(evaluator.sample(trial))
        state["spent"] += spent
        run.keys.append(key)
        run.new_config.append(key not in seen)
        run.eval_seconds.append(entry.seconds if key not in seen else 0.0)
        seen.add(key)
        trial.set_user_attr(records.TRIAL_METRICS, entry.metrics)  # as a search records it
        for constraint, violation in zip(cache.settings.constraints, entry.violations):
            # Optuna's constraint-aware samplers read these (<= 0: satisfied).
            trial.set_constraint(constraint.label, violation)
        if entry.value is None:
            raise SearchError(entry.error or "evaluation failed")
        return entry.value

    def record(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        now = time.perf_counter()
        wall, state["last"] = now - state["last"], now
        run.real_eval_seconds += state["spent"]
        run.sampler_seconds.append(max(0.0, wall - state["spent"]))
        state["spent"] = 0.0
        run.seconds.append(run.sampler_seconds[-1] + run.eval_seconds[-1])
        entry = cache.entries[run.keys[-1]]
        value = entry.value if trial.state == TrialState.COMPLETE else None
        run.values.append(value)
        if value is not None and entry.feasible and (state["best"] is None
                                                       or _better(value, state["best"], direction)):
            state["best"] = value
        run.best_so_far.append(state["best"])

    state["last"] = time.perf_counter()
    study.optimize(objective, n_trials=budget, catch=(SearchError,), callbacks=[record],
                   gc_after_trial=False, show_progress_bar=False)
    return run


def trials_to_reach(curve: list[float | None], target: float, direction: str) -> int | None:
    """First 1-based trial whose best-so-far value reaches `target`; None when none does."""
    for number, value in enumerate(curve, start=1):
        if value is not None and (value >= target - TOLERANCE if direction == "maximize"
                                  else value <= target + TOLERANCE):
            return number
    return None


def _median_final(runs: list[Run]) -> float | None:
    """Median over runs of the best value each run ended with (None when no run found one)."""
    finals = [run.best_so_far[-1] for run in runs if run.best_so_far and run.best_so_far[-1] is not None]
    return statistics.median(finals) if finals else None


def median_trials(counts: list[int | None]) -> float:
    """Median with runs that never reached the target counted as infinitely many trials."""
    return statistics.median([math.inf if count is None else count for count in counts])


# ---- the whole comparison ---------------------------------------------------------------------


@dataclass
class Comparison:
    """Every run of every sampler, and what they are compared against."""

    space_name: str
    space_size: int
    choices: dict[str, list[Any]]
    model: str
    dataset: str
    objectives: list[dict[str, Any]]
    direction: str
    budget: int
    repeats: int
    runs: dict[str, list[Run]]
    cache: EvaluationCache
    best_value: float | None = None
    best_key: str | None = None
    seconds: float = 0.0
    constraints: list[str] = field(default_factory=list)  # their labels, e.g. "accuracy_drop <= 1%"
    base: dict[str, Any] | None = None  # the float base's metrics, when a drop constraint measured them

    @property
    def best(self) -> Evaluation | None:
        """The evaluation of the best configuration found."""
        return self.cache.entries.get(self.best_key) if self.best_key else None

    def summary(self) -> list[dict[str, Any]]:
        """Per sampler: median trials to the best, repeats that reached it, median seconds per trial."""
        rows = []
        for name, runs in self.runs.items():
            counts = [run.trials_to_best for run in runs]
            rows.append({"sampler": name, "median_trials_to_best": median_trials(counts),
                         "reached_best": sum(count is not None for count in counts), "repeats": len(runs),
                         "median_final_best": _median_final(runs),
                         "median_seconds_per_trial": statistics.median(r.mean_seconds() for r in runs),
                         "median_sampler_seconds_per_trial": statistics.median(
                             r.mean_sampler_seconds() for r in runs)})
        return rows

    def as_dict(self) -> dict[str, Any]:
        """results.json content."""
        best = self.best
        evaluated = list(self.cache.entries.values())
        summary = [{**row, "median_trials_to_best": None if math.isinf(row["median_trials_to_best"])
                    else row["median_trials_to_best"]} for row in self.summary()]
        return {
            "space": {"name": self.space_name, "size": self.space_size, "choices": self.choices},
            "model": self.model, "dataset": self.dataset, "objectives": self.objectives,
            "direction": self.direction, "budget": self.budget, "repeats": self.repeats,
            "seeds": list(range(self.repeats)),
            "best": None if best is None else {"value": best.value, "key": self.best_key,
                                               "config": best.config, "metrics": best.metrics},
            "evaluations": {"distinct": len(evaluated), "failed": sum(e.error is not None for e in evaluated),
                            "seconds_total": sum(e.seconds for e in evaluated),
                            "mean_seconds": statistics.fmean(e.seconds for e in evaluated) if evaluated else 0.0},
            "seconds": self.seconds,
            "constraints": self.constraints,
            "base": self.base,
            "timing_note": ("seconds = sampler_seconds (measured) + eval_seconds (the configuration's one "
                            "real evaluation, charged when new to the run, 0 for a repeat within the run)"),
            "summary": summary,
            "samplers": {name: {"runs": [run.as_dict() for run in runs]} for name, runs in self.runs.items()},
        }


RunDone = Callable[[str, int, Run], None]


def compare(setup: SearchSetup, samplers: Sequence[str], repeats: int, budget: int,
            on_run: RunDone | None = None) -> Comparison:
    """Run every sampler `repeats` times (seeds 0..repeats-1) against one evaluation cache."""
    started = time.perf_counter()
    settings, evaluator = setup.settings, setup.evaluator
    direction = settings.directions[0]
    reference = evaluator.evaluate_base()["metrics"] if settings.needs_base else None
    cache = EvaluationCache(evaluator, reference, setup.attrs)
    runs: dict[str, list[Run]] = {name: [] for name in samplers}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed evaluations are in results.json
    try:
        for name in samplers:
            for seed in range(repeats):
                run = run_sampler(cache, name, seed, budget, direction)
                runs[name].append(run)
                if on_run is not None:
                    on_run(name, seed, run)
    finally:
        optuna.logging.set_verbosity(verbosity)
    best = cache.best(direction)
    if best is None:
        failed = next((e.error for e in cache.entries.values() if e.error), "no configuration was feasible")
        raise SearchError(f"no evaluated configuration gave a usable objective ({failed})")
    for sampler_runs in runs.values():
        for run in sampler_runs:
            run.trials_to_best = trials_to_reach(run.best_so_far, best[1].value, direction)
    model = setup.attrs.get(records.STUDY_MODEL, {})
    return Comparison(space_name=evaluator.space.name, space_size=evaluator.space.size(),
                      choices=evaluator.space.choices(), model=str(model.get("model")),
                      dataset=str(model.get("dataset")),
                      objectives=[asdict(o) for o in settings.objectives], direction=direction,
                      budget=budget, repeats=repeats, runs=runs, cache=cache, best_value=best[1].value,
                      best_key=best[0], seconds=time.perf_counter() - started,
                      constraints=[c.label for c in settings.constraints], base=reference)


@dataclass
class CompareOutcome:
    """What compare-samplers produced."""

    comparison: Comparison
    folder: Path
    outputs: dict[str, Path]


def compare_samplers(config: RunConfig, request: ComparisonRequest, on_run: RunDone | None = None,
                     on_setup: Callable[[SearchSetup, int], None] | None = None) -> CompareOutcome:
    """Set up the configured search once, compare the requested samplers on it and write the outputs."""
    from machop.project import Project
    from machop.search.report.compare_samplers import write_outputs

    setup = SearchSetup.from_config(config, samplers=request.samplers, single_objective_for=COMMAND)
    budget = request.n_trials if request.n_trials is not None else setup.settings.n_trials
    project = Project.from_config(setup.config)
    folder = project.root / OUTPUT_DIR
    Project(folder).check_writable()
    setup.use_trained_base(project)
    if on_setup is not None:
        on_setup(setup, budget)
    comparison = compare(setup, request.samplers, request.repeats, budget, on_run)
    return CompareOutcome(comparison, folder, write_outputs(comparison, folder))
