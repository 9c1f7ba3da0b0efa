"""What kind of operation a node is: the names passes and cost analysis understand."""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import fx, nn
from torch.nn import functional as F

GENERIC = "generic"
# Ops that multiply their input by a weight tensor: quantized per operand (data_in, weight, bias),
# counted in MACs and BitOPs.
WEIGHTED_KINDS = ("linear", "conv1d", "conv2d")

MODULE_KINDS: dict[type, str] = {
    nn.Linear: "linear",
    nn.Conv1d: "conv1d",
    nn.Conv2d: "conv2d",
    nn.ReLU: "relu",
    nn.BatchNorm1d: "batch_norm1d",
    nn.BatchNorm2d: "batch_norm2d",
    nn.LayerNorm: "layer_norm",
    nn.MaxPool1d: "max_pool1d",
    nn.MaxPool2d: "max_pool2d",
    nn.AvgPool1d: "avg_pool1d",
    nn.AvgPool2d: "avg_pool2d",
    nn.AdaptiveAvgPool1d: "adaptive_avg_pool1d",
    nn.AdaptiveAvgPool2d: "adaptive_avg_pool2d",
    nn.Flatten: "flatten",
    nn.Dropout: "dropout",
    nn.Identity: "identity",
    nn.Softmax: "softmax",
}

FUNCTION_KINDS: dict[Any, str] = {
    F.relu: "relu", torch.relu: "relu",
    operator.add: "add", torch.add: "add", operator.iadd: "add",
    operator.sub: "sub", torch.sub: "sub",
    operator.mul: "mul", torch.mul: "mul",
    operator.matmul: "matmul", torch.matmul: "matmul",
    torch.bmm: "bmm",
    F.linear: "linear",
    F.conv1d: "conv1d",
    F.conv2d: "conv2d",
    torch.flatten: "flatten",
    torch.cat: "cat",
    F.max_pool1d: "max_pool1d",
    F.max_pool2d: "max_pool2d",
    F.avg_pool1d: "avg_pool1d",
    F.avg_pool2d: "avg_pool2d",
    F.adaptive_avg_pool1d: "adaptive_avg_pool1d",
    F.adaptive_avg_pool2d: "adaptive_avg_pool2d",
}

METHOD_KINDS = {"view": "view", "reshape": "reshape", "flatten": "flatten", "relu": "relu",
                "add": "add", "sub": "sub", "mul": "mul", "matmul": "matmul", "bmm": "bmm",
                "size": "size"}

# Elementwise or per-channel ops through which a channel count passes unchanged.
CHANNEL_PRESERVING = frozenset({
    "relu", "batch_norm1d", "batch_norm2d", "max_pool1d", "max_pool2d", "avg_pool1d",
    "avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "dropout", "identity", GENERIC,
})


def module_kind(module: nn.Module) -> str:
    """Kind of a module: its own `machop_kind`, a registered built-in, else generic."""
    own = getattr(module, "machop_kind", None)
    if own:
        return own
    for cls in type(module).__mro__:
        if cls in MODULE_KINDS:
            return MODULE_KINDS[cls]
    return GENERIC


def node_kind(node: fx.Node, root: nn.Module) -> str:
    """Kind of an fx node (placeholders and outputs are kinds of their own)."""
    if node.op in ("placeholder", "output", "get_attr"):
        return node.op
    if node.op == "call_module":
        return module_kind(root.get_submodule(node.target))
    if node.op == "call_function":
        return getattr(node.target, "machop_kind", None) or FUNCTION_KINDS.get(node.target, GENERIC)
    if node.op == "call_method":
        return METHOD_KINDS.get(node.target, GENERIC)
    return GENERIC


def target_name(node: fx.Node, root: nn.Module) -> str:
    """The class or function name a node runs, for tables."""
    if node.op == "call_module":
        return type(root.get_submodule(node.target)).__name__
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    if node.op == "call_method":
        return f".{node.target}"
    return node.op
