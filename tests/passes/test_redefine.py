"""redefine_transform_pass: both schemas, propagation, parameter counts, inherit, errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from machop.data.dataset import DatasetInfo
from machop.errors import PassError
from machop.graph.graph import Graph
from machop.models import build_model
from machop.passes import apply_passes
from machop.passes.redefine import redefine_transform_pass

JSC = DatasetInfo("jsc", 5, 16)
CIFAR = DatasetInfo("c", 10, 3072, (3, 32, 32))
VGG_CONVS = ("feature_layers_0", "feature_layers_3", "feature_layers_7", "feature_layers_10",
             "feature_layers_14", "feature_layers_17")


def jsc_graph() -> Graph:
    torch.manual_seed(0)
    return Graph(build_model("jsc-three-linear-layers", JSC), torch.randn(8, 16))


def vgg_graph() -> Graph:
    torch.manual_seed(0)
    model = build_model("vgg7", CIFAR, {"widths": (8, 16, 32), "hidden": 32})
    return Graph(model, torch.randn(2, 3, 32, 32))


def vgg_with_statistics() -> Graph:
    """A small VGG whose BatchNorms have non-trivial running statistics and affine parameters."""
    graph = vgg_graph()
    graph.module.train()
    with torch.no_grad():
        for module in graph.module.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
        for _ in range(3):
            graph(torch.randn(16, 3, 32, 32) * 2 + 0.5)
    graph.module.eval()
    return graph


def by_name(**multipliers: float) -> dict:
    return {name: {"config": {"channel_multiplier": m}} for name, m in multipliers.items()}


def linear_widths(graph: Graph) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in graph.module.modules() if isinstance(m, nn.Linear)]


def layers(graph: Graph) -> dict[int, nn.Module]:
    """seq_blocks.<i> of a jsc graph, by index."""
    return {i: graph.module.get_submodule(f"seq_blocks.{i}") for i in range(8)}


def count(graph: Graph) -> int:
    return sum(p.numel() for p in graph.module.parameters())


def jsc_formula(a: int, b: int) -> int:
    """BN(16) + Linear(16->a) + Linear(a->b) + Linear(b->5)."""
    return 2 * 16 + (16 * a + a) + (a * b + b) + (b * 5 + 5)


def vgg_formula(channels: list[int], hidden: int = 32, classes: int = 10) -> int:
    """Six 3x3 convs with BatchNorm, then Linear(c * 4 * 4 -> h), Linear(h -> h), Linear(h -> k)."""
    total, previous = 0, 3
    for width in channels:
        total += previous * width * 9 + width + 2 * width
        previous = width
    flat = previous * 4 * 4
    return total + flat * hidden + hidden + hidden * hidden + hidden + hidden * classes + classes


def max_difference(before: Graph, after: Graph, x: torch.Tensor, mode: str = "eval") -> float:
    for graph in (before, after):
        graph.module.train(mode == "train")
    with torch.no_grad():
        return (before(x) - after(x)).abs().max().item()


# --- the simple schema ---------------------------------------------------------------------------

def test_simple_schema_widens_and_downstream_inputs_follow():
    graph = jsc_graph()
    new, info = redefine_transform_pass(graph, by_name(seq_blocks_2=2, seq_blocks_4=4))
    assert linear_widths(new) == [(16, 32), (32, 64), (64, 5)]
    assert count(new) == 3013 == info["params_after"]
    assert info["params_before"] == 661
    assert [(r["node"], r["in"], r["out"]) for r in info["rows"]] == [
        ("seq_blocks_2", "16->16", "16->32"), ("seq_blocks_4", "16->32", "16->64"),
        ("seq_blocks_6", "16->64", "5->5")]
    assert info["rows"][1]["params_before"] == 272 and info["rows"][1]["params_after"] == 2112
    assert new(torch.randn(8, 16)).shape == (8, 5)
    assert new.meta["seq_blocks_4"].output_shape == (8, 64)


def test_absolute_widths():
    config = {"seq_blocks_2": {"config": {"out_features": 24}},
              "seq_blocks_4": {"config": {"out_features": 40}}}
    new, _ = redefine_transform_pass(jsc_graph(), config)
    assert linear_widths(new) == [(16, 24), (24, 40), (40, 5)]
    assert count(new) == jsc_formula(24, 40)


def test_by_type_uniform_multiplier_skips_the_classifier():
    config = {"by": "type", "linear": {"config": {"channel_multiplier": 2}}}
    new, info = redefine_transform_pass(jsc_graph(), config)
    assert linear_widths(new) == [(16, 32), (32, 32), (32, 5)]
    assert count(new) == jsc_formula(32, 32)
    assert new(torch.randn(8, 16)).shape == (8, 5)
    assert info["schema"] == "simple"


def test_default_and_regex_selection():
    new, _ = redefine_transform_pass(jsc_graph(), {"default": {"config": {"channel_multiplier": 0.5}}})
    assert linear_widths(new) == [(16, 8), (8, 8), (8, 5)]
    config = {"by": "regex_name", "seq_blocks_[24]": {"config": {"channel_multiplier": 3}},
              "seq_blocks_.*": {"config": {"channel_multiplier": 2}}}
    new, _ = redefine_transform_pass(jsc_graph(), config)
    assert linear_widths(new) == [(16, 48), (48, 48), (48, 5)]  # first pattern wins; classifier kept


def test_float_multipliers_round_half_up():
    new, _ = redefine_transform_pass(jsc_graph(), by_name(seq_blocks_2=0.75, seq_blocks_4=0.03125))
    assert linear_widths(new) == [(16, 12), (12, 1), (1, 5)]  # 16 * 0.03125 = 0.5 -> 1


def test_vgg_per_conv_multipliers_match_the_formula():
    multipliers = (2, 1, 0.5, 1.5, 2, 0.25)
    new, info = redefine_transform_pass(vgg_graph(), by_name(**dict(zip(VGG_CONVS, multipliers))))
    channels = [16, 8, 8, 24, 64, 8]
    assert [m.out_channels for m in new.module.modules() if isinstance(m, nn.Conv2d)] == channels
    assert count(new) == vgg_formula(channels) == info["params_after"]
    assert new.module.get_submodule("classifier.0").in_features == 8 * 4 * 4
    assert new(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    batch_norms = [m.num_features for m in new.module.modules() if isinstance(m, nn.BatchNorm2d)]
    assert batch_norms == channels
    assert vgg_formula([8, 8, 16, 16, 32, 32]) == info["params_before"]


def test_vgg_conv_to_linear_boundary_and_hidden_linears():
    config = {"by": "type", "conv2d": {"config": {"channel_multiplier": 2}},
              "linear": {"config": {"out_features": 48}}}
    new, _ = redefine_transform_pass(vgg_graph(), config)
    assert linear_widths(new) == [(64 * 16, 48), (48, 48), (48, 10)]
    assert count(new) == vgg_formula([16, 16, 32, 32, 64, 64], hidden=48)


def test_runs_through_the_pass_registry():
    graph, infos = apply_passes(jsc_graph(), [("redefine", by_name(seq_blocks_2=2, seq_blocks_4=4))])
    assert count(graph) == 3013 and infos[0]["params_after"] == 3013


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4))
def test_any_integer_multipliers_give_the_analytic_parameter_count(m1, m2):
    new, _ = redefine_transform_pass(jsc_graph(), by_name(seq_blocks_2=m1, seq_blocks_4=m2))
    assert count(new) == jsc_formula(16 * m1, 16 * m2)
    assert new(torch.randn(3, 16)).shape == (3, 5)


# --- MASE's lab schema ---------------------------------------------------------------------------

MASE_LAB = {"by": "name", "default": {"config": {"name": None}},
            "seq_blocks_2": {"config": {"name": "output_only", "channel_multiplier": 2}},
            "seq_blocks_4": {"config": {"name": "both", "channel_multiplier": 2}},
            "seq_blocks_6": {"config": {"name": "input_only", "channel_multiplier": 2}}}


def test_mase_lab_config_as_mase_calls_it():
    new, info = redefine_transform_pass(jsc_graph(), {"config": MASE_LAB})
    assert linear_widths(new) == [(16, 32), (32, 32), (32, 5)]
    assert info["schema"] == "lab"
    assert new(torch.randn(8, 16)).shape == (8, 5)


def test_lab_schema_with_separate_in_and_out_multipliers():
    config = {"by": "name", "default": {"config": {"name": "NA"}},
              "seq_blocks_2": {"config": {"name": "output_only", "channel_multiplier": 2}},
              "seq_blocks_4": {"config": {"name": "both", "channel_multiplier_in": 2,
                                          "channel_multiplier_out": 4}},
              "seq_blocks_6": {"config": {"name": "input_only", "channel_multiplier": 4}}}
    new, _ = redefine_transform_pass(jsc_graph(), config)
    assert linear_widths(new) == [(16, 32), (32, 64), (64, 5)]
    assert count(new) == 3013
    assert new(torch.randn(8, 16)).shape == (8, 5)


def test_lab_schema_parent_follows_the_producer():
    config = {"seq_blocks_2": {"config": {"name": "output_only", "channel_multiplier": 3}},
              "seq_blocks_4": {"config": {"name": "both", "parent": "seq_blocks_2",
                                          "channel_multiplier": 2}},
              "seq_blocks_6": {"config": {"name": "input_only", "parent": "seq_blocks_4"}}}
    new, _ = redefine_transform_pass(jsc_graph(), config)
    assert linear_widths(new) == [(16, 48), (48, 32), (32, 5)]


def test_lab_schema_batch_norm_scale_on_vgg():
    config = {"feature_layers_0": {"config": {"name": "output_only", "channel_multiplier": 2}},
              "feature_layers_1": {"config": {"name": "scale", "parent": "feature_layers_0"}},
              "feature_layers_3": {"config": {"name": "input_only", "channel_multiplier": 2}}}
    new, _ = redefine_transform_pass(vgg_graph(), config)
    assert new.module.get_submodule("feature_layers.1").num_features == 16
    assert count(new) == vgg_formula([16, 8, 16, 16, 32, 32])
    config["feature_layers_1"] = {"config": {"name": "scale", "channel_multiplier": 4}}
    with pytest.raises(PassError, match=r"'feature_layers_0' now outputs 16 .*'feature_layers_1' "
                                        r"takes 32"):
        redefine_transform_pass(vgg_graph(), config)


def test_lab_mismatched_input_only_names_both_nodes_and_widths():
    config = {**MASE_LAB, "seq_blocks_6": {"config": {"name": "input_only", "channel_multiplier": 4}}}
    with pytest.raises(PassError) as error:
        redefine_transform_pass(jsc_graph(), config)
    message = str(error.value)
    assert "'seq_blocks_4' now outputs 32 features but 'seq_blocks_6' takes 64" in message
    assert "\n" not in message


def test_lab_unnamed_layer_keeps_its_input_and_is_checked():
    config = {"seq_blocks_2": {"config": {"name": "output_only", "channel_multiplier": 2}}}
    with pytest.raises(PassError, match=r"'seq_blocks_2' now outputs 32 .*'seq_blocks_4' takes 16 "
                                        r"\(unchanged: the config does not name it\)"):
        redefine_transform_pass(jsc_graph(), config)


# --- the input graph, the output graph ----------------------------------------------------------

@pytest.mark.parametrize("inherit", [False, True])
def test_input_graph_is_untouched_and_output_is_new(inherit):
    graph = jsc_graph()
    before = {k: v.clone() for k, v in graph.module.state_dict().items()}
    args = {**by_name(seq_blocks_2=2, seq_blocks_4=0.5), "inherit": inherit}
    new, _ = redefine_transform_pass(graph, args)
    after = graph.module.state_dict()
    assert list(after) == list(before)
    assert all(after[k].shape == v.shape and torch.equal(after[k], v) for k, v in before.items())
    assert linear_widths(graph) == [(16, 16), (16, 16), (16, 5)]
    assert graph.passes == [] and graph.meta["seq_blocks_2"].output_shape == (8, 16)
    assert new is not graph and new.module is not graph.module
    assert new.passes == [("redefine", args)]
    assert list(new.module.state_dict()) == list(before)  # same node names and keys


def test_fresh_weights_for_resized_layers_only():
    graph = jsc_graph()
    new, _ = redefine_transform_pass(graph, by_name(seq_blocks_2=2))
    old_sd, new_sd = graph.module.state_dict(), new.module.state_dict()
    assert torch.equal(old_sd["seq_blocks.0.weight"], new_sd["seq_blocks.0.weight"])
    assert not torch.equal(old_sd["seq_blocks.2.weight"], new_sd["seq_blocks.2.weight"][:16])


def test_resized_layers_keep_dtype_bias_flag_and_training_mode():
    model = nn.Sequential(nn.Linear(4, 6, bias=False), nn.ReLU(), nn.Linear(6, 2)).double().eval()
    new, _ = redefine_transform_pass(Graph(model, torch.randn(3, 4, dtype=torch.float64)),
                                     {"_0": {"config": {"channel_multiplier": 2}}})
    first, second = new.module.get_submodule("0"), new.module.get_submodule("2")
    assert first.weight.dtype == second.weight.dtype == torch.float64
    assert first.bias is None and second.bias is not None
    assert (first.out_features, second.in_features) == (12, 12)
    assert not first.training


# --- inherit ------------------------------------------------------------------------------------

def test_inherit_widening_copies_weights_and_preserves_the_function():
    graph = jsc_graph()
    new, _ = redefine_transform_pass(graph, {**by_name(seq_blocks_2=2, seq_blocks_4=2), "inherit": True})
    old, fresh = layers(graph), layers(new)
    assert torch.equal(fresh[2].weight[:16], old[2].weight)  # first layer: input unchanged
    assert torch.equal(fresh[2].weight[16:], old[2].weight)  # replicas, round-robin
    assert torch.equal(fresh[2].bias[16:], old[2].bias)
    # each old input of seq_blocks_4 now arrives twice, so its columns are halved
    assert torch.allclose(fresh[4].weight[:16, :16] * 2, old[4].weight)
    assert torch.equal(fresh[4].bias[:16], old[4].bias)
    x = torch.randn(256, 16)
    assert max_difference(graph, new, x, "eval") < 1e-5
    assert max_difference(graph, new, x, "train") < 1e-5


def test_inherit_uneven_widening_still_preserves_the_function():
    graph = jsc_graph()
    new, _ = redefine_transform_pass(graph, {**by_name(seq_blocks_2=3, seq_blocks_4=1.5), "inherit": True})
    assert max_difference(graph, new, torch.randn(256, 16)) < 1e-5


def test_inherit_shrinking_keeps_the_first_units():
    graph = jsc_graph()
    new, _ = redefine_transform_pass(graph, {**by_name(seq_blocks_2=0.5, seq_blocks_4=0.5),
                                             "inherit": True})
    old, fresh = layers(graph), layers(new)
    assert torch.equal(fresh[2].weight, old[2].weight[:8])
    assert torch.equal(fresh[4].weight, old[4].weight[:8, :8])
    assert torch.equal(fresh[6].weight, old[6].weight[:, :8])
    assert max_difference(graph, new, torch.randn(256, 16)) > 1e-3  # half the units are gone


def test_inherit_with_batch_norm_copies_statistics_and_preserves_the_function():
    graph = vgg_with_statistics()
    config = {"by": "type", "conv2d": {"config": {"channel_multiplier": 2}},
              "linear": {"config": {"channel_multiplier": 2}}, "inherit": True}
    new, _ = redefine_transform_pass(graph, config)
    old_bn, new_bn = (g.module.get_submodule("feature_layers.1") for g in (graph, new))
    for name in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(getattr(new_bn, name)[8:], getattr(old_bn, name))
    x = torch.randn(4, 3, 32, 32)
    assert max_difference(graph, new, x, "eval") < 1e-5
    assert max_difference(graph, new, x, "train") < 1e-5


# --- other graph shapes: residual add, cat, grouped conv, functional and subclassed layers ------

class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.branch = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8 * 4 * 4, 4)

    def forward(self, x):
        x = self.stem(x)
        return self.head(torch.flatten(torch.relu(self.branch(x)) + x, 1))


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 6, 1)
        self.head = nn.Conv2d(10, 2, 1)

    def forward(self, x):
        return self.head(torch.relu(torch.cat([self.a(x), self.b(x)], dim=1)))


class Grouped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(self.grouped(self.stem(x)))


class MyLinear(nn.Linear):
    machop_leaf = True


class Subclassed(nn.Module):
    def __init__(self, leaf: bool) -> None:
        super().__init__()
        self.first = nn.Linear(4, 6)
        self.second = MyLinear(6, 3) if leaf else nn.Linear(6, 3)
        self.leaf = leaf

    def forward(self, x):
        if self.leaf:
            return self.second(self.first(x))
        return nn.functional.linear(self.first(x), self.second.weight, self.second.bias)


def image_graph(model: nn.Module) -> Graph:
    torch.manual_seed(0)
    return Graph(model, torch.randn(2, 3, 4, 4))


def test_residual_add_needs_both_branches_to_agree():
    graph = image_graph(Residual())
    with pytest.raises(PassError, match=r"'add' joins 'branch' \(now 8 wide\) and 'stem' \(now 16"):
        redefine_transform_pass(graph, by_name(stem=2))
    new, _ = redefine_transform_pass(graph, {**by_name(stem=2, branch=2), "inherit": True})
    assert new.module.head.in_features == 16 * 4 * 4
    assert max_difference(graph, new, torch.randn(5, 3, 4, 4)) < 1e-5


def test_cat_along_channels_adds_widths():
    graph = image_graph(Concat())
    new, info = redefine_transform_pass(graph, {**by_name(a=2), "inherit": True})
    assert new.module.head.in_channels == 8 + 6
    assert [r["node"] for r in info["rows"]] == ["a", "head"]
    assert max_difference(graph, new, torch.randn(5, 3, 4, 4)) < 1e-5


def test_grouped_convolutions_are_refused():
    with pytest.raises(PassError, match=r"'grouped' .* groups = 2"):
        redefine_transform_pass(image_graph(Grouped()), by_name(stem=2))


def test_functional_and_subclassed_layers_are_refused():
    graph = Graph(Subclassed(leaf=False), torch.randn(2, 4))
    with pytest.raises(PassError, match=r"functional linear call"):
        redefine_transform_pass(graph, by_name(first=2))
    graph = Graph(Subclassed(leaf=True), torch.randn(2, 4))
    with pytest.raises(PassError, match=r"'second' is a MyLinear, not a plain Linear"):
        redefine_transform_pass(graph, by_name(first=2))


def test_linear_on_a_sequence_input_is_refused():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    with pytest.raises(PassError, match=r"cannot resize '_0'.*\(batch, features\) inputs only"):
        redefine_transform_pass(Graph(model, torch.randn(2, 5, 4)), by_name(_0=2))


# --- the classifier -----------------------------------------------------------------------------

def test_classifier_width_changes_only_when_asked():
    with pytest.raises(PassError, match=r"output width of 'seq_blocks_6' from 5 to 10.*"
                                        r"out_features = N.*allow_output_change"):
        redefine_transform_pass(jsc_graph(), by_name(seq_blocks_6=2))
    new, _ = redefine_transform_pass(jsc_graph(), {"seq_blocks_6": {"config": {"out_features": 7}}})
    assert new(torch.randn(8, 16)).shape == (8, 7)
    new, _ = redefine_transform_pass(jsc_graph(), {**by_name(seq_blocks_6=2), "allow_output_change": True})
    assert new(torch.randn(8, 16)).shape == (8, 10)
    lab = {"seq_blocks_6": {"config": {"name": "output_only", "channel_multiplier": 2}}}
    with pytest.raises(PassError, match=r"produces the model's output.*allow_output_change"):
        redefine_transform_pass(jsc_graph(), lab)


# --- errors -------------------------------------------------------------------------------------

def entry(**config) -> dict:
    return {"seq_blocks_2": {"config": config}}


@pytest.mark.parametrize("args, pattern", [
    (by_name(seq_block_2=2), r"node 'seq_block_2' is not in the model; did you mean 'seq_blocks_2'"),
    (by_name(seq_blocks_3=2), r"'seq_blocks_3' is a relu; this entry applies to linear and conv2d"),
    (entry(channel_multiplier=0), r"channel_multiplier = 0 must be a positive number"),
    (entry(channel_multiplier=-2), r"channel_multiplier = -2 must be a positive number"),
    (entry(channel_multiplier="2"), r"channel_multiplier = '2' must be a positive number"),
    (entry(channel_multiplier=True), r"channel_multiplier = True must be a positive number"),
    (entry(channel_multiplier=math.nan), r"channel_multiplier = nan must be a positive number"),
    (entry(channel_multiplier=0.01), r"turns width 16 into 0.16, which rounds to 0; use a "
                                     r"multiplier of at least 0.0625"),
    (entry(out_features=12.5), r"out_features = 12.5 must be a positive integer"),
    (entry(out_features=0), r"out_features = 0 must be a positive integer"),
    (entry(out_channels=8), r"out_channels does not apply to linear node 'seq_blocks_2'; use out_features"),
    (entry(channel_multiplier=2, out_features=8), r"channel_multiplier and out_features both set"),
    (entry(channel_multipler=2), r"unknown key 'channel_multipler'; did you mean 'channel_multiplier'"),
    (entry(), r"missing key: give channel_multiplier or out_features"),
    ({"seq_blocks_2": {"channel_multiplier": 2}}, r"must be a table with a 'config' table"),
    (entry(channel_multiplier_in=2), r"'channel_multiplier_in' belongs to MASE's lab schema"),
    (entry(name="both"), r"missing key: name = 'both' needs channel_multiplier"),
    (entry(name="bot", channel_multiplier=2), r"name = 'bot' is invalid; did you mean 'both'"),
    (entry(name="output_only", channel_multiplier=2, channel_multiplier_in=2),
     r"channel_multiplier_in has no effect with name = 'output_only'"),
    ({**entry(name="output_only", channel_multiplier=2),
      "seq_blocks_4": {"config": {"channel_multiplier": 2}}}, r"seq_blocks_4.config\] missing key 'name'"),
    ({**entry(name="output_only", channel_multiplier=2),
      "seq_blocks_4": {"config": {"name": "input_only", "out_features": 3}}},
     r"'out_features' belongs to the simple schema"),
    ({**entry(name="output_only", channel_multiplier=2),
      "seq_blocks_4": {"config": {"name": "both", "parent": "seq_blocks_1", "channel_multiplier": 1}}},
     r"parent = 'seq_blocks_1' but the width reaching 'seq_blocks_4' comes from 'seq_blocks_2'"),
    ({"seq_blocks_4": {"config": {"name": "input_only", "parent": "seq_blocks_9"}}},
     r"parent = 'seq_blocks_9' is not a node of the model; did you mean 'seq_blocks_"),
    ({"seq_blocks_4": {"config": {"name": "scale", "channel_multiplier": 2}}},
     r"'seq_blocks_4' is a linear; this entry applies to batch_norm1d and batch_norm2d"),
    ({"seq_blocks_0": {"config": {"name": "output_only", "channel_multiplier": 2}}},
     r"'seq_blocks_0' is a batch_norm1d; this entry applies to linear and conv2d"),
    ({"by": "kind"}, r"by = 'kind' is invalid"),
    ({"by": "type", "Linear": {"config": {"channel_multiplier": 2}}},
     r"type 'Linear' cannot be redefined; did you mean 'linear'"),
    ({"by": "regex_name", "seq_blocks_[": {"config": {"channel_multiplier": 2}}}, r"regex .* is invalid"),
    ({"by": "regex_name", "conv.*": {"config": {"channel_multiplier": 2}}},
     r"regex 'conv.\*' matches no Linear/Conv2d/BatchNorm node"),
    ({**by_name(seq_blocks_2=2), "inherit": "yes"}, r"inherit = 'yes' must be true or false"),
])
def test_errors_are_one_line_pass_errors(args, pattern):
    graph = jsc_graph()
    with pytest.raises(PassError, match=pattern) as error:
        redefine_transform_pass(graph, args)
    assert "\n" not in str(error.value)
    assert str(error.value).startswith("[passes.redefine")
