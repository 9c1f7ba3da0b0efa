"""Generated forwards call submodules through their tables: same modules, same outputs."""

from __future__ import annotations

import copy
import pickle

import torch
from torch import nn

from machop.graph import Graph
from machop.graph.lookups import use_direct_lookups


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Sequential(nn.Linear(6, 6), nn.Tanh()))
        self.head = nn.Linear(6, 3)
        self.myself = nn.Linear(6, 6)  # a name ending like `self`

    def forward(self, x):
        return self.head(self.blocks(x) + self.myself(x))


def _graph() -> tuple[Nested, Graph, torch.Tensor]:
    torch.manual_seed(0)
    model = Nested().eval()
    x = torch.randn(5, 6)
    return model, Graph(model, x), x


def test_calls_read_module_tables_and_compute_the_same():
    model, graph, x = _graph()
    code = graph.module.code
    assert "getattr(self" not in code and "self.head(" not in code and "self.myself(" not in code
    assert "self._modules['blocks']._modules['2']._modules['0'](" in code
    assert "self._modules['myself'](" in code
    with torch.no_grad():
        assert torch.equal(graph.module(x), model(x))


def test_a_module_set_later_is_the_one_called():
    _, graph, x = _graph()
    setattr(graph.module.blocks, "1", nn.Sigmoid())  # what getattr would find now
    with torch.no_grad():
        blocks = graph.module.blocks._modules
        inner = blocks["2"]._modules
        hidden = torch.tanh(inner["0"](torch.sigmoid(blocks["0"](x))))
        assert torch.equal(graph.module(x), graph.module.head(hidden + graph.module.myself(x)))


def test_recompiling_again_gives_the_same_code_and_keeps_other_transformers():
    _, graph, x = _graph()
    graph.module.graph.on_generate_code(lambda current: (lambda body: ["marker = 1\n", *(current(body) if current else body)]))
    graph.recompile()
    first = graph.module.code
    graph.recompile()
    use_direct_lookups(graph.module)
    graph.module.recompile()
    assert graph.module.code == first and first.count("marker = 1") == 1
    assert "self._modules['head'](" in first


def test_copies_and_pickles_compute_the_same():
    model, graph, x = _graph()
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(copy.deepcopy(graph.module)(x), expected)
        assert torch.equal(pickle.loads(pickle.dumps(graph.module))(x), expected)
        assert torch.equal(graph.copy().module(x), expected)
