"""ConvNet-D (docs/method.md §6.1): d × [Conv3×3(128) → instance norm → ReLU → AvgPool 2], then Linear."""

from __future__ import annotations

import math

import torch
from torch import nn

from gsdd_cli.core.errors import ConfigError
from gsdd_cli.models._api import MODELS

NET_WIDTH = 128


def instance_norm(channels: int) -> nn.Module:
    """Instance norm as GroupNorm(C, C, affine) — one group per channel (MTT's 'instancenorm')."""
    return nn.GroupNorm(channels, channels, affine=True)


def default_convnet_depth(height: int, width: int) -> int:
    """Depth of ``convnet`` for an image size: 3 for ≤ 32 px, 4 for 64, 5 for 128, i.e.
    max(3, ⌊log2(S/4)⌋) with S = min(H, W) so the final map is ~4 px, but never so deep that the
    map would shrink below 1 px (⌊log2 S⌋)."""
    s = min(height, width)
    if s < 2:
        return 1
    d = max(3, int(math.floor(math.log2(s / 4))) if s >= 8 else 3)
    return max(1, min(d, int(math.floor(math.log2(s)))))


class ConvNet(nn.Module):
    def __init__(self, channels: int, num_classes: int, height: int, width: int, depth: int,
                 net_width: int = NET_WIDTH):
        super().__init__()
        h, w = height, width
        layers: list[nn.Module] = []
        c_in = channels
        for i in range(depth):
            if h < 2 or w < 2:
                raise ConfigError(
                    f"convnetd{depth} needs images of at least {2 ** depth}x{2 ** depth} px, got {height}x{width}"
                )
            layers += [
                nn.Conv2d(c_in, net_width, kernel_size=3, padding=1),
                instance_norm(net_width),
                nn.ReLU(),
                nn.AvgPool2d(kernel_size=2, stride=2),
            ]
            c_in = net_width
            h, w = h // 2, w // 2
        self.depth = depth
        self.features = nn.Sequential(*layers)
        self.feature_dim = net_width * h * w
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


def _register_convnets() -> None:
    @MODELS.register("convnet")
    def convnet(channels: int, num_classes: int, height: int, width: int) -> nn.Module:
        return ConvNet(channels, num_classes, height, width, default_convnet_depth(height, width))

    for d in range(1, 7):
        MODELS.register(f"convnetd{d}")(
            lambda c, k, h, w, _d=d: ConvNet(c, k, h, w, _d)
        )


_register_convnets()
