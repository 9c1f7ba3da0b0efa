"""`machop transform`: apply the config's [passes] to a model and save the result."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from machop.cli.console import print_metrics
from machop.cli.options import ConfigArgs, config_command
from machop.cli.setup_run import resolve_and_show
from machop.console import out


def _pass_table(name: str, info: dict[str, Any]) -> Table:
    rows = info.get("rows", [])
    table = Table(title=f"Pass {name}", title_justify="left")
    for column in (rows[0] if rows else {}):
        table.add_column(column.replace("_", " "), overflow="fold")
    for row in rows:
        table.add_row(*(str(value) for value in row.values()))
    return table


def _histogram_table(histogram: dict[str, dict[str, int]]) -> Table:
    table = Table(title="Nodes changed per op", title_justify="left")
    table.add_column("op")
    table.add_column("changed", justify="right")
    table.add_column("total", justify="right")
    for op, counts in histogram.items():
        changed = counts.get("quantized", counts.get("changed", 0))
        table.add_row(op, str(changed), str(counts["total"]))
    return table


@config_command
def transform_command(args: ConfigArgs) -> None:
    """Apply the passes.<name> tables of --config in file order; saves transformed/<passes>/model.machop."""
    from machop import api

    resolved = resolve_and_show(args)
    outcome = api.transform(resolved.config)
    for name, info in outcome.summaries:
        out.print(_pass_table(name, info))
        if "histogram" in info:
            out.print(_histogram_table(info["histogram"]))
    print_metrics("Validation split", {"before": outcome.metrics_before,
                                       "after": outcome.metrics_after})
    out.print(f"Transformed model: {outcome.model_path}")
    for path in outcome.summary_paths:
        out.print(f"Summary: {path}")
