"""measure_speed: consistent fields, eval mode during timing, restored flags, ordering by size."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils import benchmark
from torch.utils.benchmark.utils.common import TaskSpec

from machop.data import DatasetInfo
from machop.errors import ConfigError
from machop.metrics import speed
from machop.metrics.speed import SpeedResult, measure_speed, tile_batch
from machop.models import build_model

JSC = DatasetInfo("jsc", 5, 16)
FAST = {"min_run_time": 0.02, "warmup": 1}


class ModeRecorder(nn.Module):
    """A linear layer that records the training flag and grad mode of every forward."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 5)
        self.seen: set[tuple[bool, bool]] = set()

    def forward(self, x):
        self.seen.add((self.training, torch.is_grad_enabled()))
        return self.linear(x)


def test_fields_are_positive_and_consistent():
    model = build_model("jsc-tiny", JSC)
    result = measure_speed(model, torch.randn(8, 16), 64, **FAST)
    assert isinstance(result, SpeedResult)
    assert result.latency_ms > 0 and result.inference_time_ms > 0 and result.throughput > 0
    assert math.isfinite(result.latency_iqr_ms) and math.isfinite(result.inference_time_iqr_ms)
    assert result.batch_size == 64 and result.device == "cpu" and result.repeats >= 1
    assert result.threads == torch.get_num_threads()
    expected = result.batch_size / (result.inference_time_ms / 1000)
    assert result.throughput == pytest.approx(expected, rel=1e-6)
    assert result.as_dict()["batch_size"] == 64


def test_medians_and_iqrs_come_from_the_batch_1_and_full_batch_timings(monkeypatch):
    # Timings given in seconds per run: batch 1 first, then the full batch.
    runs = iter([[0.001, 0.002, 0.003, 0.004, 0.010], [0.020, 0.040, 0.060, 0.080]])

    def timed(model, x, min_run_time, threads):
        return benchmark.Measurement(1, next(runs), TaskSpec("model(x)", "pass"))
    monkeypatch.setattr(speed, "_time_forward", timed)
    result = measure_speed(build_model("jsc-tiny", JSC), torch.randn(8, 16), 64, **FAST)
    assert result.latency_ms == pytest.approx(3.0) and result.latency_iqr_ms == pytest.approx(2.0)
    assert result.inference_time_ms == pytest.approx(50.0)
    assert result.inference_time_iqr_ms == pytest.approx(30.0)  # 75th 65 ms - 25th 35 ms
    assert result.throughput == pytest.approx(64 / 0.050) and result.repeats == 4


def test_runs_in_eval_mode_without_grad_and_restores_every_flag():
    model = ModeRecorder().train()
    model.linear.eval()  # a caller's mixed flags must come back exactly
    measure_speed(model, torch.randn(3, 16), 8, **FAST)
    assert model.seen == {(False, False)}
    assert model.training and not model.linear.training


def test_tiles_any_example_size_to_the_batch():
    example = torch.arange(3.0).unsqueeze(1)
    assert tile_batch(example, 8).flatten().tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    assert tile_batch(example, 2).shape == (2, 1)


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"batch_size": 4, "min_run_time": 0},
                                    {"batch_size": 4, "warmup": -1}])
def test_bad_arguments_are_config_errors(kwargs):
    model = build_model("jsc-tiny", JSC)
    with pytest.raises(ConfigError, match="must be"):
        measure_speed(model, torch.randn(4, 16), **kwargs)


def test_empty_example_is_a_config_error():
    with pytest.raises(ConfigError, match="at least one sample"):
        measure_speed(build_model("jsc-tiny", JSC), torch.randn(0, 16), 4)


def test_a_much_bigger_model_takes_longer():
    torch.manual_seed(0)
    small = build_model("jsc-tiny", JSC)
    big = nn.Sequential(nn.Linear(16, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                        nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 5))  # ~3000x the MACs
    x = torch.randn(16, 16)
    fast = measure_speed(small, x, 1024, **FAST)
    slow = measure_speed(big, x, 1024, **FAST)
    assert slow.inference_time_ms > fast.inference_time_ms
    assert slow.throughput < fast.throughput
