"""`machop test --devices N` reports a missing checkpoint before starting processes or Fabric."""

from __future__ import annotations

import pytest

from machop.train import distributed


@pytest.fixture
def nothing_may_start(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a process or Fabric was started")

    monkeypatch.setattr(distributed, "_import_fabric", refuse)
    monkeypatch.setattr(distributed, "_own_launch", refuse)
    monkeypatch.setattr(distributed.subprocess, "Popen", refuse)


@pytest.mark.parametrize("command", [["test"], ["test", "toy-tiny", "toy-tiny"],
                                     ["train", "toy-tiny", "toy-tiny"]])
def test_missing_checkpoint_is_reported_before_any_process_starts(cli, tmp_path, nothing_may_start,
                                                                  command):
    missing = tmp_path / "MISSING.pt"
    result = cli(*command, "--load", missing, "--devices", "2", "--accelerator", "cpu",
                 "--project-dir", tmp_path / "out")
    assert result.code == 2
    assert result.stderr == f"error: checkpoint {str(missing)!r} does not exist\n"
    assert not (tmp_path / "out").exists()
