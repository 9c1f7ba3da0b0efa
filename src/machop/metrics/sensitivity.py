"""Layer sensitivity: the quality lost when one weighted layer alone is quantized, per width.

For every linear/conv node and every width w, a copy of the float model has that node's input
and weight quantized to w-bit fixed point (bias and every other node stay float) and is scored
on one split. The binary point is calibrated (frac_width = "auto": the statistics of the float
model are collected once and every (node, width) takes its frac widths from them) or sits at
w // 2 (MASE's "NA"). The drop is the float model's score minus the quantized one's, so a
positive drop is a loss. BitOPs saved are derived from the node's MACs (they do not change under
quantization): MACs x (32 x 32 - w x w).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from machop.errors import ConfigError
from machop.graph.graph import Graph
from machop.graph.kinds import WEIGHTED_KINDS
from machop.passes.complexity import REFERENCE_WIDTH, node_costs
from machop.quant.arithmetic import AUTO, MAX_WIDTH

DEFAULT_WIDTHS = (2, 3, 4, 6, 8)
HALF = "width // 2"  # frac width rule of MASE's "NA"
EVAL_BATCH = 4096  # small models on in-memory tensors: few, large batches

# (graph, node, width) -> the quantize pass entry of that node; the default is HALF's.
NodeConfig = Callable[[Graph, str, int], dict[str, Any]]


def check_widths(widths: Sequence[Any], what: str = "widths") -> list[int]:
    """Distinct integer widths, ascending; anything else is a ConfigError naming the valid range."""
    checked = []
    for width in widths:
        if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= MAX_WIDTH:
            raise ConfigError(f"{what}: each width must be an integer in 1..{MAX_WIDTH}, got {width!r}")
        checked.append(width)
    if not checked:
        raise ConfigError(f"{what}: give at least one width, e.g. 2,3,4,6,8")
    return sorted(set(checked))


def half_frac_config(graph: Graph, node: str, width: int) -> dict[str, Any]:
    """A node's data_in and weight at `width` bits with the binary point at width // 2."""
    return {"name": "integer", "data_in_width": width, "data_in_frac_width": width // 2,
            "weight_width": width, "weight_frac_width": width // 2}


def calibrated_frac_config(graph: Graph, settings: Any, data: Any) -> NodeConfig:
    """Node configs with frac_width = "auto", resolved from statistics of `graph` collected once.

    `settings` is a passes.calibrate.CalibrationSettings, `data` the run's PassData.
    """
    from machop.passes.calibrate import collect_statistics, resolve_config

    watched = {node: ("data_in", "weight") for node in weighted_nodes(graph)}
    calibration = collect_statistics(graph, watched, settings, data)

    def config(graph: Graph, node: str, width: int) -> dict[str, Any]:
        auto = {"name": "integer", "data_in_width": width, "data_in_frac_width": AUTO,
                "weight_width": width, "weight_frac_width": AUTO}
        resolved, _ = resolve_config(graph, {"by": "name", "default": {"config": {"name": None}},
                                             node: {"config": auto}}, calibration)
        return resolved[node]["config"]
    return config


@dataclass
class Sensitivity:
    """Quality per (node, width) with one node quantized at a time, and the float model's."""

    metric: str
    base: float
    nodes: list[str]
    kinds: dict[str, str]
    widths: list[int]
    scores: dict[str, dict[int, float]]
    macs: dict[str, int]
    split: str
    num_samples: int
    frac: str = HALF
    seconds: float = 0.0
    evaluations: int = 0
    fracs: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)  # frac widths used

    def drop(self, node: str, width: int) -> float:
        """Base score minus the score with `node` alone at `width` bits (positive: a loss)."""
        return self.base - self.scores[node][width]

    def bitops_saved(self, node: str, width: int) -> int:
        """BitOPs per sample saved by quantizing `node`'s input and weight from float32 to `width` bits."""
        return self.macs[node] * (REFERENCE_WIDTH * REFERENCE_WIDTH - width * width)

    def most_sensitive(self) -> str:
        """The node with the largest drop at the narrowest width (first in graph order on ties)."""
        narrowest = self.widths[0]
        return max(self.nodes, key=lambda node: (self.drop(node, narrowest), -self.nodes.index(node)))

    def as_dict(self) -> dict[str, Any]:
        """The JSON record: settings, the float score and one row per node."""
        return {"metric": self.metric, "split": self.split, "num_samples": self.num_samples,
                "frac_width": self.frac, "widths": self.widths, "base": self.base,
                "seconds": self.seconds, "evaluations": self.evaluations,
                "nodes": [{"node": node, "op": self.kinds[node], "macs": self.macs[node],
                           "score": {str(w): self.scores[node][w] for w in self.widths},
                           "drop": {str(w): self.drop(node, w) for w in self.widths},
                           "bitops_saved": {str(w): self.bitops_saved(node, w) for w in self.widths},
                           "frac_width": {str(w): self.fracs.get(node, {}).get(w) for w in self.widths}}
                          for node in self.nodes]}


def weighted_nodes(graph: Graph) -> list[str]:
    """Linear and conv nodes, in graph order: the layers whose sensitivity is measured."""
    return [node.name for node in graph.compute_nodes() if graph.meta[node.name].kind in WEIGHTED_KINDS]


def _score(graph: Graph, split: Any, num_classes: int, metric: str, device: torch.device | None) -> float:
    from machop.runtime.predict import predict

    logits, targets = predict(graph.module.to(device) if device else graph.module, split,
                              batch_size=EVAL_BATCH, device=device)
    if metric == "accuracy":
        # The registry's micro accuracy, the share of argmax hits in float32 as torchmetrics gives
        # it, without importing torchmetrics (seconds of start-up against milliseconds of scoring).
        hits = (logits.argmax(dim=1) == targets).sum().float()
        return (hits / len(targets)).item()
    from machop.runtime.classification import classification_metrics

    return classification_metrics(logits, targets, num_classes)[metric]


def layer_sensitivity(graph: Graph, split: Any, num_classes: int, widths: Sequence[int], *,
                      metric: str = "accuracy", split_name: str = "validation",
                      node_config: NodeConfig = half_frac_config, frac: str = HALF,
                      device: torch.device | None = None) -> Sensitivity:
    """Score `graph` with each weighted node alone quantized at each width (others float) on `split`.

    `graph` is left as it was: every candidate is a copy made by the quantize pass.
    """
    from machop.passes.quantize import quantize_transform_pass

    started = time.perf_counter()
    widths = check_widths(widths)
    nodes = weighted_nodes(graph)
    if not nodes:
        raise ConfigError("layer sensitivity needs a linear or conv layer, and this model has none")
    base = _score(graph, split, num_classes, metric, device)
    scores: dict[str, dict[int, float]] = {}
    fracs: dict[str, dict[int, dict[str, Any]]] = {}
    for node in nodes:
        scores[node], fracs[node] = {}, {}
        for width in widths:
            config = node_config(graph, node, width)
            fracs[node][width] = {operand: config.get(f"{operand}_frac_width") for operand in ("data_in", "weight")}
            quantized, _ = quantize_transform_pass(graph, {"by": "name", "default": {"config": {"name": None}},
                                                           node: {"config": config}})
            scores[node][width] = _score(quantized, split, num_classes, metric, device)
    costs = node_costs(graph)
    macs = {node: int(costs[node]["macs"]) for node in nodes}
    return Sensitivity(metric=metric, base=base, nodes=nodes,
                       kinds={node: graph.meta[node].kind for node in nodes}, widths=widths,
                       scores=scores, macs=macs, split=split_name, num_samples=len(split), frac=frac,
                       seconds=time.perf_counter() - started, evaluations=len(nodes) * len(widths),
                       fracs=fracs)


def plot_sensitivity(result: Sensitivity, path: Path | str) -> Path:
    """Heatmap PNG of the drop per node (rows) and width (columns), in percentage points."""
    import numpy as np

    from machop.figures import figure_style, new_figure, save_png

    drops = np.array([[100.0 * result.drop(node, w) for w in result.widths] for node in result.nodes])
    with figure_style():
        figure = new_figure(1.6 + 0.75 * len(result.widths), 1.4 + 0.42 * len(result.nodes))
        ax = figure.add_subplot()
        limit = max(float(np.abs(drops).max()), 1e-9)
        image = ax.imshow(drops, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(len(result.widths)), [str(w) for w in result.widths])
        ax.set_yticks(range(len(result.nodes)), [f"{n} ({result.kinds[n]})" for n in result.nodes])
        ax.set_xlabel(f"width of data_in and weight (frac {result.frac})")
        ax.set_title(f"{result.metric} drop (pp) with one layer quantized; float {result.base:.4f}")
        for row, col in np.ndindex(drops.shape):
            value = drops[row, col]
            ax.text(col, row, f"{value:+.1f}", ha="center", va="center", fontsize=8,
                    color="white" if abs(value) > 0.6 * limit else "black")
        figure.colorbar(image, ax=ax, label="drop (percentage points)")
        return save_png(figure, path)
