"""Real cost of a candidate: its ONNX export run by ONNX Runtime's kernels (int8 where quantized).

The model is exported in memory (no file per trial), a session is created with its intra-op
threads pinned to torch's thread count (recorded), and batch-1 latency and batch-`batch_size`
throughput are timed like `metrics.speed`: warm-up runs, then repeats for at least
`min_run_time` seconds, median and interquartile range.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from machop.errors import ConfigError
from machop.export.formats import export_format


@dataclass
class OnnxCost:
    """ONNX Runtime timings and the serialized size of one exported model."""

    onnx_latency_ms: float
    onnx_latency_iqr_ms: float
    onnx_inference_time_ms: float
    onnx_throughput: float
    onnx_size_bytes: int
    batch_size: int
    threads: int
    repeats: int
    export_seconds: float
    int8_kernels: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON and reports."""
        return asdict(self)


def missing_runtime() -> str | None:
    """Why ONNX metrics cannot be measured here (the deploy extra is missing), or None."""
    onnx_format = export_format("onnx")
    missing = onnx_format.missing()
    if not missing:
        return None
    return (f"needs {', '.join(missing)}: install it with `.venv/bin/pip install -e '.[{onnx_format.extra}]'` "
            "(make install does)")


def time_session(session: Any, batch: np.ndarray, *, min_run_time: float = 0.5,
                 warmup: int = 3) -> list[float]:
    """Seconds per `session.run` on `batch`, after `warmup` runs, repeated for >= min_run_time s."""
    feed = {session.get_inputs()[0].name: batch}
    for _ in range(warmup):
        session.run(None, feed)
    times: list[float] = []
    started = time.perf_counter()
    while not times or time.perf_counter() - started < min_run_time or len(times) < 3:
        begin = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - begin)
    return times


def _median_iqr(times: list[float]) -> tuple[float, float]:
    q1, median, q3 = np.percentile(times, [25, 50, 75])
    return float(median), float(q3 - q1)


def measure_model_bytes(model: bytes, example: torch.Tensor, batch_size: int, *, threads: int | None = None,
                        min_run_time: float = 0.5, warmup: int = 3) -> dict[str, Any]:
    """Latency (batch 1) and throughput (batch `batch_size`) of a serialized ONNX model."""
    from machop.export.onnx.session import create_session
    from machop.metrics.speed import tile_batch

    if batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    threads = threads or torch.get_num_threads()
    session = create_session(model, threads)
    batch = tile_batch(example.detach().float().cpu(), batch_size).numpy()
    one = time_session(session, batch[:1], min_run_time=min_run_time, warmup=warmup)
    many = time_session(session, batch, min_run_time=min_run_time, warmup=warmup)
    latency, latency_iqr = _median_iqr(one)
    inference, _ = _median_iqr(many)
    return {"onnx_latency_ms": latency * 1e3, "onnx_latency_iqr_ms": latency_iqr * 1e3,
            "onnx_inference_time_ms": inference * 1e3, "onnx_throughput": batch_size / inference,
            "batch_size": batch_size, "threads": threads, "repeats": min(len(one), len(many))}


def measure_onnx(model: nn.Module, example: torch.Tensor, batch_size: int, *, threads: int | None = None,
                 min_run_time: float = 0.5, warmup: int = 3) -> OnnxCost:
    """Export `model` to ONNX in memory and time it in ONNX Runtime; size is the serialized bytes."""
    from machop.export.onnx.build import build_onnx

    started = time.perf_counter()
    build = build_onnx(model, example)
    data = build.serialized()
    export_seconds = time.perf_counter() - started
    timings = measure_model_bytes(data, example, batch_size, threads=threads, min_run_time=min_run_time,
                                  warmup=warmup)
    return OnnxCost(onnx_size_bytes=len(data), export_seconds=export_seconds, **timings)
