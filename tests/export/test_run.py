"""run_export: a fresh folder renamed into place; nothing written on any failure."""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("onnxruntime")

from machop.data.registry import load_dataset  # noqa: E402
from machop.errors import MachopError  # noqa: E402
from machop.export.request import ExportRequest  # noqa: E402
from machop.export.run import MARKER, run_export  # noqa: E402
from machop.graph import Graph  # noqa: E402
from machop.models.registry import build_model  # noqa: E402


@pytest.fixture(scope="module")
def request_for():
    digits = load_dataset("digits")
    torch.manual_seed(0)
    graph = Graph(build_model("jsc-tiny", digits.info, {}).eval(), digits.validation.x[:8].float())

    def make(out, **extra):
        return ExportRequest(model=graph.module, out=out, example_input=graph.example_input, dataset=digits,
                             batch_size=64, options={"threads": 1}, **extra)
    return make


def test_writes_and_replaces_its_own_folder(request_for, tmp_path):
    out = tmp_path / "onnx"
    result = run_export("onnx", request_for(out))
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "model.onnx", "parity.json"])
    assert all(path.parent == out for path in result.files)
    run_export("onnx", request_for(out))  # machop's own folder: replaced
    assert [p.name for p in tmp_path.iterdir()] == ["onnx"]


def test_refuses_a_folder_it_did_not_write(request_for, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(MachopError, match="did not write"):
        run_export("onnx", request_for(tmp_path / "mine"))
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_strict_failure_writes_nothing(request_for, tmp_path):
    with pytest.raises(MachopError, match="--strict"):
        run_export("onnx", request_for(tmp_path / "out", strict=True, threshold=1.01))
    assert list(tmp_path.iterdir()) == []


def test_unknown_format_and_unwritable_out(request_for, tmp_path):
    with pytest.raises(MachopError, match="unknown export format 'onx'"):
        run_export("onx", request_for(tmp_path / "out"))
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a folder")
    with pytest.raises(MachopError, match="not writable"):
        run_export("onnx", request_for(in_the_way / "out"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(MachopError, match="not writable"):
            run_export("onnx", request_for(locked / "out"))
    finally:
        os.chmod(locked, 0o700)
