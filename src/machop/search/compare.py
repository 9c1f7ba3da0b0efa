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
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from machop.config.schema import RunConfig
from machop.errors import SearchError, unknown_name
from machop.search import records
from machop.search.evaluator import TrialEvaluator
from machop.search.objective import config_key, constraint_violations, finite, objective_values
from machop.search.runners import first_nan, run_all
from machop.search.samplers import SAMPLERS, build_sampler

OUTPUT_DIR = "compare_samplers"
EXHAUSTIVE = ("grid", "bruteforce")
TOLERANCE = 1e-9


# ---- request validation -----------------------------------------------------------------------


def parse_samplers(text: str | Iterable[str]) -> list[str]:
    """Sampler names from "tpe,random" (lower case, duplicates dropped); unknown names are errors."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    names = list(dict.fromkeys(part.strip().lower() for part in parts if part.strip()))
    if not names:
        raise SearchError("--samplers needs at least one sampler name, e.g. tpe,random,bruteforce")
    for name in names:
        if name not in SAMPLERS:
            raise SearchError(unknown_name("sampler", name, SAMPLERS))
    return names


def check_counts(repeats: int, n_trials: int | None) -> None:
    """repeats and the trial budget must be positive integers."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise SearchError(f"--repeats must be an integer >= 1, got {repeats!r}")
    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1):
        raise SearchError(f"--n-trials must be an integer >= 1, got {n_trials!r}")


def check_single_objective(config: RunConfig) -> None:
    """Refuse a multi-objective strategy before anything is loaded."""
    from machop.search.run import _search_tables
    from machop.search.settings import parse_strategy

    _, strategy = _search_tables(config)
    settings = parse_strategy(strategy)
    if settings.multi_objective:
        names = ", ".join(o.name for o in settings.objectives)
        raise SearchError(f"compare-samplers needs a single objective, but this config has "
                          f"{len(settings.objectives)} ({names}) with sum_scaled_metrics = false; "
                          "set sum_scaled_metrics = true or keep one metric")


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


def _reason(exc: BaseException) -> str:
    """An exception as one short line: "Type: message"."""
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class EvaluationCache:
    """Objective values by configuration; a configuration is evaluated on its first request only."""

    def __init__(self, evaluator: TrialEvaluator) -> None:
        self.evaluator = evaluator
        self.settings = evaluator.settings
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
            return Evaluation(dict(sample), None, metrics, [], time.perf_counter() - started, _reason(exc))
        return Evaluation(dict(sample), values[0], metrics, constraint_violations(metrics, settings),
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
        for constraint, violation in zip(cache.settings.constraints, entry.violations):
            # Optuna's constraint-aware samplers read these (<= 0: satisfied).
            trial.set_constraint(f"{constraint.metric} {constraint.op} {constraint.bound:g}", violation)
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
        best = self.cache.entries.get(self.best_key) if self.best_key else None
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
            "timing_note": ("seconds = sampler_seconds (measured) + eval_seconds (the configuration's one "
                            "real evaluation, charged when new to the run, 0 for a repeat within the run)"),
            "summary": summary,
            "samplers": {name: {"runs": [run.as_dict() for run in runs]} for name, runs in self.runs.items()},
        }


RunDone = Callable[[str, int, Run], None]


def compare(setup: Any, samplers: list[str], repeats: int, budget: int,
            on_run: RunDone | None = None) -> Comparison:
    """Run every sampler `repeats` times (seeds 0..repeats-1) against one evaluation cache."""
    started = time.perf_counter()
    settings, evaluator = setup.settings, setup.evaluator
    direction = settings.directions[0]
    cache = EvaluationCache(evaluator)
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
                      best_key=best[0], seconds=time.perf_counter() - started)


@dataclass
class CompareOutcome:
    """What compare-samplers produced."""

    comparison: Comparison
    folder: Path
    outputs: dict[str, Path]


def compare_samplers(config: RunConfig, samplers: str | Iterable[str], repeats: int,
                     n_trials: int | None = None, on_run: RunDone | None = None,
                     on_setup: Callable[[Any, int], None] | None = None) -> CompareOutcome:
    """Validate, set up the configured search once, compare the samplers and write the outputs."""
    from machop.project import Project
    from machop.search import run as search_run

    names = parse_samplers(samplers)
    check_counts(repeats, n_trials)
    check_single_objective(config)
    setup = search_run._set_up(config, {})
    for name in names:  # e.g. cmaes is refused here, before anything is written
        build_sampler(name, 0, setup.evaluator.space.choices())
    budget = n_trials if n_trials is not None else setup.settings.n_trials
    project = Project.from_config(setup.config)
    folder = project.root / OUTPUT_DIR
    Project(folder).check_writable()
    if config.search.get("train_base") and not setup.config.load_name:
        setup = search_run._with_trained_base(setup, project)
    if on_setup is not None:
        on_setup(setup, budget)
    comparison = compare(setup, names, repeats, budget, on_run)
    return CompareOutcome(comparison, folder, write_outputs(comparison, folder))


# ---- outputs ----------------------------------------------------------------------------------


def write_outputs(comparison: Comparison, folder: Path) -> dict[str, Path]:
    """results.json, best_so_far.png and seconds_per_trial.png in `folder`."""
    from machop.io_atomic import write_json_atomic

    return {"results": write_json_atomic(folder / "results.json", comparison.as_dict()),
            "best so far": plot_best_so_far(comparison, folder / "best_so_far.png"),
            "seconds per trial": plot_seconds(comparison, folder / "seconds_per_trial.png")}


def curves(runs: list[Run], length: int) -> np.ndarray:
    """Best-so-far curves as rows (NaN before the first result, last value held after a run ends)."""
    matrix = np.full((len(runs), length), np.nan)
    for row, run in enumerate(runs):
        values = [np.nan if v is None else v for v in run.best_so_far][:length]
        matrix[row, :len(values)] = values
        if values and len(values) < length:
            matrix[row, len(values):] = values[-1]
    return matrix


def _colours() -> list[str]:
    """Line colours, the same palette as the search report's plots."""
    return ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]


def plot_best_so_far(comparison: Comparison, path: Path) -> Path:
    """Median best-so-far per sampler with its interquartile band and the best value found."""
    import matplotlib.ticker

    from machop.search.report.plots import _figure, _save, _style

    x = np.arange(1, comparison.budget + 1)
    with _style():
        figure = _figure(8, 5.2)
        ax = figure.subplots()
        items = list(comparison.runs.items())
        for index, (colour, (name, runs)) in enumerate(zip(itertools.cycle(_colours()), items)):
            matrix = curves(runs, comparison.budget)
            filled = ~np.isnan(matrix).all(axis=0)
            if not filled.any():
                continue
            low, median, high = (np.nanpercentile(matrix[:, filled], q, axis=0) for q in (25, 50, 75))
            ax.fill_between(x[filled], low, high, step="post", color=colour, alpha=0.18, linewidth=0)
            # Samplers often share their first (random) trials; wider lines underneath stay visible.
            ax.step(x[filled], median, where="post", color=colour, zorder=3 + index,
                    linewidth=max(1.2, 1.2 + 0.7 * (len(items) - 1 - index)),
                    label=f"{name} (median, IQR band)")
        if comparison.best_value is not None:
            ax.axhline(comparison.best_value, color="black", linestyle="--", linewidth=1, zorder=2,
                       label=f"best found {comparison.best_value:.5g}")
        if comparison.space_size < comparison.budget:
            ax.axvline(comparison.space_size, color="#999999", linestyle=":", linewidth=1,
                       label=f"space size {comparison.space_size:,}")
        ax.set_xlabel("trial number")
        objective = "sum of scaled metrics" if len(comparison.objectives) > 1 else comparison.objectives[0]["name"]
        ax.set_ylabel(f"best-so-far objective ({objective}, {comparison.direction})")
        ax.set_xlim(1, max(2, comparison.budget))
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right" if comparison.direction == "maximize" else "upper right")
        figure.suptitle(f"Best so far over {comparison.repeats} seeds (seeds 0-{comparison.repeats - 1})\n"
                        f"{comparison.space_name}, {comparison.space_size:,} configurations, "
                        f"{comparison.model} on {comparison.dataset}")
        return _save(figure, path)


def plot_seconds(comparison: Comparison, path: Path) -> Path:
    """Per sampler: boxes of the mean seconds per trial and of the sampler overhead per trial."""
    from machop.search.report.plots import _figure, _save, _style

    names = list(comparison.runs)
    total = [[run.mean_seconds() for run in comparison.runs[name]] for name in names]
    overhead = [[1e3 * run.mean_sampler_seconds() for run in comparison.runs[name]] for name in names]
    with _style():
        figure = _figure(max(7.0, 2.2 * len(names) + 3), 4.2)
        left, right = figure.subplots(1, 2)
        for ax, data, label in ((left, total, "seconds per trial (evaluation + sampler)"),
                                (right, overhead, "sampler + Optuna overhead per trial (ms)")):
            ax.boxplot(data, tick_labels=names, showmeans=True)
            ax.set_ylabel(label)
            ax.grid(True, axis="y", alpha=0.3)
        left.set_title("each configuration's evaluation charged once per run")
        right.set_title("measured")
        figure.suptitle(f"Seconds per trial, mean per run over {comparison.repeats} seeds — "
                        f"{comparison.model} on {comparison.dataset}")
        return _save(figure, path)


def summary_table(comparison: Comparison) -> Any:
    """Rich table: sampler, median trials to the best (and repeats reaching it), seconds per trial."""
    from rich.table import Table

    from machop.search.report.tables import compact_config

    best = comparison.cache.entries.get(comparison.best_key) if comparison.best_key else None
    title = (f"Samplers on {comparison.space_name} ({comparison.space_size:,} configurations), "
             f"{comparison.repeats} seeds x {comparison.budget} trials; best {comparison.best_value:.5g}")
    caption = None if best is None else f"best configuration: {compact_config(best.config, '; ')}"
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for column in ("sampler", "median trials to best", "reached best", "median best at end",
                   "median s/trial", "sampler ms/trial"):
        table.add_column(column, justify="left" if column == "sampler" else "right")
    for row in comparison.summary():
        median = row["median_trials_to_best"]
        table.add_row(row["sampler"], f"> {comparison.budget}" if math.isinf(median) else f"{median:g}",
                      f"{row['reached_best']}/{row['repeats']}",
                      "-" if row["median_final_best"] is None else f"{row['median_final_best']:.5g}",
                      f"{row['median_seconds_per_trial']:.4f}",
                      f"{1e3 * row['median_sampler_seconds_per_trial']:.2f}")
    return table
