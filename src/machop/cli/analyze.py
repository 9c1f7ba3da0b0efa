"""`machop analyze`: per-layer costs and every metric of a model, as tables and JSON."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from machop.cli.options import ConfigArgs, config_command
from machop.cli.setup_run import resolve_and_show
from machop.console import out


def _precision_text(precision: dict[str, dict[str, Any]]) -> str:
    short = {"data_in": "in", "weight": "w", "bias": "b", "data_out": "out"}
    return " ".join(f"{short.get(op, op)}:{rec.get('type', '?')[:5]}{rec.get('width', '')}"
                    for op, rec in precision.items() if op in short)


def _shape(shape: Any) -> str:
    """A shape with its batch dimension shown as N."""
    if not shape:
        return "-"
    return "(" + ", ".join(["N", *(str(d) for d in list(shape)[1:])]) + ")"


class _LayerTable:
    """The per-layer table, laid out for the console: numbers and node names never break.

    One column per field when that fits; otherwise node, op, shapes and precision stack in one
    "layer" column (one line each), so narrow consoles fold shapes and precisions, never numbers.
    """

    NUMERIC = ("params", "MACs", "BitOPs")
    NATURAL_WIDTH = 10_000  # measure unconstrained: the width every cell needs on one line

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.cells = [[row["node"], row["op"], ", ".join(_shape(s) for s in row["input_shapes"]),
                       _shape(row["output_shape"]), f"{row['params']:,}", f"{row['macs']:,}",
                       f"{row['bitops']:,}", _precision_text(row["precision"])] for row in rows]

    def _add_numeric_columns(self, table: Table) -> None:
        for offset, column in enumerate(self.NUMERIC):
            # Never shrunk below its widest number: rich would cut `1,048,576` to `1,048,…`.
            widest = max([len(column), *(len(cell[4 + offset]) for cell in self.cells)])
            table.add_column(column, justify="right", no_wrap=True, min_width=widest)

    def wide(self) -> Table:
        """node | op | in | out | params | MACs | BitOPs | precision."""
        table = Table(title="Per layer (per sample)", title_justify="left")
        for column in ("node", "op", "in", "out"):
            table.add_column(column, overflow="fold")
        self._add_numeric_columns(table)
        table.add_column("precision", overflow="fold")
        for cell in self.cells:
            table.add_row(*cell)
        return table

    def stacked(self) -> Table:
        """layer (node / op in -> out / precision) | params | MACs | BitOPs."""
        table = Table(title="Per layer (per sample)", title_justify="left", show_lines=True)
        table.add_column("layer", overflow="fold")
        self._add_numeric_columns(table)
        for node, op, shape_in, shape_out, params, macs, bitops, precision in self.cells:
            table.add_row(f"{node}\n{op} {shape_in} → {shape_out}\n{precision}", params, macs, bitops)
        return table

    def __rich_console__(self, console: Any, options: Any) -> Any:
        wide = self.wide()
        natural = console.measure(wide, options=options.update_width(self.NATURAL_WIDTH)).maximum
        fits = natural <= options.max_width
        yield wide if fits else self.stacked()


def _layer_table(rows: list[dict[str, Any]]) -> Any:
    """Per-layer costs, as a renderable that chooses its layout for the console's width."""
    return _LayerTable(rows)


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
    if outcome.static_only:
        out.print(outcome.static_only, soft_wrap=True, markup=False, highlight=False)
    out.print(_layer_table(outcome.per_node))
    out.print(_summary_table(outcome.metrics, outcome.notes))
    if per_class and outcome.classification:
        out.print(_per_class_table(outcome.classification))
    out.print(f"Analysis: {outcome.path}")
