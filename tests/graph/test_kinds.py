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
