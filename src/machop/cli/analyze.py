"""`machop analyze`: per-layer costs and every metric of a model, as tables and JSON."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from machop.cli.console import out
from machop.cli.options import ConfigArgs, config_command
from machop.cli.setup_run import resolve_and_show


def _precision_text(precision: dict[str, dict[str, Any]]) -> str:
    short = {"data_in": "in", "weight": "w", "bias": "b", "data_out": "out"}
    return " ".join(f"{short.get(op, op)}:{rec.get('type', '?')[:5]}{rec.get('width', '')}"
                    for op, rec in precision.items() if op in short)


def _shape(shape: Any) -> str:
    """A shape with its batch dimension shown as N."""
    if not shape:
        return "-"
    return "(" + ", ".join(["N", *(str(d) for d in list(shape)[1:])]) + ")"


def _layer_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Per layer (per sample)", title_justify="left")
    for column in ("node", "op", "in", "out", "params", "MACs", "BitOPs", "precision"):
        table.add_column(column, justify="right" if column in ("params", "MACs", "BitOPs") else "left")
    for row in rows:
        shapes = ", ".join(_shape(s) for s in row["input_shapes"])
        table.add_row(row["node"], row["op"], shapes, _shape(row["output_shape"]),
                      f"{row['params']:,}", f"{row['macs']:,}", f"{row['bitops']:,}",
                      _precision_text(row["precision"]))
    return table


def _summary_table(values: dict[str, float | None], notes: dict[str, str]) -> Table:
    from machop.metrics.registry import METRICS

    table = Table(title="Metrics", title_justify="left")
    for column in ("metric", "value", "unit", "better"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for name, value in values.items():
        metric = METRICS[name]
        shown = f"unavailable: {notes.get(name, '')}" if value is None else _number(value)
        table.add_row(name, shown, metric.unit, metric.direction.removesuffix("imize") + ".")
    return table


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:.4g}"


def _per_class_table(classification: dict[str, Any]) -> Table:
    table = Table(title="Per class", title_justify="left")
    for column in ("class", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in classification["per_class"]:
        table.add_row(row["class"], f"{row['precision']:.4f}", f"{row['recall']:.4f}",
                      f"{row['f1']:.4f}", str(row["support"]))
    return table


@config_command
def analyze_command(
    args: ConfigArgs,
    metrics: Annotated[Optional[str], typer.Option(
        "--metrics", help="Comma-separated metric names (default: all; see `machop info metrics`).",
        show_default=False)] = None,
    num_samples: Annotated[Optional[int], typer.Option(
        "--num-samples", help="Evaluate prediction quality on the first N samples only.",
        show_default=False)] = None,
    split: Annotated[str, typer.Option("--split", help="train, validation or test.")] = "validation",
    per_class: Annotated[bool, typer.Option("--per-class", help="Print per-class metrics.")] = False,
) -> None:
    """Per-layer params/MACs/BitOPs and a summary of quality, cost, speed, memory and energy."""
    from machop import api
    from machop.metrics.registry import resolve_metric_names

    names = resolve_metric_names(metrics.split(",")) if metrics is not None else None
    resolved = resolve_and_show(args)
    outcome = api.analyze(resolved.config, names, split=split, num_samples=num_samples)
    out.print(_layer_table(outcome.per_node))
    out.print(_summary_table(outcome.metrics, outcome.notes))
    if per_class and outcome.classification:
        out.print(_per_class_table(outcome.classification))
    out.print(f"Analysis: {outcome.path}")
