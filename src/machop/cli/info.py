"""`machop info`: list the registered models, datasets, metrics, samplers and pruners.

Listing imports neither torch nor Optuna: every registry here describes its entries without
importing them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.table import Table

from machop.console import out
from machop.errors import ConfigError


def _models_table() -> Table:
    from machop.models.registry import MODELS

    table = Table(title="Models", title_justify="left")
    table.add_column("Name")
    table.add_column("Description")
    table.add_column("Aliases")
    for name, entry in MODELS.items():
        table.add_row(name, entry.description, ", ".join(entry.aliases))
    table.caption = "User models: model = \"path/to/file.py:Name\" or \"package.module:Name\""
    return table


def _datasets_table() -> Table:
    from machop.data.registry import DATASETS, default_data_dir

    table = Table(title="Datasets", title_justify="left")
    table.add_column("Name")
    table.add_column("Description")
    table.add_column("Aliases")
    for name, entry in DATASETS.items():
        table.add_row(name, entry.description, ", ".join(entry.aliases))
    table.caption = f"Files are looked for in data_dir (now {default_data_dir()})"
    return table


def _metrics_table() -> Table:
    from machop.metrics.registry import METRICS

    table = Table(title="Metrics", title_justify="left")
    for column in ("Name", "Group", "Better", "Unit", "Description"):
        table.add_column(column)
    for metric in METRICS.values():
        table.add_row(metric.name, metric.group, metric.direction, metric.unit, metric.description)
    return table


def _described_table(title: str, entries: dict[str, Any]) -> Table:
    """Name | Description for the entries of a registry whose entries carry a description."""
    table = Table(title=title, title_justify="left")
    table.add_column("Name")
    table.add_column("Description")
    for name, entry in entries.items():
        table.add_row(name, entry.description)
    return table


def _samplers_table() -> Table:
    from machop.search.samplers import SAMPLERS

    return _described_table("Samplers (search.strategy.setup.sampler)", SAMPLERS)


def _pruners_table() -> Table:
    from machop.search.pruners import PRUNERS

    return _described_table("Pruners (search.strategy.setup.pruner)", PRUNERS)


# Topic -> its table, in the order `info all` prints them.
TABLES: dict[str, Callable[[], Table]] = {
    "models": _models_table,
    "datasets": _datasets_table,
    "metrics": _metrics_table,
    "samplers": _samplers_table,
    "pruners": _pruners_table,
}
TOPICS = (*TABLES, "all")


def info_command(
    topic: Annotated[str, typer.Argument(help=f"{', '.join(TABLES)} or all.")] = "all",
) -> None:
    """List the registered models, datasets, metrics, samplers and pruners."""
    if f"{topic}s" in TABLES:  # "model" means "models"
        topic = f"{topic}s"
    if topic not in TOPICS:
        raise ConfigError(f"unknown info topic {topic!r} (valid: {', '.join(TOPICS)})")
    for name, table in TABLES.items():
        if topic in (name, "all"):
            out.print(table())
