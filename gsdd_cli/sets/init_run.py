"""Fitting a whole set in memory-bounded units of classes, split across torchrun ranks, resumable.

The set is cut into *units*: groups of consecutive classes holding at most ``max_images`` images
(GPC per class). A unit's targets are produced on demand (``targets_for(classes)``: decoded real
images, selected crops, ...), fitted, and kept as fp32 parameters on the CPU; nothing else of the
dataset is resident. Under torchrun, rank r fits units r, r + W, r + 2W, ... (W ranks,
:func:`gsdd_cli.core.distributed.owned`). Every image's start point is seeded by its slot and its
loss does not involve other images (:func:`gsdd_cli.sets.fit.fit_gaussians`), so the assembled set
is the same for any number of ranks and any unit size.

Each finished unit is written at once to ``<parts>/unit-<u>.safetensors`` (atomically, with the
unit's class range and the run's key in its metadata), so a killed run started again with
``resume`` skips what was finished. At the end every unit is brought to rank 0, which returns the
whole set; the caller writes the one output file and removes the parts.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from gsdd_cli.core.distributed import (
    DistInfo,
    barrier,
    init_distributed,
    owned,
    rank_device,
    shutdown_distributed,
    to_main,
)
from gsdd_cli.core.errors import DivergenceError
from gsdd_cli.core.outputs import atomic_write_bytes
from gsdd_cli.sets.budget import make_plan, recommended_gpc
from gsdd_cli.sets.fit import (
    FitConfig,
    FitStep,
    default_init_lr,
    fit_gaussians,
    psnr_per_image,
    select_init_indices,
)
from gsdd_cli.sets.gaussians import GaussianImages
from gsdd_cli.sets.select import TeacherSelect, selection_record

PARAMS = ("xy", "cholesky", "rgb", "opacity")
DEFAULT_MAX_IMAGES = 4096  # units of fit_units() when the caller gives no bound
EXTRA = "extra."  # tensor-name prefix of a unit's extra record in its part file
Targets = torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]


@dataclass
class Unit:
    index: int
    classes: list[int]
    params: dict[str, torch.Tensor]  # fp32, CPU: xy [n·P, 2], cholesky [n·P, 3], rgb [n·P, C], opacity [n·P, 1]
    psnr: torch.Tensor  # [n] per-image score (init: PSNR in dB; sre2l: the teacher's probability of the class)
    resumed: bool = False
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # kept with the unit (init: the selection record)


def plan_units(num_classes: int, gpc: int, max_images: int) -> list[list[int]]:
    """Consecutive class groups of at most ``max_images`` images (at least one class each)."""
    per = max(1, int(max_images) // max(1, gpc))
    return [list(range(s, min(num_classes, s + per))) for s in range(0, num_classes, per)]


def parts_dir(out: str | Path) -> Path:
    """Where a run writing ``out`` keeps its finished units: ``<out>.parts/``."""
    out = Path(out)
    return out.with_name(out.name + ".parts")


def _unit_path(parts: Path, u: int) -> Path:
    return parts / f"unit-{u:06d}.safetensors"


def save_unit(parts: Path, unit: Unit, key: str) -> None:
    parts.mkdir(parents=True, exist_ok=True)
    meta = {"gsdd_init_unit": json.dumps({"index": unit.index, "classes": unit.classes, "key": key})}
    # classes: the unit's class ids (init) or any JSON list that identifies the unit's images (sre2l: slots)
    tensors = {**{k: v.contiguous() for k, v in unit.params.items()}, "psnr": unit.psnr.contiguous(),
               **{EXTRA + k: v.contiguous() for k, v in unit.extra.items()}}
    data = st_save(tensors, meta)
    atomic_write_bytes(_unit_path(parts, unit.index), data)


def load_unit(parts: Path, u: int, classes: list[int], key: str, names: Sequence[str] = PARAMS) -> Unit | None:
    """The finished unit ``u`` of this very run (same key), or None (absent, foreign or unreadable)."""
    path = _unit_path(parts, u)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("gsdd_init_unit", "{}"))
            if meta.get("key") != key or meta.get("classes") != classes:
                return None
            params = {k: f.get_tensor(k) for k in names}
            psnr = f.get_tensor("psnr")
            stored = f.keys()
            extra = {k[len(EXTRA):]: f.get_tensor(k) for k in stored if k.startswith(EXTRA)}
    except Exception:  # a torn or foreign file: fit the unit again  # noqa: BLE001
        return None
    return Unit(u, classes, params, psnr, resumed=True, extra=extra)


def run_key(fields: dict[str, Any]) -> str:
    """What a resumed run must share with the run that wrote the parts (JSON, sorted)."""
    return json.dumps(fields, sort_keys=True, default=str)


def fit_units(
    targets_for: Callable[[Sequence[int]], Targets],
    *,
    num_classes: int,
    gpc: int,
    points: int,
    shape: tuple[int, int, int],
    cfg: FitConfig,
    device: torch.device,
    info: DistInfo,
    max_images: int = DEFAULT_MAX_IMAGES,
    parts: Path | None = None,
    key: str = "",
    resume: bool = False,
    on_step: Callable[[FitStep], None] | None = None,
) -> tuple[GaussianImages | None, torch.Tensor | None, dict[str, Any], dict[str, torch.Tensor]]:
    """Fit GPC images per class, unit by unit; returns (images, psnr [G], stats, extra) on rank 0, (None,
    None, stats, {}) elsewhere.

    ``targets_for(classes)`` gives the unit's targets, or (targets, extra): tensors kept with the unit
    (in its part file, so a resumed unit has them too) and returned concatenated over the units in
    class order. ``on_step`` sees the run's progress in fit steps summed over this rank's units.
    """
    _, h, w = shape
    units = plan_units(num_classes, gpc, max_images)
    mine = owned(len(units), info)
    total_steps = max(1, cfg.steps) * len(mine)
    done_steps = 0
    local: dict[int, Unit] = {}
    for u in mine:
        classes = units[u]
        unit = load_unit(parts, u, classes, key) if (parts is not None and resume) else None
        if unit is None:
            got = targets_for(classes)
            targets, extra = got if isinstance(got, tuple) else (got, {})
            targets = targets.to(device)
            slots = torch.cat([torch.arange(k * gpc, (k + 1) * gpc) for k in classes])
            labels = torch.tensor(classes).repeat_interleave(gpc)
            base = done_steps

            def progress(s: FitStep, base: int = base) -> None:
                if on_step is not None:
                    on_step(FitStep(base + s.step, total_steps, s.loss, s.psnr, s.elapsed))

            fitted = fit_gaussians(targets, points, cfg, progress, labels=labels, slots=slots)
            psnr = psnr_per_image(fitted, targets, backend=cfg.backend)
            unit = Unit(u, classes, {k: getattr(fitted, k).detach().float().cpu() for k in PARAMS}, psnr,
                        extra=extra)
            del targets, fitted
            if not all(bool(torch.isfinite(t).all()) for t in unit.params.values()):
                if parts is not None:  # the same settings diverge again: nothing here is worth resuming
                    shutil.rmtree(parts, ignore_errors=True)
                lr = cfg.lr if cfg.lr is not None else default_init_lr(h, w)
                raise DivergenceError(f"the fit diverged (NaN or Inf parameters) with lr {lr:g} in classes "
                                      f"{classes[0]}–{classes[-1]}; nothing was written",
                                      hint="run again with a lower --lr")
            if parts is not None:
                save_unit(parts, unit, key)
        done_steps += max(1, cfg.steps)
        if on_step is not None and unit.resumed:
            on_step(FitStep(done_steps, total_steps, math.nan, math.nan, 0.0))
        local[u] = unit
    resumed = sum(1 for x in local.values() if x.resumed)
    stats = {"units": len(units), "units_this_rank": len(mine), "units_resumed": resumed, "ranks": info.world,
             "max_images_per_unit": int(max_images)}
    world = max(1, info.world)
    gathered = [to_main(local.get(u), u % world, info) for u in range(len(units))]
    if not info.is_main:
        return None, None, stats, {}
    params = {k: torch.cat([x.params[k] for x in gathered]) for k in PARAMS}
    labels = torch.arange(num_classes).repeat_interleave(gpc)
    images = GaussianImages(params["xy"], params["cholesky"], params["rgb"], params["opacity"], labels, h, w,
                            quantize=cfg.quantize, antialias=cfg.antialias)
    stats["units_resumed_all_ranks"] = sum(1 for x in gathered if x.resumed)
    extra = {k: torch.cat([x.extra[k] for x in gathered]) for k in gathered[0].extra} if gathered else {}
    return images, torch.cat([x.psnr for x in gathered]), stats, extra


@dataclass
class InitResult:
    images: GaussianImages | None  # None on ranks other than 0
    indices: torch.Tensor  # [G] training-set indices of the targets (class-major); teacher selection: [G·f²], of each crop
    psnr: torch.Tensor | None  # [G] per-image PSNR (dB)
    psnr_per_class: list[float]
    plan: object  # budget.Plan
    seconds: float
    config: dict = field(default_factory=dict)


def default_max_images(channels: int, height: int, width: int) -> int:
    """Images per unit: about 2 GiB of float32 targets (a whole CIFAR set is one unit, 224² ~3 500)."""
    return max(1, min(1 << 20, (1 << 29) // max(1, channels * height * width)))


def init_from_dataset(
    dataset,
    ipc: int,
    *,
    gpc: int | None = None,
    points: int | None = None,
    cfg: FitConfig | None = None,
    seed: int = 0,
    first: bool = False,
    device: torch.device | str = "cpu",
    on_step: Callable[[FitStep], None] | None = None,
    algorithm: str = "tm",
    info: DistInfo | None = None,
    max_images: int | None = None,
    parts: Path | None = None,
    resume: bool = False,
    select: TeacherSelect | None = None,
) -> InitResult:
    """Choose the budget plan and the target images, then fit (the whole of `gsdd init`).

    Without ``gpc``/``points`` the budget module's recommendation for ``algorithm`` is used.
    ``seed`` drives both the image choice and the random start point (unless ``cfg.seed`` differs).
    Targets are GPC real images per class, or with ``select`` GPC stitched images of the teacher's
    best crops per class (:mod:`gsdd_cli.sets.select`, chosen when the class's unit starts).
    The fit runs in units of classes (:func:`fit_units`): split over ``info``'s ranks, finished
    units kept in ``parts`` for ``resume``; rank 0 gets the whole set, the others ``images=None``.
    """
    k, c, h, w = dataset.num_classes, dataset.channels, dataset.height, dataset.width
    if gpc is None and points is None:
        gpc = recommended_gpc(ipc, h, w, c, k, algorithm)
    plan = make_plan(ipc, h, w, c, k, gpc=gpc, points=None if gpc is not None else points)
    cfg = cfg or FitConfig(seed=seed)
    mode = "teacher" if select is not None else "first" if first else "random"
    if select is None:
        indices = select_init_indices(dataset.y_train, k, plan.gpc, seed=seed, first=first)
    else:
        select.check(dataset.y_train, k, plan.gpc, h, w)
    lr = cfg.lr if cfg.lr is not None else default_init_lr(h, w)
    fields = {"what": "init", "dataset": dataset.fingerprint(), "plan": plan.to_dict(), "fit": cfg.model_dump(),
              "selection": mode, "seed": seed}
    key = run_key(fields if select is None else {**fields, "select": select.describe()})

    def targets_for(classes: Sequence[int]):
        if select is None:
            return dataset.x_train[torch.cat([indices[q * plan.gpc:(q + 1) * plan.gpc] for q in classes])]
        sel = [select.select_class(dataset.x_train, dataset.y_train, q, plan.gpc, seed, (c, h, w)) for q in classes]
        return torch.cat([x.images for x in sel]), {
            "select_index": torch.cat([x.index for x in sel]), "select_boxes": torch.cat([x.boxes for x in sel]),
            "select_score": torch.cat([x.score for x in sel]),
            "select_candidates": torch.stack([x.candidates for x in sel]),
            "select_seconds": torch.tensor([sum(x.seconds for x in sel)], dtype=torch.float64)}

    t0 = time.perf_counter()
    images, psnr, stats, extra = fit_units(
        targets_for, num_classes=k, gpc=plan.gpc, points=plan.points, shape=(c, h, w), cfg=cfg,
        device=torch.device(device), info=info or DistInfo(),
        max_images=max_images or default_max_images(c, h, w), parts=parts, key=key, resume=resume, on_step=on_step)
    seconds = time.perf_counter() - t0
    per_class = psnr.view(k, plan.gpc).mean(1).tolist() if psnr is not None else []
    record: dict[str, Any] = {}
    if select is not None:
        indices = extra.get("select_index", torch.zeros(0, dtype=torch.long))
        if extra:
            record = {"select": selection_record(indices, extra["select_boxes"], extra["select_score"],
                                                 extra["select_candidates"], float(extra["select_seconds"].sum()),
                                                 select.describe(), select.crops)}
    config = {
        "init": {
            **cfg.model_dump(),
            "lr": lr,
            "selection": mode,
            "selection_seed": seed,
            "indices": indices.tolist(),
            "psnr_mean": float(psnr.mean()) if psnr is not None else None,
            "units": stats,
            **record,
        },
        "budget": plan.to_dict(),
    }
    return InitResult(images, indices, psnr, per_class, plan, seconds, config)


def run_on_ranks(device: torch.device, device_spec: str, parts: Path | None,
                 body: Callable[[torch.device, DistInfo], Any]) -> Any:
    """``body(rank's device, info)`` in torchrun's process group (none without torchrun); the group is
    torn down afterwards, and on any failure an empty ``parts`` folder is removed first."""
    info = init_distributed(device_spec)
    try:
        out = body(rank_device(device, info), info)
    except BaseException:
        drop_empty_parts(parts)
        shutdown_distributed(info, wait=False)
        raise
    shutdown_distributed(info)
    return out


def drop_empty_parts(parts: Path | None) -> None:
    """After a failure: a parts folder without a finished unit is debris (e.g. a full disk)."""
    if parts is not None and parts.is_dir() and not any(parts.glob("unit-*.safetensors")):
        shutil.rmtree(parts, ignore_errors=True)


def remove_parts(parts: Path | None, info: DistInfo) -> None:
    """After the output is written: every rank has finished, then rank 0 removes the parts."""
    barrier(info)
    if parts is not None and info.is_main and parts.is_dir():
        shutil.rmtree(parts, ignore_errors=True)


__all__ = [
    "DEFAULT_MAX_IMAGES",
    "InitResult",
    "Unit",
    "default_max_images",
    "drop_empty_parts",
    "fit_units",
    "init_from_dataset",
    "load_unit",
    "parts_dir",
    "plan_units",
    "remove_parts",
    "run_key",
    "run_on_ranks",
    "save_unit",
]
