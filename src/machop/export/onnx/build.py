"""Build the ONNX model of a machop graph in memory: export copy, TorchScript export, QDQ.

The exporter is torch.onnx's TorchScript-based one (`dynamo=False`): it needs no onnxscript, it
exports an fx GraphModule of these models in 0.1-0.3 s, and a custom autograd Function with a
`symbolic` gives the exact position of every quantized operand (`machop::Mark`), which the QDQ
rewrite replaces. The dynamo exporter would need onnxscript and an op decomposition per marker.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import onnx
import torch
from torch import nn

from machop.errors import ModelError, exception_line
from machop.export.onnx.prepare import ExportPlan, export_plan
from machop.export.onnx.qdq import EXPORT_OPSET, Rewritten, insert_qdq

INPUT_NAME = "input"
OUTPUT_NAME = "output"


@dataclass
class OnnxBuild:
    """An exported model: the serialized ONNX, the export plan and what the QDQ rewrite recorded."""

    model: onnx.ModelProto
    plan: ExportPlan
    rewritten: Rewritten
    notes: list[str] = field(default_factory=list)

    def serialized(self) -> bytes:
        """The model as bytes (what is written to model.onnx and what sessions load)."""
        return self.model.SerializeToString()


def _failing_node(module: nn.Module, message: str) -> str:
    """The fx node that calls the aten operator named in an exporter error, if one matches."""
    match = re.search(r"aten::(\w+)", message)
    if match is None or not hasattr(module, "graph"):
        return ""
    op = match.group(1).rstrip("_")
    for node in module.graph.nodes:
        target = getattr(node.target, "__name__", str(node.target))
        if op in str(target):
            return f"node {node.name!r} ({match.group(0)}): "
    return f"{match.group(0)}: "


def _torch_export(module: nn.Module, example: torch.Tensor) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, (example,), buffer, dynamo=False, opset_version=EXPORT_OPSET,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              do_constant_folding=True)
        except Exception as exc:  # noqa: BLE001 - any exporter failure is an op it cannot handle
            line = exception_line(exc, 300)
            raise ModelError(f"ONNX export failed: {_failing_node(module, line)}{line}") from exc
    return onnx.load_from_string(buffer.getvalue())


def _example(example: Any) -> torch.Tensor:
    if not isinstance(example, torch.Tensor):
        raise ModelError(f"ONNX export needs one example input tensor, got {type(example).__name__}")
    return example[:1].detach().float().cpu()


def build_onnx(model: nn.Module, example_input: Any) -> OnnxBuild:
    """The ONNX model (with QDQ for integer operands) of a machop model, built in memory."""
    plan = export_plan(model)
    with torch.no_grad():
        proto = _torch_export(plan.module, _example(example_input))
    rewritten = insert_qdq(proto, plan)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"the exported ONNX model is invalid: {exception_line(exc, 300)}") from exc
    notes = [*plan.notes, *rewritten.notes]
    floats = sorted({row["node"] for row in plan.layers if "float" in row["exported"]})
    if floats:
        notes.append(f"{', '.join(floats)}: not integer-quantized to <= 16 bits, so ONNX Runtime computes "
                     "them in float (their values are on the simulated grid)")
    return OnnxBuild(model=proto, plan=plan, rewritten=rewritten, notes=notes)
