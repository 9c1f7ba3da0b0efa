"""Registry of export formats: a `--format` name maps to one module's `export(request)`."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from machop.errors import MachopError, unknown_name
from machop.export.request import ExportRequest, ExportResult


@dataclass(frozen=True)
class ExportFormat:
    """One export format: where its `export` function lives and which extra it needs."""

    name: str
    description: str
    target: str  # "module:function"
    requires: tuple[str, ...]  # importable modules the format needs
    extra: str  # pip extra that installs them

    def missing(self) -> list[str]:
        """The required modules that cannot be imported here."""
        return [name for name in self.requires if importlib.util.find_spec(name) is None]

    def function(self) -> Callable[[ExportRequest], ExportResult]:
        """The format's export function; a one-line error when its extra is not installed."""
        missing = self.missing()
        if missing:
            raise MachopError(f"--format {self.name} needs {', '.join(missing)}: install it with "
                              f"`.venv/bin/pip install -e '.[{self.extra}]'` (make install does)")
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


FORMATS: dict[str, ExportFormat] = {
    "onnx": ExportFormat("onnx", "ONNX with QDQ integer operands, run by ONNX Runtime",
                         "machop.export.onnx:export", ("onnx", "onnxruntime"), "deploy"),
    "hls4ml": ExportFormat("hls4ml", "hls4ml HLS C++ project with ap_fixed types per layer",
                           "machop.export.hls4ml:export", ("hls4ml",), "deploy"),
}


def export_format(name: str) -> ExportFormat:
    """The registered format called `name`; a one-line error listing the valid ones."""
    if name not in FORMATS:
        raise MachopError(unknown_name("export format", name, FORMATS))
    return FORMATS[name]
