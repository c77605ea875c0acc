"""Cross-architecture evaluation networks (docs/method.md §6.3): AlexNet, VGG11 (instance norm), ResNet18
(instance norm; ``resnet18bn`` with batch norm) and ViT, sized for any input from 16×16 to 128×128.

Size handling (our decisions, documented in docs/evaluation.md):
- AlexNet / VGG11: the MTT/GLaD layer stacks; a 2×2 max-pool is skipped when the map is already
  1 px (so 16×16 inputs work) and the classifier input is computed from the final map size.
- ResNet18: CIFAR stem (3×3 conv, stride 1) below 64 px, ImageNet stem (7×7 stride 2 + 3×3 max-pool)
  from 64 px; global average pooling before the classifier.
- ViT: patch 16 from 64 px, patch 4 below (largest divisor of H and W not above that); dim 512,
  depth 10, 8 heads of 64, MLP 512, dropout 0.1, embedding dropout 0.1, class token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gsdd_cli.core.errors import ConfigError
from gsdd_cli.models._api import MODELS
from gsdd_cli.models.convnet import instance_norm


class _MaybePool(nn.Module):
    """2×2 max-pool that passes a 1-px map through unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < 2 or x.shape[-2] < 2:
            return x
        return F.max_pool2d(x, kernel_size=2, stride=2)


def _pooled(n: int) -> int:
    return n if n < 2 else n // 2


# ------------------------------------------------------------------------------------ AlexNet
class AlexNet(nn.Module):
    def __init__(self, channels: int, num_classes: int, height: int, width: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 128, kernel_size=5, stride=1, padding=2), nn.ReLU(), _MaybePool(),
            nn.Conv2d(128, 192, kernel_size=5, padding=2), nn.ReLU(), _MaybePool(),
            nn.Conv2d(192, 256, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 192, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(192, 192, kernel_size=3, padding=1), nn.ReLU(), _MaybePool(),
        )
        h, w = height, width
        for _ in range(3):
            h, w = _pooled(h), _pooled(w)
        self.feature_dim = 192 * h * w
        self.fc = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x))


# -------------------------------------------------------------------------------------- VGG11
VGG11_CFG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG(nn.Module):
    def __init__(self, channels: int, num_classes: int, height: int, width: int,
                 cfg=VGG11_CFG, norm: str = "instancenorm"):
        super().__init__()
        layers: list[nn.Module] = []
        c_in, h, w = channels, height, width
        for v in cfg:
            if v == "M":
                layers.append(_MaybePool())
                h, w = _pooled(h), _pooled(w)
            else:
                layers += [
                    nn.Conv2d(c_in, v, kernel_size=3, padding=1),
                    instance_norm(v) if norm == "instancenorm" else nn.BatchNorm2d(v),
                    nn.ReLU(),
                ]
                c_in = v
        self.features = nn.Sequential(*layers)
        self.feature_dim = c_in * h * w
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


# ----------------------------------------------------------------------------------- ResNet18
def _norm(kind: str, c: int) -> nn.Module:
    return instance_norm(c) if kind == "instancenorm" else nn.BatchNorm2d(c)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = _norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = _norm(norm, c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False), _norm(norm, c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, channels: int, num_classes: int, height: int, width: int,
                 norm: str = "instancenorm"):
        super().__init__()
        if min(height, width) >= 64:
            self.stem = nn.Sequential(
                nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False),
                _norm(norm, 64), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False),
                _norm(norm, 64), nn.ReLU(),
            )
        blocks, c_in = [], 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(c_in, c_out, stride, norm), BasicBlock(c_out, c_out, 1, norm)]
            c_in = c_out
        self.layers = nn.Sequential(*blocks)
        self.feature_dim = 512
        self.classifier = nn.Linear(512, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.stem(x))
        return out.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


# ---------------------------------------------------------------------------------------- ViT
class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale = heads, dim_head ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.attn_drop = nn.Dropout(dropout)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.to_qkv(self.norm(x)).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        attn = self.attn_drop(torch.softmax((q @ k.transpose(-1, -2)) * self.scale, dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(b, n, -1)
        return self.to_out(out)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, dim), nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def vit_patch_size(height: int, width: int) -> int:
    preferred = 16 if min(height, width) >= 64 else 4
    for p in range(preferred, 0, -1):
        if height % p == 0 and width % p == 0:
            return p
    return 1


class ViT(nn.Module):
    def __init__(self, channels: int, num_classes: int, height: int, width: int, *,
                 patch: int | None = None, dim: int = 512, depth: int = 10, heads: int = 8,
                 mlp_dim: int = 512, dim_head: int = 64, dropout: float = 0.1,
                 emb_dropout: float = 0.1):
        super().__init__()
        p = patch or vit_patch_size(height, width)
        if height % p or width % p:
            raise ConfigError(f"ViT patch {p} does not divide the image size {height}x{width}")
        self.patch = p
        num_patches = (height // p) * (width // p)
        self.to_patch = nn.Linear(channels * p * p, dim)
        self.pos_embedding = nn.Parameter(torch.randn(1, num_patches + 1, dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.emb_drop = nn.Dropout(emb_dropout)
        self.blocks = nn.ModuleList(
            nn.ModuleList([Attention(dim, heads, dim_head, dropout), FeedForward(dim, mlp_dim, dropout)])
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.feature_dim = dim
        self.head = nn.Linear(dim, num_classes)

    def _patches(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.patch
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, (h // p) * (w // p), p * p * c)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.to_patch(self._patches(x))
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        z = torch.cat([cls, tokens], dim=1) + self.pos_embedding[:, : tokens.shape[1] + 1]
        z = self.emb_drop(z)
        for attn, ff in self.blocks:
            z = z + attn(z)
            z = z + ff(z)
        return self.norm(z[:, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


# ------------------------------------------------------------------------------- registration
MODELS.register("alexnet")(lambda c, k, h, w: AlexNet(c, k, h, w))
MODELS.register("vgg11")(lambda c, k, h, w: VGG(c, k, h, w, norm="instancenorm"))
MODELS.register("resnet18")(lambda c, k, h, w: ResNet18(c, k, h, w, norm="instancenorm"))
MODELS.register("resnet18bn")(lambda c, k, h, w: ResNet18(c, k, h, w, norm="batchnorm"))
MODELS.register("vit")(lambda c, k, h, w: ViT(c, k, h, w))
