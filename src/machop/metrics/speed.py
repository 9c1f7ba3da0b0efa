"""Latency and throughput of a model's forward pass, timed with torch.utils.benchmark."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.utils import benchmark

from machop.errors import ConfigError
from machop.runtime.device import resolve_device

DeviceLike = torch.device | str | None
_DEVICE_NAMES = ("auto", "cpu", "gpu", "cuda")


@dataclass
class SpeedResult:
    """Forward-pass timings; `repeats` is the fewer of the two timed-measurement counts."""

    latency_ms: float
    latency_iqr_ms: float
    batch_size: int
    inference_time_ms: float
    inference_time_iqr_ms: float
    throughput: float
    threads: int
    device: str
    repeats: int

    def as_dict(self) -> dict:
        """Plain-data form for JSON and reports."""
        return asdict(self)


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (or buffer); CPU for a stateless model."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def measurement_device(model: nn.Module, device: DeviceLike) -> torch.device:
    """The device to measure on: the model's own when None; a CUDA request without CUDA gives CPU."""
    if device is None:
        return model_device(model)
    if isinstance(device, str) and device in _DEVICE_NAMES:
        return resolve_device(device)
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"unknown device {device!r}: {exc}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        return resolve_device("cuda")  # warns once and falls back to the CPU
    return resolved


@contextlib.contextmanager
def placed(model: nn.Module, device: torch.device, *, training: bool = False) -> Iterator[nn.Module]:
    """The model on `device` in train or eval mode; every module's flag and the device are restored."""
    flags = [(module, module.training) for module in model.modules()]
    original = model_device(model)
    model.to(device)
    model.train(training)
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag
        if original != device:
            model.to(original)


def tile_batch(example: Tensor, batch_size: int) -> Tensor:
    """`batch_size` rows made by repeating `example` along dim 0 (works for any example size)."""
    if example.dim() == 0 or example.size(0) == 0:
        raise ConfigError(f"example must hold at least one sample along dim 0, got shape "
                          f"{tuple(example.shape)}")
    copies = -(-batch_size // example.size(0))
    return example.repeat(copies, *([1] * (example.dim() - 1)))[:batch_size].contiguous()


def _check_speed_args(batch_size: int, min_run_time: float, warmup: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not min_run_time > 0:
        raise ConfigError(f"min_run_time must be > 0 seconds, got {min_run_time!r}")
    if warmup < 0:
        raise ConfigError(f"warmup must be >= 0, got {warmup!r}")


def _time_forward(model: nn.Module, x: Tensor, min_run_time: float,
                  threads: int) -> benchmark.Measurement:
    # num_threads: Timer defaults to 1 and sets torch's thread count for the measurement;
    # passing the current count measures the model as the caller runs it.
    # CUDA: Timer's default timer (torch.utils.benchmark.utils.timer.timer) calls
    # torch.accelerator.synchronize() before reading the clock, so both ends of every timed
    # block wait for queued kernels; no explicit synchronize is needed here.
    timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=threads)
    return timer.blocked_autorange(min_run_time=min_run_time)


def _cuda_current(device: torch.device) -> contextlib.AbstractContextManager:
    # torch.accelerator.synchronize() waits on the *current* device; make it the measured one.
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def measure_speed(model: nn.Module, example: Tensor, batch_size: int, *, device: DeviceLike = None,
                  min_run_time: float = 0.5, warmup: int = 3) -> SpeedResult:
    """Median and IQR of batch-1 latency and batch-`batch_size` inference time, plus throughput."""
    _check_speed_args(batch_size, min_run_time, warmup)
    dev = measurement_device(model, device)
    threads = torch.get_num_threads()
    batch = tile_batch(example, batch_size)
    with placed(model, dev), torch.no_grad(), _cuda_current(dev):
        batch = batch.to(dev)
        single = batch[:1]
        for _ in range(warmup):
            model(single)
            model(batch)
        one = _time_forward(model, single, min_run_time, threads)
        many = _time_forward(model, batch, min_run_time, threads)
    return SpeedResult(latency_ms=one.median * 1e3, latency_iqr_ms=one.iqr * 1e3,
                       batch_size=batch_size, inference_time_ms=many.median * 1e3,
                       inference_time_iqr_ms=many.iqr * 1e3, throughput=batch_size / many.median,
                       threads=threads, device=str(dev), repeats=min(len(one.times), len(many.times)))
