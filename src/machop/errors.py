"""The errors a user can cause; the CLI prints them on one line and exits with status 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping


class MachopError(Exception):
    """Base class of every error caused by user input."""


class ConfigError(MachopError):
    """A config file, key or value is invalid."""


class DataError(MachopError):
    """A dataset is unknown, missing or malformed."""


class ModelError(MachopError):
    """A model is unknown, cannot be built, or does not match a checkpoint."""


class CheckpointError(ModelError):
    """A checkpoint is missing, corrupt, or does not fit the model."""


class PassError(MachopError):
    """A graph pass was given an invalid configuration."""


class SearchError(MachopError):
    """A search space, strategy or storage is invalid."""


def closest(name: str, valid: Iterable[str]) -> str | None:
    """Return the valid name closest to `name`, or None when nothing is close."""
    matches = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: object, valid: Iterable[str], aliases: Mapping[str, str] | None = None) -> str:
    """"; did you mean 'x'?" for `name`'s alias or closest valid name, or "" when nothing is close."""
    hint = (aliases or {}).get(str(name)) or closest(str(name), valid)
    return f"; did you mean {hint!r}?" if hint else ""


def unknown_name(what: str, name: str, valid: Iterable[str]) -> str:
    """Message for an unknown registry name that suggests the closest valid one."""
    valid = sorted(valid)
    return f"unknown {what} {name!r}{did_you_mean(name, valid)} (valid: {', '.join(valid)})"


def exception_line(exc: BaseException, limit: int | None = None) -> str:
    """An exception as `Type: message` on one line, the message cut to `limit` characters."""
    text = " ".join(str(exc).split())[:limit]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class TrainingError(MachopError):
    """Training could not go on, e.g. the loss became NaN or infinite."""
