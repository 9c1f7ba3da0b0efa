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
    sensitivity: Annotated[bool, typer.Option(
        "--sensitivity", help="Layer sensitivity instead: quantize each linear/conv layer alone at each "
        "width and report the accuracy drop (table, analysis/sensitivity.json and .png).")] = False,
    widths: Annotated[Optional[str], typer.Option(
        "--widths", help="Comma-separated widths for --sensitivity (default: the config's search "
        "space widths, else 2,3,4,6,8).", show_default=False)] = None,
    frac_width: Annotated[Optional[str], typer.Option(
        "--frac-width", help="Binary points for --sensitivity: auto (calibrated on data, with the "
        "config's [passes.quantize.calibration]; the default) or NA (width // 2).",
        show_default=False)] = None,
) -> None:
    """Per-layer params/MACs/BitOPs and a summary of quality, cost, speed, memory and energy."""
    from machop import api
    from machop.metrics.registry import resolve_metric_names

    names = resolve_metric_names(metrics.split(",")) if metrics is not None else None
    if sensitivity or widths is not None or frac_width is not None:
        _sensitivity(args, names, _width_list(widths), split, num_samples, per_class, sensitivity,
                     frac_width or "auto")
        return
    resolved = resolve_and_show(args)
    outcome = api.analyze(resolved.config, names, split=split, num_samples=num_samples)
    if outcome.static_only:
        out.print(outcome.static_only, soft_wrap=True, markup=False, highlight=False)
    out.print(_layer_table(outcome.per_node))
    out.print(_summary_table(outcome.metrics, outcome.notes))
    if per_class and outcome.classification:
        out.print(_per_class_table(outcome.classification))
    out.print(f"Analysis: {outcome.path}")


# ---- --sensitivity ------------------------------------------------------------------------------


def _width_list(text: str | None) -> list[int] | None:
    """--widths "2,3,4" as integers; a part that is no integer is a one-line error."""
    if text is None:
        return None
    from machop.errors import ConfigError

    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(part.lstrip("-").isdigit() for part in parts):
        raise ConfigError(f"--widths must be comma-separated integers such as 2,3,4,6,8, got {text!r}")
    return [int(part) for part in parts]


def _sensitivity_options(names: list[str] | None, per_class: bool, sensitivity: bool) -> str:
    """The metric of a sensitivity analysis; options that do not apply to one are refused."""
    from machop.errors import ConfigError

    if not sensitivity:
        raise ConfigError("--widths and --frac-width apply to --sensitivity only; add --sensitivity")
    if per_class:
        raise ConfigError("--per-class does not apply to --sensitivity, which reports one metric per layer")
    if names is not None and len(names) != 1:
        raise ConfigError(f"--sensitivity measures one metric, got {len(names)} ({', '.join(names)}); "
                          "give one, e.g. --metrics accuracy")
    return names[0] if names else "accuracy"


def _sensitivity(args: ConfigArgs, names: list[str] | None, widths: list[int] | None, split: str,
                 num_samples: int | None, per_class: bool, sensitivity: bool, frac_width: str) -> None:
    from machop import api

    metric = _sensitivity_options(names, per_class, sensitivity)
    resolved = resolve_and_show(args)
    outcome = api.sensitivity(resolved.config, widths, split=split, num_samples=num_samples, metric=metric,
                              frac_width=frac_width)
    out.print(_sensitivity_table(outcome.result))
    result = outcome.result
    out.print(f"Most sensitive at {result.widths[0]} bits: {result.most_sensitive()}. "
              f"{result.evaluations} quantized models scored in {result.seconds:.1f} s.", highlight=False)
    out.print(f"Sensitivity: {outcome.json_path}\nHeatmap: {outcome.png_path}")


def _sensitivity_table(result: Any) -> Table:
    """node | op | MACs | one drop column per width, in percentage points."""
    table = Table(title=f"{result.metric} drop (percentage points) with one layer quantized "
                        f"(data_in and weight at each width, frac {result.frac}); float "
                        f"{result.metric} {result.base:.4f} on {result.num_samples} {result.split} samples",
                  title_justify="left")
    table.add_column("node", overflow="fold")
    table.add_column("op")
    table.add_column("MACs", justify="right", no_wrap=True)
    for width in result.widths:
        table.add_column(f"{width} bits", justify="right", no_wrap=True)
    for node in result.nodes:
        table.add_row(node, result.kinds[node], f"{result.macs[node]:,}",
                      *(f"{100 * result.drop(node, width):+.2f}" for width in result.widths))
    return table
