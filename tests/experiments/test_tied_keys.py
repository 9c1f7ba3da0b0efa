"""Tied seed keys of the mixed-precision space: a (width, frac) pair searched as one parameter."""

from __future__ import annotations

import itertools

import pytest
import torch

from machop.data.dataset import DatasetInfo
from machop.errors import SearchError
from machop.graph.graph import Graph
from machop.models import build_model
from machop.search.spaces import build_space

PAIRS = [[16, 8], [8, 6], [8, 4], [4, 2]]
LABELS = ["16,8", "8,6", "8,4", "4,2"]
LINEARS = ("seq_blocks_2", "seq_blocks_4", "seq_blocks_6")


@pytest.fixture(scope="module")
def jsc() -> Graph:
    torch.manual_seed(0)
    return Graph(build_model("jsc-three-linear-layers", DatasetInfo("jsc", 5, 16)), torch.randn(8, 16))


def grid(**extra) -> dict:
    linear = {"name": ["integer"], "data_in_width+data_in_frac_width": PAIRS,
              "weight_width+weight_frac_width": PAIRS, "bias_width": [8], **extra}
    return {"name": "graph/quantize/mixed_precision_ptq", "setup": {"by": "type", "share_by_type": True},
            "seed": {"default": {"config": {"name": ["NA"]}}, "linear": {"config": linear}}}


def test_a_tied_pair_is_one_parameter_with_labelled_choices(jsc):
    space = build_space(grid(), jsc)
    assert space.choices() == {"linear/data_in_width+data_in_frac_width": LABELS,
                               "linear/weight_width+weight_frac_width": LABELS}
    assert space.size() == 16


@pytest.mark.parametrize(("data", "weight"), list(itertools.product(range(4), repeat=2)))
def test_every_sample_sets_both_fields_of_each_pair_on_every_linear(jsc, data, weight):
    space = build_space(grid(), jsc)
    sample = {"linear/data_in_width+data_in_frac_width": LABELS[data],
              "linear/weight_width+weight_frac_width": LABELS[weight]}
    config = space.quantize_config(sample)
    for node in LINEARS:
        node_config = config[node]["config"]
        assert (node_config["data_in_width"], node_config["data_in_frac_width"]) == tuple(PAIRS[data])
        assert (node_config["weight_width"], node_config["weight_frac_width"]) == tuple(PAIRS[weight])
        assert "data_in_width+data_in_frac_width" not in node_config
    graph = space.build(sample, jsc).graph
    assert graph.meta["seq_blocks_4"].precision["weight"]["width"] == PAIRS[weight][0]
    assert graph.meta["seq_blocks_4"].precision["weight"]["frac_width"] == PAIRS[weight][1]


def test_a_single_tied_choice_is_fixed_and_na_reads_as_none(jsc):
    config = grid()
    config["seed"]["linear"]["config"].pop("bias_width")
    config["seed"]["linear"]["config"]["bias_width+bias_frac_width"] = [[8, "NA"]]
    space = build_space(config, jsc)
    assert len(space.choices()) == 2
    sample = {name: values[0] for name, values in space.choices().items()}
    node_config = space.quantize_config(sample)["seq_blocks_2"]["config"]
    assert node_config["bias_width"] == 8 and node_config["bias_frac_width"] is None


@pytest.mark.parametrize(("key", "choices", "message"), [
    ("weight_width+weight_frac_width", [[8, 4, 2]], "must be a list of 2 values"),
    ("weight_width+weight_frac_width", [8, 4], "must be a list of 2 values"),
    ("weight_width+weight_frac_width", [[8, 4], [8, 4]], "twice"),
    ("weight_width+data_in_width", [[8, 4]], "one operand"),
    ("weight_width+weight_width", [[8, 4]], "two or more different fields"),
    ("data_in_width+data_in_frac_width", [[4, 2]], "set by both"),
    ("bias_width+bias_frac_width", [[4, 37]], "'bias_frac_width': must be an integer in -32..width + 32 (36)"),
])
def test_bad_tied_keys_are_one_line_errors_naming_the_key(jsc, key, choices, message):
    config = grid()
    seed = config["seed"]["linear"]["config"]
    if key == "data_in_width+data_in_frac_width":
        seed["data_in_width"] = [4]
    else:
        seed.pop("bias_width")
        seed[key] = choices
    with pytest.raises(SearchError) as info:
        build_space(config, jsc)
    text = str(info.value)
    assert message in text and "\n" not in text
