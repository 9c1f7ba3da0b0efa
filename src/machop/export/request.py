"""What an export is asked to do and what it reports back: plain data, no printing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from machop.data.dataset import Dataset


@dataclass(frozen=True)
class ExportRequest:
    """One export: the model as machop simulates it, where to write, and how to check it.

    `dataset` (with `batch_size`) feeds the parity check on its `split`; without it the check is
    skipped and the result says so. `options` holds the format's own settings (for hls4ml:
    backend, io_type, reuse_factor, csim, allow_float; for onnx: opset, threads), validated by
    the format module, which raises MachopError on a bad value before writing anything.
    """

    model: nn.Module
    out: Path
    example_input: Any
    dataset: Dataset | None = None
    batch_size: int = 128
    split: str = "validation"
    check: bool = True
    per_layer: bool = False
    strict: bool = False
    threshold: float | None = None  # --strict: the least prediction agreement that passes
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParityReport:
    """The exported model against machop's simulation on the same samples."""

    samples: int
    agreement: float  # fraction of samples with the same predicted class
    max_abs_diff: float  # over all outputs
    differing_samples: int  # samples whose outputs differ at all
    bit_exact: bool
    per_layer: list[dict[str, Any]] = field(default_factory=list)  # one row per quantized node
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (parity.json)."""
        return {"samples": self.samples, "agreement": self.agreement,
                "max_abs_diff": self.max_abs_diff, "differing_samples": self.differing_samples,
                "bit_exact": self.bit_exact, "per_layer": self.per_layer, "notes": self.notes}


@dataclass
class ExportResult:
    """What an export wrote and measured."""

    format: str
    out: Path
    files: list[Path]
    layers: list[dict[str, Any]] = field(default_factory=list)  # per node: name, kind, how exported
    parity: ParityReport | None = None
    notes: list[str] = field(default_factory=list)  # one-line warnings for the user
    passed: bool = True  # False when --strict and the parity check failed
