"""What a command left on disk."""

from __future__ import annotations

from pathlib import Path


def tree(path: Path) -> dict[str, float]:
    """Every file under `path` with its modification time."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in path.rglob("*")}
