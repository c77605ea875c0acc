"""`gsdd distill --algo sre2l`: SRe2L-style recovery of Gaussian (or pixel) images from a teacher.

No real image is used. Each synthetic image is optimised so that the teacher, on a randomly
cropped, flipped and shifted view of it, predicts its class (cross-entropy) and its BatchNorm
layers see their running statistics (BN matching), as SRe2L recovers images (VILA-Lab/SRe2L,
``SRe2L/recover/data_synthesis.py`` and ``recover.sh``; docs/imagenet.md lists every constant).

SRe2L optimises one batch at a time — the k-th image of 100 classes — for all its iterations, then
the next. gsdd keeps that structure as *units*: unit (k, class chunk) holds image k of
``batch_syn`` (default 100) consecutive classes. A unit's start point, augmentation draws and
optimiser depend only on the unit, so units are split across torchrun ranks (rank r does units r,
r + W, ...) and the file is the same for any number of ranks. Each finished unit is written to
``OUT.parts/`` at once; ``--resume`` keeps them. Rank 0 assembles the set and writes one ``.gsd``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from gsdd_cli.core.devices import resolve_device
from gsdd_cli.core.distributed import (
    DistInfo,
    derive_seed,
    owned,
    to_main,
)
from gsdd_cli.core.errors import ConfigError, DivergenceError
from gsdd_cli.core.outputs import check_output_file
from gsdd_cli.data import dataset_path, load_dataset, make_transform
from gsdd_cli.distill.results import DistillInterrupted, DistillResult, DistillStep
from gsdd_cli.models.teacher import load_teacher, teacher_header_fields
from gsdd_cli.sets.fit import default_init_lr, random_start
from gsdd_cli.sets.gaussians import GaussianImages
from gsdd_cli.sets.gsdfile import load_gsd, make_header, save_gsd
from gsdd_cli.sets.init_run import PARAMS, Unit, load_unit, parts_dir, remove_parts, run_key, run_on_ranks, save_unit
from gsdd_cli.sets.pixels import PixelImages

R_BN = 0.01  # recover.sh: --r-bn 0.01
FIRST_BN_MULTIPLIER = 10.0  # data_synthesis.py: --first-bn-multiplier default 10 (first BN layer's weight)
BETAS = (0.5, 0.9)  # data_synthesis.py: Adam(betas=[0.5, 0.9], eps=1e-8)
CLASS_BATCH = 100  # recover.sh: --batch-size 100 (classes per optimisation batch)
PIXEL_LR = 0.25  # recover.sh: --lr 0.25, on normalised images (here: × the dataset's mean std in pixel space)
ITERATIONS = 1000  # data_synthesis.py default; recover.sh uses 4 000
CROP_SCALE, CROP_RATIO = (0.08, 1.0), (3 / 4, 4 / 3)  # transforms.RandomResizedCrop(224) defaults


def jitter_for(height: int) -> int:
    """SRe2L's random shift: 32 px at 224² (data_synthesis.py), 4 px at 32² (recover_cifar.py)."""
    return max(1, round(height * 32 / 224)) if height > 32 else max(1, round(height / 8))


class BNMatch:
    """Σ_l w_l (‖μ_l − running μ_l‖₂ + ‖σ²_l − running σ²_l‖₂) over the teacher's BN layers, w_0 = 10."""

    def __init__(self, teacher):
        self.terms: list[torch.Tensor] = []
        self.handles = [m.register_forward_hook(self._hook) for _, m in teacher.bn_layers()]
        if not self.handles:
            raise ConfigError(f"teacher {teacher.identity.get('name') or teacher.identity.get('arch')} has no "
                              "BatchNorm layers; SRe2L recovery matches BatchNorm statistics",
                              hint="train one with `gsdd teacher DATASET --arch resnet18bn` or use a torchvision "
                                   "ResNet")

    def _hook(self, module, inputs, output):
        x = inputs[0]
        mean = x.mean(dim=(0, 2, 3))
        var = x.transpose(0, 1).reshape(x.shape[1], -1).var(dim=1, unbiased=False)
        self.terms.append(torch.norm(module.running_var - var, 2) + torch.norm(module.running_mean - mean, 2))

    def take(self) -> torch.Tensor:
        w = [FIRST_BN_MULTIPLIER] + [1.0] * (len(self.terms) - 1)
        total = sum(t * wi for t, wi in zip(self.terms, w))
        self.terms = []
        return total

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def augment(x: torch.Tensor, gen: torch.Generator, jitter: int) -> torch.Tensor:
    """One random-resized crop (scale 0.08–1, ratio 3/4–4/3, back to H×W), flip and roll for the batch."""
    _, _, h, w = x.shape
    u = torch.rand(5, generator=gen).tolist()
    area = h * w * (CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * u[0])
    ratio = math.exp(math.log(CROP_RATIO[0]) + (math.log(CROP_RATIO[1]) - math.log(CROP_RATIO[0])) * u[1])
    ch = min(h, max(1, round(math.sqrt(area / ratio))))
    cw = min(w, max(1, round(math.sqrt(area * ratio))))
    top, left = int(u[2] * (h - ch + 1)), int(u[3] * (w - cw + 1))
    y = F.interpolate(x[:, :, top : top + ch, left : left + cw], size=(h, w), mode="bilinear", align_corners=False)
    if u[4] < 0.5:
        y = y.flip(3)
    shifts = torch.randint(0, jitter + 1, (2,), generator=gen).tolist()
    return torch.roll(y, shifts=(shifts[0], shifts[1]), dims=(2, 3))


def units_of(num_classes: int, gpc: int, class_batch: int) -> list[list[int]]:
    """Unit u = image k of a chunk of classes, as slots (class·GPC + k); k outer, chunks inner (SRe2L's order)."""
    chunks = [list(range(s, min(num_classes, s + class_batch))) for s in range(0, num_classes, class_batch)]
    return [[c * gpc + k for c in chunk] for k in range(gpc) for chunk in chunks]


def _start(cfg, slots: list[int], gpc: int, shape, init, device):
    """The unit's images: from --init (those slots) or the noise start seeded by the slots."""
    c, h, w = shape
    labels = torch.tensor([s // gpc for s in slots])
    if cfg.param == "pixel":
        if init is not None:
            vals = init.render(torch.tensor(slots)).detach().cpu()
        else:
            vals = torch.stack([torch.rand(c, h, w, generator=torch.Generator().manual_seed(
                derive_seed(cfg.seed, "sre2l-start", s))) for s in slots])
        return PixelImages(vals.clamp(0, 1), labels).to(device)
    if init is not None:
        p = init.points
        rows = torch.cat([torch.arange(s * p, (s + 1) * p) for s in slots])
        return GaussianImages(init.xy.detach()[rows], init.cholesky.detach()[rows], init.rgb.detach()[rows],
                              init.opacity.detach()[rows], labels, h, w, quantize=cfg.quantize,
                              antialias=cfg.antialias).to(device)
    return random_start(len(slots), cfg.points, c, h, w, labels, seed=derive_seed(cfg.seed, "sre2l"),
                        quantize=cfg.quantize, antialias=cfg.antialias, slots=torch.tensor(slots)).to(device)


def recover_unit(images, teacher, bn: BNMatch, *, iterations: int, lr: float, seed: int, unit: int, jitter: int,
                 backend: str, r_bn: float = R_BN, on_iter: Callable[[int, float], None] | None = None) -> tuple[float, torch.Tensor]:
    """Optimise one unit in place; returns (final loss, per-image teacher probability of the class)."""
    labels = images.labels.to(teacher.device)
    opt = torch.optim.Adam(images.param_groups(lr) if isinstance(images, GaussianImages) else images.parameters(),
                           lr=lr, betas=BETAS, eps=1e-8)
    base = [g["lr"] for g in opt.param_groups]
    gen = torch.Generator().manual_seed(derive_seed(seed, "sre2l-aug", unit))
    loss_v = math.nan
    for it in range(iterations):
        f = 0.5 * (1 + math.cos(math.pi * it / iterations))  # SRe2L's lr_cosine_policy, no warm-up
        for g, b0 in zip(opt.param_groups, base):
            g["lr"] = b0 * f
        x = augment(images.render(backend=backend), gen, jitter)
        loss = F.cross_entropy(teacher.pixel_logits(x), labels) + r_bn * bn.take()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if isinstance(images, GaussianImages):
            images.after_step()
        else:
            with torch.no_grad():
                images.values.clamp_(0, 1)  # data_synthesis.py: clip to the valid pixel range
        loss_v = float(loss.detach())
        if not math.isfinite(loss_v):
            raise DivergenceError(f"SRe2L recovery diverged (loss {loss_v}) in unit {unit}, iteration {it + 1}",
                                  hint="run again with a lower --lr")
        if on_iter is not None:
            on_iter(it + 1, loss_v)
    with torch.no_grad():
        prob = F.softmax(teacher.pixel_logits(images.render(backend=backend)), 1).gather(1, labels[:, None])[:, 0]
        bn.terms = []
    return loss_v, prob.double().cpu()


def _tensors(images) -> dict[str, torch.Tensor]:
    if isinstance(images, PixelImages):
        return {"values": images.values.detach().float().cpu()}
    return {k: getattr(images, k).detach().float().cpu() for k in PARAMS}


def run_recovery(cfg, on_step: Callable[[Any], None] | None = None, *, resume: bool = False,
                 notify: Callable[[str], None] | None = None):
    """The whole `gsdd distill --algo sre2l` (a resolved DistillConfig); returns a DistillResult on rank 0."""
    if not cfg.out:
        raise ConfigError("no output file: give --out FILE.gsd")
    if not cfg.teacher:
        raise ConfigError("--algo sre2l needs --teacher (a torchvision name, NAME=WEIGHTS or a `gsdd teacher` file)")
    dev = resolve_device(cfg.device)
    check_output_file(cfg.out, "--out", {"DATASET": dataset_path(cfg.dataset), "--init": cfg.init})
    parts = parts_dir(cfg.out)
    try:
        return run_on_ranks(dev, cfg.device, parts, lambda d, info: _recover(cfg, d, info, on_step, resume, notify))
    except KeyboardInterrupt:
        done = len(list(parts.glob("unit-*.safetensors"))) if parts.is_dir() else 0
        raise DistillInterrupted(parts if done else None, done) from None


def _recover(cfg, dev, info: DistInfo, on_step, resume, notify):
    t0 = time.perf_counter()
    ds = load_dataset(cfg.dataset, cfg.data_dir)
    teacher = load_teacher(cfg.teacher, dataset=ds, device=dev, data_dir=cfg.data_dir)
    bn = BNMatch(teacher)
    k, shape = ds.num_classes, (ds.channels, ds.height, ds.width)
    gpc = cfg.gpc
    init = None
    if cfg.init:
        init = load_gsd(cfg.init).images
        want = (k * gpc, shape[0], shape[1], shape[2])
        got = (init.num_images, init.channels, init.height, init.width)
        if got != want or (cfg.param == "gaussian" and getattr(init, "points", None) != cfg.points):
            raise ConfigError(f"--init {cfg.init}: (images, C, H, W) = {got} does not match this run's {want}"
                              + ("" if cfg.param == "pixel" else f" with {cfg.points} points per image"))
    lr = cfg.lr_recover or (PIXEL_LR * sum(ds.std) / len(ds.std) if cfg.param == "pixel"
                            else default_init_lr(ds.height, ds.width))
    jitter = cfg.jitter if cfg.jitter is not None else jitter_for(ds.height)
    class_batch = cfg.batch_syn or CLASS_BATCH
    units = units_of(k, gpc, class_batch)
    mine = owned(len(units), info)
    constants = {"r_bn": cfg.r_bn, "first_bn_multiplier": FIRST_BN_MULTIPLIER, "betas": list(BETAS), "lr": lr,
                 "lr_schedule": "cosine to 0, no warm-up", "iterations": cfg.iterations, "jitter": jitter,
                 "class_batch": class_batch, "crop_scale": list(CROP_SCALE), "crop_ratio": [3 / 4, 4 / 3],
                 "start": str(cfg.init) if cfg.init else "noise", "units": len(units), "ranks": info.world}
    key = run_key({"what": "sre2l", "cfg": cfg.model_dump(exclude={"device", "tensorboard"}),
                   "teacher": teacher.identity.get("weights_sha256"), **constants, "ranks": None})
    parts = parts_dir(cfg.out)
    total, done = len(mine) * cfg.iterations, 0
    local: dict[int, Unit] = {}
    last_loss = math.nan
    for u in mine:
        slots = units[u]
        names = ("values",) if cfg.param == "pixel" else PARAMS
        unit = load_unit(parts, u, slots, key, names) if resume else None
        if unit is None:
            images = _start(cfg, slots, gpc, shape, init, dev)
            t_it = [time.perf_counter()]

            def on_iter(i, loss, base=done, u=u):
                now = time.perf_counter()
                if on_step is not None:
                    on_step(DistillStep(base + i, total, loss, {"unit": float(u)}, now - t_it[0], 0.0))
                t_it[0] = now

            last_loss, prob = recover_unit(images, teacher, bn, iterations=cfg.iterations, lr=lr, seed=cfg.seed,
                                           unit=u, jitter=jitter, backend=cfg.backend, r_bn=cfg.r_bn,
                                           on_iter=on_iter)
            unit = Unit(u, slots, _tensors(images), prob)
            save_unit(parts, unit, key)
        done += cfg.iterations
        local[u] = unit
    bn.close()
    world = max(1, info.world)
    gathered = [to_main(local.get(u), u % world, info) for u in range(len(units))]
    if not info.is_main:
        remove_parts(parts, info)
        return None
    order = torch.tensor([s for x in gathered for s in x.classes])  # slots in unit order
    inv = torch.empty_like(order)
    inv[order] = torch.arange(order.numel())
    prob = torch.cat([x.psnr for x in gathered])[inv]
    labels = torch.arange(k).repeat_interleave(gpc)
    if cfg.param == "pixel":
        images = PixelImages(torch.cat([x.params["values"] for x in gathered])[inv], labels)
    else:
        p = cfg.points
        rows = (inv[:, None] * p + torch.arange(p)).reshape(-1)
        cat = {n: torch.cat([x.params[n] for x in gathered])[rows] for n in PARAMS}
        images = GaussianImages(cat["xy"], cat["cholesky"], cat["rgb"], cat["opacity"], labels, ds.height, ds.width,
                                quantize=cfg.quantize, antialias=cfg.antialias)
    seconds = time.perf_counter() - t0
    record = {"recovery": {**constants, "teacher_prob_mean": float(prob.mean()), "seconds": round(seconds, 3),
                           "units_resumed": sum(1 for x in gathered if x.resumed)}, "budget": {"ipc": cfg.ipc,
              "gpc": gpc, "points": cfg.points}, "distill": json.loads(cfg.model_dump_json())}
    header = make_header(images, dataset=cfg.dataset, class_names=list(ds.class_names), ipc=cfg.ipc,
                         transform="normalize", transform_params=make_transform(ds, "normalize").describe(),
                         algorithm="sre2l", config=record, **teacher_header_fields(teacher.identity))
    save_gsd(cfg.out, images, header)
    remove_parts(parts, info)
    if notify is not None:
        notify(f"teacher's mean probability of the class on the recovered images: {float(prob.mean()):.3f}")
    return DistillResult(out=Path(cfg.out), config=cfg, iterations=cfg.iterations, seconds=seconds,
                         final_loss=last_loss, init={"source": record["recovery"]["start"]})


__all__ = ["BNMatch", "augment", "jitter_for", "recover_unit", "run_recovery", "units_of"]
