"""module_stamp: a quantized form's metadata read from the form alone, as Graph.restamp reads it."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from machop.graph import Graph
from machop.graph.metadata import NodeMeta, module_stamp, stamped
from machop.passes import quantize_transform_pass

NONE = {"config": {"name": None}}
INT8 = {"name": "integer", "data_in_width": 8, "data_in_frac_width": 4, "weight_width": 8,
        "weight_frac_width": 4, "bias_width": 8, "bias_frac_width": 4}


class Every(nn.Module):
    """Module calls (conv, BatchNorm, ReLU, Linear) and functional ones (relu, linear, add, matmul)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 3, 3, padding=1)
        self.norm = nn.BatchNorm1d(3)
        self.act = nn.ReLU()
        self.fc = nn.Linear(12, 4, bias=False)
        self.w = nn.Parameter(torch.randn(4, 4))
        self.b = nn.Parameter(torch.randn(4))

    def forward(self, x):
        y = self.act(self.norm(self.conv(x.unsqueeze(1)))).flatten(1)
        y = F.relu(self.fc(y))
        return torch.matmul(y, self.w) + F.linear(y, self.w, self.b)


def _config(per_channel: bool) -> dict:
    conv = {**INT8, "weight_frac_width": [3, 4, 5]} if per_channel else INT8
    return {"by": "type", "default": NONE, "conv1d": {"config": conv}, "linear": {"config": INT8},
            "relu": {"config": {"name": "integer", "data_in_width": 6}},
            "batch_norm1d": {"config": INT8},
            "add": {"config": {"name": "integer", "data_in_width": 16}},
            "matmul": {"config": {"name": "integer", "data_in_width": 8}}}


@pytest.mark.parametrize("per_channel", [False, True])
def test_a_stamp_from_the_module_is_what_restamp_reads(per_channel):
    torch.manual_seed(0)
    graph = Graph(Every(), torch.randn(5, 4))
    quantized, summary = quantize_transform_pass(graph, _config(per_channel))  # restamps every swap
    swapped = [row["node"] for row in summary["rows"] if row["new_type"] != row["original_type"]]
    kinds = {quantized.meta[name].kind for name in swapped}
    assert {"conv1d", "batch_norm1d", "relu", "linear", "add", "matmul"} <= kinds
    assert any(graph.meta[name].op == "call_function" for name in swapped)  # functional forms too
    for name in swapped:
        module = quantized.submodule(quantized.node(name))
        mine = stamped(graph.meta[name], module_stamp(graph.meta[name], module))
        assert mine.as_dict() == quantized.meta[name].as_dict(), name


def test_stamped_metadata_owns_its_tables():
    meta = NodeMeta("fc", "call_module", "linear", "Linear", [(2, 3)], ["float32"], (2, 4), "float32",
                    {"weight": (4, 3)}, {}, {"macs": 1})
    module = nn.Linear(3, 4)
    stamp = module_stamp(meta, module)
    first, second = stamped(meta, stamp), stamped(meta, stamp)
    assert first.param_shapes == {"weight": (4, 3), "bias": (4,)} and first.target == "Linear"
    first.precision["weight"]["width"] = 3
    first.param_shapes["bias"] = (1,)
    first.input_shapes.append((9,))
    first.analysis["macs"] = 2
    assert second.precision["weight"]["width"] == 32 and second.param_shapes["bias"] == (4,)
    assert meta.input_shapes == [(2, 3)] and meta.analysis == {"macs": 1}


def test_a_meta_copy_owns_per_channel_lists():
    meta = NodeMeta("conv", "call_module", "conv1d", "QuantConv1d",
                    precision={"weight": {"type": "integer", "width": 8, "frac_width": [3, 4]}},
                    analysis={"per_channel": [1, 2]})
    copy = meta.copy()
    assert copy == meta
    copy.precision["weight"]["frac_width"].append(5)
    copy.analysis["per_channel"][0] = 7
    assert meta.precision["weight"]["frac_width"] == [3, 4] and meta.analysis["per_channel"] == [1, 2]
