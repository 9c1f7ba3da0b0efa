"""Tables of the command line: the effective-config table and metric tables."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from machop.console import out

SECTIONS = ("passes", "search", "transform", "model_args")
# Wide enough that no cell of the written table ever folds.
FILE_TABLE_WIDTH = 1000


def config_table(resolved: Any, *, notable_only: bool) -> Table:
    """Name | Default | Config file | CLI | Effective; bold where the value is not the default."""
    from machop.config.resolve import table_rows
    from machop.config.schema import RunConfig

    defaults = RunConfig()
    table = Table(title="Configuration", title_justify="left", show_lines=False)
    for column in ("Name", "Default", "Config file", "CLI", "Effective"):
        # Key names never break; long values (paths) fold instead.
        table.add_column(column, overflow="fold", no_wrap=column == "Name")
    for name, default, file_value, cli_value, effective in table_rows(resolved, notable_only=notable_only):
        changed = getattr(resolved.config, name) != getattr(defaults, name)
        # Text, not markup: values such as paths may contain brackets.
        table.add_row(Text(name), Text(default), Text(file_value), Text(cli_value),
                      Text(effective, style="bold" if changed else ""))
    return table


def sections_line(resolved: Any) -> str | None:
    """'Sections handed on: [passes] 2 key(s), [search] 3 key(s)' (markup-escaped), or None."""
    sections = [f"[{name}] {len(value)} key(s)"
                for name in SECTIONS if (value := getattr(resolved.config, name))]
    return escape("Sections handed on: " + ", ".join(sections)) if sections else None


def hidden_count(resolved: Any) -> int:
    """How many keys the default table leaves out (at their default, set by nobody)."""
    from machop.config.resolve import table_rows

    return len(table_rows(resolved)) - len(table_rows(resolved, notable_only=True))


def print_config_table(resolved: Any, show_all: bool = False) -> None:
    """Print the config table: keys that were set or differ from the default, or every key."""
    out.print(config_table(resolved, notable_only=not show_all))
    hidden = 0 if show_all else hidden_count(resolved)
    if hidden:
        out.print(f"{hidden} key(s) at their default not shown (--show-config all shows every key)",
                  soft_wrap=True)
    sections = sections_line(resolved)
    if sections:
        out.print(sections, soft_wrap=True)


def config_table_text(resolved: Any) -> str:
    """The full config table (every key) as plain text, for the project folder."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=FILE_TABLE_WIDTH, color_system=None, highlight=False,
                      emoji=False)
    console.print(config_table(resolved, notable_only=False))
    sections = sections_line(resolved)
    if sections:
        console.print(sections, soft_wrap=True)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


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
