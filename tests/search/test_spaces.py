"""Search spaces: parameter names and choices, what a sample builds, and every config error."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from machop.data.dataset import DatasetInfo
from machop.errors import SearchError
from machop.graph.graph import Graph
from machop.models import build_model
from machop.quant.modules import QuantLinear, QuantReLU
from machop.search.spaces import (
    SPACES,
    ChannelMultiplier,
    Composite,
    MixedPrecisionPTQ,
    build_space,
)

JSC = DatasetInfo("jsc", 5, 16)
CIFAR = DatasetInfo("c", 10, 3072, (3, 32, 32))
LINEARS = ("seq_blocks_2", "seq_blocks_4", "seq_blocks_6")
RELUS = ("seq_blocks_1", "seq_blocks_3", "seq_blocks_5", "seq_blocks_7")
PTQ = "graph/quantize/mixed_precision_ptq"
REDEFINE = "graph/redefine/channel_multiplier"


def jsc_graph() -> Graph:
    torch.manual_seed(0)
    return Graph(build_model("jsc-three-linear-layers", JSC), torch.randn(8, 16))


def vgg_graph() -> Graph:
    torch.manual_seed(0)
    model = build_model("vgg7", CIFAR, {"widths": (4, 8, 8), "hidden": 16})
    return Graph(model, torch.randn(2, 3, 32, 32))


@pytest.fixture(scope="module")
def jsc() -> Graph:
    return jsc_graph()


def linear_seed() -> dict:
    """MASE's seed for one linear layer (machop's loader has already turned "NA" into None)."""
    return {"config": {"name": ["integer"], "data_in_width": [4, 8], "data_in_frac_width": [None],
                       "weight_width": [2, 4, 8], "weight_frac_width": [None],
                       "bias_width": [2, 4, 8], "bias_frac_width": [None]}}


def mase_ptq(by: str = "name", **setup) -> dict:
    """MASE's jsc search config: a float default, a seed by type and one by node name."""
    return {"name": PTQ, "setup": {"by": by, **setup},
            "seed": {"default": {"config": {"name": [None]}}, "linear": linear_seed(),
                     "seq_blocks_2": linear_seed()}}


def lab_seeds() -> dict:
    """MASE lab 2's channel-multiplier seeds for jsc-three-linear-layers."""
    return {"seq_blocks_2": {"config": {"name": ["output_only"], "channel_multiplier": [1, 2, 3, 4]}},
            "seq_blocks_4": {"config": {"name": ["both"], "channel_multiplier": [1, 2, 3, 4]}},
            "seq_blocks_6": {"config": {"name": ["input_only"], "channel_multiplier": [1, 2, 3, 4]}}}


def first_sample(space) -> dict:
    return {param: values[0] for param, values in space.choices().items()}


def precision(graph: Graph, node: str, operand: str) -> dict:
    return graph.meta[node].precision[operand]


def linear_widths(graph: Graph) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in graph.module.modules()
            if isinstance(m, nn.Linear)]


def raises(config: dict, base: Graph | None = None) -> str:
    """The one-line message build_space raises for `config`."""
    with pytest.raises(SearchError) as info:
        build_space(config, base if base is not None else jsc_graph())
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def test_registry_keeps_mase_names():
    assert SPACES[PTQ] is MixedPrecisionPTQ
    for name in (REDEFINE, "redefine/linear_channel_multiplier", "redefine/conv2d_channel_multiplier"):
        assert SPACES[name] is ChannelMultiplier
    assert SPACES["composite"] is Composite


# --------------------------------------------------------------------------------------------
# Mixed-precision PTQ
# --------------------------------------------------------------------------------------------


def test_mase_example_by_name_searches_the_named_node(jsc):
    space = build_space(mase_ptq("name"), jsc)
    assert space.choices() == {"seq_blocks_2/data_in_width": [4, 8],
                               "seq_blocks_2/weight_width": [2, 4, 8],
                               "seq_blocks_2/bias_width": [2, 4, 8]}
    assert space.size() == 18


def test_by_type_without_sharing_gives_each_linear_its_parameters(jsc):
    space = build_space(mase_ptq("type"), jsc)
    assert list(space.choices()) == [f"{n}/{k}" for n in LINEARS
                                     for k in ("data_in_width", "weight_width", "bias_width")]
    assert space.size() == 18 ** 3


def test_by_type_shared_quantizes_every_linear(jsc):
    space = build_space(mase_ptq("type", share_by_type=True), jsc)
    assert space.choices() == {"linear/data_in_width": [4, 8], "linear/weight_width": [2, 4, 8],
                               "linear/bias_width": [2, 4, 8]}
    assert space.size() == 18
    for data_in, weight, bias in [(4, 2, 8), (8, 8, 2), (4, 4, 4)]:
        sample = {"linear/data_in_width": data_in, "linear/weight_width": weight,
                  "linear/bias_width": bias}
        graph = space.build(sample, jsc).graph
        for node in LINEARS:
            assert isinstance(graph.submodule(graph.node(node)), QuantLinear)
            assert precision(graph, node, "data_in")["width"] == data_in
            assert precision(graph, node, "weight")["width"] == weight
            assert precision(graph, node, "bias")["width"] == bias
        for node in RELUS:
            assert precision(graph, node, "data_in") == {"type": "float", "width": 32}


def test_by_name_leaves_unnamed_nodes_in_float(jsc):
    space = build_space(mase_ptq("name"), jsc)
    candidate = space.build({"seq_blocks_2/data_in_width": 8, "seq_blocks_2/weight_width": 4,
                             "seq_blocks_2/bias_width": 2}, jsc)
    graph = candidate.graph
    assert isinstance(graph.submodule(graph.node("seq_blocks_2")), QuantLinear)
    assert precision(graph, "seq_blocks_2", "weight")["width"] == 4
    for node in ("seq_blocks_4", "seq_blocks_6", *RELUS):
        assert precision(graph, node, "data_in") == {"type": "float", "width": 32}
    assert not isinstance(graph.submodule(graph.node("seq_blocks_4")), QuantLinear)
    name, config = candidate.passes[0]
    assert name == "quantize" and config["by"] == "name"
    assert config["default"] == {"config": {"name": None}}
    assert set(config) == {"by", "default", "seq_blocks_2"}


def test_na_frac_width_defaults_to_half_the_width(jsc):
    space = build_space(mase_ptq("type", share_by_type=True), jsc)
    graph = space.build({"linear/data_in_width": 8, "linear/weight_width": 4,
                         "linear/bias_width": 2}, jsc).graph
    assert precision(graph, "seq_blocks_4", "data_in") == {"type": "integer", "width": 8, "frac_width": 4}
    assert precision(graph, "seq_blocks_4", "weight")["frac_width"] == 2
    assert precision(graph, "seq_blocks_4", "bias")["frac_width"] == 1


def test_regex_name_takes_the_first_matching_pattern(jsc):
    config = {"name": PTQ, "setup": {"by": "regex_name"},
              "seed": {"seq_blocks_[24]": {"config": {"name": ["integer"], "weight_width": [4, 8]}},
                       "seq_blocks_.*": {"config": {"name": ["integer"], "weight_width": [2, 3]}}}}
    space = build_space(config, jsc)
    choices = space.choices()
    assert choices["seq_blocks_2/weight_width"] == [4, 8]
    assert choices["seq_blocks_6/weight_width"] == [2, 3]
    # ReLUs match the catch-all too; they have no weight, so weight_width is no parameter there.
    assert not any(p.startswith("seq_blocks_3/") for p in choices)
    graph = space.build(first_sample(space), jsc).graph
    assert isinstance(graph.submodule(graph.node("seq_blocks_3")), QuantReLU)


def test_keys_of_missing_operands_are_not_parameters(jsc):
    seed = {"config": {"name": ["integer"], "data_in_width": [4, 8], "weight_width": [4, 8]}}
    space = build_space({"name": PTQ, "setup": {"by": "type", "share_by_type": True},
                         "seed": {"default": seed}}, jsc)
    assert space.choices() == {"relu/data_in_width": [4, 8], "linear/data_in_width": [4, 8],
                               "linear/weight_width": [4, 8]}


def test_searched_name_can_leave_a_node_alone(jsc):
    config = {"name": PTQ, "seed": {"seq_blocks_4": {"config": {"name": [None, "integer"],
                                                               "weight_width": [4]}}}}
    space = build_space(config, jsc)
    assert space.choices() == {"seq_blocks_4/name": [None, "integer"]}
    float_graph = space.build({"seq_blocks_4/name": None}, jsc).graph
    assert precision(float_graph, "seq_blocks_4", "weight")["type"] == "float"
    quant_graph = space.build({"seq_blocks_4/name": "integer"}, jsc).graph
    assert precision(quant_graph, "seq_blocks_4", "weight") == {"type": "integer", "width": 4,
                                                                "frac_width": 2}


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_every_sample_of_the_quantize_space_runs(data):
    graph = jsc_graph()
    seed = {"config": {"name": ["integer", None], "data_in_width": [3, 4, 8],
                       "data_in_frac_width": [None, 0, 2], "weight_width": [2, 4, 8],
                       "weight_frac_width": [None, 1], "bias_width": [4, 8],
                       "data_out_width": [8, 16]}}
    space = build_space({"name": PTQ, "setup": {"by": "type"}, "seed": {"default": seed}}, graph)
    sample = {p: data.draw(st.sampled_from(v), label=p) for p, v in space.choices().items()}
    out = space.build(sample, graph).graph(torch.randn(4, 16))
    assert out.shape == (4, 5) and torch.isfinite(out).all()


# --------------------------------------------------------------------------------------------
# Channel multiplier
# --------------------------------------------------------------------------------------------


def test_uniform_multiplier_is_one_parameter(jsc):
    config = {"name": REDEFINE, "setup": {"uniform": True},
              "seed": {"seq_blocks_2": {"config": {"channel_multiplier": [1, 2, 3, 4]}},
                       "seq_blocks_4": {"config": {"channel_multiplier": [1, 2, 3, 4]}}}}
    space = build_space(config, jsc)
    assert space.choices() == {"channel_multiplier": [1, 2, 3, 4]}
    for m in (1, 2, 3, 4):
        graph = space.build({"channel_multiplier": m}, jsc).graph
        assert linear_widths(graph) == [(16, 16 * m), (16 * m, 16 * m), (16 * m, 5)]


def test_uniform_by_type_skips_the_output_layer(jsc):
    config = {"name": "redefine/linear_channel_multiplier",
              "setup": {"by": "type", "uniform": True, "inherit": True},
              "seed": {"linear": {"config": {"channel_multiplier": [1, 2, 3, 4]}}}}
    space = build_space(config, jsc)
    assert space.choices() == {"channel_multiplier": [1, 2, 3, 4]}
    candidate = space.build({"channel_multiplier": 2}, jsc)
    assert linear_widths(candidate.graph) == [(16, 32), (32, 32), (32, 5)]
    assert candidate.passes == [("redefine", {
        "by": "name", "inherit": True, "seq_blocks_2": {"config": {"channel_multiplier": 2}},
        "seq_blocks_4": {"config": {"channel_multiplier": 2}}})]


def test_per_layer_multipliers_are_two_parameters(jsc):
    config = {"name": REDEFINE,
              "seed": {"seq_blocks_2": {"config": {"channel_multiplier": [1, 2, 3, 4]}},
                       "seq_blocks_4": {"config": {"channel_multiplier": [1, 2, 3, 4]}}}}
    space = build_space(config, jsc)
    assert list(space.choices()) == ["seq_blocks_2/channel_multiplier",
                                     "seq_blocks_4/channel_multiplier"]
    graph = space.build({"seq_blocks_2/channel_multiplier": 2,
                         "seq_blocks_4/channel_multiplier": 3}, jsc).graph
    assert linear_widths(graph) == [(16, 32), (32, 48), (48, 5)]


def test_mase_lab_seeds_build_every_combination(jsc):
    space = build_space({"name": REDEFINE, "seed": lab_seeds()}, jsc)
    assert space.choices() == {"seq_blocks_2/channel_multiplier": [1, 2, 3, 4],
                               "seq_blocks_4/channel_multiplier": [1, 2, 3, 4]}
    assert space.size() == 16
    for m1, m2 in itertools.product([1, 2, 3, 4], repeat=2):
        candidate = space.build({"seq_blocks_2/channel_multiplier": m1,
                                 "seq_blocks_4/channel_multiplier": m2}, jsc)
        assert linear_widths(candidate.graph) == [(16, 16 * m1), (16 * m1, 16 * m2), (16 * m2, 5)]
        assert candidate.graph(torch.randn(3, 16)).shape == (3, 5)


def test_vgg_conv_multipliers_by_type_build_and_run():
    vgg = vgg_graph()
    config = {"name": "redefine/conv2d_channel_multiplier", "setup": {"by": "type"},
              "seed": {"conv2d": {"config": {"channel_multiplier": [1, 2]}}}}
    space = build_space(config, vgg)
    convs = [n for n in vgg.meta if vgg.meta[n].kind == "conv2d"]
    assert list(space.choices()) == [f"{n}/channel_multiplier" for n in convs]
    sample = {p: 2 if i % 2 else 1 for i, p in enumerate(space.choices())}
    graph = space.build(sample, vgg).graph
    widths = [m.out_channels for m in graph.module.modules() if isinstance(m, nn.Conv2d)]
    assert widths == [4, 8, 8, 16, 8, 16]
    assert graph(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_vgg_default_seed_resizes_convs_and_hidden_linears_not_the_classifier():
    vgg = vgg_graph()
    space = build_space({"name": REDEFINE, "setup": {"uniform": True},
                         "seed": {"default": {"config": {"channel_multiplier": [1, 2]}}}}, vgg)
    assert space.choices() == {"channel_multiplier": [1, 2]}
    graph = space.build({"channel_multiplier": 2}, vgg).graph
    assert linear_widths(graph) == [(16 * 16, 32), (32, 32), (32, 10)]
    assert graph(torch.randn(2, 3, 32, 32)).shape == (2, 10)


# --------------------------------------------------------------------------------------------
# Composite
# --------------------------------------------------------------------------------------------


def composite() -> dict:
    return {"name": "composite",
            "spaces": [{"name": REDEFINE, "seed": lab_seeds()},
                       mase_ptq("type", share_by_type=True)],
            "hyperparameters": {"learning_rate": [1e-3, 1e-2], "batch_size": [256],
                                "optimizer": ["adam", "sgd"]}}


def test_composite_parameter_names(jsc):
    space = build_space(composite(), jsc)
    assert list(space.choices()) == [
        "redefine:seq_blocks_2/channel_multiplier", "redefine:seq_blocks_4/channel_multiplier",
        "quantize:linear/data_in_width", "quantize:linear/weight_width",
        "quantize:linear/bias_width", "train/learning_rate", "train/optimizer"]
    assert space.size() == 16 * 18 * 2 * 2


def test_composite_applies_redefine_then_quantize(jsc):
    space = build_space(composite(), jsc)
    sample = {**first_sample(space), "redefine:seq_blocks_2/channel_multiplier": 2,
              "quantize:linear/weight_width": 4, "train/optimizer": "sgd"}
    candidate = space.build(sample, jsc)
    assert [name for name, _ in candidate.passes] == ["redefine", "quantize"]
    assert linear_widths(candidate.graph) == [(16, 32), (32, 16), (16, 5)]
    assert all(isinstance(candidate.graph.submodule(candidate.graph.node(n)), QuantLinear)
               for n in LINEARS)
    assert precision(candidate.graph, "seq_blocks_4", "weight")["width"] == 4
    assert candidate.train_overrides == {"learning_rate": 1e-3, "batch_size": 256,
                                         "optimizer": "sgd"}
    assert candidate.graph(torch.randn(3, 16)).shape == (3, 5)


def test_composite_of_hyperparameters_only_hands_out_a_copy(jsc):
    space = build_space({"name": "composite", "hyperparameters": {"max_epochs": [1, 2]}}, jsc)
    candidate = space.build({"train/max_epochs": 2}, jsc)
    assert candidate.graph is not jsc and candidate.train_overrides == {"max_epochs": 2}


def test_second_space_of_a_kind_is_numbered(jsc):
    config = {"name": "composite", "spaces": [mase_ptq("name"), mase_ptq("name")]}
    names = list(build_space(config, jsc).choices())
    assert names[0] == "quantize:seq_blocks_2/data_in_width"
    assert names[3] == "quantize2:seq_blocks_2/data_in_width"


# --------------------------------------------------------------------------------------------
# The base graph is never modified
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [mase_ptq("type", share_by_type=True),
                                    {"name": REDEFINE, "setup": {"inherit": True},
                                     "seed": lab_seeds()},
                                    composite()], ids=["quantize", "redefine", "composite"])
def test_build_leaves_the_base_untouched(config):
    base = jsc_graph()
    state = {k: v.clone() for k, v in base.module.state_dict().items()}
    meta = copy.deepcopy({n: m.as_dict() for n, m in base.meta.items()})
    space = build_space(config, base)
    for values in itertools.islice(itertools.product(*space.choices().values()), 3):
        space.build(dict(zip(space.choices(), values)), base)
    after = base.module.state_dict()
    assert state.keys() == after.keys()
    assert all(torch.equal(state[k], after[k]) for k in state)
    assert {n: m.as_dict() for n, m in base.meta.items()} == meta
    assert base.passes == []


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def with_linear(**config) -> dict:
    return {"name": PTQ, "setup": {"by": "type"},
            "seed": {"default": {"config": {"name": [None]}}, "linear": {"config": config}}}


def with_node(node: str = "seq_blocks_2", **config) -> dict:
    return {"name": REDEFINE, "seed": {node: {"config": config}}}


ERRORS = [
    ({"name": "graph/quantize/mixed_precision"}, ["unknown search space",
                                                  f"did you mean {PTQ!r}"]),
    ({"seed": {}}, ["search.search_space.name is missing"]),
    ({**mase_ptq(), "seeds": {}}, ["unknown key 'seeds'", "did you mean 'seed'"]),
    ({**mase_ptq(), "setup": {"by": "name", "share_by_typ": True}},
     ["search.search_space.setup has unknown key 'share_by_typ'", "'share_by_type'"]),
    ({**mase_ptq(), "setup": {"by": "types"}}, ["setup.by = 'types' is invalid", "'type'"]),
    ({**mase_ptq(), "setup": {"share_by_type": True}}, ["share_by_type = true needs by = \"type\""]),
    ({"name": PTQ}, ["search.search_space.seed is missing"]),
    (with_linear(name=["integer"], data_in_width=8),
     ["search.search_space.seed.linear.config.data_in_width must be a non-empty list of choices, "
      "got 8"]),
    (with_linear(name=["integer"], data_in_width=[]),
     ["seed.linear.config.data_in_width must be a non-empty list of choices, got []"]),
    (with_linear(name=["integer"], data_in_width=[4, 4]), ["data_in_width lists 4 twice"]),
    (with_linear(name=["integer"], data_in_width=[4, 8], data_in_frac_width=[2, 37]),
     ["search.search_space.seed.linear.config: node 'seq_blocks_2', key 'data_in_frac_width'",
      "-32..width + 32 (36), got 37"]),
    (with_linear(name=["integr"], data_in_width=[8]), ["unknown arithmetic 'integr'",
                                                       "did you mean 'integer'"]),
    (with_linear(name=["integer"], data_in_widht=[8]), ["key 'data_in_widht'",
                                                        "did you mean 'data_in_width'"]),
    (with_linear(name=["integer"], weight_block_size=[[16], [8]]), ["[16] is not a number"]),
    ({"name": PTQ, "seed": {"seq_block_2": linear_seed()}},
     ["seed.seq_block_2 is not a quantizable node or op type", "did you mean 'seq_blocks_2'"]),
    ({"name": PTQ, "seed": {"seq_blocks_0": linear_seed()}},
     ["node 'seq_blocks_0' is a batch_norm1d, which cannot be quantized"]),
    ({"name": PTQ, "setup": {"by": "regex_name"}, "seed": {"seq_blocks_[": linear_seed()}},
     ["seed.seq_blocks_[ is not a valid regular expression"]),
    ({"name": PTQ, "setup": {"by": "regex_name"}, "seed": {"conv.*": linear_seed()}},
     ["seed.conv.* matches no quantizable node"]),
    ({"name": PTQ, "seed": {"default": {"config": {"name": [None]}}, "linear": linear_seed()}},
     ["quantizes no node", "by = \"type\""]),
    ({"name": PTQ, "seed": {"linear": {"settings": {}}}}, ["seed.linear has unknown key 'settings'"]),
    (with_node(channel_multiplier=[1, 0]),
     ["seed.seq_blocks_2.config.channel_multiplier choice 0 must be a positive number"]),
    (with_node(channel_multiplier=[True]), ["choice True must be a positive number"]),
    (with_node(channel_multiplier=2), ["channel_multiplier must be a non-empty list of choices, got 2"]),
    (with_node(channel_multiplier=[1, 0.01]),
     ["channel_multiplier choice 0.01 for node 'seq_blocks_2'", "rounds to 0"]),
    (with_node(name=["output_only"]), ["seq_blocks_2.config.channel_multiplier is missing"]),
    (with_node(name=["output"], channel_multiplier=[2]), ["name choice 'output' is invalid",
                                                          "did you mean 'output_only'"]),
    (with_node(name=["output_only", "input_only"], channel_multiplier=[2]), ["name mixes"]),
    (with_node(channel_multipler=[2]), ["unknown key 'channel_multipler'",
                                        "did you mean 'channel_multiplier'"]),
    (with_node("seq_blocks_6", name=["both"], channel_multiplier=[2]),
     ["node 'seq_blocks_6' produces the model's output"]),
    (with_node("seq_block_4", channel_multiplier=[2]), ["seed.seq_block_4 is not a node",
                                                        "did you mean 'seq_blocks_4'"]),
    (with_node("seq_blocks_3", channel_multiplier=[2]), ["node 'seq_blocks_3' is a relu"]),
    (with_node("seq_blocks_6", name=["input_only"], channel_multiplier=[2]), ["searches no layer"]),
    ({"name": REDEFINE, "setup": {"uniform": True},
      "seed": {"seq_blocks_2": {"config": {"channel_multiplier": [1, 2]}},
               "seq_blocks_4": {"config": {"channel_multiplier": [1, 3]}}}},
     ["uniform = true shares one multiplier"]),
    ({"name": "redefine/linear_channel_multiplier", "setup": {"by": "type"},
      "seed": {"conv2d": {"config": {"channel_multiplier": [2]}}}},
     ["seed.conv2d is not a layer type of the model this space resizes"]),
    ({**with_node(channel_multiplier=[2]), "setup": {"by": "regex_name"}},
     ["setup.by = 'regex_name' is invalid"]),
    ({**with_node(channel_multiplier=[2]), "setup": {"inherit": "yes"}},
     ["setup.inherit must be true or false"]),
    ({"name": "composite", "spaces": [mase_ptq(), {"name": REDEFINE, "seed": lab_seeds()}]},
     ["spaces[1] (graph/redefine/channel_multiplier) comes after the quantize space spaces[0]",
      "list redefine spaces before quantize spaces"]),
    ({"name": "composite", "spaces": [{"name": "composite"}]}, ["cannot contain another"]),
    ({"name": "composite", "spaces": [{"name": "graph/redefine/channel_multiplie"}]},
     ["spaces[0].name", "did you mean 'graph/redefine/channel_multiplier'"]),
    ({"name": "composite", "spaces": [{**mase_ptq(), "seed": {"default": {"config": {"name": 1}}}}]},
     ["search.search_space.spaces[0].seed.default.config.name must be a non-empty list"]),
    ({"name": "composite", "hyperparameters": {"learning_rat": [1e-3]}},
     ["unknown key 'learning_rat'", "did you mean 'learning_rate'"]),
    ({"name": "composite", "hyperparameters": {"batch_size": [0, 64]}},
     ["hyperparameters.batch_size choice 0 must be a positive integer"]),
    ({"name": "composite", "hyperparameters": {"learning_rate": [1e-3, float("nan")]}},
     ["hyperparameters.learning_rate choice nan must be a positive number"]),
    ({"name": "composite", "hyperparameters": {"batch_size": [True]}},
     ["hyperparameters.batch_size choice True must be a positive integer"]),
    ({"name": "composite", "hyperparameters": {"weight_decay": [-0.1]}},
     ["hyperparameters.weight_decay choice -0.1 must be a number >= 0"]),
    ({"name": "composite", "hyperparameters": {"optimizer": ["adm"]}},
     ["optimizer choice 'adm' must be one of adam, adamw, sgd", "did you mean 'adam'"]),
    ({"name": "composite", "hyperparameters": {"learning_rate": 0.1}},
     ["hyperparameters.learning_rate must be a non-empty list of choices, got 0.1"]),
    ({"name": "composite"}, ["needs spaces, hyperparameters or both"]),
]


@pytest.mark.parametrize("config, expected", ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_config_errors_are_one_line_and_say_what_is_wrong(jsc, config, expected):
    message = raises(config, jsc)
    for part in expected:
        assert part in message


def test_bad_samples_are_search_errors(jsc):
    space = build_space(mase_ptq("name"), jsc)
    good = first_sample(space)
    for sample, part in [({}, "lacks parameter 'seq_blocks_2/data_in_width'"),
                         ({**good, "seq_blocks_2/data_in_width": 5}, "not one of its choices"),
                         ({**good, "seq_blocks_2/data_in_widths": 4}, "unknown parameter")]:
        with pytest.raises(SearchError, match=part):
            space.build(sample, jsc)
