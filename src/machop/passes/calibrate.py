"""Calibration: statistics of a float graph's quantized operands, and "auto" frac widths from them.

```toml
[passes.quantize.calibration]
method = "mse"            # max | percentile | mse
granularity = "channel"   # weights and biases: tensor | channel (one frac per output channel)
split = "train"           # train | validation | test
num_samples = 1024        # or num_batches (of the run's batch_size); default min(1024, split)
percentile = 99.99        # percentile method only, in (0, 100]
seed = 0                  # which samples, and the activation sample; default: the run's seed
sample_size = 65536       # activation values kept per operand (a uniform sample)
```

Activations (data_in, data_out) take one frac width per tensor: `activation_granularity` exists
only to say so ("channel" is refused). Weights and biases are calibrated on their values;
activations on the float graph run over the calibration samples, every quantized operand as the
quantized node will see it (so a quantize pass after a redefine pass calibrates the redefined
graph). With `granularity = "channel"` a bias takes one frac width per output channel like its
weight, chosen by the same method on that channel's bias value with the bias's own width: the
bias is added at the channel's accumulator, so its binary point is per channel anyway, and
a channel's bias may well exceed its largest weight (a shared frac would clip it).

`calibrated_quantize_args` (the quantize pass's resolve step in the pass registry) turns a
config with "auto" into an explicit one, per node by name; the quantize pass records that one,
so a saved model rebuilds without data. `Calibration` keeps the statistics of one graph so a
search resolves every candidate's config from them without running the model again.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import reduce
from typing import Any

import torch
from torch import fx

from machop.data.batches import iterate_batches
from machop.data.dataset import Split, split_key
from machop.errors import DataError, MachopError, PassError, did_you_mean
from machop.graph.graph import Graph
from machop.graph.kinds import WEIGHTED_KINDS
from machop.passes.quantize import EXPLICIT_ONLY, looks_at, node_config, quantize_selection
from machop.passes.registry import PassData
from machop.quant.arithmetic import AUTO, NONE_STRINGS, OPERANDS, FracChooser, parse_node_config
from machop.quant.calibration import (
    DEFAULT_PERCENTILE,
    DEFAULT_SAMPLE_SIZE,
    METHODS,
    Observer,
    choose_channel_fracs,
    choose_frac,
)
from machop.quant.modules import batch_norm_scale_shift

WHERE = "passes.quantize.calibration"
GRANULARITIES = ("tensor", "channel")
ACTIVATION_GRANULARITIES = ("tensor",)
ACTIVATIONS = ("data_in", "data_out")
DEFAULT_NUM_SAMPLES = 1024
KEYS = ("method", "granularity", "activation_granularity", "split", "num_samples", "num_batches",
        "percentile", "seed", "sample_size")

ErrorType = Callable[[str], MachopError]


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationSettings:
    """A validated calibration table."""

    method: str = "mse"
    granularity: str = "tensor"
    split: str = "train"
    num_samples: int | None = None
    num_batches: int | None = None
    percentile: float = DEFAULT_PERCENTILE
    seed: int | None = None
    sample_size: int = DEFAULT_SAMPLE_SIZE
    where: str = WHERE

    def samples_used(self, split_size: int, batch_size: int) -> int:
        """How many samples of a split of `split_size` the calibration runs."""
        if self.num_samples is not None:
            return self.num_samples
        if self.num_batches is not None:
            return min(self.num_batches * batch_size, split_size)
        return min(DEFAULT_NUM_SAMPLES, split_size)

    def check_data(self, data: PassData, error: ErrorType = PassError) -> Split:
        """The calibration split, checked to hold the samples asked for."""
        split = data.dataset.evaluation_split(self.split)
        size = len(split)
        if size == 0:
            raise error(f"{self.where}: the {self.split} split is empty, so there is nothing to "
                        "calibrate on; set split to a split with samples (valid: train, validation, test)")
        if self.num_samples is not None and self.num_samples > size:
            raise error(f"{self.where}.num_samples = {self.num_samples} is larger than the "
                        f"{self.split} split ({size} samples); give at most {size}")
        batches = math.ceil(size / data.batch_size)
        if self.num_batches is not None and self.num_batches > batches:
            raise error(f"{self.where}.num_batches = {self.num_batches} is more than the {self.split} "
                        f"split holds ({size} samples = {batches} batches of {data.batch_size}); "
                        f"give at most {batches}")
        return split


def _positive_integer(table: dict[str, Any], key: str, where: str, error: ErrorType) -> int | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise error(f"{where}.{key} must be a positive integer, got {value!r}")
    return int(value)


def _choice(table: dict[str, Any], key: str, valid: tuple[str, ...], default: str, where: str,
            error: ErrorType) -> str:
    value = table.get(key, default)
    if value not in valid:
        raise error(f"{where}.{key} = {value!r} is invalid{did_you_mean(value, valid)} "
                    f"(valid: {', '.join(valid)})")
    return value


def _percentile(table: dict[str, Any], where: str, error: ErrorType) -> float:
    value = table.get("percentile", DEFAULT_PERCENTILE)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 100:
        raise error(f"{where}.percentile must be a number in (0, 100], e.g. 99.99, got {value!r}")
    return float(value)


def _split(table: dict[str, Any], where: str, error: ErrorType) -> str:
    value = table.get("split", "train")
    try:
        return split_key(value) if isinstance(value, str) else split_key(repr(value))
    except DataError:
        raise error(f"{where}.split = {value!r} is not a split (valid: train, validation, test)") from None


def _seed(table: dict[str, Any], where: str, error: ErrorType) -> int | None:
    value = table.get("seed")
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)
                              or value < 0):
        raise error(f"{where}.seed must be an integer >= 0, got {value!r}")
    return None if value is None else int(value)


def _activation_granularity(table: dict[str, Any], where: str, error: ErrorType) -> None:
    value = table.get("activation_granularity", "tensor")
    if value == "channel":
        raise error(f"{where}.activation_granularity = 'channel': activations (data_in, data_out) "
                    "are calibrated per tensor, since one binary point serves every channel of an "
                    "input; per-channel frac widths apply to weights and biases "
                    "(granularity = \"channel\") (valid: tensor)")
    _choice(table, "activation_granularity", ACTIVATION_GRANULARITIES, "tensor", where, error)


def calibration_settings(table: Any, where: str = WHERE, error: ErrorType = PassError) -> CalibrationSettings:
    """The calibration table checked into settings (an absent table gives the defaults)."""
    table = {} if table is None else table
    if not isinstance(table, dict):
        raise error(f"[{where}] must be a table, got {table!r}")
    for key in table:
        if key not in KEYS:
            raise error(f"{where} has unknown key {key!r}{did_you_mean(key, KEYS)} (valid: {', '.join(KEYS)})")
    _activation_granularity(table, where, error)
    num_samples = _positive_integer(table, "num_samples", where, error)
    num_batches = _positive_integer(table, "num_batches", where, error)
    if num_samples is not None and num_batches is not None:
        raise error(f"{where} gives both num_samples and num_batches; give one of them")
    return CalibrationSettings(
        method=_choice(table, "method", METHODS, "mse", where, error),
        granularity=_choice(table, "granularity", GRANULARITIES, "tensor", where, error),
        split=_split(table, where, error), num_samples=num_samples, num_batches=num_batches,
        percentile=_percentile(table, where, error), seed=_seed(table, where, error),
        sample_size=_positive_integer(table, "sample_size", where, error) or DEFAULT_SAMPLE_SIZE,
        where=where)


# --------------------------------------------------------------------------------------------
# Which operands are "auto"
# --------------------------------------------------------------------------------------------


def auto_operands(config: dict[str, Any] | None) -> set[str]:
    """The operands whose frac_width a node config sets to "auto"."""
    if not isinstance(config, dict):
        return set()
    return {op for op in OPERANDS if config.get(f"{op}_frac_width") == AUTO}


def node_entries(graph: Graph, args: dict[str, Any]) -> list[tuple[fx.Node, str, dict[str, Any] | None]]:
    """(node, kind, its quantize config) for every quantizable node, in graph order."""
    selection = quantize_selection(graph, args)
    entries = [(node, graph.meta[node.name].kind, node_config(selection, node.name, graph.meta[node.name].kind))
               for node in graph.compute_nodes()]
    return [(node, kind, config) for node, kind, config in entries
            if looks_at(kind) and (config is not None or kind not in EXPLICIT_ONLY)]


def needs_calibration(args: Any) -> bool:
    """True when some entry of a quantize config sets a frac_width to "auto"."""
    if not isinstance(args, dict):
        return False
    tables = [value.get("config") for key, value in args.items()
              if key not in ("by", "report", "calibration") and isinstance(value, dict)]
    return any(auto_operands(table) for table in tables)


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def _tensor_args(node: fx.Node, kind: str, args: tuple, kwargs: dict) -> list[torch.Tensor]:
    """The values a node's data_in spec quantizes: the input, or both operands of a binary op."""
    values = [*args, *kwargs.values()]
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    if kind in WEIGHTED_KINDS or kind in EXPLICIT_ONLY or kind == "relu":
        return tensors[:1]
    return tensors[:2]


class _Watcher(fx.Interpreter):
    """Runs the float graph and feeds each watched node's inputs and output to its observers."""

    def __init__(self, module: fx.GraphModule, kinds: dict[str, str],
                 observers: dict[str, dict[str, Observer]]) -> None:
        super().__init__(module)
        self.kinds = kinds
        self.observers = observers

    def run_node(self, node: fx.Node) -> Any:
        watched = self.observers.get(node.name)
        if watched and "data_in" in watched:
            args, kwargs = self.fetch_args_kwargs_from_env(node)
            for tensor in _tensor_args(node, self.kinds[node.name], args, kwargs):
                watched["data_in"].update(tensor)
        result = super().run_node(node)
        if watched and "data_out" in watched and isinstance(result, torch.Tensor):
            watched["data_out"].update(result)
        return result


def _weighted_parameters(graph: Graph, node: fx.Node) -> dict[str, torch.Tensor]:
    """The weight and bias a weighted node multiplies by (module parameters or constant inputs)."""
    if node.op == "call_module":
        module = graph.submodule(node)
        return {name: getattr(module, name).detach() for name in ("weight", "bias")
                if isinstance(getattr(module, name, None), torch.Tensor)}
    found = {}
    for name, position in (("weight", 1), ("bias", 2)):
        source = node.args[position] if len(node.args) > position else node.kwargs.get(name)
        if isinstance(source, fx.Node) and source.op == "get_attr":
            found[name] = reduce(getattr, str(source.target).split("."), graph.module).detach()
    return found


def _samples(split: Split, settings: CalibrationSettings, data: PassData) -> Split:
    """The calibration samples: a seeded random subset of the split."""
    count = settings.samples_used(len(split), data.batch_size)
    seed = data.seed if settings.seed is None else settings.seed
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:count]
    return replace(split, x=split.x[order], y=split.y[order])


@dataclass
class Calibration:
    """Statistics of one float graph and the frac widths they give, remembered per format."""

    settings: CalibrationSettings
    observers: dict[str, dict[str, Observer]] = field(default_factory=dict)
    parameters: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    samples: int = 0
    _chosen: dict[tuple, int | tuple[int, ...]] = field(default_factory=dict, init=False, repr=False)

    def choose(self, node: str, operand: str, width: int, is_signed: bool) -> int | tuple[int, ...]:
        """The frac width(s) of one operand of one node at a width and signedness."""
        key = (node, operand, width, is_signed)
        if key not in self._chosen:
            self._chosen[key] = self._compute(node, operand, width, is_signed)
        return self._chosen[key]

    def _compute(self, node: str, operand: str, width: int, is_signed: bool) -> int | tuple[int, ...]:
        method, percentile = self.settings.method, self.settings.percentile
        if operand in ACTIVATIONS:
            observer = self.observers.get(node, {}).get(operand)
            return width // 2 if observer is None else observer.choose(width, is_signed, method, percentile)
        values = self.parameters.get(node, {}).get(operand)
        if values is None:  # an operand the node lacks (no bias): its spec is never applied
            return width // 2
        if self.settings.granularity == "channel" and values.dim() > 0:
            return choose_channel_fracs(values, width, is_signed, method, percentile)
        return choose_frac(values, width, is_signed, method, percentile)

    def chooser(self, node: str) -> FracChooser:
        """parse_node_config's frac_for for one node."""
        return lambda operand, width, is_signed: self.choose(node, operand, width, is_signed)


def collect_statistics(graph: Graph, watched: dict[str, Iterable[str]], settings: CalibrationSettings,
                       data: PassData) -> Calibration:
    """Observe the operands `watched` ({node: operands}) of the float graph over the calibration set."""
    split = settings.check_data(data)
    calibration = Calibration(settings)
    generator = torch.Generator().manual_seed(data.seed if settings.seed is None else settings.seed)
    kinds = {name: graph.meta[name].kind for name in watched}
    for name, operands in watched.items():
        node = graph.node(name)
        operands = set(operands)
        if operands & {"weight", "bias"} and kinds[name] in WEIGHTED_KINDS:
            calibration.parameters[name] = _weighted_parameters(graph, node)
        elif operands & {"weight", "bias"} and kinds[name] in EXPLICIT_ONLY and node.op == "call_module":
            with torch.no_grad():  # a BatchNorm's weight and bias are its scale and shift
                scale, shift = batch_norm_scale_shift(graph.submodule(node))
            calibration.parameters[name] = {"weight": scale.detach(), "bias": shift.detach()}
        active = operands & set(ACTIVATIONS)
        if active:
            calibration.observers[name] = {op: Observer(settings.sample_size, generator) for op in sorted(active)}
    if calibration.observers:
        calibration.samples = _observe(graph, calibration.observers, kinds, _samples(split, settings, data),
                                       data.batch_size)
    return calibration


def _observe(graph: Graph, observers: dict[str, dict[str, Observer]], kinds: dict[str, str],
             samples: Split, batch_size: int) -> int:
    module = graph.module
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    was_training = module.training
    module.eval()
    watcher = _Watcher(module, kinds, observers)
    try:
        with torch.no_grad():
            for inputs, _ in iterate_batches(samples, batch_size):
                watcher.run(inputs.to(device))
    finally:
        module.train(was_training)
    return len(samples)


# --------------------------------------------------------------------------------------------
# Resolving "auto"
# --------------------------------------------------------------------------------------------


def _quantizes(config: dict[str, Any] | None) -> bool:
    """Whether a node config quantizes its node (it names an arithmetic and is not bypassed)."""
    return (isinstance(config, dict) and config.get("name") not in (None, *NONE_STRINGS)
            and not config.get("bypass", False))


def watched_operands(graph: Graph, args: dict[str, Any]) -> dict[str, set[str]]:
    """{node: operands whose frac_width is "auto"} of a quantize config on `graph`."""
    return {node.name: auto_operands(config) for node, _, config in node_entries(graph, args)
            if _quantizes(config) and auto_operands(config)}


def _resolved_entry(node: str, kind: str, config: dict[str, Any],
                    calibration: Calibration) -> tuple[dict[str, Any], dict[str, Any]]:
    """One node's config with its "auto" frac widths chosen, and those choices by name."""
    specs = parse_node_config(config, node=node, unsigned_data_in=kind == "relu",
                              frac_for=calibration.chooser(node))
    entry, chosen = copy.deepcopy(config), {}
    for operand in sorted(auto_operands(config), key=OPERANDS.index):
        frac = specs[operand].frac_width
        entry[f"{operand}_frac_width"] = list(frac) if isinstance(frac, tuple) else frac
        chosen[f"{node}/{operand}_frac_width"] = entry[f"{operand}_frac_width"]
    return entry, chosen


def _with_record_keys(resolved: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    """Keep the report switch and, for the record, the calibration table."""
    for key in ("report", "calibration"):
        if key in args:
            resolved[key] = copy.deepcopy(args[key])
    return resolved


def _by_name() -> dict[str, Any]:
    return {"by": "name", "default": {"config": {"name": None}}}


def resolve_config(graph: Graph, args: dict[str, Any],
                   calibration: Calibration) -> tuple[dict[str, Any], dict[str, Any]]:
    """A quantize config with every "auto" replaced by its calibrated frac width(s).

    Returns the config (by name, one entry per quantized node, the calibration table kept for
    the record) and the chosen frac widths as {"<node>/<operand>_frac_width": value}.
    """
    resolved, chosen = _by_name(), {}
    for node, kind, config in node_entries(graph, args):
        if _quantizes(config):
            entry, found = _resolved_entry(node.name, kind, config, calibration)
            resolved[node.name] = {"config": entry}
            chosen.update(found)
    return _with_record_keys(resolved, args), chosen


def sequential_config(graph: Graph, args: dict[str, Any], settings: CalibrationSettings,
                      data: PassData) -> tuple[dict[str, Any], dict[str, Any]]:
    """resolve_config with each node calibrated on the graph whose earlier nodes are quantized.

    One run over the calibration set per node with "auto" operands, instead of one in all. Not
    offered in the config: on the demo model it changed accuracy by noise at 3..8 bits and lost
    10 pp at 2 bits (docs/transforms.md, Calibration); kept to repeat that measurement.
    """
    from machop.passes.quantize import quantize_transform_pass

    resolved, chosen = _by_name(), {}
    for node, kind, config in node_entries(graph, args):
        if not _quantizes(config):
            continue
        calibration = Calibration(settings)
        if auto_operands(config):
            partly, _ = quantize_transform_pass(graph, resolved)
            calibration = collect_statistics(partly, {node.name: auto_operands(config)}, settings, data)
        entry, found = _resolved_entry(node.name, kind, config, calibration)
        resolved[node.name] = {"config": entry}
        chosen.update(found)
    return _with_record_keys(resolved, args), chosen


def calibrated_quantize_args(graph: Graph, args: dict[str, Any], data: PassData | None) -> dict[str, Any]:
    """The quantize pass's args with frac_width = "auto" calibrated on `data` (unchanged without "auto")."""
    if isinstance(args, dict) and "calibration" in args:
        calibration_settings(args["calibration"])  # a bad table is an error even without "auto"
    if not needs_calibration(args):
        return args
    settings = calibration_settings(args.get("calibration"))
    watched = watched_operands(graph, args)
    if not watched:
        return args  # "auto" only in entries that quantize nothing: nothing to calibrate
    if data is None:
        first = next(iter(watched))
        raise PassError(f"node {first!r}: frac_width = \"{AUTO}\" is chosen by calibration on data, "
                        "and none was given (machop transform and analyze calibrate on the run's "
                        "dataset; in Python, apply_passes(graph, passes, data=PassData(dataset)))")
    return resolve_config(graph, args, collect_statistics(graph, watched, settings, data))[0]


__all__ = ["Calibration", "CalibrationSettings", "calibrated_quantize_args", "calibration_settings",
           "collect_statistics", "needs_calibration", "resolve_config", "sequential_config",
           "watched_operands"]
