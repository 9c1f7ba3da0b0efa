"""The export format registry: unknown names and missing extras are one line each."""

from __future__ import annotations

import importlib.util

import pytest

from machop.errors import MachopError
from machop.export.formats import FORMATS, export_format
from machop.metrics.onnx import missing_runtime


def test_unknown_format_suggests_the_valid_ones():
    with pytest.raises(MachopError, match=r"unknown export format 'onx'.*\(valid: hls4ml, onnx\)"):
        export_format("onx")


def test_a_missing_extra_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "onnxruntime" else real(name, *args))
    with pytest.raises(MachopError, match=r"--format onnx needs onnxruntime: install it with .*\.\[deploy\]"):
        export_format("onnx").function()
    assert missing_runtime().startswith("needs onnxruntime: install it with")
    assert FORMATS["hls4ml"].missing() == ([] if real("hls4ml") else ["hls4ml"])
