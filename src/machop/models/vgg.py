"""VGG7 for CIFAR-sized images (MASE / ternary-weight-networks layout)."""

from __future__ import annotations

from torch import nn

from machop.data.dataset import DatasetInfo
from machop.errors import ModelError

# PyTorch's momentum is the weight of the *new* batch statistic; MASE wrote 0.9 (the Keras
# convention), which makes running statistics follow the last batch. 0.1 is the intended
# behaviour; pass bn_momentum=0.9 through model_args to reproduce MASE exactly.
DEFAULT_BN_MOMENTUM = 0.1
POOLINGS = 3


def _conv_block(in_channels: int, out_channels: int, momentum: float) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels, momentum=momentum), nn.ReLU(inplace=True)]


class VGG7(nn.Module):
    """Six 3x3 convs (128,128,M,256,256,M,512,512,M) with BatchNorm+ReLU, then 3 Linears."""

    def __init__(self, image_size: tuple[int, int, int], num_classes: int,
                 widths: tuple[int, int, int] = (128, 256, 512), hidden: int = 1024,
                 bn_momentum: float = DEFAULT_BN_MOMENTUM) -> None:
        super().__init__()
        channels, height, width = image_size
        w1, w2, w3 = widths
        self.feature_layers = nn.Sequential(
            *_conv_block(channels, w1, bn_momentum), *_conv_block(w1, w1, bn_momentum),
            nn.MaxPool2d(kernel_size=2, stride=2),
            *_conv_block(w1, w2, bn_momentum), *_conv_block(w2, w2, bn_momentum),
            nn.MaxPool2d(kernel_size=2, stride=2),
            *_conv_block(w2, w3, bn_momentum), *_conv_block(w3, w3, bn_momentum),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        flat = w3 * (height >> POOLINGS) * (width >> POOLINGS)
        self.classifier = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(inplace=True),
                                        nn.Linear(hidden, hidden), nn.ReLU(inplace=True))
        self.last_layer = nn.Linear(hidden, num_classes)

    def forward(self, x):
        x = self.feature_layers(x)
        x = x.view(x.size(0), -1)
        return self.last_layer(self.classifier(x))


def vgg7(info: DatasetInfo, widths: tuple[int, int, int] = (128, 256, 512), hidden: int = 1024,
         bn_momentum: float = DEFAULT_BN_MOMENTUM) -> nn.Module:
    """VGG7 (14,029,450 parameters on CIFAR-10); needs an image dataset of at least 8x8."""
    if info.image_size is None:
        raise ModelError(f"model 'vgg7' needs an image dataset; {info.name!r} is tabular "
                         "(use digits or cifar10)")
    _, height, width = info.image_size
    if height < 8 or width < 8:
        raise ModelError(f"model 'vgg7' needs images of at least 8x8; {info.name!r} has "
                         f"{height}x{width}")
    return VGG7(tuple(info.image_size), info.num_classes, tuple(widths), hidden, bn_momentum)
