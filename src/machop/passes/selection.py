"""Which config entry applies to a node: MASE's `by = "type" | "name" | "regex_name"`."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from machop.errors import PassError, did_you_mean

BY_CHOICES = ("type", "name", "regex_name")


def matching_key(by: str, keys: Collection[str], node_name: str, kind: str) -> str | None:
    """The key that selects a node: its op kind, its name, or the first regex matching its name."""
    if by == "type":
        return kind if kind in keys else None
    if by == "name":
        return node_name if node_name in keys else None
    return next((pattern for pattern in keys if re.fullmatch(pattern, node_name)), None)


@dataclass(frozen=True)
class Selection:
    """Parsed `by`, `default` and per-key entries of a pass config."""

    pass_name: str
    by: str
    default: dict[str, Any] | None
    entries: dict[str, dict[str, Any]]

    def key_for(self, node_name: str, kind: str) -> str | None:
        """The key of the node's own entry (None: only the default applies)."""
        return matching_key(self.by, self.entries, node_name, kind)

    def entry_for(self, node_name: str, kind: str) -> dict[str, Any] | None:
        """The config entry of a node (its own, else the default)."""
        key = self.key_for(node_name, kind)
        return self.default if key is None else self.entries[key]

    def check_keys(self, node_names: Iterable[str], kinds: Iterable[str]) -> None:
        """Every per-key entry must name a node, a kind or match a node."""
        names, kinds = list(node_names), sorted(set(kinds))
        for key in self.entries:
            if self.by == "type" and key not in kinds:
                raise PassError(_unmatched(self.pass_name, "op type", key, kinds))
            if self.by == "name" and key not in names:
                raise PassError(_unmatched(self.pass_name, "node", key, names))
            if self.by == "regex_name" and not any(re.fullmatch(key, n) for n in names):
                raise PassError(f"[passes.{self.pass_name}] regex {key!r} matches no node "
                                f"(nodes: {', '.join(names)})")


def _unmatched(pass_name: str, what: str, key: str, valid: list[str]) -> str:
    return (f"[passes.{pass_name}] {what} {key!r} is not in the model{did_you_mean(key, valid)} "
            f"(valid: {', '.join(valid)})")


def _check_pattern(pass_name: str, pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise PassError(f"[passes.{pass_name}] regex {pattern!r} is invalid: {exc}") from None


def _entry_config(pass_name: str, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or "config" not in value:
        found = f" (it has {', '.join(map(repr, value))})" if isinstance(value, dict) and value else ""
        raise PassError(f"[passes.{pass_name}.{key}] must be a table with a 'config' table, "
                        f"e.g. [passes.{pass_name}.{key}.config]{found}")
    extra = sorted(set(value) - {"config"})
    if extra:
        raise PassError(f"[passes.{pass_name}.{key}] has unknown key {extra[0]!r} (valid: config)")
    config = value["config"]
    if not isinstance(config, dict):
        raise PassError(f"[passes.{pass_name}.{key}.config] must be a table, got {config!r}")
    return config


def parse_selection(pass_name: str, args: dict[str, Any], *, require_default: bool,
                    reserved: tuple[str, ...] = ()) -> Selection:
    """Split a pass config into `by`, `default` and per-node/type entries."""
    if not isinstance(args, dict):
        raise PassError(f"[passes.{pass_name}] must be a table, got {type(args).__name__}")
    by = args.get("by", "name")
    if by not in BY_CHOICES:
        raise PassError(f"[passes.{pass_name}] by = {by!r} is invalid (valid: {', '.join(BY_CHOICES)})")
    if require_default and "default" not in args:
        raise PassError(f"[passes.{pass_name}] needs a 'default' entry, e.g. "
                        f"[passes.{pass_name}.default.config] name = \"NA\"")
    default = _entry_config(pass_name, "default", args["default"]) if "default" in args else None
    skip = {"by", "default", *reserved}
    entries = {key: _entry_config(pass_name, key, value)
               for key, value in args.items() if key not in skip}
    if by == "regex_name":
        for pattern in entries:
            _check_pattern(pass_name, pattern)
    return Selection(pass_name=pass_name, by=by, default=default, entries=entries)
