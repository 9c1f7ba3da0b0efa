"""`machop info`: list registered models, datasets and metrics (without importing torch)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from machop.cli.console import out
from machop.errors import ConfigError

TOPICS = ("models", "datasets", "metrics", "all")


def _models_table() -> Table:
    from machop.models.registry import ALIASES, MODELS, describe

    table = Table(title="Models", title_justify="left")
    table.add_column("Name")
    table.add_column("Description")
    table.add_column("Aliases")
    for name in MODELS:
        aliases = ", ".join(a for a, target in ALIASES.items() if target == name)
        table.add_row(name, describe(name), aliases)
    table.caption = "User models: model = \"path/to/file.py:Name\" or \"package.module:Name\""
    return table


def _datasets_table() -> Table:
    from machop.data.registry import DATASETS, DESCRIPTIONS, default_data_dir

    table = Table(title="Datasets", title_justify="left")
    table.add_column("Name")
    table.add_column("Description")
    for name in DATASETS:
        table.add_row(name, DESCRIPTIONS[name])
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


def info_command(
    topic: Annotated[str, typer.Argument(help="models, datasets, metrics or all.")] = "all",
) -> None:
    """List the registered models, datasets and metrics."""
    singular = {"model": "models", "dataset": "datasets", "metric": "metrics"}
    topic = singular.get(topic, topic)
    if topic not in TOPICS:
        raise ConfigError(f"unknown info topic {topic!r} (valid: {', '.join(TOPICS)})")
    if topic in ("models", "all"):
        out.print(_models_table())
    if topic in ("datasets", "all"):
        out.print(_datasets_table())
    if topic in ("metrics", "all"):
        out.print(_metrics_table())
