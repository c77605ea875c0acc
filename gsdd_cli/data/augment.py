"""Differentiable Siamese Augmentation (DSA, docs/method.md §5.5), single-op mode.

Each call picks one group of the strategy string uniformly (``color`` = brightness, saturation,
contrast in turn). ``seed = -1``: non-Siamese, parameters drawn independently per sample from the
global RNG (on the tensor's device). ``seed >= 0``: Siamese, the op choice and every draw come from a
private ``torch.Generator`` seeded with seed, seed + 1, ... (one seed per draw, in the reference
order), and one parameter set is shared by the whole batch — two batches augmented with the same
seed get identical augmentation. All ops are differentiable w.r.t. the images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from gsdd_cli.core.errors import ConfigError

DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"


@dataclass(frozen=True)
class DSAParams:
    """Augmentation strengths (the DSA paper's defaults)."""

    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5
    crop_pad_ratio: float = 0.125
    cutout_ratio: float = 0.5
    flip_prob: float = 0.5
    scale_ratio: float = 1.2
    rotate_degrees: float = 15.0


class _Draws:
    """Source of random numbers: global RNG (per sample) or seeded, one seed per draw (shared)."""

    def __init__(self, seed: int, device: torch.device):
        self.seed = seed
        self.device = device

    @property
    def siamese(self) -> bool:
        return self.seed >= 0

    def _gen(self) -> torch.Generator:
        g = torch.Generator().manual_seed(self.seed)
        self.seed += 1
        return g

    def rand(self, n: int) -> torch.Tensor:
        """[n] uniform [0, 1) on the device (one shared value repeated in Siamese mode)."""
        if self.siamese:
            return torch.rand(1, generator=self._gen()).to(self.device).expand(n)
        return torch.rand(n, device=self.device)

    def randint(self, low: int, high: int, n: int) -> torch.Tensor:
        if self.siamese:
            return torch.randint(low, high, (1,), generator=self._gen()).to(self.device).expand(n)
        return torch.randint(low, high, (n,), device=self.device)

    def choice(self, k: int) -> int:
        if self.siamese:
            return int(torch.randint(0, k, (1,), generator=self._gen()))
        return int(torch.randint(0, k, (1,)))


def _brightness(x, d: _Draws, p: DSAParams):
    r = d.rand(x.shape[0]).to(x.dtype).view(-1, 1, 1, 1)
    return x + (r - 0.5) * p.brightness


def _saturation(x, d: _Draws, p: DSAParams):
    m = x.mean(dim=1, keepdim=True)
    r = d.rand(x.shape[0]).to(x.dtype).view(-1, 1, 1, 1)
    return (x - m) * (r * p.saturation) + m


def _contrast(x, d: _Draws, p: DSAParams):
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    r = d.rand(x.shape[0]).to(x.dtype).view(-1, 1, 1, 1)
    return (x - m) * (r + p.contrast) + m


def _crop(x, d: _Draws, p: DSAParams):
    """Integer translation; pixels shifted in from outside read a 1-px zero border."""
    b, c, h, w = x.shape
    sh, sw = int(h * p.crop_pad_ratio + 0.5), int(w * p.crop_pad_ratio + 0.5)
    ty = d.randint(-sh, sh + 1, b)
    tx = d.randint(-sw, sw + 1, b)
    padded = F.pad(x, (1, 1, 1, 1))  # [B, C, H+2, W+2]
    rows = (torch.arange(h, device=x.device).view(1, h) + ty.view(b, 1) + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device).view(1, w) + tx.view(b, 1) + 1).clamp(0, w + 1)
    out = padded.gather(2, rows.view(b, 1, h, 1).expand(b, c, h, w + 2))
    return out.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))


def _cutout(x, d: _Draws, p: DSAParams):
    """Zero a square of side ⌊0.5·S + 0.5⌋ centred at a random position (clipped to the image)."""
    b, _, h, w = x.shape
    sh, sw = int(h * p.cutout_ratio + 0.5), int(w * p.cutout_ratio + 0.5)
    cy = d.randint(0, h + (1 - sh % 2), b)
    cx = d.randint(0, w + (1 - sw % 2), b)
    y0 = (cy - sh // 2).view(b, 1, 1)
    x0 = (cx - sw // 2).view(b, 1, 1)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= y0) & (rows < y0 + sh) & (cols >= x0) & (cols < x0 + sw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def _flip(x, d: _Draws, p: DSAParams):
    r = d.rand(x.shape[0]).view(-1, 1, 1, 1)
    return torch.where(r < p.flip_prob, x.flip(3), x)


def _affine(x, theta: torch.Tensor):
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _scale(x, d: _Draws, p: DSAParams):
    b = x.shape[0]
    lo = 1.0 / p.scale_ratio
    sx = d.rand(b) * (p.scale_ratio - lo) + lo
    sy = d.rand(b) * (p.scale_ratio - lo) + lo
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0] = sx
    theta[:, 1, 1] = sy
    return _affine(x, theta)


def _rotate(x, d: _Draws, p: DSAParams):
    b = x.shape[0]
    ang = (d.rand(b) - 0.5) * 2 * p.rotate_degrees / 180.0 * math.pi
    cos, sin = torch.cos(ang), torch.sin(ang)
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos
    return _affine(x, theta)


OPS: dict[str, list[Callable]] = {
    "color": [_brightness, _saturation, _contrast],
    "crop": [_crop],
    "cutout": [_cutout],
    "flip": [_flip],
    "scale": [_scale],
    "rotate": [_rotate],
    # single ops, handy for tests and ablations
    "brightness": [_brightness],
    "saturation": [_saturation],
    "contrast": [_contrast],
}


def parse_strategy(strategy: str) -> list[str]:
    if strategy is None or strategy.lower() in ("", "none"):
        return []
    groups = strategy.split("_")
    bad = [g for g in groups if g not in OPS]
    if bad:
        raise ConfigError(f"unknown DSA op(s) {', '.join(bad)} in {strategy!r}; valid: {', '.join(OPS)}")
    return groups


def check_strategy(strategy: str) -> str:
    """Validator body for config models: returns ``strategy`` or raises ValueError with the reason."""
    try:
        parse_strategy(strategy)
    except ConfigError as e:
        raise ValueError(str(e)) from None
    return strategy


def dsa(
    x: torch.Tensor,  # [B, C, H, W]
    strategy: str = DSA_STRATEGY,
    seed: int = -1,
    param: DSAParams | None = None,
) -> torch.Tensor:
    """Apply one randomly chosen op group of ``strategy`` to the batch (see module docstring)."""
    groups = parse_strategy(strategy)
    if not groups or x.shape[0] == 0:
        return x
    p = param or DSAParams()
    draws = _Draws(int(seed) if seed is not None and seed >= 0 else -1, x.device)
    group = groups[draws.choice(len(groups))]
    for op in OPS[group]:
        x = op(x, draws, p)
    return x.contiguous()
