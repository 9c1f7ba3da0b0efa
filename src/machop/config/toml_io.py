"""Read TOML configs (with MASE's "NA" meaning None) and write the effective config back."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import tomllib

from machop.errors import ConfigError

NA = "NA"


def replace_na(value: Any) -> Any:
    """Recursively turn the string "NA" into None."""
    if isinstance(value, dict):
        return {key: replace_na(item) for key, item in value.items()}
    if isinstance(value, list):
        return [replace_na(item) for item in value]
    return None if value == NA else value


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML config file; a missing or malformed file is a ConfigError."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    if not path.is_file():
        raise ConfigError(f"config path {str(path)!r} is not a file")
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from exc
    return replace_na(data)


def _format_scalar(value: Any) -> str:
    if value is None:
        return f'"{NA}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_scalar(item) for item in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_format_key(k)} = {_format_scalar(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    return f'"{_escape(str(value))}"'


def _escape(text: str) -> str:
    """A TOML basic-string body: backslash, quote and every control character escaped."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out)


def _format_key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else _format_scalar(key)


def _write_table(lines: list[str], prefix: str, table: dict[str, Any]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    if prefix and (scalars or not tables):
        lines.append(f"\n[{prefix}]")
    for key, value in scalars.items():
        lines.append(f"{_format_key(key)} = {_format_scalar(value)}")
    for key, value in tables.items():
        name = f"{prefix}.{_format_key(key)}" if prefix else _format_key(key)
        _write_table(lines, name, value)


def dumps_toml(data: dict[str, Any]) -> str:
    """Serialise nested dicts of scalars and lists as TOML (None written as "NA")."""
    lines: list[str] = []
    _write_table(lines, "", data)
    return "\n".join(lines).lstrip("\n") + "\n"
