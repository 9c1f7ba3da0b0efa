"""Export a machop model to a deployment format (ONNX Runtime, hls4ml) and check it against the simulation.

One entry point per format, `to_<format>(model, out, ...)`, each in its own module that is
imported only when used (its dependencies live in an optional extra). `FORMATS` maps the
`--format` name of `machop export` to that module's `export(request) -> ExportResult`.
"""

from __future__ import annotations

from machop.export.formats import FORMATS, ExportFormat, export_format
from machop.export.request import ExportRequest, ExportResult, ParityReport

__all__ = ["FORMATS", "ExportFormat", "ExportRequest", "ExportResult", "ParityReport", "export_format"]
