"""The output folder of a run: <project_dir>/<project>/ and the files inside it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from machop.config.schema import RunConfig
from machop.errors import ConfigError


@dataclass(frozen=True)
class Project:
    """Paths of everything a run writes."""

    root: Path

    @classmethod
    def from_config(cls, config: RunConfig) -> Project:
        """The project folder named by a config."""
        return cls(Path(config.project_dir) / config.project_name())

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.ckpt"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def test_metrics(self) -> Path:
        return self.root / "test_metrics.json"

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    def check_writable(self) -> None:
        """Fail before any work if the project folder cannot be created or written."""
        existing = self.root
        while not existing.exists():
            if existing.parent == existing:
                break
            existing = existing.parent
        if existing.exists() and not existing.is_dir():
            raise ConfigError(f"project path {str(existing)!r} exists and is not a directory")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(f"project dir {str(existing)!r} is not writable; "
                              "choose another with --project-dir")
