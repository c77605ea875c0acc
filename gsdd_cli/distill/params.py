"""The synthetic images of a run, per parameterization (``--param gaussian|pixel``).

Everything in a distillation run that depends on the parameterization lives here: the initial images,
the optimizer, and the checkpointed state. The algorithms (tm.py, dm.py, dc.py) only use the
:class:`gsdd_cli.sets.synthetic.SyntheticImages` interface.

- **gaussian**: GPC images of N Gaussians per class (``--init FILE.gsd`` or an init fit run in
  process), Adam with one group per attribute, lr ``--lr`` (1e-3), position clipping after each step.
- **pixel**: IPC images per class, initialised from real training images (a seeded draw without
  replacement, ``--seed``; ``--init-first`` takes the first ones; or ``--init`` a pixel ``.gsd``),
  optimized in the network space of the run's transform with SGD(lr ``--lr-img``, momentum 0.5) —
  the optimizer and space of the published pixel methods.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from gsdd_cli.core.devices import resolve_device
from gsdd_cli.core.errors import ConfigError, DivergenceError
from gsdd_cli.data import default_transform_kind, load_dataset, make_transform
from gsdd_cli.data.transforms import apply_in_batches
from gsdd_cli.distill.common import Context, DistInfo
from gsdd_cli.distill.config import PIXEL_MOMENTUM, DistillConfig
from gsdd_cli.sets.fit import FitConfig, default_init_lr, select_init_indices
from gsdd_cli.sets.init_run import init_from_dataset
from gsdd_cli.sets.gaussians import GaussianImages
from gsdd_cli.sets.gsdfile import load_gsd
from gsdd_cli.sets.pixels import PixelImages
from gsdd_cli.sets.synthetic import SyntheticImages


def initial_images(cfg: DistillConfig, ds, device: torch.device, transform: torch.nn.Module,
                   on_init_step: Callable[[Any], None] | None = None) -> tuple[SyntheticImages, dict]:
    """The images a fresh run starts from, and a record of where they came from."""
    if cfg.init:
        return _from_file(cfg, ds, transform)
    if cfg.param == "pixel":
        return _real_pixels(cfg, ds, transform)
    return _fitted_gaussians(cfg, ds, device, on_init_step)


def _from_file(cfg: DistillConfig, ds, transform) -> tuple[SyntheticImages, dict]:
    f = load_gsd(cfg.init, device="cpu", quantize=cfg.quantize)
    h = f.header
    want = (ds.num_classes, ds.channels, ds.height, ds.width)
    got = (h.num_classes, h.channels, h.height, h.width)
    if got != want:
        raise ConfigError(f"--init {cfg.init}: made for (classes, C, H, W) = {got}, the dataset has {want}")
    if h.parameterization != cfg.param:
        raise ConfigError(f"--init {cfg.init} is a {h.parameterization} set; this run distils a {cfg.param} set")
    for key, value in (("ipc", h.ipc), ("gpc", h.gpc), ("points", h.points_per_image)):
        if getattr(cfg, key) != value:
            raise ConfigError(f"--init {cfg.init} has {key} {value}, but this run asks for {getattr(cfg, key)}",
                              hint=f"drop --{key} (it follows from the init file) or use another init file")
    images = f.images
    if cfg.param == "pixel":
        images = images.to(_device_of(transform)).in_space(transform)
    else:
        images.antialias = cfg.antialias
    record = {"source": str(cfg.init), "algorithm": h.algorithm}
    record.update({k: v for k, v in (h.config or {}).items() if k == "init"})
    return images, record


def _real_pixels(cfg: DistillConfig, ds, transform) -> tuple[PixelImages, dict]:
    indices = select_init_indices(ds.y_train, ds.num_classes, cfg.ipc, seed=cfg.seed, first=cfg.init_first)
    labels = torch.arange(ds.num_classes).repeat_interleave(cfg.ipc)
    pixels = ds.x_train[indices].to(_device_of(transform))
    images = PixelImages.from_pixels(pixels, labels, space=transform)
    record = {"source": "real", "selection": "first" if cfg.init_first else "random",
              "selection_seed": cfg.seed, "indices": indices.tolist()}
    return images, record


def _fitted_gaussians(cfg: DistillConfig, ds, device, on_init_step) -> tuple[GaussianImages, dict]:
    fit_cfg = FitConfig(steps=cfg.init_steps, lr=cfg.init_lr, seed=cfg.seed, backend=cfg.backend,
                        quantize=cfg.quantize, antialias=cfg.antialias)
    try:
        r = init_from_dataset(ds, cfg.ipc, gpc=cfg.gpc, points=cfg.points, cfg=fit_cfg, seed=cfg.seed,
                              first=cfg.init_first, device=device, on_step=on_init_step, algorithm=cfg.algo)
    except DivergenceError:
        r = None
    if r is None or r.images.first_nonfinite() is not None:
        lr = cfg.init_lr if cfg.init_lr is not None else default_init_lr(ds.height, ds.width)
        raise DivergenceError(f"the initialization fit diverged (NaN or Inf parameters) with lr {lr:g}",
                              hint="run again with a lower --init-lr")
    info = dict(r.config["init"])
    info.update(source="fitted", seconds=round(r.seconds, 3), psnr_per_class=[round(p, 3) for p in r.psnr_per_class])
    return r.images, info


def stand_in_images(cfg: DistillConfig, ds, transform: torch.nn.Module) -> SyntheticImages:
    """Images of the run's shape and parameterization with placeholder values (what a memory
    pre-flight needs before the real initial images are made, which may take long)."""
    labels = torch.arange(ds.num_classes).repeat_interleave(cfg.gpc)
    if cfg.param == "pixel":
        pixels = torch.full((labels.numel(), ds.channels, ds.height, ds.width), 0.5)
        return PixelImages.from_pixels(pixels.to(_device_of(transform)), labels, space=transform)
    return GaussianImages.random(ds.num_classes, cfg.gpc, cfg.points, ds.channels, ds.height, ds.width,
                                 quantize=cfg.quantize, antialias=cfg.antialias)


def images_from_state(cfg: DistillConfig, tensors: dict[str, torch.Tensor], labels: torch.Tensor, ds,
                      transform: torch.nn.Module) -> SyntheticImages:
    """Rebuild the images of a checkpoint (:meth:`SyntheticImages.state_tensors`) exactly."""
    if cfg.param == "pixel":
        return PixelImages(tensors["values"], labels, space=transform)
    return GaussianImages(tensors["xy"], tensors["cholesky"], tensors["rgb"], tensors["opacity"], labels,
                          ds.height, ds.width, quantize=cfg.quantize, antialias=cfg.antialias)


def prepare(images: SyntheticImages, cfg: DistillConfig) -> None:
    """Per-parameterization switches of the config (Gaussians: whether opacity is trained)."""
    if isinstance(images, GaussianImages):
        images.opacity.requires_grad_(cfg.train_opacity)


def optimizer_groups(images: SyntheticImages, cfg: DistillConfig) -> list[dict]:
    """The optimizer's parameter groups with the learning rates of ``cfg`` (pixels: ``lr_img``)."""
    return images.param_groups(cfg.lr_img if cfg.param == "pixel" else cfg.lr)


def make_optimizer(images: SyntheticImages, cfg: DistillConfig) -> torch.optim.Optimizer:
    """Gaussians: Adam, one group per attribute (lr ``cfg.lr``). Pixels: SGD(``cfg.lr_img``, momentum 0.5)."""
    if cfg.param == "pixel":
        if cfg.lr_img is None:
            raise ConfigError("a pixel set needs --lr-img (build the config with build_config for the default)")
        return torch.optim.SGD(optimizer_groups(images, cfg), lr=cfg.lr_img, momentum=PIXEL_MOMENTUM)
    return torch.optim.Adam(optimizer_groups(images, cfg))


def fresh_context(cfg: DistillConfig, on_init_step: Callable[[Any], None] | None = None):
    """The :class:`~gsdd_cli.distill.common.Context` a fresh single-process run starts with (data,
    transform, initial images, optimizer), without the run loop: for benchmarks and tests that drive
    an algorithm's ``step`` themselves. DM/DC data in network space is loaded as the loop does."""
    device = resolve_device(cfg.device)
    ds = load_dataset(cfg.dataset, cfg.data_dir)
    cfg = cfg.model_copy(update={"transform": cfg.transform or default_transform_kind(ds.name, cfg.algo)})
    transform = make_transform(ds, cfg.transform).to(device)
    images, _ = initial_images(cfg, ds, device, transform, on_init_step)
    images = images.to(device)
    prepare(images, cfg)
    ctx = make_context(cfg, device, images, transform, ds)
    attach_real_data(ctx, ds)
    return ctx


def make_context(cfg: DistillConfig, device: torch.device, images: SyntheticImages, transform, ds, dist=None):
    """A Context for ``images`` with a fresh optimizer (see :func:`make_optimizer`)."""
    return Context(cfg=cfg, device=device, images=images, optimizer=make_optimizer(images, cfg), transform=transform,
                   num_classes=ds.num_classes, channels=ds.channels, height=ds.height, width=ds.width,
                   dist=dist or DistInfo())


def attach_real_data(ctx, ds) -> None:
    """DM and DC: the real training images in network space and their per-class indices."""
    if ctx.cfg.algo in ("dm", "dc"):
        ctx.real_x = apply_in_batches(ctx.transform, ds.x_train, ctx.device,
                                      what="distribution/gradient matching (real batches from every training image)")
        ctx.real_y = ds.y_train
        ctx.class_index = [ds.indices_of_class(c) for c in range(ds.num_classes)]


def _device_of(module: torch.nn.Module) -> torch.device:
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return torch.device("cpu")


__all__ = ["attach_real_data", "fresh_context", "make_context", "images_from_state", "stand_in_images", "initial_images", "make_optimizer", "optimizer_groups", "prepare"]
