"""predict: the logits of a plain batch loop, fresh targets, and the model's modes as before."""

from __future__ import annotations

import torch
from torch import nn

from machop.data.dataset import Split
from machop.runtime.predict import predict


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3))


def _split() -> Split:
    generator = torch.Generator().manual_seed(1)
    return Split(torch.randn(2500, 4, generator=generator), torch.randint(0, 3, (2500,), generator=generator))


def test_logits_and_targets_are_those_of_a_plain_loop_and_targets_are_a_copy():
    model, split = _model().eval(), _split()
    logits, targets = predict(model, split, batch_size=1024)
    with torch.no_grad():
        want = torch.cat([model(split.x[i:i + 1024]) for i in range(0, 2500, 1024)])
    assert torch.equal(logits, want) and torch.equal(targets, split.y)
    assert targets.is_contiguous() and targets.data_ptr() != split.y.data_ptr()
    targets[0] += 1
    assert not torch.equal(targets, split.y)


def test_modes_are_restored_as_before():
    model, split = _model(), _split()
    model.train()
    model[2].eval()  # mixed modes: eval() then train(True) leaves every module training, as before
    predict(model, split)
    assert all(module.training for module in model.modules())
    model.eval()
    first, _ = predict(model, split)
    assert not any(module.training for module in model.modules())
    second, _ = predict(model, split)
    assert torch.equal(first, second)


class _RecordsModes(nn.Linear):
    """A module whose own train() has a side effect: predict must still call it."""

    def __init__(self):
        super().__init__(4, 3)
        self.calls: list[bool] = []

    def train(self, mode: bool = True):
        self.calls.append(mode)
        return super().train(mode)


class _SwitchesOnInForward(nn.Linear):
    def forward(self, x):
        self.training = True
        return super().forward(x)


def test_modules_with_their_own_train_or_a_forward_that_switches_modes_are_reset():
    recorder = _RecordsModes().eval()
    recorder.calls.clear()
    predict(recorder, _split())
    assert recorder.calls == [False, False]  # eval(), then train(False): as before
    switcher = _SwitchesOnInForward(4, 3).eval()
    predict(switcher, _split())
    assert not switcher.training
