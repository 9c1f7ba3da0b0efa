"""Energy per inference batch or per training step on an NVIDIA GPU, read through NVML.

The preferred source is the GPU's cumulative energy counter (`nvmlDeviceGetTotalEnergyConsumption`,
millijoules, Volta and newer). The counter moves in steps, so the measured window starts and ends
right after observed counter updates and lasts at least `min_seconds` and several update periods;
energy per call is the counter difference over the calls in between. Where the counter is not
supported, board power (`nvmlDeviceGetPowerUsage`, milliwatts) is sampled every 10 ms in a
background thread and integrated with the trapezoid rule; on many boards that reading is itself a
moving average, so a longer `min_seconds` gives a better number. Both include the GPU's idle
power while it runs the calls; nothing is subtracted. Without an NVIDIA GPU, nvidia-ml-py or a
working NVML the result is unavailable (joules None, never 0) with the reason.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from machop.errors import ConfigError
from machop.metrics.memory import make_training_step
from machop.metrics.speed import DeviceLike, measurement_device, placed

POWER_PERIOD_S = 0.01
MIN_COUNTER_PERIODS = 5
COUNTER_TIMEOUT_S = 10.0
NVML_ERROR_NOT_SUPPORTED = 3
CallFactory = Callable[[], contextlib.AbstractContextManager[Callable[[], object]]]


@dataclass
class EnergyResult:
    """Joules per call (inference batch or training step), or None with the reason."""

    joules: float | None
    available: bool
    reason: str
    method: str = ""
    repetitions: int = 0

    def as_dict(self) -> dict:
        """Plain-data form for JSON and reports."""
        return asdict(self)


class _CounterStuck(Exception):
    """The energy counter did not move within COUNTER_TIMEOUT_S."""


# The CUDA-only steps are small module functions so that tests can replace them without a GPU.
def _is_nvidia_gpu(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available()


def _synchronize(device: torch.device) -> None:
    torch.cuda.synchronize(device)


def _cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def _pci_bus_id(device: torch.device) -> str | None:
    props = torch.cuda.get_device_properties(_cuda_index(device))
    ids = [getattr(props, name, None) for name in ("pci_domain_id", "pci_bus_id", "pci_device_id")]
    if any(value is None for value in ids):
        return None
    domain, bus, slot = ids
    return f"{domain:08x}:{bus:02x}:{slot:02x}.0"


def _nvml_index(device: torch.device) -> int:
    # Only used without PCI ids: map through an integer CUDA_VISIBLE_DEVICES list. CUDA's default
    # order (fastest first) can differ from NVML's PCI order, which is why the bus id comes first.
    index = _cuda_index(device)
    visible = [e.strip() for e in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if e.strip()]
    if index < len(visible) and visible[index].isdigit():
        return int(visible[index])
    return index


def _nvml_handle(pynvml: ModuleType, device: torch.device) -> Any:
    bus_id = _pci_bus_id(device)
    if bus_id is not None:
        return pynvml.nvmlDeviceGetHandleByPciBusId(bus_id.encode("ascii"))
    return pynvml.nvmlDeviceGetHandleByIndex(_nvml_index(device))


def _unavailable(reason: str) -> EnergyResult:
    return EnergyResult(None, False, reason)


def _open_nvml(device: torch.device) -> tuple[ModuleType, Any] | EnergyResult:
    if not _is_nvidia_gpu(device):
        return _unavailable(f"energy needs an NVIDIA GPU; this run is on {device.type}")
    try:
        import pynvml
    except ImportError:
        return _unavailable("pynvml is not importable; install machop[gpu] (nvidia-ml-py)")
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError subclasses, or OSError from a missing libnvidia-ml
        return _unavailable(f"NVML init failed: {exc}")
    try:
        return pynvml, _nvml_handle(pynvml, device)
    except Exception as exc:  # an NVML lookup error or a CUDA error while reading properties
        _shutdown(pynvml)
        return _unavailable(f"no NVML handle for {device}: {exc}")


def _shutdown(pynvml: ModuleType) -> None:
    with contextlib.suppress(Exception):  # a failed shutdown must not hide the measurement
        pynvml.nvmlShutdown()


def _not_supported(pynvml: ModuleType, exc: BaseException) -> bool:
    cls = getattr(pynvml, "NVMLError_NotSupported", None)
    if cls is not None and isinstance(exc, cls):
        return True
    return getattr(exc, "value", None) == getattr(pynvml, "NVML_ERROR_NOT_SUPPORTED",
                                                 NVML_ERROR_NOT_SUPPORTED)


def _until_update(run: Callable[[], None], read: Callable[[], int]) -> tuple[int, int, float]:
    """Run calls until the counter moves; (new value, calls made, time of the update seen)."""
    last, calls, start = read(), 0, time.perf_counter()
    while True:
        run()
        calls += 1
        value, now = read(), time.perf_counter()
        if value != last:
            return value, calls, now
        if now - start > COUNTER_TIMEOUT_S:
            raise _CounterStuck(f"the energy counter did not move in {COUNTER_TIMEOUT_S:g} s")


def counter_energy(read_mj: Callable[[], int], run: Callable[[], None],
                   min_seconds: float) -> EnergyResult:
    """Joules per call from a cumulative millijoule counter, over a window aligned to its updates."""
    _, _, first_update = _until_update(run, read_mj)
    start_mj, _, started = _until_update(run, read_mj)
    window = max(min_seconds, MIN_COUNTER_PERIODS * (started - first_update))
    reps = 0
    while time.perf_counter() - started < window:
        run()
        reps += 1
    end_mj, extra, _ = _until_update(run, read_mj)
    reps += extra
    return EnergyResult((end_mj - start_mj) / 1000 / reps, True, "", "nvml_total_energy", reps)


class _Sampler:
    """Collects (time, read()) pairs in a background thread every `period` seconds."""

    def __init__(self, read: Callable[[], float], period: float) -> None:
        self._read, self._period = read, period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="machop-power-sampler", daemon=True)
        self.samples: list[tuple[float, float]] = []

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            self.samples.append((time.perf_counter(), self._read()))

    def __enter__(self) -> _Sampler:
        self.samples.append((time.perf_counter(), self._read()))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.perf_counter(), self._read()))


def trapezoid(samples: list[tuple[float, float]]) -> float:
    """Integral of (time, value) samples by the trapezoid rule."""
    ordered = sorted(samples)
    return sum((t1 - t0) * (v0 + v1) / 2 for (t0, v0), (t1, v1) in zip(ordered, ordered[1:]))


def power_energy(read_mw: Callable[[], float], run: Callable[[], None],
                 min_seconds: float) -> EnergyResult:
    """Joules per call from power sampled every POWER_PERIOD_S while the calls run."""
    run()  # warm-up outside the window
    reps = 0
    with _Sampler(read_mw, POWER_PERIOD_S) as sampler:
        started = time.perf_counter()
        while reps == 0 or time.perf_counter() - started < min_seconds:
            run()
            reps += 1
    joules = trapezoid(sampler.samples) / 1000 / reps
    return EnergyResult(joules, True, "", "nvml_power_sampling", reps)


def _measure(pynvml: ModuleType, handle: Any, run: Callable[[], None],
             min_seconds: float) -> EnergyResult:
    if hasattr(pynvml, "nvmlDeviceGetTotalEnergyConsumption"):
        try:
            return counter_energy(lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle), run,
                                  min_seconds)
        except pynvml.NVMLError as exc:
            if not _not_supported(pynvml, exc):
                raise
    return power_energy(lambda: pynvml.nvmlDeviceGetPowerUsage(handle), run, min_seconds)


def _energy(device: torch.device, min_seconds: float, calls: CallFactory) -> EnergyResult:
    opened = _open_nvml(device)
    if isinstance(opened, EnergyResult):
        return opened
    pynvml, handle = opened
    try:
        with calls() as call:
            def run() -> None:
                call()
                _synchronize(device)
            return _measure(pynvml, handle, run, min_seconds)
    except (pynvml.NVMLError, _CounterStuck) as exc:
        return _unavailable(f"NVML could not measure energy on {device}: {exc}")
    finally:
        _shutdown(pynvml)


def _check_min_seconds(min_seconds: float) -> None:
    if not min_seconds > 0:
        raise ConfigError(f"min_seconds must be > 0, got {min_seconds!r}")


def energy_per_inference(model: nn.Module, batch: Tensor, *, device: DeviceLike = None,
                         min_seconds: float = 1.0) -> EnergyResult:
    """GPU energy in joules of one forward pass over `batch` (eval mode, no gradients)."""
    _check_min_seconds(min_seconds)
    dev = measurement_device(model, device)

    @contextlib.contextmanager
    def inference() -> Iterator[Callable[[], object]]:
        with placed(model, dev), torch.no_grad():
            x = batch.to(dev)
            yield lambda: model(x)
    return _energy(dev, min_seconds, inference)


def energy_per_training_step(model: nn.Module, batch: Tensor, targets: Tensor, *,
                             device: DeviceLike = None, min_seconds: float = 1.0) -> EnergyResult:
    """GPU energy in joules of one SGD training step on a copy of `model` (weights untouched)."""
    _check_min_seconds(min_seconds)
    dev = measurement_device(model, device)

    @contextlib.contextmanager
    def training() -> Iterator[Callable[[], object]]:
        yield make_training_step(model, batch, targets, dev)
    return _energy(dev, min_seconds, training)
