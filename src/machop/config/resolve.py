"""Merge defaults < config file < explicit CLI flags and validate the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from machop.config.schema import SCALAR_KEYS, RunConfig
from machop.config.toml_io import read_toml
from machop.errors import ConfigError, did_you_mean

KEY_ALIASES = {"load": "load_name", "precision": "trainer_precision", "optimizer": "training_optimizer",
               "devices": "num_devices", "debug": "to_debug", "lr": "learning_rate"}


@dataclass(frozen=True)
class ValueNote:
    """What an effective value means in this run, shown after it: `16-mixed (fp32 on cpu)`."""

    text: str
    notable: bool = True  # the row is worth showing even when the value is the default


@dataclass
class ResolvedConfig:
    """The effective config, where each value came from, and notes on what values mean here."""

    config: RunConfig
    path: Path | None = None
    file_values: dict[str, Any] = field(default_factory=dict)
    cli_values: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, ValueNote] = field(default_factory=dict)

    def source(self, key: str) -> str:
        """'CLI', 'config file' or 'default' for a top-level key."""
        if key in self.cli_values:
            return "CLI"
        return "config file" if key in self.file_values else "default"


def _check_known_keys(values: dict[str, Any], where: str) -> None:
    valid = list(RunConfig.model_fields)
    for key in values:
        if key in RunConfig.model_fields:
            continue
        raise ConfigError(f"unknown config key {key!r} in {where}{did_you_mean(key, valid, KEY_ALIASES)}")


def _describe_error(exc: ValidationError, resolved_sources: dict[str, str]) -> str:
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"])
    top = str(error["loc"][0]) if error["loc"] else ""
    value = error.get("input")
    where = resolved_sources.get(top, "config")
    message = error["msg"]
    if error["type"] == "literal_error":
        message = message.replace("Input should be", "expected")
    return f"invalid value {value!r} for {location!r} (from {where}): {message}"


def resolve_config(path: str | Path | None = None, cli_values: dict[str, Any] | None = None,
                   base: dict[str, Any] | None = None) -> ResolvedConfig:
    """Validate defaults < `base` < TOML file < explicit CLI values into one RunConfig."""
    cli_values = {k: v for k, v in (cli_values or {}).items()}
    file_values = dict(base or {})
    where_file = "the Python call"
    if path is not None:
        where_file = f"config file {str(path)!r}"
        file_values.update(read_toml(path))
    _check_known_keys(file_values, where_file)
    _check_known_keys(cli_values, "the command line")
    merged = {**file_values, **cli_values}
    sources = {key: ("the command line" if key in cli_values else where_file) for key in merged}
    try:
        config = RunConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe_error(exc, sources)) from None
    return ResolvedConfig(config=config, path=Path(path) if path else None,
                          file_values=file_values, cli_values=cli_values)


def load_config(path: str | Path | None = None, /, **overrides: Any) -> RunConfig:
    """Load a config file (optional) with keyword overrides taking precedence."""
    return resolve_config(path, overrides).config


def is_notable(resolved: ResolvedConfig, key: str) -> bool:
    """True when the file or CLI set `key`, its value is not the default, or a note flags it."""
    note = resolved.notes.get(key)
    default = RunConfig.model_fields[key].get_default(call_default_factory=True)
    return (key in resolved.file_values or key in resolved.cli_values
            or getattr(resolved.config, key) != default or (note is not None and note.notable))


def table_rows(resolved: ResolvedConfig, *,
               notable_only: bool = False) -> list[tuple[str, str, str, str, str]]:
    """Rows of Name | Default | Config file | CLI | Effective for the top-level scalar keys.

    Every key, or with `notable_only` only those `is_notable` picks. Effective carries the
    key's note in parentheses, e.g. `16-mixed (fp32 on cpu)`.
    """
    defaults = RunConfig()
    effective = resolved.config
    rows = []
    for key in SCALAR_KEYS:
        if notable_only and not is_notable(resolved, key):
            continue

        def show(values: dict[str, Any]) -> str:
            return _show(values[key]) if key in values else ""
        note = resolved.notes.get(key)
        shown = _show(getattr(effective, key)) + (f" ({note.text})" if note else "")
        rows.append((key, _show(getattr(defaults, key)), show(resolved.file_values),
                     show(resolved.cli_values), shown))
    return rows


def _show(value: Any) -> str:
    return "NA" if value is None else str(value)
