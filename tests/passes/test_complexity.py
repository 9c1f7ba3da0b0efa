"""complexity_analysis_pass: pinned counts, FlopCounterMode agreement, BitOPs and sizes."""

from __future__ import annotations

import pytest
import torch

from machop.data import DatasetInfo
from machop.graph import Graph
from machop.models import MODELS, build_model
from machop.passes import quantize_transform_pass
from machop.passes.complexity import complexity_analysis_pass, flop_counter_flops

JSC = DatasetInfo("jsc", 5, 16)
CIFAR = DatasetInfo("cifar10", 10, 3072, (3, 32, 32))
TOY = DatasetInfo("toy-tiny", 2, 4)
NONE = {"config": {"name": None}}


def totals(name, info=JSC, shape=(4, 16), args=None):
    graph = Graph(build_model(name, info, args), torch.randn(*shape))
    return complexity_analysis_pass(graph, {})[1]["totals"], graph


def int_config(width, frac):
    return {"name": "integer", **{f"{op}_{k}": v for op in ("data_in", "weight", "bias")
                                  for k, v in (("width", width), ("frac_width", frac))}}


def test_pinned_jsc_counts():
    tiny, _ = totals("jsc-tiny")
    assert (tiny["macs"], tiny["flops"], tiny["params"]) == (80, 160, 117)
    three, _ = totals("jsc-three-linear-layers")
    assert (three["macs"], three["flops"], three["params"]) == (592, 1184, 661)


def test_pinned_vgg7_counts_at_batch_1():
    vgg, _ = totals("vgg7", CIFAR, (1, 3, 32, 32))
    assert vgg["macs"] == 616_966_144 and vgg["flops"] == 1_233_932_288
    assert vgg["params"] == 14_029_450


@pytest.mark.parametrize("name", sorted(MODELS))
def test_flops_equal_flop_counter_mode_on_every_builtin_model(name):
    info, shape, args = (JSC, (4, 16), None) if name != "vgg7" else (CIFAR, (2, 3, 32, 32), {"widths": (8, 16, 16), "hidden": 32})
    if name.startswith("toy"):
        info, shape = TOY, (4, 4)
    result, graph = totals(name, info, shape, args)
    assert result["flops"] == 2 * result["macs"] == flop_counter_flops(graph)


def test_all_8_bit_bitops_and_unchanged_flops():
    graph = Graph(build_model("jsc-three-linear-layers", JSC), torch.randn(4, 16))
    float_totals = complexity_analysis_pass(graph, {})[1]["totals"]
    quantized, _ = quantize_transform_pass(graph, {"by": "type", "default": NONE,
                                                   "linear": {"config": int_config(8, 4)}})
    q_totals = complexity_analysis_pass(quantized, {})[1]["totals"]
    assert q_totals["bitops"] == 592 * 64
    assert float_totals["bitops"] == 592 * 32 * 32
    assert q_totals["flops"] == float_totals["flops"] and q_totals["macs"] == float_totals["macs"]


def test_model_size_counts_parameters_at_their_widths():
    graph = Graph(build_model("jsc-three-linear-layers", JSC), torch.randn(4, 16))
    quantized, _ = quantize_transform_pass(graph, {"by": "name", "default": NONE,
                                                   "seq_blocks_2": {"config": int_config(4, 2)}})
    result = complexity_analysis_pass(quantized, {})[1]["totals"]
    # seq_blocks_2: 256 weights + 16 biases at 4 bits; BN (32) and the other linears at 32 bits
    assert result["model_size_bits"] == 272 * 4 + (661 - 272) * 32
    assert result["model_size_bytes"] == result["model_size_bits"] / 8


def test_average_bitwidth_mase_and_corrected():
    graph = Graph(build_model("jsc-three-linear-layers", JSC), torch.randn(4, 16))
    plain = complexity_analysis_pass(graph, {})[1]["totals"]
    assert plain["average_bitwidth"] == 32 and plain["memory_density"] == 1
    quantized, _ = quantize_transform_pass(graph, {"by": "name", "default": NONE,
                                                   "seq_blocks_2": {"config": int_config(4, 2)},
                                                   "seq_blocks_6": {"config": int_config(8, 4)}})
    result = complexity_analysis_pass(quantized, {})[1]["totals"]
    assert result["average_bitwidth"] == pytest.approx((256 * 4 + 80 * 8) / 336)
    assert result["average_bitwidth_all"] == pytest.approx((256 * 4 + 256 * 32 + 80 * 8) / 592)
    assert result["memory_density"] == pytest.approx(32 / result["average_bitwidth"])


def test_elementwise_work_is_reported_separately():
    result, graph = totals("jsc-three-linear-layers")
    # BN(16): 2*16, ReLUs: 16 + 16 + 16 + 5
    assert result["elementwise_ops"] == 32 + 53
    per_node = {n: graph.meta[n].analysis for n in ("seq_blocks_0", "seq_blocks_2")}
    assert per_node["seq_blocks_0"] == {"params": 32, "macs": 0, "flops": 0, "elementwise_ops": 32, "bitops": 0}
    assert per_node["seq_blocks_2"]["macs"] == 256


def test_matmul_bitops_use_both_inputs():
    class MM(torch.nn.Module):
        def forward(self, a):
            return torch.matmul(a, a.transpose(1, 2))
    graph = Graph(MM(), torch.randn(2, 3, 4))
    quantized, _ = quantize_transform_pass(graph, {"by": "type", "default": NONE, "matmul": {
        "config": {"name": "integer", "data_in_width": 4, "data_in_frac_width": 2}}})
    result = complexity_analysis_pass(quantized, {})[1]["totals"]
    assert result["macs"] == 3 * 3 * 4 and result["bitops"] == 36 * 16


def _random_candidate(graph, generator):
    def pick(values):
        return values[int(torch.randint(len(values), (1,), generator=generator))]

    config = {"by": "name", "default": NONE}
    for node in graph.compute_nodes():
        kind = graph.meta[node.name].kind
        if kind in ("linear", "conv2d") and pick([True, True, False]):
            config[node.name] = {"config": {"name": "integer", "data_in_width": pick([2, 4, 8, 16]),
                                            "weight_width": pick([2, 3, 4, 8]), "bias_width": pick([4, 8, 16])}}
        elif kind == "relu" and pick([True, False]):
            config[node.name] = {"config": {"name": "integer", "data_in_width": pick([4, 8])}}
        elif kind.startswith("batch_norm") and pick([True, False]):
            config[node.name] = {"config": {"name": "integer", "data_in_width": pick([8, 16]),
                                            "weight_width": pick([4, 8]), "bias_width": pick([8, 16])}}
    return quantize_transform_pass(graph, config)[0]


def _reference_totals(graph):
    """Everything counted afresh: a FlopCounterMode forward of this very graph, and model size and
    bit-width averages from the parameters' owners' precisions."""
    from machop.passes.complexity import flop_counter_costs

    reference = flop_counter_costs(graph)
    width = {}
    for node in graph.compute_nodes():
        if node.op == "call_module":
            for name, param in graph.submodule(node).named_parameters(recurse=False):
                record = graph.meta[node.name].precision.get(name, {"width": 32})
                width[f"{node.target}.{name}"] = (param.numel(), record["width"])
    size = sum(n * w for n, w in width.values())
    weighted = [(graph.meta[node.name], *width[f"{node.target}.weight"]) for node in graph.compute_nodes()
                if graph.meta[node.name].kind in ("linear", "conv2d")]
    quantized = [(n, w) for meta, n, w in weighted
                 if meta.kind == "linear" and meta.precision["weight"]["type"] != "float"]
    mase = sum(n * w for n, w in quantized) / sum(n for n, _ in quantized) if quantized else 32.0
    everything = sum(n * w for _, n, w in weighted) / sum(n for _, n, _ in weighted)
    return {"flops": reference["flops"], "macs": reference["flops"] // 2, "bitops": reference["bitops"],
            "model_size_bits": size, "average_bitwidth": mase,
            "average_bitwidth_all": everything,
            "node_flops": reference["node_flops"]}


@pytest.mark.parametrize("name, info, shape, args", [
    ("jsc-three-linear-layers", JSC, (4, 16), None),
    ("jsc-s", JSC, (4, 16), {"hidden": (8, 8, 4, 4)}),
    ("vgg7", CIFAR, (2, 3, 32, 32), {"widths": (4, 8, 8), "hidden": 16}),
])
def test_cached_counts_equal_a_full_flop_counter_pass_for_random_candidates(name, info, shape, args):
    from machop.passes.redefine import redefine_transform_pass

    generator = torch.Generator().manual_seed(len(name))
    base = Graph(build_model(name, info, args), torch.randn(*shape))
    linear = next(n.name for n in base.compute_nodes() if base.meta[n.name].kind == "linear")
    widened, _ = redefine_transform_pass(base, {linear: {"config": {"channel_multiplier": 2}}})
    for architecture in (base, widened):
        for _ in range(4):
            candidate = _random_candidate(architecture, generator)
            _, info_ = complexity_analysis_pass(candidate, {})
            got, want = info_["totals"], _reference_totals(candidate)
            for key in ("flops", "macs", "bitops", "model_size_bits"):
                assert got[key] == want[key], key
            assert got["average_bitwidth"] == pytest.approx(want["average_bitwidth"], rel=1e-12)
            assert got["average_bitwidth_all"] == pytest.approx(want["average_bitwidth_all"], rel=1e-12)
            per_node = {row["node"]: row["flops"] for row in info_["per_node"]}
            assert {n: per_node[n] for n in want["node_flops"]} == want["node_flops"]
    assert complexity_analysis_pass(widened, {})[1]["totals"]["macs"] > \
        complexity_analysis_pass(base, {})[1]["totals"]["macs"]  # a redefined width is another architecture
