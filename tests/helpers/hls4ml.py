"""JSC models quantized end to end (BatchNorm included) at mixed widths, and inputs on rounding ties."""

from __future__ import annotations

import random

import torch
from torch import nn

from machop.data import DatasetInfo
from machop.data.dataset import Dataset, Split
from machop.graph import Graph
from machop.models import build_model
from machop.passes import PassData, apply_passes

JSC = DatasetInfo("jsc", 5, 16)
ACTIVATION_FRAC = 3  # one binary point for every activation, so consecutive quantizers compose


def with_random_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """BatchNorms with non-trivial running statistics, scales and shifts (as after training)."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator))
            module.running_var.copy_(torch.rand(n, generator=generator) * 3 + 0.3)
            with torch.no_grad():
                module.weight.copy_(torch.randn(n, generator=generator))
                module.bias.copy_(torch.randn(n, generator=generator))
    return model


def mixed_config(graph: Graph, seed: int = 0, weight_frac: object = None) -> dict:
    """A by-name quantize config of every Linear, BatchNorm and ReLU with widths drawn per node.

    Inputs 6..8 bits, weights 2..8, biases 8, BatchNorm scales 8; `weight_frac` ("auto") replaces
    the weights' and scales' frac widths.
    """
    rng = random.Random(seed)
    config: dict = {"by": "name", "default": {"config": {"name": None}}}
    for node in graph.compute_nodes():
        kind = graph.meta[node.name].kind
        data_in = {"name": "integer", "data_in_width": rng.randint(6, 8), "data_in_frac_width": ACTIVATION_FRAC}
        if kind == "linear":
            width = rng.randint(2, 8)
            entry = {**data_in, "weight_width": width, "weight_frac_width": weight_frac or max(width - 2, 0),
                     "bias_width": 8, "bias_frac_width": 4}
        elif kind == "batch_norm1d":
            entry = {**data_in, "weight_width": 8, "weight_frac_width": weight_frac or 5,
                     "bias_width": 8, "bias_frac_width": 4}
        elif kind == "relu":
            entry = data_in
        else:
            continue
        config[node.name] = {"config": entry}
    return config


def jsc_dataset(sizes: tuple[int, int, int] = (400, 300, 50), seed: int = 0) -> Dataset:
    """JSC-shaped features generated in code, a tenth of the validation inputs on rounding ties."""
    generator = torch.Generator().manual_seed(seed)
    splits = []
    for size in sizes:
        x = torch.randn(size, 16, generator=generator) * 3
        splits.append(Split(x, torch.randint(0, 5, (size,), generator=generator)))
    ties = splits[1].x[: sizes[1] // 10]
    ties.copy_(tie_inputs(len(ties), generator))
    return Dataset(JSC, *splits)


def tie_inputs(count: int, generator: torch.Generator) -> torch.Tensor:
    """Inputs exactly halfway between two codes of the input grid (frac ACTIVATION_FRAC)."""
    codes = torch.randint(-20, 20, (count, 16), generator=generator).float()
    return (codes + 0.5) / 2**ACTIVATION_FRAC


def quantized_jsc(name: str, seed: int = 0, weight_frac: object = None,
                  dataset: Dataset | None = None, calibration: dict | None = None) -> nn.Module:
    """A JSC model (random weights and statistics) quantized end to end at mixed widths."""
    torch.manual_seed(seed)
    model = with_random_statistics(build_model(name, JSC), seed).eval()
    graph = Graph(model, torch.randn(8, 16))
    config = mixed_config(graph, seed, weight_frac)
    if calibration is not None:
        config["calibration"] = calibration
    data = PassData(dataset, 64, seed) if dataset is not None else None
    quantized, _ = apply_passes(graph, [("quantize", config)], data=data)
    return quantized.module.eval()


IMAGE = DatasetInfo("tiny-images", 5, 32, image_size=(2, 4, 4))
CONV_ACTIVATION = {"name": "integer", "data_in_width": 8, "data_in_frac_width": ACTIVATION_FRAC}


class TinyConvResidual(nn.Module):
    """Conv2d → BatchNorm2d → ReLU, a residual Conv2d → ReLU branch added to it, MaxPool, flatten, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn = nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1)
        self.pool, self.fc = nn.MaxPool2d(2), nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.conv1(x)))
        y = torch.relu(self.conv2(y)) + y
        return self.fc(torch.flatten(self.pool(y), 1))


def conv_config() -> dict:
    """Every node fixed point: activations 8/3, conv weights 5/3, Linear weights 4/2, biases 8/4."""
    weighted = {**CONV_ACTIVATION, "weight_width": 5, "weight_frac_width": 3, "bias_width": 8, "bias_frac_width": 4}
    return {"by": "type", "default": {"config": {"name": None}}, "conv2d": {"config": weighted},
            "linear": {"config": {**weighted, "weight_width": 4, "weight_frac_width": 2}},
            "relu": {"config": CONV_ACTIVATION}, "add": {"config": CONV_ACTIVATION},
            "batch_norm2d": {"config": {**weighted, "weight_width": 8, "weight_frac_width": 5}}}


def quantized_conv(seed: int = 0) -> nn.Module:
    """TinyConvResidual (random weights and statistics) with every node fixed point."""
    torch.manual_seed(seed)
    model = TinyConvResidual().eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.bn.running_mean.copy_(torch.randn(3, generator=generator))
        model.bn.running_var.copy_(torch.rand(3, generator=generator) + 0.5)
    quantized, _ = apply_passes(Graph(model, torch.randn(8, *IMAGE.image_size)), [("quantize", conv_config())])
    return quantized.module.eval()


def image_dataset(sizes: tuple[int, int, int] = (40, 300, 20), seed: int = 0) -> Dataset:
    """(2, 4, 4) images generated in code, a tenth of the validation images on rounding ties."""
    generator = torch.Generator().manual_seed(seed)
    splits = [Split(torch.randn(size, *IMAGE.image_size, generator=generator) * 3,
                    torch.randint(0, 5, (size,), generator=generator)) for size in sizes]
    ties = splits[1].x[: sizes[1] // 10]
    codes = torch.randint(-20, 20, ties.shape, generator=generator).float()
    ties.copy_((codes + 0.5) / 2**ACTIVATION_FRAC)
    return Dataset(IMAGE, *splits)
