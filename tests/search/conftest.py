"""A trained base checkpoint shared by the search tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """jsc-three-linear-layers trained briefly on digits; the best checkpoint's path."""
    from machop.cli.app import run

    out = tmp_path_factory.mktemp("base")
    assert run(["train", "jsc-three-linear-layers", "digits", "--max-epochs", "10", "--batch-size", "32",
                "--learning-rate", "1e-2", "--project-dir", str(out), "--project", "base"]) == 0
    return out / "base" / "checkpoints" / "best.ckpt"
