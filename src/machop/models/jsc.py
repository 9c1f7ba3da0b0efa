"""MLPs for jet-substructure classification (they run on any tabular or small image data)."""

from __future__ import annotations

from torch import nn

from machop.data.dataset import DatasetInfo


class SequentialMLP(nn.Module):
    """Flattens its input and runs `seq_blocks`, so node names read seq_blocks_<i>."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.seq_blocks = nn.Sequential(*blocks)

    def forward(self, x):
        return self.seq_blocks(x.flatten(1))


def jsc_tiny(info: DatasetInfo) -> nn.Module:
    """BatchNorm, ReLU, one Linear to the classes, ReLU (117 parameters on JSC)."""
    f, c = info.num_features, info.num_classes
    return SequentialMLP([nn.BatchNorm1d(f), nn.ReLU(), nn.Linear(f, c), nn.ReLU()])


def jsc_toy(info: DatasetInfo) -> nn.Module:
    """Three Linear layers (f->8->8->c), each preceded by BatchNorm and ReLU (327 on JSC)."""
    f, c = info.num_features, info.num_classes
    return SequentialMLP([
        nn.BatchNorm1d(f), nn.ReLU(), nn.Linear(f, 8),
        nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8),
        nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, c),
        nn.BatchNorm1d(c), nn.ReLU(),
    ])


def jsc_s(info: DatasetInfo, hidden: tuple[int, ...] = (64, 32, 32, 32)) -> nn.Module:
    """MASE's jsc-s: f->64->32->32->32->c with BatchNorm on the input and first hidden layer."""
    f, c = info.num_features, info.num_classes
    h1, h2, h3, h4 = hidden
    return SequentialMLP([
        nn.BatchNorm1d(f), nn.ReLU(), nn.Linear(f, h1),
        nn.BatchNorm1d(h1), nn.ReLU(), nn.Linear(h1, h2),
        nn.ReLU(), nn.Linear(h2, h3),
        nn.ReLU(), nn.Linear(h3, h4),
        nn.ReLU(), nn.Linear(h4, c),
        nn.BatchNorm1d(c), nn.ReLU(),
    ])


def jsc_three_linear_layers(info: DatasetInfo, hidden: int = 16, final_relu: bool = True) -> nn.Module:
    """BatchNorm, ReLU, then three Linear+ReLU (f->16->16->c); linears are seq_blocks_2/4/6.

    MASE's architecture ends in a ReLU on the class scores, which can leave classes that are never
    predicted; `final_relu = false` (in [model_args]) drops it and changes no parameter count.
    """
    f, c = info.num_features, info.num_classes
    return SequentialMLP([
        nn.BatchNorm1d(f), nn.ReLU(),
        nn.Linear(f, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, c), *([nn.ReLU()] if final_relu else []),
    ])
