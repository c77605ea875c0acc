"""Initialization: fit Gaussian images to real images (docs/method.md §4, paper eq. 8).

All G images are fitted jointly through one batched render per step: MSE in pixel space against the
targets, one Adam per attribute group (here: one Adam with one parameter group per attribute, which is
the same thing), a StepLR (×0.5 every 20 000 steps) on the position group only, position clipping after
every step, no boundary loss. The start point is docs/method.md §4's: xy ~ U[-1, 1)², raw Cholesky ~ U[0, 1)³,
colour ~ U[0, 1)^C, opacity 1.

Library only (no typer/rich): progress is reported through ``on_step(FitStep)``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from pydantic import BaseModel, ConfigDict, Field

from gsdd_cli.core.distributed import derive_seed
from gsdd_cli.core.errors import BudgetError, DataError
from gsdd_cli.sets.gaussians import GaussianImages

DEFAULT_INIT_STEPS = 50_000
XY_STEP_SIZE = 20_000
XY_GAMMA = 0.5


def default_init_lr(height: int, width: int) -> float:
    """docs/method.md §9.2: lr 0.1 at ≤ 32 px, 0.01 above (128 px ImageNet subsets)."""
    return 0.1 if max(height, width) <= 32 else 0.01


class FitConfig(BaseModel):
    """Hyperparameters of the initialization fit (defaults: docs/method.md §4 / §9.2)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    steps: int = Field(DEFAULT_INIT_STEPS, ge=0, description="Adam steps (50 000 in the paper's code).")
    lr: Optional[float] = Field(None, gt=0, description="Adam lr for every group; None → 0.1 (≤32 px) / 0.01.")
    xy_step_size: int = Field(XY_STEP_SIZE, gt=0, description="StepLR period on the xy group.")
    xy_gamma: float = Field(XY_GAMMA, gt=0, le=1, description="StepLR factor on the xy group.")
    seed: int = Field(0, description="Seed of the random start point.")
    backend: str = "auto"
    quantize: bool = True
    antialias: bool = True
    report_every: int = Field(10, gt=0, description="Call on_step every this many steps (and at the end).")


@dataclass
class FitStep:
    """Progress of the fit, passed to ``on_step``."""

    step: int  # steps done so far (1-based)
    total: int
    loss: float  # MSE of this step (before its update)
    psnr: float  # 10·log10(1/MSE) of the batch mean MSE
    elapsed: float


def psnr_from_mse(mse: torch.Tensor | float) -> torch.Tensor | float:
    if isinstance(mse, torch.Tensor):
        return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-12))
    return 10.0 * math.log10(1.0 / max(float(mse), 1e-12))


@torch.no_grad()
def psnr_per_image(images: GaussianImages, targets: torch.Tensor, backend: str = "auto", batch: int = 512) -> torch.Tensor:
    """PSNR (dB, peak 1) of every rendered image against its target: float64 [G] on CPU."""
    out = []
    for s in range(0, images.num_images, batch):
        idx = torch.arange(s, min(s + batch, images.num_images), device=targets.device)
        r = images.render(idx, backend=backend)
        mse = (r - targets[idx].to(r.device)).double().pow(2).flatten(1).mean(1)
        out.append(psnr_from_mse(mse).cpu())
    return torch.cat(out)


def random_start(
    num_images: int, points: int, channels: int, height: int, width: int, labels: torch.Tensor,
    *, seed: int = 0, quantize: bool = True, antialias: bool = True, slots: torch.Tensor | None = None,
) -> GaussianImages:
    """docs/method.md §4 start point for ``num_images`` images (any labels).

    Image j is drawn from its own generator, seeded by (``seed``, ``slots[j]``) — its slot in the
    whole set (default j) — so an image starts the same whether it is fitted alone, in a chunk or on
    another rank.
    """
    slots = torch.arange(num_images) if slots is None else slots.reshape(-1).cpu()
    if slots.numel() != num_images:
        raise DataError(f"{slots.numel()} slot ids for {num_images} images")
    xy = torch.empty(num_images, points, 2)
    chol = torch.empty(num_images, points, 3)
    rgb = torch.empty(num_images, points, channels)
    for j, slot in enumerate(slots.tolist()):
        gen = torch.Generator().manual_seed(derive_seed(int(seed), "start", int(slot)))
        xy[j] = torch.rand(points, 2, generator=gen) * 2 - 1
        chol[j] = torch.rand(points, 3, generator=gen)
        rgb[j] = torch.rand(points, channels, generator=gen)
    total = num_images * points
    return GaussianImages(xy.view(total, 2), chol.view(total, 3), rgb.view(total, channels), torch.ones(total, 1),
                          labels, height, width, quantize=quantize, antialias=antialias)


def fit_gaussians(
    targets: torch.Tensor,  # [G, C, H, W] pixel space
    points: int,
    cfg: FitConfig | None = None,
    on_step: Callable[[FitStep], None] | None = None,
    *,
    labels: torch.Tensor | None = None,  # [G]; default 0..G-1
    start: GaussianImages | None = None,
    slots: torch.Tensor | None = None,  # [G] each image's slot in the whole set (its start seed)
) -> GaussianImages:
    """Fit G Gaussian images of ``points`` Gaussians each to ``targets`` (docs/method.md §4).

    Runs on ``targets.device``. Returns the fitted images (fp32 masters); ``start`` continues from
    given parameters instead of the random start point. The loss is the sum over images of each
    image's mean squared error, so an image's gradients — and, with Adam being element-wise, its
    whole fit — do not depend on which other images share the batch: fitting in chunks or on
    several ranks gives the same images.
    """
    cfg = cfg or FitConfig()
    if targets.dim() != 4:
        raise DataError(f"targets must be [G, C, H, W], got {list(targets.shape)}")
    if points < 1:
        raise BudgetError(f"points per image must be ≥ 1 (got {points})")
    g, c, h, w = (int(s) for s in targets.shape)
    device = targets.device
    if labels is None:
        labels = torch.arange(g)
    if start is None:
        images = random_start(g, points, c, h, w, labels.cpu(), seed=cfg.seed,
                              quantize=cfg.quantize, antialias=cfg.antialias, slots=slots).to(device)
    else:
        images = start.to(device)
    lr = cfg.lr if cfg.lr is not None else default_init_lr(h, w)
    groups = images.param_groups(lr)
    opt = torch.optim.Adam(groups)
    lambdas = [
        (lambda s: cfg.xy_gamma ** (s // cfg.xy_step_size)) if grp["name"] == "xy" else (lambda s: 1.0)
        for grp in groups
    ]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambdas)
    t0 = time.perf_counter()
    targets = targets.float()
    for step in range(cfg.steps):
        opt.zero_grad(set_to_none=True)
        rendered = images.render(backend=cfg.backend)
        loss = (rendered - targets).pow(2).flatten(1).mean(1).sum()
        loss.backward()
        opt.step()
        sched.step()
        images.clip_positions_()
        done = step + 1
        if on_step is not None and (done % cfg.report_every == 0 or done == cfg.steps or done == 1):
            mse = float(loss.detach()) / max(1, g)
            on_step(FitStep(done, cfg.steps, mse, float(psnr_from_mse(mse)), time.perf_counter() - t0))
    return images


# ------------------------------------------------------------------------------------- whole init
def select_init_indices(
    labels: torch.Tensor, num_classes: int, gpc: int, *, seed: int = 0, first: bool = False
) -> torch.Tensor:
    """Indices of GPC distinct training images per class, class-major (docs/method.md §4).

    Default: a seeded random choice without replacement per class (one generator, classes in
    order); ``first=True``: the first GPC images of each class in dataset order (code parity).
    """
    gen = torch.Generator().manual_seed(int(seed))
    chosen = []
    for cls in range(num_classes):
        idx = torch.nonzero(labels == cls, as_tuple=False).flatten()
        if idx.numel() < gpc:
            raise DataError(
                f"class {cls} has only {idx.numel()} training images, fewer than GPC {gpc}",
                hint="use a smaller --gpc (or more --points per image)",
            )
        if first:
            chosen.append(idx[:gpc])
        else:
            chosen.append(idx[torch.randperm(idx.numel(), generator=gen)[:gpc]])
    return torch.cat(chosen)


__all__ = [
    "FitConfig",
    "FitStep",
    "default_init_lr",
    "fit_gaussians",
    "psnr_from_mse",
    "psnr_per_image",
    "random_start",
    "select_init_indices",
]
