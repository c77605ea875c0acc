"""`gsdd init` as a library call: fit Gaussian images to real training images and write the `.gsd`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from gsdd_cli.core.algorithms import ALGORITHMS
from gsdd_cli.core.devices import resolve_device
from gsdd_cli.core.errors import DivergenceError
from gsdd_cli.core.options import (
    backend_option,
    data_dir_option,
    device_option,
    finite,
    option,
    out_option,
    seed_option,
    teacher_option,
)
from gsdd_cli.core.outputs import check_output_file
from gsdd_cli.data import (
    dataset_path,
    default_transform_kind,
    load_dataset,
    make_transform,
)
from gsdd_cli.models.teacher import load_teacher, teacher_header_fields
from gsdd_cli.sets.fit import DEFAULT_INIT_STEPS, FitConfig, FitStep
from gsdd_cli.sets.gsdfile import make_header, save_gsd
from gsdd_cli.sets.init_run import (
    InitResult,
    init_from_dataset,
    parts_dir,
    remove_parts,
    run_on_ranks,
)
from gsdd_cli.sets.select import (
    DEFAULT_CANDIDATES,
    DEFAULT_CROPS,
    TeacherSelect,
    default_factor,
    teacher_scorer,
)
from gsdd_cuda import BACKENDS, resolve_backend


class InitConfig(BaseModel):
    """Everything `gsdd init` depends on."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    dataset: str = option(..., "Dataset name (digits, cifar10, cifar100, imagenette, ...) or path.", argument=True)
    ipc: int = option(..., "Budget: the bytes of IPC real fp32 images per class.", gt=0)
    out: str = out_option("Output .gsd file.")
    gpc: int | None = option(None, "Gaussian images per class (default: the paper's / budget recommendation).",
                                gt=0)
    points: int | None = option(None, "Gaussians per image (GPC then follows from the budget).", gt=0)
    algo: Literal[ALGORITHMS] = option(  # type: ignore[valid-type]
        "tm", "Algorithm the init is for: picks the recommended GPC and the recorded transform.")
    steps: int = option(DEFAULT_INIT_STEPS, "Adam steps (paper code: 50 000; on a CPU a few hundred are plenty "
                        "to start).", ge=0)
    lr: float | None = option(None, "Adam lr of every attribute group (default 0.1 at ≤32 px, 0.01 above).",
                                 gt=0)
    seed: int = seed_option("Seed of the image choice and of the random start point.")
    first: bool = option(False, "Fit the first GPC images of each class (reference-code parity) instead of a "
                         "seeded random choice.")
    select: Literal["random", "teacher"] = option(
        "random", "Targets: random (GPC real images per class) or teacher (RDED: the teacher's most confident "
        "random crops of real images, factor×factor stitched per image; needs --teacher).")
    teacher: str | None = teacher_option()
    crops: int | None = option(None, f"--select teacher: random square crops scored per candidate image "
                                  f"(default {DEFAULT_CROPS}, RDED's --num-crop).", gt=0)
    factor: int | None = option(None, "--select teacher: stitch factor×factor crops of H/factor px into each "
                                   "image (default 2 at ≥ 128 px, else 1, as RDED).", gt=0, le=8)
    candidates: int | None = option(None, f"--select teacher: real images per class that are cropped and "
                                       f"scored (default max({DEFAULT_CANDIDATES}, GPC·factor²), RDED's --mipc "
                                       f"{DEFAULT_CANDIDATES}; at most the class).", gt=0)
    device: str = device_option()
    data_dir: str | None = data_dir_option()
    backend: Literal[BACKENDS] = backend_option()  # type: ignore[valid-type]
    resume: bool = option(False, "Keep the units of classes a killed run finished (OUT.parts/) and fit only the rest.")
    max_images: int | None = option(None, "Images fitted at once (a unit of whole classes; default ~2 GiB of "
                                       "targets). The result does not depend on it.", gt=0)

    _finite = field_validator("lr")(finite)

    @field_validator("points")
    @classmethod
    def _one_of(cls, v: int | None, info: Any) -> int | None:
        if v is not None and info.data.get("gpc") is not None:
            raise ValueError("give at most one of --gpc and --points")
        return v

    @model_validator(mode="after")
    def _selection(self) -> InitConfig:
        if self.select == "teacher":
            if not self.teacher:
                raise ValueError("--select teacher needs --teacher (a torchvision name, NAME=WEIGHTS or a file "
                                 "written by gsdd teacher)")
            if self.first:
                raise ValueError("--first picks the images of --select random; --select teacher picks crops")
        else:
            given = [f"--{n}" for n in ("teacher", "crops", "factor", "candidates") if getattr(self, n) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} only appl{'y' if len(given) > 1 else 'ies'} to --select teacher")
        return self


@dataclass
class InitReport:
    result: InitResult
    class_names: list[str]
    payload_bytes: int

    def summary(self, cfg: InitConfig) -> dict[str, Any]:
        r = self.result
        return {
            "out": cfg.out, "dataset": cfg.dataset, "ipc": cfg.ipc, "gpc": r.plan.gpc, "points": r.plan.points,
            "images": r.plan.num_images, "steps": cfg.steps, "seconds": round(r.seconds, 3),
            "psnr_mean": round(float(r.psnr.mean()), 3),
            "psnr_per_class": {n: round(p, 3) for n, p in zip(self.class_names, r.psnr_per_class)},
            "indices": r.indices.tolist(),
            **({"select": self.selection()} if self.selection() else {}),
        }

    def selection(self) -> dict[str, Any] | None:
        """--select teacher: the teacher's mean scores of the kept vs every candidate crop, and the time."""
        rec = self.result.config["init"].get("select")
        if not rec:
            return None
        keys = ("factor", "crops_per_image", "candidate_crops", "prob_kept_mean", "prob_candidates_mean",
                "ce_kept_mean", "ce_candidates_mean", "seconds")
        return {k: rec[k] for k in keys}


def init_set(cfg: InitConfig, on_step: Callable[[FitStep], None] | None = None) -> InitReport | None:
    """Fit GPC Gaussian images per class to real training images (docs/method.md §4) and save them.

    Everything is checked (device, renderer, output path) before the dataset is read; a fit that
    diverges writes nothing. Under torchrun the units of classes are split across the ranks (the
    file is the same for any number of ranks); rank 0 writes it and returns the report, the other
    ranks return None. Finished units wait in ``OUT.parts/`` until the file is written.
    """
    dev = resolve_device(cfg.device)
    resolve_backend(cfg.backend, dev)  # an unknown or unavailable renderer fails before any work
    check_output_file(cfg.out, "--out", {"DATASET": dataset_path(cfg.dataset)})
    return run_on_ranks(dev, cfg.device, parts_dir(cfg.out), lambda d, info: _init(cfg, d, info, on_step))


def _init(cfg: InitConfig, dev, info, on_step) -> InitReport | None:
    ds = load_dataset(cfg.dataset, cfg.data_dir)
    fit = FitConfig(steps=cfg.steps, lr=cfg.lr, seed=cfg.seed, backend=cfg.backend)
    parts = parts_dir(cfg.out)
    select, teacher_fields = None, {}
    if cfg.select == "teacher":
        teacher = load_teacher(cfg.teacher, dataset=ds, device=dev, data_dir=cfg.data_dir)
        select = TeacherSelect(teacher_scorer(teacher, make_transform(ds, "normalize"), ds.height, ds.width),
                               crops=cfg.crops or DEFAULT_CROPS, factor=cfg.factor or default_factor(ds.height, ds.width),
                               candidates=cfg.candidates, identity=teacher.identity)
        teacher_fields = teacher_header_fields(teacher.identity)
    r = init_from_dataset(ds, cfg.ipc, gpc=cfg.gpc, points=cfg.points, cfg=fit, seed=cfg.seed, first=cfg.first,
                          device=dev, on_step=on_step, algorithm=cfg.algo, info=info, max_images=cfg.max_images,
                          parts=parts, resume=cfg.resume, select=select)
    if r.images is None:  # not rank 0: its units went to rank 0
        remove_parts(parts, info)
        return None
    if r.images.first_nonfinite() is not None:
        raise DivergenceError(f"the fit diverged (NaN or Inf parameters) with lr {r.config['init']['lr']:g}; "
                              f"nothing was written", hint="run again with a lower --lr")
    kind = default_transform_kind(ds.name, cfg.algo)
    header = make_header(
        r.images, dataset=cfg.dataset, class_names=list(ds.class_names), ipc=cfg.ipc, transform=kind,
        transform_params=make_transform(ds, kind).describe(),
        algorithm="init", config={**r.config, "seconds": round(r.seconds, 3), "for_algorithm": cfg.algo},
        **teacher_fields,
    )
    save_gsd(cfg.out, r.images, header)
    remove_parts(parts, info)
    return InitReport(r, list(ds.class_names), r.images.payload_bytes())


__all__ = ["InitConfig", "InitReport", "init_set"]
