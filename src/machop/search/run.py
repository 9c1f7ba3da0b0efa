"""`search(config)`: set up the space, runners, sampler and study, run the trials, write reports."""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from machop.config.schema import RunConfig
from machop.errors import ConfigError
from machop.search import records
from machop.search.evaluator import TrialEvaluator
from machop.search.loop import run_trials
from machop.search.progress import SearchProgress
from machop.search.runners import RunContext, build_runners, check_metrics_produced
from machop.search.samplers import build_sampler
from machop.search.settings import StrategySettings, parse_strategy
from machop.search.study import create_or_resume, open_storage, requeue_interrupted

EXHAUSTIVE = ("grid", "bruteforce")


@dataclass
class SearchOutcome:
    """What a search run produced."""

    study: optuna.Study
    storage: str
    search_dir: Path
    resumed: bool
    requeued: int
    outputs: dict[str, Path] = field(default_factory=dict)


@dataclass
class _Setup:
    config: RunConfig
    settings: StrategySettings
    evaluator: TrialEvaluator
    attrs: dict[str, Any]
    budget: int


SEARCH_KEYS = ("search_space", "strategy", "train_base")


def _search_tables(config: RunConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    from machop.errors import closest

    for key in config.search:
        if key not in SEARCH_KEYS:
            hint = closest(key, SEARCH_KEYS)
            raise ConfigError(f"unknown key {key!r} in [search]" + (f"; did you mean {hint!r}?" if hint else "")
                              + f" (valid: {', '.join(SEARCH_KEYS)})")
    space, strategy = config.search.get("search_space"), config.search.get("strategy")
    if not isinstance(space, dict) or not isinstance(strategy, dict):
        raise ConfigError("search needs [search.search_space] and [search.strategy] tables "
                          "in the config (see configs/quickstart.toml)")
    return space, strategy


def _pruner(name: str) -> optuna.pruners.BasePruner:
    return {"none": optuna.pruners.NopPruner(), "median": optuna.pruners.MedianPruner(n_startup_trials=3),
            "hyperband": optuna.pruners.HyperbandPruner()}[name]


def _set_up(config: RunConfig, overrides: dict[str, Any]) -> _Setup:
    """Validate everything and build the evaluator; nothing is written here."""
    from machop.api import prepare
    from machop.data.batches import example_batch
    from machop.graph import Graph
    from machop.search.spaces import build_space
    from machop.train.settings import TrainSettings

    space_table, strategy_table = _search_tables(config)
    setup_table = {**(strategy_table.get("setup") or {}),
                   **{key: value for key, value in overrides.items() if value is not None}}
    settings = parse_strategy({**strategy_table, "setup": setup_table})
    runners = build_runners(settings.sw_runners, settings.hw_runners)
    check_metrics_produced(runners, [o.name for o in settings.objectives]
                           + [c.metric for c in settings.constraints])
    prepared = prepare(config)
    base = Graph(prepared.model, example_batch(prepared.dataset.validation))
    space = build_space(space_table, base)
    train = TrainSettings.from_config(prepared.config).__dict__
    run = RunContext(dataset=prepared.dataset, accelerator=prepared.config.accelerator,
                     train_defaults={k: v for k, v in train.items() if k not in ("accelerator",)})
    evaluator = TrialEvaluator(space=space, base=base, runners=runners, settings=settings, run=run)
    build_sampler(settings.sampler, 0, space.choices())  # refuses e.g. cmaes before anything is written
    budget = min(settings.n_trials, space.size()) if settings.sampler in EXHAUSTIVE else settings.n_trials
    attrs = {records.STUDY_CONFIG: config.search,
             records.STUDY_OBJECTIVES: [o.__dict__ for o in settings.objectives],
             records.STUDY_SUM_SCALED: settings.sum_scaled_metrics,
             records.STUDY_SPACE: {"name": space.name, "choices": space.choices()},
             records.STUDY_MODEL: {"model": prepared.config.model, "dataset": prepared.config.dataset,
                                   "load_name": prepared.config.load_name}}
    return _Setup(prepared.config, settings, evaluator, attrs, budget)


def _open_study(setup: _Setup, storage_url: str | None, search_dir: Path, study_name: str,
                worker_index: int, join_only: bool) -> tuple[optuna.Study, str, bool]:
    settings = setup.settings
    seed = (settings.seed if settings.seed is not None else setup.config.seed) + worker_index
    sampler = build_sampler(settings.sampler, seed, setup.evaluator.space.choices())
    storage, location = open_storage(storage_url, search_dir)
    study, resumed = create_or_resume(storage, study_name, settings.directions, sampler,
                                      _pruner(settings.pruner), setup.attrs, join_only=join_only)
    return study, location, resumed


def search(config: RunConfig, *, storage: str | None = None, study_name: str | None = None,
           progress: bool = False, worker: bool = False, **overrides: Any) -> SearchOutcome:
    """Run (or resume, or join with worker=True) the configured search and write its reports."""
    from machop.project import Project
    from machop.search.report import write_search_outputs

    setup = _set_up(config, overrides)
    project = Project.from_config(setup.config)
    search_dir = project.root / "search"
    Project(search_dir).check_writable()
    if config.search.get("train_base") and not setup.config.load_name:
        setup = _with_trained_base(setup, project)
    name = study_name or setup.config.project_name()
    study, location, resumed = _open_study(setup, storage, search_dir, name, 0, worker)
    requeued = 0 if worker else requeue_interrupted(study)
    with SearchProgress(progress, setup.budget, study) as bar:
        if setup.settings.n_jobs > 1:
            _run_processes(setup, storage or location, name, bar)
        else:
            run_trials(study, setup.evaluator, setup.budget, timeout=setup.settings.timeout,
                       on_trial=bar.update)
    outputs = write_search_outputs(study, search_dir)
    return SearchOutcome(study, location, search_dir, resumed, requeued, outputs)


def _with_trained_base(setup: _Setup, project: Any) -> _Setup:
    """Train the base model first (or reuse that training from an earlier run of the search)."""
    from machop import api
    from machop.train.checkpoint import load_checkpoint

    if not project.best_checkpoint.is_file():
        api.train(setup.config.model_copy(update={"passes": {}}), progress=False)
    load_checkpoint(setup.evaluator.base.module, project.best_checkpoint)
    setup.config = setup.config.model_copy(update={"load_name": str(project.best_checkpoint)})
    setup.attrs[records.STUDY_MODEL]["load_name"] = setup.config.load_name
    return setup


def _run_processes(setup: _Setup, storage: str, study_name: str, bar: SearchProgress) -> None:
    context = multiprocessing.get_context("spawn")
    jobs = [context.Process(target=_worker_main, daemon=True,
                            args=(setup.config.model_dump(), storage, study_name, index))
            for index in range(setup.settings.n_jobs)]
    for job in jobs:
        job.start()
    while any(job.is_alive() for job in jobs):
        bar.poll()
        time.sleep(0.5)
    bar.poll()


def _worker_main(config: dict[str, Any], storage: str, study_name: str, index: int) -> None:
    """Entry point of one worker process: one torch thread, its own sampler seed."""
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    setup = _set_up(RunConfig.model_validate(config), {})
    storage_url = storage if "://" in storage else f"journal:{storage}"
    study, _, _ = _open_study(setup, storage_url, Path(storage).parent, study_name, index, True)
    run_trials(study, setup.evaluator, setup.budget, timeout=setup.settings.timeout)
