"""A search set up once from a run config's [search] section, for every command that runs one.

`SearchSetup.from_config` checks the whole section in one place (its tables, the strategy with
any command-line overrides, the runners and the metrics they must produce, the samplers against
the space), then loads what every trial shares: the model and dataset, the base graph, the space
and the evaluator. `machop search`, its worker processes, `machop compare-samplers` and the
benchmarks all start from this object. Bad input raises a SearchError before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from machop.config.schema import RunConfig
from machop.errors import SearchError, did_you_mean
from machop.search import records
from machop.search.evaluator import TrialEvaluator
from machop.search.pruners import build_pruner
from machop.search.runners import BasicTrain, RunContext, build_runners, check_metrics_produced
from machop.search.samplers import EXHAUSTIVE, build_sampler, check_strategy
from machop.search.settings import StrategySettings, parse_strategy

if TYPE_CHECKING:
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler

    from machop.graph.graph import Graph
    from machop.project import Project
    from machop.search.space import SearchSpace

SEARCH_KEYS = ("search_space", "strategy", "train_base")

Note = Callable[[str], None]


@dataclass(frozen=True)
class SearchSection:
    """The [search] section's parts: the space table, the strategy table and train_base."""

    space: dict[str, Any]
    strategy: dict[str, Any]
    train_base: bool


def search_section(config: RunConfig) -> SearchSection:
    """The [search] section of `config`, its keys and the type of each part checked."""
    for key in config.search:
        if key not in SEARCH_KEYS:
            raise SearchError(f"unknown key {key!r} in [search]{did_you_mean(key, SEARCH_KEYS)} "
                              f"(valid: {', '.join(SEARCH_KEYS)})")
    space, strategy = config.search.get("search_space"), config.search.get("strategy")
    if not isinstance(space, dict) or not isinstance(strategy, dict):
        raise SearchError("search needs [search.search_space] and [search.strategy] tables "
                          "in the config (see configs/quickstart.toml)")
    train_base = config.search.get("train_base", False)
    if not isinstance(train_base, bool):
        raise SearchError(f"search.train_base must be true or false, got {train_base!r}")
    return SearchSection(space, strategy, train_base)


def _check_single_objective(settings: StrategySettings, command: str) -> None:
    if settings.multi_objective:
        names = ", ".join(o.name for o in settings.objectives)
        raise SearchError(f"{command} needs a single objective, but this config has "
                          f"{len(settings.objectives)} ({names}) with sum_scaled_metrics = false; "
                          "set sum_scaled_metrics = true or keep one metric")


@dataclass
class SearchSetup:
    """Everything a search needs, validated and loaded once: strategy, space, runners, base model."""

    config: RunConfig  # the resolved run config; load_name points at the trained base once there is one
    settings: StrategySettings
    evaluator: TrialEvaluator
    attrs: dict[str, Any]  # the study's user attributes (records.STUDY_*)
    budget: int  # trials of the search: n_trials, at most the space size for an exhaustive sampler
    train_base: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)  # given to worker processes as they were

    @classmethod
    def from_config(cls, config: RunConfig, overrides: Mapping[str, Any] | None = None, *,
                    samplers: Iterable[str] = (), single_objective_for: str | None = None) -> SearchSetup:
        """Check [search] (with `overrides` of strategy.setup keys; None values ignored) and load it.

        `samplers` names further samplers that will run on the space (compare-samplers), checked
        like the strategy's own; `single_objective_for` names a command that refuses a
        multi-objective strategy, which is refused before the model is loaded.
        """
        section = search_section(config)
        given = {key: value for key, value in (overrides or {}).items() if value is not None}
        settings, runners = _checked_strategy(section.strategy, given, single_objective_for)
        for name in dict.fromkeys([settings.sampler, *samplers]):
            check_strategy(name, settings)  # e.g. greedy without a cost objective, before the model loads
        resolved, base, space, run = _loaded(config, section.space)
        exhaustive = settings.sampler in EXHAUSTIVE
        evaluator = TrialEvaluator(space=space, base=base, runners=runners, settings=settings, run=run,
                                   claim_patience=settings.grace_period if exhaustive else None)
        for name in dict.fromkeys([settings.sampler, *samplers]):
            build_sampler(name, 0, space.choices())  # refuses e.g. cmaes before anything is written
        budget = min(settings.n_trials, space.size()) if exhaustive else settings.n_trials
        attrs = _study_attrs(config, resolved, settings, space)
        return cls(resolved, settings, evaluator, attrs, budget, section.train_base, given)

    @property
    def space(self) -> SearchSpace:
        """The search space."""
        return self.evaluator.space

    @property
    def base(self) -> Graph:
        """The base model's graph every candidate is built from."""
        return self.evaluator.base

    @property
    def runners(self) -> list[Any]:
        """The configured runners, in configuration order."""
        return self.evaluator.runners

    @property
    def run(self) -> RunContext:
        """What the runners of every trial share: dataset, training defaults, device."""
        return self.evaluator.run

    @property
    def trains_candidates(self) -> bool:
        """True when every candidate is trained (sw_runner.basic_train)."""
        return any(isinstance(runner, BasicTrain) for runner in self.runners)

    @property
    def needs_trained_base(self) -> bool:
        """True when search.train_base asks for a base model that no --load gave."""
        return self.train_base and not self.config.load_name

    def seed(self, worker_index: int = 0) -> int:
        """The sampler seed of one worker: setup.seed (else the run's seed) plus its index."""
        return (self.settings.seed if self.settings.seed is not None else self.config.seed) + worker_index

    def sampler(self, seed: int, name: str | None = None) -> BaseSampler:
        """A sampler over this space: the strategy's, or another by name, seeded with `seed`."""
        return build_sampler(name or self.settings.sampler, seed, self.space.choices())

    def pruner(self) -> BasePruner:
        """The strategy's pruner."""
        return build_pruner(self.settings.pruner)

    def use_trained_base(self, project: Project, note: Note | None = None, progress: bool = False) -> None:
        """When search.train_base asks for it, train the base model (or reuse an earlier one) and load it."""
        from machop import api
        from machop.train.checkpoint import load_base_checkpoint

        if not self.needs_trained_base:
            return
        say = note or (lambda text: None)
        if not project.best_checkpoint.is_file():
            say(f"Training the base model {self.config.model} ({self.config.max_epochs} epochs, "
                "search.train_base)")
            api.train(self.config.model_copy(update={"passes": {}}), progress=progress)
        else:
            say(f"Base model: reusing {project.best_checkpoint}")
        load_base_checkpoint(self.base.module, project.best_checkpoint, model_name=self.config.model,
                             dataset=self.run.dataset.info.name)
        self.config = self.config.model_copy(update={"load_name": str(project.best_checkpoint)})
        self.attrs[records.STUDY_MODEL]["load_name"] = self.config.load_name


def _checked_strategy(strategy: dict[str, Any], overrides: dict[str, Any],
                      single_objective_for: str | None) -> tuple[StrategySettings, list[Any]]:
    """The strategy and its runners, checked: everything that needs no model, so it fails fast."""
    settings = parse_strategy(strategy, overrides)
    if single_objective_for is not None:
        _check_single_objective(settings, single_objective_for)
    runners = build_runners(settings.sw_runners, settings.hw_runners)
    check_metrics_produced(runners, [o.name for o in settings.objectives]
                           + [c.metric for c in settings.constraints])
    return settings, runners


def _loaded(config: RunConfig, space_table: dict[str, Any]) -> tuple[RunConfig, Graph, SearchSpace, RunContext]:
    """Load the model and dataset, trace the base graph and build the space over it."""
    from machop.api import pass_data, prepare
    from machop.data.batches import example_batch
    from machop.graph import Graph
    from machop.search.spaces import build_space
    from machop.train.settings import TrainSettings

    prepared = prepare(config)
    base = Graph(prepared.model, example_batch(prepared.dataset.validation))
    space = build_space(space_table, base)
    space.use_data(pass_data(prepared.config, prepared.dataset))  # "auto" frac widths calibrate on it
    train = TrainSettings.from_config(prepared.config).__dict__
    run = RunContext(dataset=prepared.dataset, accelerator=prepared.config.accelerator,
                     train_defaults={k: v for k, v in train.items() if k != "accelerator"})
    return prepared.config, base, space, run


def _study_attrs(config: RunConfig, resolved: RunConfig, settings: StrategySettings,
                 space: SearchSpace) -> dict[str, Any]:
    """The study's user attributes: what a resumed or joined study must match, and what reports read."""
    return {records.STUDY_CONFIG: config.search,
            records.STUDY_OBJECTIVES: [o.__dict__ for o in settings.objectives],
            records.STUDY_SUM_SCALED: settings.sum_scaled_metrics,
            records.STUDY_SPACE: {"name": space.name, "choices": space.choices()},
            records.STUDY_MODEL: {"model": resolved.model, "dataset": resolved.dataset,
                                  "load_name": resolved.load_name},
            records.STUDY_RUN_CONFIG: resolved.model_dump(mode="json")}
