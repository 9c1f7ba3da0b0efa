"""Terminal output: the effective-config table, metric tables and one-line errors."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def print_config_table(resolved: Any) -> None:
    """Print Name | Default | Config file | CLI | Effective for the top-level keys."""
    from machop.config import table_rows

    table = Table(title="Configuration", title_justify="left", show_lines=False)
    for column in ("Name", "Default", "Config file", "CLI", "Effective"):
        table.add_column(column, overflow="fold")
    for name, default, file_value, cli_value, effective in table_rows(resolved):
        changed = effective != default
        table.add_row(name, default, file_value, cli_value,
                      f"[bold]{effective}[/bold]" if changed else effective)
    sections = [f"[{name}] {len(value)} key(s)"
                for name in ("passes", "search", "transform", "model_args")
                if (value := getattr(resolved.config, name))]
    out.print(table)
    if sections:
        out.print("Sections handed on: " + ", ".join(sections))


def print_metrics(title: str, rows: dict[str, dict[str, float]]) -> None:
    """A table with one column per entry of `rows` and one row per metric."""
    table = Table(title=title, title_justify="left")
    table.add_column("Metric")
    for column in rows:
        table.add_column(column, justify="right")
    names = list(dict.fromkeys(name for values in rows.values() for name in values))
    for name in names:
        table.add_row(name, *(_fmt(values.get(name)) for values in rows.values()))
    out.print(table)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def print_error(message: str) -> None:
    """One line on stderr."""
    from rich.markup import escape

    line = " ".join(str(message).split())
    err.print(f"[bold red]error:[/bold red] {escape(line)}", soft_wrap=True)
    sys.stderr.flush()
