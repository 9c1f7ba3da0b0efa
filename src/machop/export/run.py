"""Run one export for every format the same way: a fresh folder, renamed into place on success.

The format writes into a temporary folder next to `--out`; only a complete, passing export is
renamed to `--out`. An existing `--out` is replaced only when machop wrote it (it holds the
marker file); anything else there is refused. On any error, or a failed `--strict` check, the
temporary folder is removed and nothing is written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from machop.errors import MachopError, exception_line
from machop.export.formats import export_format
from machop.export.request import ExportRequest, ExportResult

MARKER = ".machop-export"


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise MachopError(f"--out {str(out)!r} exists and is not a directory; choose another path")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise MachopError(f"--out {str(out)!r} is a folder machop did not write (no {MARKER}); "
                          "choose an empty or new folder")


def _fresh_folder(out: Path) -> Path:
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise MachopError(f"--out {str(out)!r} is not writable ({exc.strerror or exception_line(exc)}); "
                          "choose another folder") from exc


def _moved(result: ExportResult, folder: Path, out: Path) -> ExportResult:
    files = [out / path.relative_to(folder) for path in result.files]
    return replace(result, out=out, files=files)


def run_export(format_name: str, request: ExportRequest) -> ExportResult:
    """Validate, export into a temporary folder, check, then rename it to request.out."""
    function = export_format(format_name).function()
    out = Path(request.out)
    _check_out(out)
    folder = _fresh_folder(out)
    try:
        result = function(replace(request, out=folder))
        if not result.passed:
            parity = result.parity
            agreement = f"{parity.agreement:.4f}" if parity is not None else "unknown"
            raise MachopError(f"--strict: the exported model agrees with the simulation on {agreement} of "
                              f"the {request.split} predictions, below the threshold "
                              f"{request.threshold if request.threshold is not None else 0.995}; nothing written")
        (folder / MARKER).write_text(f"{format_name}\n")
        os.chmod(folder, 0o777 & ~_umask())
        if out.is_dir():
            shutil.rmtree(out)
        os.replace(folder, out)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return _moved(result, folder, out)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
