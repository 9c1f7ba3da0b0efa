"""Graph IR: tracing, node kinds, metadata, robustness to unknown ops, copying."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from machop.data import DatasetInfo
from machop.errors import ModelError
from machop.graph import GENERIC, Graph
from machop.models import build_model

JSC = DatasetInfo("jsc", 5, 16)


def test_jsc_three_linear_layers_metadata():
    graph = Graph(build_model("jsc-three-linear-layers", JSC), torch.randn(4, 16))
    kinds = {name: meta.kind for name, meta in graph.meta.items()}
    assert [n for n, k in kinds.items() if k == "linear"] == ["seq_blocks_2", "seq_blocks_4", "seq_blocks_6"]
    assert kinds["seq_blocks_0"] == "batch_norm1d" and kinds["seq_blocks_1"] == "relu"
    linear = graph.meta["seq_blocks_6"]
    assert linear.input_shapes == [(4, 16)] and linear.output_shape == (4, 5)
    assert linear.param_shapes == {"weight": (5, 16), "bias": (5,)}
    assert linear.precision == {operand: {"type": "float", "width": 32}
                                for operand in ("data_in", "weight", "bias", "data_out")}
    assert linear.input_dtypes == ["float32"] and linear.output_dtype == "float32"


class Zoo(nn.Module):
    """Every op the graph must tolerate without knowing it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.tanh, self.sigmoid, self.leaky = nn.Tanh(), nn.Sigmoid(), nn.LeakyReLU()
        self.drop, self.flat = nn.Dropout(0.1), nn.Flatten()
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(4 * 8 * 8 * 2, 3)

    def forward(self, x):
        y = self.relu(self.conv(x))
        a = self.tanh(y) + self.sigmoid(y)
        b = self.leaky(F.relu(y)).view(y.size(0), -1)
        joined = torch.cat([torch.flatten(a, 1), b], dim=1)
        return self.fc(self.drop(self.flat(joined.unsqueeze(-1))))


def test_unknown_ops_get_generic_kinds_and_run():
    model = Zoo().eval()
    x = torch.randn(2, 1, 8, 8)
    graph = Graph(model, x)
    kinds = {meta.target: meta.kind for meta in graph.meta.values()}
    assert kinds["Tanh"] == kinds["Sigmoid"] == kinds["LeakyReLU"] == GENERIC
    assert kinds["Dropout"] == "dropout" and kinds["Flatten"] == "flatten"
    assert kinds["relu"] == "relu" and kinds["add"] == "add" and kinds["cat"] == "cat"
    assert kinds[".view"] == "view" and kinds["flatten"] == "flatten"
    assert kinds[".unsqueeze"] == GENERIC
    assert torch.equal(graph(x), model(x))


def test_inplace_relu_does_not_corrupt_the_run():
    model = Zoo().eval()
    x = torch.randn(2, 1, 8, 8)
    expected = model(x)
    graph = Graph(model, x)
    assert torch.equal(graph(x), expected)
    relu = next(m for m in graph.meta.values() if m.target == "ReLU")
    assert relu.input_shapes == [(2, 4, 8, 8)]


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return -self.fc(x)


def test_untraceable_model_names_the_line():
    with pytest.raises(ModelError, match=r"cannot trace DataDependent at .*test_graph\.py:\d+ `if x.sum\(\) > 0:`"):
        Graph(DataDependent(), torch.randn(2, 4))


def test_wrong_example_input_is_a_model_error():
    with pytest.raises(ModelError, match=r"example input of shape \(2, 7\)"):
        Graph(build_model("jsc-tiny", JSC), torch.randn(2, 7))


def test_copy_is_independent():
    graph = Graph(build_model("jsc-tiny", JSC), torch.randn(4, 16))
    clone = graph.copy()
    with torch.no_grad():
        clone.module.get_submodule("seq_blocks.2").weight.add_(1)
    assert not torch.equal(clone.module.get_submodule("seq_blocks.2").weight,
                           graph.module.get_submodule("seq_blocks.2").weight)
    clone.record_pass("x", {"a": 1})
    assert graph.passes == [] and clone.passes == [("x", {"a": 1})]


def test_vgg7_traces_with_conv_kinds():
    info = DatasetInfo("c", 10, 3072, (3, 32, 32))
    graph = Graph(build_model("vgg7", info, {"widths": (4, 8, 8), "hidden": 16}), torch.randn(2, 3, 32, 32))
    kinds = [m.kind for m in graph.meta.values()]
    assert kinds.count("conv2d") == 6 and kinds.count("batch_norm2d") == 6
    assert kinds.count("max_pool2d") == 3 and kinds.count("linear") == 3
    assert graph.meta["classifier_0"].input_shapes == [(2, 8 * 4 * 4)]


def test_copy_equals_a_deep_copy_without_sharing_anything():
    import copy

    torch.manual_seed(0)  # weights whose outputs tell relu from tanh (some draws give all zeros)
    graph = Graph(build_model("jsc-three-linear-layers", JSC), torch.randn(4, 16))
    first, second = graph.module.get_submodule("seq_blocks.2"), graph.module.get_submodule("seq_blocks.4")
    first.weight = second.weight  # tied weights stay tied
    clone, deep = graph.copy(), copy.deepcopy(graph.module)
    x = torch.randn(6, 16)
    for module in (graph.module, clone.module, deep):
        module.eval()
    assert torch.equal(clone(x), graph(x)) and torch.equal(clone(x), deep(x))
    assert type(clone.module).__name__ == type(graph.module).__name__ == "SequentialMLP"
    assert type(clone.module) is not type(graph.module)  # own class: recompiling one leaves the other
    assert clone.module.get_submodule("seq_blocks.2").weight is clone.module.get_submodule("seq_blocks.4").weight
    originals = dict(graph.module.named_parameters(remove_duplicate=False))
    for name, tensor in [*clone.module.named_parameters(remove_duplicate=False), *clone.module.named_buffers()]:
        source = originals.get(name, graph.module.get_buffer(name) if name not in originals else None)
        assert torch.equal(tensor, source) and tensor.data_ptr() != source.data_ptr(), name
        assert type(tensor) is type(source) and tensor.requires_grad == source.requires_grad
    assert all(a is not b for a, b in zip(clone.module.modules(), graph.module.modules()))
    assert clone.module.graph is not graph.module.graph and clone.module.graph.owning_module is clone.module
    assert clone.module.code == graph.module.code
    assert {k: m.as_dict() for k, m in clone.meta.items()} == {k: m.as_dict() for k, m in graph.meta.items()}
    clone.meta["seq_blocks_2"].precision["data_in"]["width"] = 3
    assert graph.meta["seq_blocks_2"].precision["data_in"]["width"] == 32
    clone.module.train()
    assert not graph.module.training
    relu = clone.node("seq_blocks_1")
    relu.op, relu.target = "call_function", torch.tanh  # change the copy's graph and regenerate its code
    clone.recompile()
    assert "torch.tanh" in clone.module.code and "torch.tanh" not in graph.module.code
    assert torch.equal(graph(x), deep(x)) and not torch.equal(clone(x), graph(x))


def test_derive_borrows_tensors_and_graph_and_own_makes_them_its_own():
    torch.manual_seed(0)
    graph = Graph(build_model("jsc-three-linear-layers", JSC), torch.randn(4, 16))
    first, second = graph.module.get_submodule("seq_blocks.2"), graph.module.get_submodule("seq_blocks.4")
    first.weight = second.weight  # tied weights stay tied
    graph.module.eval()
    swapped = nn.Tanh()
    derived = graph.derive({"seq_blocks.3": swapped})
    x = torch.randn(6, 16)
    assert derived.borrowed and not graph.borrowed
    assert derived.module.get_submodule("seq_blocks.3") is swapped
    assert type(graph.module.get_submodule("seq_blocks.3")) is nn.ReLU
    assert all(a is not b for a, b in zip(derived.module.modules(), graph.module.modules()))
    assert derived.module.graph is graph.module.graph and type(derived.module) is not type(graph.module)
    originals = {**dict(graph.module.named_parameters(remove_duplicate=False)), **dict(graph.module.named_buffers())}
    for name, tensor in [*derived.module.named_parameters(remove_duplicate=False), *derived.module.named_buffers()]:
        source = originals[name]
        assert tensor is not source and tensor.data_ptr() == source.data_ptr(), name
        assert type(tensor) is type(source) and tensor.requires_grad == source.requires_grad
    assert derived.module.get_submodule("seq_blocks.2").weight is derived.module.get_submodule("seq_blocks.4").weight
    with torch.no_grad():
        expected = graph.copy({"seq_blocks.3": nn.Tanh()})(x)
        assert torch.equal(derived(x), expected) and not torch.equal(graph(x), expected)
    # What evaluation does to a derived graph leaves the base alone: modes, hooks, moves, passes.
    derived.module.train()
    derived.module.register_forward_hook(lambda *args: None)
    derived.module.get_submodule("seq_blocks.0").to(torch.float64)
    derived.record_pass("x", {"a": 1})
    derived.meta["seq_blocks_2"].analysis["macs"] = 1
    assert not graph.module.training and not graph.module._forward_hooks and graph.passes == []
    assert graph.module.get_submodule("seq_blocks.0").weight.dtype == torch.float32
    assert graph.meta["seq_blocks_2"].analysis == {}
    # Training needs own(): new tensors and fx graph, so writing them leaves the base alone.
    derived.module.get_submodule("seq_blocks.0").to(torch.float32)
    before = {k: v.clone() for k, v in graph.module.state_dict().items()}
    assert derived.own() is derived and not derived.borrowed
    assert derived.module.graph is not graph.module.graph and derived.module.graph.owning_module is derived.module
    assert derived.module.get_submodule("seq_blocks.2").weight is derived.module.get_submodule("seq_blocks.4").weight
    with torch.no_grad():
        for tensor in derived.module.parameters():
            tensor.add_(1)
    derived.module.get_submodule("seq_blocks.0")(torch.randn(4, 16))  # training mode: statistics change
    assert all(torch.equal(v, graph.module.state_dict()[k]) for k, v in before.items())
    assert derived.passes == [("x", {"a": 1})]
    copied = graph.copy()
    assert copied.own() is copied and not copied.borrowed


def test_copy_with_replace_holds_the_given_module_and_copies_the_rest():
    torch.manual_seed(0)
    graph = Graph(build_model("jsc-three-linear-layers", JSC), torch.randn(4, 16))
    replacement = nn.Linear(16, 16)
    clone = graph.copy({"seq_blocks.2": replacement})
    assert clone.module.get_submodule("seq_blocks.2") is replacement and not clone.borrowed
    assert graph.module.get_submodule("seq_blocks.2") is not replacement
    pointers = {t.data_ptr() for t in [*graph.module.parameters(), *graph.module.buffers()]}
    assert not pointers & {t.data_ptr() for t in [*clone.module.parameters(), *clone.module.buffers()]}
    assert clone.module.graph is not graph.module.graph
