"""Peak memory: torch's allocations on CPU, even of a small model; training leaves weights alone."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from machop.data import DatasetInfo
from machop.errors import ModelError
from machop.metrics import memory
from machop.metrics.memory import MemoryResult, peak_memory_inference, peak_memory_training_step
from machop.models import build_model

JSC = DatasetInfo("jsc", 5, 16)
MIB = 2**20


class BigIntermediate(nn.Module):
    """A linear layer plus a 200 MiB temporary that every forward fills and frees."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 5)

    def forward(self, x):
        scratch = torch.ones(200 * MIB // 4)
        return self.linear(x) * scratch[-1]


def _data(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, 16, generator=generator), torch.randint(0, 5, (n,), generator=generator)


def test_cpu_inference_counts_torch_allocations_of_a_small_model():
    model, batch = build_model("jsc-tiny", JSC), _data()[0]
    result = peak_memory_inference(model, batch)
    assert isinstance(result, MemoryResult) and result.available and result.reason == ""
    assert result.method == "cpu_torch_allocations"
    assert result.as_dict()["method"] == "cpu_torch_allocations"
    # Far below a page of RSS growth, yet seen: at least the 64x16 float32 BatchNorm output.
    assert isinstance(result.peak_bytes, int) and result.peak_bytes >= 64 * 16 * 4
    assert peak_memory_inference(model, batch).peak_bytes == result.peak_bytes  # exact, not sampled


class CountedForwards(nn.Module):
    """A linear layer that counts its forward calls (a fake resident size grows with them)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 5)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.linear(x)


def test_rss_sampling_where_the_profiler_records_nothing(monkeypatch):
    # The resident size grows one page per forward, so the peak is exact whatever the sampler sees:
    # the last read minus the read after the warm-up calls, i.e. the timed calls' pages.
    page, model = 4096, CountedForwards()
    monkeypatch.setattr(memory, "profiled_peak", lambda call: None)
    monkeypatch.setattr(memory, "_read_statm", lambda: 50 * MIB + page * model.calls)
    result = peak_memory_inference(model, _data()[0])
    assert result.available and result.method == "cpu_rss_sampling"
    assert result.peak_bytes == memory.CPU_REPEATS * page


def test_rss_sampling_sees_a_200_mib_intermediate(monkeypatch):
    monkeypatch.setattr(memory, "profiled_peak", lambda call: None)
    result = peak_memory_inference(BigIntermediate(), _data()[0])
    assert result.method == "cpu_rss_sampling" and result.peak_bytes >= 100 * MIB


def test_a_200_mib_intermediate_is_seen():
    result = peak_memory_inference(BigIntermediate(), _data()[0])
    assert result.peak_bytes >= 100 * MIB


def test_training_step_sees_the_intermediate_and_leaves_the_caller_alone():
    model = BigIntermediate().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = peak_memory_training_step(model, *_data())
    assert result.available and result.peak_bytes >= 100 * MIB
    assert not model.training and model.linear.weight.grad is None
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_training_step_on_a_registered_model():
    model = build_model("jsc-tiny", JSC)
    weights = model.state_dict()["seq_blocks.2.weight"].clone()
    result = peak_memory_training_step(model, *_data())
    # At least the gradients of every parameter are alive at once, before zero_grad frees them.
    gradients = sum(p.numel() * p.element_size() for p in model.parameters())
    assert result.available and result.peak_bytes >= gradients
    assert torch.equal(model.state_dict()["seq_blocks.2.weight"], weights)


def test_a_model_without_parameters_cannot_train():
    with pytest.raises(ModelError, match="trainable parameters"):
        peak_memory_training_step(nn.ReLU(), *_data())


def test_maxrss_fallback_without_proc(monkeypatch):
    import resource

    # ru_maxrss is in kilobytes on Linux and in bytes on macOS; here it grows 8 units per forward.
    model = CountedForwards()
    monkeypatch.setattr(memory, "profiled_peak", lambda call: None)
    monkeypatch.setattr(memory, "_statm_reader", lambda: None)
    monkeypatch.setattr(memory, "_psutil_reader", lambda: None)
    monkeypatch.setattr(resource, "getrusage", lambda who: SimpleNamespace(ru_maxrss=1000 + 8 * model.calls))
    result = peak_memory_inference(model, _data()[0])
    unit = 1 if sys.platform == "darwin" else 1024
    assert result.available and result.method == "cpu_maxrss"
    assert result.peak_bytes == memory.CPU_REPEATS * 8 * unit


def test_unavailable_without_any_reader(monkeypatch):
    monkeypatch.setattr(memory, "profiled_peak", lambda call: None)
    monkeypatch.setattr(memory, "rss_reader", lambda: None)
    result = peak_memory_inference(build_model("jsc-tiny", JSC), _data()[0])
    assert not result.available and result.peak_bytes is None
    assert "resident memory" in result.reason


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_peak_counts_the_intermediate():
    model = BigIntermediate()
    result = peak_memory_inference(model, _data()[0], device="cuda")
    assert result.available and result.method == "cuda_max_allocated"
    # The scratch tensor is made on the CPU; on the device there are at least the 64x5 float32 outputs.
    assert result.peak_bytes >= 64 * 5 * 4
    train = peak_memory_training_step(build_model("jsc-tiny", JSC), *_data(), device="cuda")
    assert train.method == "cuda_max_allocated" and train.peak_bytes > 0
    assert next(model.parameters()).device.type == "cpu"
