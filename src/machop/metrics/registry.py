"""Metric registry: a name used in configs maps to one metric with its natural direction.

Metrics come in groups that are computed together and cached per context (one prediction pass
gives every classification metric; one analysis pass every complexity metric). `GROUPS` is the
one source: each group names its compute function, its metrics and the search runners that
produce it; `METRICS` and everything else are derived from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from machop.docstrings import summary
from machop.errors import ConfigError, unknown_name

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Metric:
    """One named number: which group computes it, under which key, and which way is better."""

    name: str
    group: str
    direction: str
    unit: str = ""
    key: str = ""
    description: str = ""

    @property
    def result_key(self) -> str:
        return self.key or self.name

    @property
    def needs_data(self) -> bool:
        """Whether the metric is measured on samples (not only on the input shape)."""
        return GROUPS[self.group].needs_data


def _m(name: str, direction: str, unit: str = "", key: str = "", description: str = "") -> Metric:
    """A metric of the group it is listed in (MetricGroup fills in the group)."""
    return Metric(name, "", direction, unit, key, description)


@dataclass(frozen=True)
class MetricGroup:
    """Metrics computed together by one function, and the search runners that produce them."""

    name: str
    compute: Callable[[MetricContext], dict[str, Any]]
    metrics: tuple[Metric, ...]
    # [search.strategy] runner tables that compute this group; the first is the one suggested
    # when an objective's metric has no runner.
    runners: tuple[str, ...]
    needs_data: bool = False  # measured on the dataset's samples, not only on the input shape

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", tuple(replace(m, group=self.name) for m in self.metrics))

    @property
    def description(self) -> str:
        """The first line of the compute function's docstring."""
        return summary(self.compute)


def group_metrics(group: str) -> tuple[str, ...]:
    """The names of a group's metrics, in registry order."""
    return tuple(metric.name for metric in GROUPS[group].metrics)


def resolve_metric_names(names: Iterable[str] | None) -> list[str]:
    """Validate metric names (all metrics when None); unknown ones are a ConfigError."""
    if names is None:
        return list(METRICS)
    chosen = [name.strip() for name in names if name.strip()]
    for name in chosen:
        if name not in METRICS:
            raise ConfigError(unknown_name("metric", name, METRICS))
    if not chosen:
        raise ConfigError(f"no metric named: give one or more comma-separated names "
                          f"(valid: {', '.join(METRICS)})")
    return chosen


def data_metrics(names: Iterable[str]) -> list[str]:
    """The metrics among `names` that need the dataset's samples."""
    return [name for name in names if METRICS[name].needs_data]


@dataclass
class MetricContext:
    """What metrics are measured on: a graph, its data, and the measurement settings."""

    graph: Any
    dataset: Any = None
    split: str = "validation"
    num_samples: int | None = None
    batch_size: int = 128
    device: torch.device | None = None
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_samples is not None and self.num_samples <= 0:
            raise ConfigError(f"num_samples must be positive, got {self.num_samples}")
        if self.batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {self.batch_size}")
        if self.dataset is not None:
            self.dataset.split(self.split)

    def group(self, name: str) -> dict[str, Any]:
        """The results of one metric group, computed on first use."""
        if name not in self.results:
            self.results[name] = GROUPS[name].compute(self)
        return self.results[name]


def compute_metrics(names: Iterable[str] | None, context: MetricContext) -> dict[str, float | None]:
    """Values of the named metrics (None where unavailable; the reason is in context.notes)."""
    values: dict[str, float | None] = {}
    for name in resolve_metric_names(names):
        metric = METRICS[name]
        result = context.group(metric.group)
        values[name] = result.get(metric.result_key)
        if values[name] is None and f"{metric.group}_reason" in result:
            context.notes[name] = result[f"{metric.group}_reason"]
    return values


def _classification(context: MetricContext) -> dict[str, Any]:
    """Prediction quality on a dataset split (one prediction pass)."""
    from machop.runtime.classification import classification_summary
    from machop.runtime.predict import predict

    if context.dataset is None:
        raise ConfigError("classification metrics need a dataset")
    info = context.dataset.info
    split = context.dataset.evaluation_split(context.split).head(context.num_samples)
    logits, targets = predict(context.graph.module, split, batch_size=max(context.batch_size, 1024),
                              device=context.device)
    return {**classification_summary(logits, targets, info.num_classes, info.class_names),
            "num_samples": len(targets)}


def _complexity(context: MetricContext) -> dict[str, Any]:
    """Size and arithmetic cost of the graph at its configured precisions (one analysis pass)."""
    from machop.passes.complexity import complexity_analysis_pass

    _, info = complexity_analysis_pass(context.graph, {})
    return {**info["totals"], "per_node": info["per_node"]}


def _batch(context: MetricContext) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    from machop.data.batches import iterate_batches

    if context.dataset is not None:
        split = context.dataset.evaluation_split(context.split)
        return next(iterate_batches(split.head(context.batch_size), context.batch_size))
    example = context.graph.example_input
    repeats = -(-context.batch_size // len(example))
    inputs = example.repeat(repeats, *([1] * (example.dim() - 1)))[:context.batch_size]
    return inputs, torch.zeros(len(inputs), dtype=torch.long)


def _speed(context: MetricContext) -> dict[str, Any]:
    """Measured forward latency and throughput."""
    from machop.metrics.speed import measure_speed

    inputs, _ = _batch(context)
    return measure_speed(context.graph.module, inputs, context.batch_size,
                         device=context.device).as_dict()


def _onnx(context: MetricContext) -> dict[str, Any]:
    """Measured ONNX Runtime latency, throughput and size of the model exported with int8 QDQ."""
    from machop.metrics.onnx import measure_onnx, missing_runtime

    reason = missing_runtime()
    if reason is not None:
        return {"onnx_reason": reason}
    inputs, _ = _batch(context)
    return measure_onnx(context.graph.module, inputs, context.batch_size).as_dict()


def _unavailable(group: str, result: Any) -> dict[str, Any]:
    return {} if result.available else {f"{group}_reason": result.reason}


def _memory(context: MetricContext) -> dict[str, Any]:
    """Measured peak memory of a forward pass and of a training step."""
    from machop.metrics.memory import peak_memory_inference, peak_memory_training_step

    inputs, targets = _batch(context)
    inference = peak_memory_inference(context.graph.module, inputs, device=context.device)
    training = peak_memory_training_step(context.graph.module, inputs, targets, device=context.device)
    return {"memory_inference": inference.peak_bytes, "memory_training": training.peak_bytes,
            "memory_method": inference.method, **_unavailable("memory", inference)}


def _energy(context: MetricContext) -> dict[str, Any]:
    """Measured GPU energy of an inference batch and of a training step."""
    from machop.metrics.energy import energy_per_inference, energy_per_training_step

    inputs, targets = _batch(context)
    inference = energy_per_inference(context.graph.module, inputs, device=context.device)
    training = energy_per_training_step(context.graph.module, inputs, targets, device=context.device)
    return {"energy_inference": inference.joules, "energy_training": training.joules,
            "energy_method": inference.method, **_unavailable("energy", inference)}


_GROUP_LIST = (
    MetricGroup("classification", _classification, (
        _m("loss", "minimize", description="cross-entropy"),
        _m("accuracy", "maximize", description="micro accuracy"),
        _m("accuracy_macro", "maximize", description="mean per-class recall"),
        _m("precision", "maximize", description="macro precision"),
        _m("recall", "maximize", description="macro recall"),
        _m("f1", "maximize", description="macro F1"),
    ), runners=("sw_runner.basic_evaluation", "sw_runner.basic_train"), needs_data=True),
    MetricGroup("complexity", _complexity, (
        _m("params", "minimize", description="parameters"),
        _m("macs", "minimize", "per sample", description="multiply-accumulates"),
        _m("flops", "minimize", "per sample", description="FlopCounterMode FLOPs (2 x MACs)"),
        _m("elementwise_ops", "minimize", "per sample",
           description="BatchNorm/ReLU/pool/add work FlopCounterMode ignores"),
        _m("bitops", "minimize", "per sample", description="MACs x weight bits x activation bits"),
        _m("model_size", "minimize", "bytes", "model_size_bytes", "parameters at their configured widths"),
        _m("model_size_bits", "minimize", "bits", description="parameters at their widths"),
        _m("average_bitwidth", "minimize", "bits", description="MASE: weight width over quantized linear layers"),
        _m("average_bitwidth_all", "minimize", "bits", description="weight width over all linear and conv layers"),
        _m("memory_density", "maximize", "", description="32 / average_bitwidth"),
    ), runners=("hw_runner.bitops", "hw_runner.average_bitwidth", "hw_runner.flops", "hw_runner.macs",
                "hw_runner.params", "hw_runner.model_size", "hw_runner.complexity")),
    MetricGroup("speed", _speed, (
        _m("latency", "minimize", "ms", "latency_ms", "batch-1 forward, median"),
        _m("inference_time", "minimize", "ms", "inference_time_ms", "forward at batch_size, median"),
        _m("throughput", "maximize", "samples/s", description="batch_size / inference time"),
    ), runners=("hw_runner.latency", "hw_runner.throughput", "hw_runner.speed")),
    MetricGroup("onnx", _onnx, (
        _m("onnx_latency", "minimize", "ms", "onnx_latency_ms", "ONNX Runtime batch-1 run, median"),
        _m("onnx_throughput", "maximize", "samples/s", description="ONNX Runtime at batch_size"),
        _m("onnx_size", "minimize", "bytes", "onnx_size_bytes", "serialized ONNX model"),
    ), runners=("hw_runner.onnx",)),
    MetricGroup("memory", _memory, (
        _m("memory_inference", "minimize", "bytes", description="peak memory of one forward"),
        _m("memory_training", "minimize", "bytes", description="peak memory of one training step"),
    ), runners=("hw_runner.memory",)),
    MetricGroup("energy", _energy, (
        _m("energy_inference", "minimize", "J", description="GPU energy per inference batch"),
        _m("energy_training", "minimize", "J", description="GPU energy per training step"),
    ), runners=("hw_runner.energy",)),
)
GROUPS: dict[str, MetricGroup] = {group.name: group for group in _GROUP_LIST}
METRICS: dict[str, Metric] = {metric.name: metric for group in _GROUP_LIST for metric in group.metrics}
