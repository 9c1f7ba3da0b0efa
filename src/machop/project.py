"""The output folder of a run: <project_dir>/<project>/ and the files inside it."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
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
    def transformed(self) -> Path:
        return self.root / "transformed"

    def transformed_dir(self, pass_names: Sequence[str]) -> Path:
        """transformed/<pass names joined by '+'>/: each pass list keeps a folder of its own."""
        return self.transformed / "+".join(pass_names)

    def transformed_model(self, pass_names: Sequence[str]) -> Path:
        return self.transformed_dir(pass_names) / "model.machop"

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    def check_writable(self) -> None:
        """Create the project folder and probe it; fail with a ConfigError if it is unusable."""
        existing = self.root
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if not existing.is_dir():
            raise ConfigError(f"project path {str(existing)!r} exists and is not a directory")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError as exc:
            raise ConfigError(f"project dir {str(self.root)!r} is not writable ({exc.strerror}); "
                              "choose another with --project-dir") from exc
