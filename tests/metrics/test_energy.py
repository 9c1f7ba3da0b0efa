"""Energy through NVML: unavailable without a GPU; a fake NVML checks the arithmetic of both paths."""

from __future__ import annotations

import sys
import time
import types

import pytest
import torch

from machop.data import DatasetInfo
from machop.errors import ConfigError
from machop.metrics import energy
from machop.metrics.energy import EnergyResult, energy_per_inference, energy_per_training_step, trapezoid
from machop.models import build_model

JSC = DatasetInfo("jsc", 5, 16)
BUS_ID = "00000000:3b:00.0"
MIN_SECONDS = 0.05


class NVMLError(Exception):
    """Like pynvml's NVMLError: carries the NVML return code as `value`."""

    def __init__(self, value: int, text: str = "") -> None:
        super().__init__(text or f"NVML error {value}")
        self.value = value


class NVMLError_NotSupported(NVMLError):
    def __init__(self) -> None:
        super().__init__(3, "Not Supported")


class FakeNvml:
    """A SYNTHETIC NVML: the energy counter moves `mj_per_call` at every synchronized call."""

    def __init__(self, *, counter: str = "ok", power_mw: int = 100_000, mj_per_call: int = 5,
                 init_error: Exception | None = None) -> None:
        self.counter, self.power_mw, self.mj_per_call = counter, power_mw, mj_per_call
        self.init_error, self.energy_mj, self.handles, self.power_reads = init_error, 1_000, [], 0
        self.open = 0

    def synchronized_call(self) -> None:
        self.energy_mj += self.mj_per_call

    def module(self) -> types.ModuleType:
        module = types.ModuleType("pynvml")
        module.NVMLError, module.NVMLError_NotSupported = NVMLError, NVMLError_NotSupported
        module.NVML_ERROR_NOT_SUPPORTED = 3
        module.nvmlInit, module.nvmlShutdown = self.init, self.shutdown
        module.nvmlDeviceGetHandleByPciBusId = lambda bus: self.handles.append(("pci", bus)) or "h"
        module.nvmlDeviceGetHandleByIndex = lambda i: self.handles.append(("index", i)) or "h"
        module.nvmlDeviceGetPowerUsage = self.power
        if self.counter != "missing":
            module.nvmlDeviceGetTotalEnergyConsumption = self.total_energy
        return module

    def init(self) -> None:
        if self.init_error is not None:
            raise self.init_error
        self.open += 1

    def shutdown(self) -> None:
        self.open -= 1

    def total_energy(self, handle: str) -> int:
        if self.counter == "not_supported":
            raise NVMLError_NotSupported()
        if self.counter == "not_supported_code":
            raise NVMLError(3)
        if self.counter == "gpu_lost":
            raise NVMLError(15, "GPU is lost")
        return self.energy_mj

    def power(self, handle: str) -> int:
        self.power_reads += 1
        return self.power_mw


@pytest.fixture
def fake_gpu(monkeypatch):
    """Pretend the CPU is an NVIDIA GPU whose NVML is the returned fake."""
    def install(**kwargs) -> FakeNvml:
        fake = FakeNvml(**kwargs)
        monkeypatch.setitem(sys.modules, "pynvml", fake.module())
        monkeypatch.setattr(energy, "_is_nvidia_gpu", lambda device: True)
        monkeypatch.setattr(energy, "_synchronize", lambda device: fake.synchronized_call())
        monkeypatch.setattr(energy, "_pci_bus_id", lambda device: BUS_ID)
        return fake
    return install


def _data(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, 16, generator=generator), torch.randint(0, 5, (n,), generator=generator)


def _model() -> torch.nn.Module:
    return build_model("jsc-tiny", JSC)


def test_cpu_run_is_unavailable_with_the_reason():
    x, y = _data()
    for result in (energy_per_inference(_model(), x), energy_per_training_step(_model(), x, y)):
        assert isinstance(result, EnergyResult)
        assert not result.available and result.joules is None and result.repetitions == 0
        assert result.reason == "energy needs an NVIDIA GPU; this run is on cpu"
    assert energy_per_inference(_model(), x).as_dict()["joules"] is None


def test_missing_pynvml_is_unavailable(fake_gpu, monkeypatch):
    fake_gpu()
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    result = energy_per_inference(_model(), _data()[0])
    assert not result.available and result.joules is None
    assert "install machop[gpu] (nvidia-ml-py)" in result.reason


def test_nvml_init_failure_is_unavailable_with_its_text(fake_gpu):
    fake_gpu(init_error=NVMLError(9, "Driver Not Loaded"))
    result = energy_per_inference(_model(), _data()[0])
    assert not result.available and result.joules is None
    assert "Driver Not Loaded" in result.reason


@pytest.mark.parametrize("mj_per_call", [5, 37])
def test_energy_counter_gives_joules_per_call(fake_gpu, mj_per_call):
    fake = fake_gpu(mj_per_call=mj_per_call)
    result = energy_per_inference(_model(), _data()[0], min_seconds=MIN_SECONDS)
    assert result.available and result.method == "nvml_total_energy" and result.reason == ""
    assert result.joules == pytest.approx(mj_per_call / 1000, rel=1e-12)
    assert result.repetitions >= 2
    assert fake.handles == [("pci", BUS_ID.encode())] and fake.open == 0


def test_training_step_energy_and_untouched_weights(fake_gpu):
    fake_gpu()
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = energy_per_training_step(model, *_data(), min_seconds=MIN_SECONDS)
    assert result.available and result.joules == pytest.approx(0.005, rel=1e-12)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("counter", ["not_supported", "not_supported_code", "missing"])
def test_power_sampling_fallback_integrates_power(fake_gpu, counter):
    fake = fake_gpu(counter=counter, power_mw=100_000)
    started = time.perf_counter()
    result = energy_per_inference(_model(), _data()[0], min_seconds=MIN_SECONDS)
    wall = time.perf_counter() - started
    assert result.available and result.method == "nvml_power_sampling"
    total = result.joules * result.repetitions  # 100 W over the sampled window
    assert 100 * MIN_SECONDS * (1 - 1e-9) <= total <= 100 * wall
    assert fake.power_reads >= 2 and fake.open == 0  # the window's two edges at least


def test_other_counter_errors_are_unavailable(fake_gpu):
    fake = fake_gpu(counter="gpu_lost")
    result = energy_per_inference(_model(), _data()[0], min_seconds=MIN_SECONDS)
    assert not result.available and result.joules is None and "GPU is lost" in result.reason
    assert fake.open == 0


def test_without_pci_ids_the_visible_devices_list_maps_the_index(fake_gpu, monkeypatch):
    fake = fake_gpu()
    monkeypatch.setattr(energy, "_pci_bus_id", lambda device: None)
    monkeypatch.setattr(energy, "_cuda_index", lambda device: 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert energy_per_inference(_model(), _data()[0], min_seconds=MIN_SECONDS).available
    assert fake.handles == [("index", 5)]


def test_trapezoid_integrates_samples_in_time_order():
    assert trapezoid([(2.0, 10.0), (0.0, 0.0), (1.0, 10.0)]) == pytest.approx(15.0)
    assert trapezoid([(0.0, 3.0)]) == 0.0


def test_non_positive_min_seconds_is_a_config_error():
    with pytest.raises(ConfigError, match="min_seconds"):
        energy_per_inference(_model(), _data()[0], min_seconds=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_real_gpu_energy_is_positive():
    pytest.importorskip("pynvml", reason="needs nvidia-ml-py (machop[gpu])")
    x, y = _data(1024)
    result = energy_per_inference(_model(), x, device="cuda", min_seconds=0.5)
    assert result.available, result.reason
    assert result.joules > 0
    assert energy_per_training_step(_model(), x, y, device="cuda", min_seconds=0.5).joules > 0
