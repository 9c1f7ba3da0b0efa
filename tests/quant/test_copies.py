"""float_copy makes what constructing, load_state_dict and train make, without re-initialising."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from machop.quant.copies import float_copy, float_share, share_equal_tensors


def _ordinary(cls, module, **construct):
    new = cls(**construct)
    new.load_state_dict(module.state_dict())
    new.train(module.training)
    return new


def _same_module(a: nn.Module, b: nn.Module) -> None:
    assert type(a) is type(b) and a.training == b.training
    assert set(a.__dict__) == set(b.__dict__)
    for table in ("_parameters", "_buffers"):
        mine, theirs = getattr(a, table), getattr(b, table)
        assert list(mine) == list(theirs)
        for name, tensor in mine.items():
            other = theirs[name]
            if tensor is None:
                assert other is None
                continue
            assert type(tensor) is type(other) and tensor.dtype == other.dtype
            assert tensor.requires_grad == other.requires_grad and torch.equal(tensor, other)


@pytest.mark.parametrize("make, construct", [
    (lambda: nn.Linear(5, 3), {"in_features": 5, "out_features": 3, "bias": True}),
    (lambda: nn.Linear(4, 2, bias=False), {"in_features": 4, "out_features": 2, "bias": False}),
    (lambda: nn.Conv2d(2, 4, 3, padding=1), {"in_channels": 2, "out_channels": 4, "kernel_size": 3, "padding": 1}),
    (lambda: nn.BatchNorm1d(6), {"num_features": 6}),
])
def test_a_copy_equals_the_ordinary_construction_and_owns_its_tensors(make, construct):
    torch.manual_seed(0)
    module = make()
    if isinstance(module, nn.BatchNorm1d):
        module(torch.randn(8, 6))  # running statistics and num_batches_tracked move off their defaults
    module.eval()
    cls = type(module)
    first, second = float_copy(cls, module, **construct), float_copy(cls, module, **construct)
    _same_module(first, _ordinary(cls, module, **construct))
    for copy in (first, second):
        for name, tensor in copy.state_dict().items():
            assert tensor.data_ptr() != module.state_dict()[name].data_ptr()
    with torch.no_grad():
        next(first.parameters()).add_(1.0)  # copies are independent of each other and of the original
    assert torch.equal(next(second.parameters()), next(module.parameters()))
    first.register_forward_hook(lambda *args: None)
    assert not second._forward_hooks and not module._forward_hooks
    assert first._parameters is not second._parameters


def test_a_mismatched_state_dict_fails_as_load_state_dict_does():
    module = nn.Linear(5, 3)
    module.weight = nn.Parameter(torch.zeros(3, 6))  # no longer what Linear(5, 3) holds
    with pytest.raises(RuntimeError, match="size mismatch"):
        float_copy(nn.Linear, module, in_features=5, out_features=3)


def test_quantized_forms_copy_through_it():
    from machop.quant.arithmetic import parse_node_config
    from machop.quant.modules import QuantLinear

    torch.manual_seed(1)
    linear = nn.Linear(8, 4).eval()
    config = {"name": "integer", "data_in_width": 8, "data_in_frac_width": 4, "weight_width": 4,
              "weight_frac_width": 2, "bias_width": 8, "bias_frac_width": 4}
    specs = parse_node_config(config, node="fc")
    quantized = QuantLinear.from_float(linear, specs, config)
    assert not quantized.training and quantized.weight.data_ptr() != linear.weight.data_ptr()
    x = torch.randn(16, 8)
    with torch.no_grad():
        expected = torch.nn.functional.linear(specs["data_in"].quantize(x), specs["weight"].quantize(linear.weight),
                                              specs["bias"].quantize(linear.bias))
        assert torch.equal(quantized(x), expected)


@pytest.mark.parametrize("make, construct", [
    (lambda: nn.Linear(5, 3), {"in_features": 5, "out_features": 3, "bias": True}),
    (lambda: nn.Conv1d(2, 4, 3), {"in_channels": 2, "out_channels": 4, "kernel_size": 3}),
    (lambda: nn.BatchNorm1d(6), {"num_features": 6}),
])
def test_a_share_equals_a_copy_over_the_originals_tensors(make, construct):
    torch.manual_seed(0)
    module = make().eval()
    cls = type(module)
    shared, copied = float_share(cls, module, **construct), float_copy(cls, module, **construct)
    _same_module(shared, copied)
    own = {**module._parameters, **module._buffers}
    for name, tensor in {**shared._parameters, **shared._buffers}.items():
        assert tensor is not own[name] and tensor.data_ptr() == own[name].data_ptr()
    shared.register_forward_hook(lambda *args: None)
    assert not module._forward_hooks and shared._parameters is not module._parameters


def test_a_share_copies_what_a_copy_would_change():
    torch.manual_seed(0)
    module = nn.Linear(4, 2)
    module.weight.requires_grad_(False)  # a copy's weight is a trainable parameter: not this one
    shared = float_share(nn.Linear, module, in_features=4, out_features=2)
    copied = float_copy(nn.Linear, module, in_features=4, out_features=2)
    _same_module(shared, copied)
    assert shared.weight.requires_grad and shared.weight.data_ptr() != module.weight.data_ptr()
    assert shared.bias.data_ptr() == module.bias.data_ptr()
    assert torch.equal(shared.weight, module.weight)


def test_a_share_through_load_state_dict_borrows_the_equal_tensors():
    module = nn.Linear(3, 2)
    module.weight.requires_grad_(False)
    # an unhashable constructor argument: constructed as usual, then equal copies swapped for aliases
    shared = float_share(_ListLinear, module, in_features=[3], out_features=2)
    assert shared.bias.data_ptr() == module.bias.data_ptr() and shared.bias is not module.bias
    assert shared.weight.data_ptr() != module.weight.data_ptr() and shared.weight.requires_grad
    share_equal_tensors(shared, module)
    assert shared.weight.data_ptr() != module.weight.data_ptr()


class _ListLinear(nn.Linear):
    def __init__(self, in_features, out_features, **kwargs):
        super().__init__(in_features[0], out_features, **kwargs)


def test_large_layers_are_copied_without_keeping_a_template(monkeypatch):
    from machop.quant import copies

    monkeypatch.setattr(copies, "_templates", {})
    big = nn.Linear(300, 300)  # 90,300 elements: more than a template may hold
    small = nn.Linear(5, 3)
    for module, construct in ((big, {"in_features": 300, "out_features": 300}),
                              (small, {"in_features": 5, "out_features": 3})):
        copy = float_copy(nn.Linear, module, **construct)
        _same_module(copy, _ordinary(nn.Linear, module, **construct))
        shared = copies.float_share(nn.Linear, module, **construct)
        assert shared.weight.data_ptr() == module.weight.data_ptr() and shared.weight is not module.weight
    assert [key[0] for key in copies._templates] == [nn.Linear]  # the small layer's only
    assert all(template.weight.numel() == 15 for template, _ in copies._templates.values())
