"""Op kinds: the weighted kinds are listed once and every layer that uses them agrees."""

from __future__ import annotations

import re
from pathlib import Path

import machop
from machop.graph.kinds import MODULE_KINDS, WEIGHTED_KINDS
from machop.passes.quantize import QUANTIZABLE
from machop.quant.modules import QUANTIZED_MODULES, QuantFunctionalWeighted

SRC = Path(machop.__file__).parent


def test_every_weighted_kind_has_a_quantized_module_and_function():
    assert set(QUANTIZED_MODULES) == set(WEIGHTED_KINDS)
    assert set(QuantFunctionalWeighted.FUNCTIONS) == set(WEIGHTED_KINDS)
    assert set(WEIGHTED_KINDS) <= set(QUANTIZABLE) & set(MODULE_KINDS.values())


def test_the_weighted_kinds_are_spelled_out_in_one_file_only():
    literal = re.compile(r"""["']linear["'],\s*["']conv1d["'],\s*["']conv2d["']""")
    spelled = [str(path.relative_to(SRC)) for path in SRC.rglob("*.py") if literal.search(path.read_text())]
    assert spelled == ["graph/kinds.py"]


def test_one_dimensional_pooling_functions_have_their_kinds_and_complex_tensors_trace():
    import torch
    import torch.nn.functional as F

    from machop.graph import Graph

    class Pools(torch.nn.Module):
        def forward(self, x):
            return F.adaptive_avg_pool1d(F.avg_pool1d(F.max_pool1d(x, 2), 2), 1).flatten(1)

    kinds = {name: meta.kind for name, meta in Graph(Pools(), torch.randn(2, 3, 8)).meta.items()}
    assert [kinds[n] for n in ("max_pool1d", "avg_pool1d", "adaptive_avg_pool1d")] == \
        ["max_pool1d", "avg_pool1d", "adaptive_avg_pool1d"]

    class Spectrum(torch.nn.Module):
        def forward(self, x):
            return torch.fft.rfft(x).abs()

    graph = Graph(Spectrum(), torch.randn(2, 8))
    assert graph.meta["fft_rfft"].precision["data_out"] == {"type": "complex", "width": 64}
