"""Runners turn a candidate into metrics: evaluate it, train then evaluate it, or measure its cost.

A runner name in [search.strategy.sw_runner.*] or [search.strategy.hw_runner.*] maps to one
class; every runner says up front which metrics it produces, so a metric nobody produces is an
error before the first trial.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from machop.config.schema import TRAINING_OPTIONS, accepts_setting, setting_values
from machop.errors import SearchError, did_you_mean, unknown_name
from machop.metrics.registry import GROUPS, METRICS, MetricContext, compute_metrics, group_metrics
from machop.search.settings import SPLITS

EpochReporter = Callable[[int, dict[str, float]], None]


def _check_options(runner: str, options: dict[str, Any], valid: tuple[str, ...]) -> None:
    for key in options:
        if key not in valid:
            raise SearchError(f"runner {runner!r}: unknown option {key!r}{did_you_mean(key, valid)} "
                              f"(valid: {', '.join(valid) or 'none'})")


def _split(runner: str, options: dict[str, Any], default: str) -> str:
    name = str(options.get("data_loader", default))
    if name not in SPLITS:
        raise SearchError(f"runner {runner!r}: data_loader {name!r} is invalid "
                          f"(valid: {', '.join(SPLITS)})")
    return SPLITS[name]


def _num_samples(runner: str, options: dict[str, Any]) -> int | None:
    value = options.get("num_samples")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SearchError(f"runner {runner!r}: num_samples must be a positive integer, got {value!r}")
    return value


@dataclass
class RunContext:
    """What every runner of one trial shares: the dataset, training defaults and device."""

    dataset: Any
    train_defaults: dict[str, Any]
    accelerator: str = "auto"
    report_epoch: EpochReporter | None = None
    show_epochs: bool = False  # an epoch line per epoch while basic_train trains (the float base)

    @property
    def batch_size(self) -> int:
        return int(self.train_defaults.get("batch_size", 128))

    @property
    def device(self) -> Any:
        from machop.runtime.device import resolve_device

        return resolve_device(self.accelerator)


class BasicEvaluation:
    """Post-training evaluation: classification metrics on a split (fresh state every trial)."""

    name = "basic_evaluation"
    produces = group_metrics("classification")

    def __init__(self, options: dict[str, Any]) -> None:
        _check_options(self.name, options, ("data_loader", "num_samples"))
        self.split = _split(self.name, options, "val_dataloader")
        self.num_samples = _num_samples(self.name, options)

    def __call__(self, graph: Any, run: RunContext, overrides: dict[str, Any]) -> dict[str, float | None]:
        context = MetricContext(graph=graph, dataset=run.dataset, split=self.split,
                                num_samples=self.num_samples, batch_size=run.batch_size,
                                device=run.device)
        return compute_metrics(self.produces, context)


def _refuse_several_processes(options: dict[str, Any]) -> None:
    """A trial trains in the search's own process: refuse rather than use one device quietly.

    (A search worker cannot start a process group per trial: workers are daemon processes
    and every trial would pay seconds of launch; parallel trials come from setup.n_jobs.)
    """
    devices, nodes = options.pop("num_devices", 1), options.pop("num_nodes", 1)
    options.pop("strategy", None)
    if devices * nodes > 1:
        raise SearchError(f"runner 'basic_train' trains each candidate in one process, but "
                          f"num_devices={devices}, num_nodes={nodes}; set both to 1 (use "
                          "search.strategy.setup.n_jobs for parallel trials)")


def _check_train_options(options: dict[str, Any]) -> None:
    """Each basic_train option must be what the run configuration's field of the same setting accepts."""
    for key, value in options.items():
        if not accepts_setting(key, value):
            raise SearchError(f"search.strategy.sw_runner.basic_train.{key} must be "
                              f"{setting_values(key)}, got {value!r}")


class BasicTrain(BasicEvaluation):
    """Train the candidate (quantization-aware when it is quantized), then evaluate it."""

    name = "basic_train"
    TRAIN_KEYS = TRAINING_OPTIONS

    def __init__(self, options: dict[str, Any]) -> None:
        _check_options(self.name, options, ("data_loader", "num_samples", *self.TRAIN_KEYS))
        self.split = _split(self.name, options, "val_dataloader")
        self.num_samples = _num_samples(self.name, options)
        self.train_options = {k: options[k] for k in self.TRAIN_KEYS if k in options}
        _check_train_options(self.train_options)

    def __call__(self, graph: Any, run: RunContext, overrides: dict[str, Any]) -> dict[str, float | None]:
        from machop.train.fit import fit
        from machop.train.settings import TrainSettings

        options = {**run.train_defaults, **self.train_options, **overrides}
        _refuse_several_processes(options)
        if "t_max" not in self.train_options and "max_epochs" in options:
            options["t_max"] = options["max_epochs"]
        settings = TrainSettings(**{**options, "accelerator": run.accelerator})
        callback = None
        if run.report_epoch is not None:
            callback = lambda end: run.report_epoch(end.epoch, end.metrics)  # noqa: E731
        graph.own()  # a candidate may borrow the base's tensors: training changes only its own
        fit(graph.module, run.dataset, settings, on_epoch_end=callback, progress=run.show_epochs)
        return super().__call__(graph, run, overrides)


class GroupRunner:
    """Cost runners (complexity, speed, memory, energy) from the metric registry."""

    OPTIONS = {"average_bitwidth": ("compare_to",)}

    def __init__(self, name: str, group: str, options: dict[str, Any]) -> None:
        _check_options(name, options, self.OPTIONS.get(name, ()))
        self.name, self.group = name, group
        self.produces = group_metrics(group)
        self.compare_to = float(options.get("compare_to", 32))

    def __call__(self, graph: Any, run: RunContext, overrides: dict[str, Any]) -> dict[str, float | None]:
        context = MetricContext(graph=graph, dataset=run.dataset, batch_size=run.batch_size,
                                device=run.device)
        values = compute_metrics(self.produces, context)
        if self.name == "average_bitwidth" and values.get("average_bitwidth"):
            values["memory_density"] = self.compare_to / values["average_bitwidth"]
        return values


SW_RUNNERS = {"basic_evaluation": BasicEvaluation, "basic_train": BasicTrain}
# hw_runner name -> the metric group it computes, as each group of the metric registry lists them.
HW_RUNNER_GROUPS = {runner.removeprefix("hw_runner."): group.name for group in GROUPS.values()
                    for runner in group.runners if runner.startswith("hw_runner.")}


def build_runners(sw: dict[str, dict[str, Any]], hw: dict[str, dict[str, Any]]) -> list[Any]:
    """Instantiate configured runners; an unknown runner name is a SearchError."""
    runners: list[Any] = []
    for name, options in sw.items():
        if name not in SW_RUNNERS:
            raise SearchError("search.strategy.sw_runner: " + unknown_name("runner", name, SW_RUNNERS))
        runners.append(SW_RUNNERS[name](options))
    for name, options in hw.items():
        if name not in HW_RUNNER_GROUPS:
            raise SearchError("search.strategy.hw_runner: " + unknown_name("runner", name, HW_RUNNER_GROUPS))
        runners.append(GroupRunner(name, HW_RUNNER_GROUPS[name], options))
    if sum(isinstance(r, BasicEvaluation) for r in runners) > 1:
        raise SearchError("configure either sw_runner.basic_evaluation or sw_runner.basic_train, not both")
    return runners


def check_metrics_produced(runners: list[Any], metric_names: list[str]) -> None:
    """Every objective/constraint metric must come from a configured runner."""
    produced = {metric for runner in runners for metric in runner.produces}
    for name in metric_names:
        if name not in produced:
            hint = GROUPS[METRICS[name].group].runners[0]
            raise SearchError(f"metric {name!r} is produced by no configured runner; "
                              f"add [search.strategy.{hint}]")


def run_all(runners: list[Any], graph: Any, run: RunContext,
            overrides: dict[str, Any]) -> dict[str, float | None]:
    """Run training/evaluation first (it changes the weights), then the cost runners."""
    metrics: dict[str, float | None] = {}
    for runner in sorted(runners, key=lambda r: not isinstance(r, BasicEvaluation)):
        metrics.update(runner(graph, run, overrides))
    return metrics


def first_nan(metrics: dict[str, float | None], names: list[str]) -> str | None:
    """Name of the first listed metric that is NaN or missing."""
    for name in names:
        value = metrics.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return name
    return None
