"""Peak memory of one inference batch or one training step, on CUDA or on CPU.

On CUDA the caching allocator's own peak counter is exact: `max_memory_allocated()` after the call
minus `memory_allocated()` before it (weights already on the device are not counted).

On CPU torch keeps no such counter, but its profiler records every allocation and free of torch's
CPU allocator with its size (`profile_memory=True`). After one warm-up call, one call runs under
the profiler and the peak of the running sum of those events is the result (method
"cpu_torch_allocations"): the bytes of every tensor the call creates that are alive at the same
time, exact to the byte and the same on every run. Memory that is not a torch tensor (numpy
buffers, Python objects) is not counted.

Only where the profiler cannot record allocations is the process's resident set size (RSS) sampled
instead, about every millisecond in a background thread while the call runs a few times (method
"cpu_rss_sampling"): the highest sample minus the RSS just before, clipped at 0. That is coarse
for small models: pages are counted only once touched, and the C allocator (glibc malloc arenas)
keeps freed small blocks and hands them out again without growing the RSS, so a call whose
temporaries (tens of kB for a JSC MLP) fit into memory freed earlier reads 0. Where /proc is
missing, psutil is used if importable, and else the lifetime high-water mark
`resource.getrusage(...).ru_maxrss` (method "cpu_maxrss"), which only moves when the call exceeds
every earlier peak of the process, so it is a lower bound that often reads 0.
"""

from __future__ import annotations

import copy
import gc
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from machop.errors import ModelError
from machop.metrics.speed import DeviceLike, measurement_device, placed

CPU_REPEATS = 3
SAMPLE_PERIOD_S = 0.001
_NO_READER = "no way to read resident memory here (no /proc/self/statm, psutil or resource module)"


@dataclass
class MemoryResult:
    """Peak extra memory of one call, in bytes, and how it was measured."""

    peak_bytes: int | None
    method: str
    available: bool
    reason: str = ""

    def as_dict(self) -> dict:
        """Plain-data form for JSON and reports."""
        return asdict(self)


def _read_statm() -> int:
    with open("/proc/self/statm", "rb") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _statm_reader() -> Callable[[], int] | None:
    try:
        _read_statm()
    except (OSError, ValueError, IndexError):
        return None
    return _read_statm


def _psutil_reader() -> Callable[[], int] | None:
    try:
        import psutil
    except ImportError:
        return None
    process = psutil.Process()
    return lambda: process.memory_info().rss


def _maxrss_reader() -> Callable[[], int] | None:
    try:
        import resource
    except ImportError:
        return None
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, kilobytes on Linux
    return lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def rss_reader() -> tuple[Callable[[], int], str] | None:
    """A function returning the process's resident bytes and the method name, or None."""
    for make, method in ((_statm_reader, "cpu_rss_sampling"), (_psutil_reader, "cpu_rss_sampling"),
                         (_maxrss_reader, "cpu_maxrss")):
        read = make()
        if read is not None:
            return read, method
    return None


class _PeakSampler:
    """Tracks the largest value of `read()` in a background thread while the block runs."""

    def __init__(self, read: Callable[[], int], period: float = SAMPLE_PERIOD_S) -> None:
        self._read, self._period = read, period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="machop-rss-sampler", daemon=True)
        self.peak = 0

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            self.peak = max(self.peak, self._read())

    def __enter__(self) -> _PeakSampler:
        self.peak = self._read()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._read())


def profiled_peak(call: Callable[[], object]) -> int | None:
    """Peak extra bytes torch's CPU allocator holds during `call`, from profiler events (or None)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    # Kineto logs two lines per profiled call on stderr unless its level is raised before its first
    # use; a value the user set is kept.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
            call()
        events = profiler.profiler.kineto_results.events()
    except (RuntimeError, AttributeError):  # another profiler is running, or a build without kineto
        return None
    if not events:
        return None
    changes = sorted((event.start_ns(), event.nbytes()) for event in events
                     if event.name() == "[memory]" and event.device_type() == DeviceType.CPU)
    live = peak = 0
    for _, size in changes:
        live += size
        peak = max(peak, live)
    return peak


def cpu_peak(call: Callable[[], object], repeats: int = CPU_REPEATS) -> MemoryResult:
    """Peak bytes of torch's allocations in `call`; RSS sampling where the profiler cannot tell."""
    call()
    peak = profiled_peak(call)
    if peak is not None:
        return MemoryResult(peak, "cpu_torch_allocations", True)
    return rss_peak(call, repeats)


def rss_peak(call: Callable[[], object], repeats: int = CPU_REPEATS) -> MemoryResult:
    """Peak RSS increase of the process while `call` runs `repeats` times (after one warm-up)."""
    reader = rss_reader()
    if reader is None:
        return MemoryResult(None, "", False, _NO_READER)
    read, method = reader
    call()
    gc.collect()
    before = read()
    with _PeakSampler(read) as sampler:
        for _ in range(repeats):
            call()
    return MemoryResult(max(0, sampler.peak - before), method, True)


def cuda_peak(call: Callable[[], object], device: torch.device) -> MemoryResult:
    """Peak bytes the CUDA caching allocator handed out during `call`, beyond what it held before."""
    call()  # warm-up: cuBLAS/cuDNN workspaces are allocated once and kept
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    call()
    torch.cuda.synchronize(device)
    return MemoryResult(torch.cuda.max_memory_allocated(device) - before, "cuda_max_allocated", True)


def _peak(call: Callable[[], object], device: torch.device) -> MemoryResult:
    if device.type == "cuda":
        return cuda_peak(call, device)
    if device.type != "cpu":
        return MemoryResult(None, "", False, f"memory is measured on cuda or cpu, not {device.type}")
    return cpu_peak(call)


def peak_memory_inference(model: nn.Module, batch: Tensor, *, device: DeviceLike = None) -> MemoryResult:
    """Peak extra memory of one forward pass over `batch` in eval mode without gradients."""
    dev = measurement_device(model, device)
    with placed(model, dev), torch.no_grad():
        x = batch.to(dev)
        return _peak(lambda: model(x), dev)


def make_training_step(model: nn.Module, batch: Tensor, targets: Tensor,
                       device: torch.device) -> Callable[[], None]:
    """One SGD step (forward, cross-entropy, backward, update) on a deep copy of `model`."""
    replica = copy.deepcopy(model).to(device).train()
    parameters = [p for p in replica.parameters() if p.requires_grad]
    if not parameters:
        raise ModelError("a training step needs a model with trainable parameters; this one has none")
    optimizer = torch.optim.SGD(parameters, lr=0.01)
    x, y = batch.to(device), targets.to(device)

    def step() -> None:
        F.cross_entropy(replica(x), y).backward()
        optimizer.step()
        # Freed here, not at the start of the next step: the gradients belong to this step's peak,
        # and a measured call then frees nothing that was allocated before it.
        optimizer.zero_grad(set_to_none=True)
    return step


def peak_memory_training_step(model: nn.Module, batch: Tensor, targets: Tensor, *,
                              device: DeviceLike = None) -> MemoryResult:
    """Peak extra memory of one training step; the caller's model and weights are untouched."""
    dev = measurement_device(model, device)
    return _peak(make_training_step(model, batch, targets, dev), dev)
