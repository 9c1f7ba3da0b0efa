"""quantize_transform_pass with reused forms: the same candidates as a fresh pass, over borrowed tensors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from machop.data import DatasetInfo, load_dataset
from machop.graph import Graph
from machop.graph.metadata import record_metadata
from machop.models import build_model
from machop.passes import quantize_transform_pass
from machop.passes.quantize import QuantizedForms

JSC = DatasetInfo("jsc", 5, 16)
NONE = {"config": {"name": None}}


class Mixed(nn.Module):
    """Module calls (one ReLU called twice), BatchNorm, a convolution and functional forms."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 3, padding=1)
        self.norm = nn.BatchNorm1d(2)
        self.act = nn.ReLU()
        self.fc = nn.Linear(8, 4)
        self.w = nn.Parameter(torch.randn(4, 4))

    def forward(self, x):
        y = self.act(self.norm(self.conv(x.unsqueeze(1)))).flatten(1)
        y = self.act(self.fc(y))
        return torch.matmul(y, self.w) + F.relu(y)


def _graphs() -> list[Graph]:
    """Two bases in evaluation mode (a forward in training mode would update BatchNorm statistics)."""
    torch.manual_seed(0)
    mlp = Graph(build_model("jsc-three-linear-layers", JSC), torch.randn(8, 16))
    mixed = Graph(Mixed(), torch.randn(5, 4))
    mixed.module.get_submodule("norm").running_mean.uniform_(-1, 1)  # statistics that matter
    for graph in (mlp, mixed):
        graph.module.eval()
    return [mlp, mixed]


def _config(generator: torch.Generator) -> dict:
    def pick(values):
        return values[int(torch.randint(len(values), (1,), generator=generator))]

    linear = {"name": "integer", "data_in_width": pick([4, 8]), "weight_width": pick([2, 4, 8]),
              "bias_width": pick([8, 16])}
    if pick([False, True]):
        linear["data_out_width"] = 8
    relu = pick([{"name": None}, {"name": "integer", "data_in_width": pick([4, 8])}])
    norm = pick([{"name": None}, {"name": "integer", "data_in_width": 8, "weight_width": 8, "bias_width": 8}])
    return {"by": "type", "default": NONE, "linear": {"config": linear}, "conv1d": {"config": linear},
            "relu": {"config": relu}, "add": {"config": {"name": "integer", "data_in_width": 16}},
            "matmul": {"config": {"name": pick([None, "integer"]), "data_in_width": 8}},
            "batch_norm1d": {"config": norm}}


def _applicable(graph: Graph, config: dict) -> dict:
    kinds = {meta.kind for meta in graph.meta.values()}
    return {key: value for key, value in config.items() if key in ("by", "default") or key in kinds}


def _same(candidate: Graph, fresh: Graph) -> None:
    """Same modules (names and types), tensors, code, outputs, metadata and recorded passes."""
    assert [(n, type(m).__name__) for n, m in candidate.module.named_modules()] == \
        [(n, type(m).__name__) for n, m in fresh.module.named_modules()]
    mine, theirs = candidate.module.state_dict(), fresh.module.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert candidate.module.code == fresh.module.code
    assert [m.training for m in candidate.module.modules()] == [m.training for m in fresh.module.modules()]
    assert {k: m.as_dict() for k, m in candidate.meta.items()} == {k: m.as_dict() for k, m in fresh.meta.items()}
    assert {k: m.as_dict() for k, m in candidate.meta.items()} == \
        {k: m.as_dict() for k, m in record_metadata(candidate.module, candidate.example_input).items()}
    assert candidate.passes == fresh.passes
    with torch.no_grad():
        x = torch.randn_like(candidate.example_input)
        assert torch.equal(candidate(x), fresh(x))


def _versions(graph: Graph) -> list[tuple[int, int]]:
    return [(t.data_ptr(), t._version) for t in [*graph.module.parameters(), *graph.module.buffers()]]


@pytest.mark.parametrize("seed", range(3))
def test_reused_forms_build_what_a_fresh_pass_builds(seed):
    generator = torch.Generator().manual_seed(seed)
    for graph in _graphs():
        state, before = copy.deepcopy(graph.module.state_dict()), _versions(graph)
        forms = QuantizedForms(graph)
        configs = [_applicable(graph, _config(generator)) for _ in range(4)]
        for config in [*configs, *configs]:  # the second round reuses every form
            candidate, summary = quantize_transform_pass(graph, config, reuse=forms)
            fresh, fresh_summary = quantize_transform_pass(graph, config)
            assert candidate.borrowed and not fresh.borrowed and summary == fresh_summary
            _same(candidate, fresh)
        assert _versions(graph) == before  # nothing wrote into the base: not even the weight caches
        assert all(torch.equal(v, graph.module.state_dict()[k]) for k, v in state.items())


def _mlp_with_forms() -> tuple[Graph, QuantizedForms, dict]:
    """The MLP, its quantized forms, and a config quantizing every Linear to 8 bits."""
    int8 = {"name": "integer", "data_in_width": 8, "weight_width": 8, "bias_width": 8}
    graph = _graphs()[0]
    return graph, QuantizedForms(graph), {"by": "type", "default": NONE, "linear": {"config": int8}}


def test_forms_are_built_once_and_hold_no_copies_of_the_weights():
    graph, forms, config = _mlp_with_forms()
    first, _ = quantize_transform_pass(graph, config, reuse=forms)
    assert len(forms) == 3
    second, _ = quantize_transform_pass(graph, config, reuse=forms)
    assert len(forms) == 3
    base = dict(graph.module.named_parameters())
    for candidate in (first, second):
        for name, tensor in candidate.module.named_parameters():
            assert tensor.data_ptr() == base[name].data_ptr() and tensor is not base[name]
    assert first.module.get_submodule("seq_blocks.2") is not second.module.get_submodule("seq_blocks.2")
    other = copy.deepcopy(graph)  # forms belong to one graph: any other gets a fresh, independent pass
    independent, _ = quantize_transform_pass(other, config, reuse=forms)
    assert not independent.borrowed and len(forms) == 3


def test_forms_follow_the_base_when_its_weights_change():
    graph, forms, config = _mlp_with_forms()
    before, _ = quantize_transform_pass(graph, config, reuse=forms)
    x = torch.randn(8, 16)
    with torch.no_grad():
        old = before(x)
        graph.module.get_submodule("seq_blocks.2").weight.mul_(-1)  # e.g. a base trained in place
        after, _ = quantize_transform_pass(graph, config, reuse=forms)
        fresh, _ = quantize_transform_pass(graph, config)
        assert torch.equal(after(x), fresh(x)) and not torch.equal(after(x), old)
        graph.module.get_submodule("seq_blocks.4").weight = nn.Parameter(torch.zeros(16, 16))  # a new tensor
        after, _ = quantize_transform_pass(graph, config, reuse=forms)
        fresh, _ = quantize_transform_pass(graph, config)
        assert torch.equal(after(x), fresh(x))
        assert torch.equal(after.module.get_submodule("seq_blocks.4").weight, torch.zeros(16, 16))


def test_a_trained_candidate_never_changes_the_base_or_later_candidates():
    from machop.search.runners import BasicTrain, RunContext
    from machop.search.spaces.mixed_precision_ptq import MixedPrecisionPTQ

    data = load_dataset("digits")
    torch.manual_seed(0)
    base = Graph(build_model("jsc-three-linear-layers", data.info), data.validation.x[:8])
    base.module.eval()
    space = MixedPrecisionPTQ({"setup": {"by": "type"},
                               "seed": {"default": {"config": {"name": [None]}},
                                        "linear": {"config": {"name": ["integer"], "data_in_width": [8],
                                                              "weight_width": [4, 8], "bias_width": [8]}}}},
                              base)
    sample = {name: choices[0] for name, choices in space.choices().items()}
    state = copy.deepcopy(base.module.state_dict())
    evaluated = space.build(sample, base).graph
    x = data.validation.x[:64]
    with torch.no_grad():
        expected = evaluated(x)
    trained = space.build(sample, base).graph
    runner = BasicTrain({"max_epochs": 1, "learning_rate": 0.05})
    defaults = {"batch_size": 64, "precision": "32", "seed": 0}
    runner(trained, RunContext(dataset=data, train_defaults=defaults, accelerator="cpu"), {})
    assert not trained.borrowed
    assert any(not torch.equal(a, b) for a, b in zip(trained.module.state_dict().values(), state.values()))
    assert all(torch.equal(v, base.module.state_dict()[k]) for k, v in state.items())
    again = space.build(sample, base).graph
    with torch.no_grad():
        assert torch.equal(evaluated(x), expected) and torch.equal(again(x), expected)
        assert torch.equal(again(x), quantize_transform_pass(base, space.quantize_config(sample))[0](x))


@pytest.mark.parametrize("width", [8.0, True])
def test_a_form_is_never_reused_for_a_value_equal_to_its_own_but_of_another_type(width):
    from machop.errors import MachopError

    graph, forms, config = _mlp_with_forms()
    quantize_transform_pass(graph, config, reuse=forms)
    other = {**config, "linear": {"config": {**config["linear"]["config"], "data_in_width": width}}}
    with pytest.raises(MachopError, match="must be an integer"):
        quantize_transform_pass(graph, other, reuse=forms)
    reordered = {**config, "linear": {"config": dict(reversed(list(config["linear"]["config"].items())))}}
    candidate, _ = quantize_transform_pass(graph, reordered, reuse=forms)
    _same(candidate, quantize_transform_pass(graph, config)[0])
