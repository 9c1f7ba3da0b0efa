"""Which config entry selects a node (MASE's by = type | name | regex_name), for passes and spaces."""

from __future__ import annotations

import pytest
import torch

from machop.data import DatasetInfo
from machop.graph import Graph
from machop.models import build_model
from machop.passes.selection import matching_key, parse_selection
from machop.search.spaces.quantize_seeds import DEFAULT, quantizable_nodes, seed_key_for

JSC = DatasetInfo("jsc", 5, 16)
# by -> (entry keys, the keys some node of jsc-three-linear-layers takes)
CASES = {
    "type": (("linear", "conv2d"), {"linear"}),
    "name": (("seq_blocks_2", "seq_blocks_5", "not_a_node"), {"seq_blocks_2", "seq_blocks_5"}),
    # the first match wins: seq_blocks_6 takes seq_blocks_[4-6]
    "regex_name": ((r"seq_blocks_[24]", r"seq_blocks_[4-6]", r"seq_blocks_6"),
                   {r"seq_blocks_[24]", r"seq_blocks_[4-6]"}),
}


def test_matching_key_by_type_name_and_first_full_regex_match():
    assert matching_key("type", ("linear",), "fc1", "linear") == "linear"
    assert matching_key("type", ("linear",), "linear", "relu") is None
    assert matching_key("name", ("fc1",), "fc1", "linear") == "fc1"
    assert matching_key("name", ("fc1",), "fc12", "linear") is None
    assert matching_key("regex_name", ("fc[0-9]", "fc.*"), "fc1", "linear") == "fc[0-9]"
    assert matching_key("regex_name", ("fc[0-9]", "fc.*"), "fc12", "linear") == "fc.*"
    assert matching_key("regex_name", ("fc",), "fc1", "linear") is None  # a full match only


@pytest.mark.parametrize("by", sorted(CASES))
def test_quantize_pass_and_search_space_select_the_same_entry_for_every_node(by):
    torch.manual_seed(0)
    graph = Graph(build_model("jsc-three-linear-layers", JSC), torch.randn(4, 16))
    keys, used = CASES[by]
    entries = {key: {"config": {"name": key}} for key in keys}
    selection = parse_selection("quantize", {"by": by, "default": {"config": {"name": DEFAULT}},
                                             **entries}, require_default=True)
    seeds = {DEFAULT: {"name": [None]}, **{key: {"name": [key]} for key in keys}}
    nodes = quantizable_nodes(graph)
    from_pass = {n.name: selection.entry_for(n.name, n.kind)["name"] for n in nodes}
    from_space = {n.name: seed_key_for(n, by, seeds) for n in nodes}
    assert from_pass == from_space
    assert set(from_pass.values()) == used | {DEFAULT}
