"""ONNX Runtime sessions of an exported model: threads pinned, outputs in batches, kernels used."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from machop.errors import ModelError, exception_line
from machop.export.onnx.build import INPUT_NAME, OUTPUT_NAME

INT8_KERNELS = ("QLinearConv", "QLinearMatMul", "QGemm", "MatMulInteger", "ConvInteger",
                "MatMulIntegerToFloat", "DynamicQuantizeMatMul")


def session_options(threads: int, optimized_path: Path | None = None) -> Any:
    """SessionOptions with `threads` intra-op threads, one inter-op thread, every graph optimization."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    return options


def create_session(model: bytes, threads: int, optimized_path: Path | None = None) -> Any:
    """An ONNX Runtime CPU session; a model it cannot run is a one-line ModelError naming the node."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(model, sess_options=session_options(threads, optimized_path),
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        raise ModelError(f"ONNX Runtime cannot run the exported model: {exception_line(exc, 300)}") from exc


def optimized_graph(model: bytes, threads: int = 1) -> Any:
    """The graph ONNX Runtime runs after its optimizations (its fused kernels), as an onnx model."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="machop-ort-") as folder:
        path = Path(folder) / "optimized.onnx"
        create_session(model, threads, path)
        return onnx.load(str(path))


def kernel_counts(optimized: Any) -> dict[str, int]:
    """Node count per op type of an optimized graph."""
    return dict(Counter(node.op_type for node in optimized.graph.node))


def layer_kernels(optimized: Any, nodes: list[str]) -> dict[str, str]:
    """Per machop node, the runtime op that reads its quantized weight (its int8 kernel, if fused)."""
    found: dict[str, str] = {}
    for node in optimized.graph.node:
        for name in node.input:
            owner = name.split(".weight_quantized")[0] if ".weight_quantized" in name else None
            if owner in nodes and (owner not in found or node.op_type in INT8_KERNELS):
                found[owner] = node.op_type
    return found


def run_batches(session: Any, inputs: np.ndarray, batch_size: int,
                outputs: list[str] | None = None) -> list[np.ndarray]:
    """Every requested output (default: the model output) for `inputs`, run in batches."""
    names = outputs or [OUTPUT_NAME]
    parts: list[list[np.ndarray]] = [[] for _ in names]
    for start in range(0, len(inputs), batch_size):
        batch = np.ascontiguousarray(inputs[start:start + batch_size], dtype=np.float32)
        try:
            values = session.run(names, {INPUT_NAME: batch})
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"ONNX Runtime failed on the exported model: {exception_line(exc, 300)}") from exc
        for part, value in zip(parts, values):
            part.append(value)
    return [np.concatenate(part) if part else np.zeros((0,)) for part in parts]
