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


@pytest.fixture(scope="session")
def postgres():
    """A throw-away PostgreSQL server for the session (installed from Debian packages if missing)."""
    from tests.postgres import find_binaries, start_server

    bin_dir, reason = find_binaries()
    if bin_dir is None:
        pytest.skip(reason)
    server = start_server(bin_dir)
    yield server
    server.stop()
