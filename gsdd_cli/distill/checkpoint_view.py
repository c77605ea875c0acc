"""``gsdd render OUT.ckpt``: the current synthetic set of a distillation checkpoint, read-only.

A checkpoint (:mod:`gsdd_cli.distill.checkpoint`) holds the fp32 masters and the run's settings, so
the set is rebuilt as the run would write it (Gaussians with the run's bf16 rounding and antialiasing;
pixel sets through the run's transform, which needs the dataset) and rendered by
:func:`gsdd_cli.sets.render_files.render_files`. Nothing is written next to the checkpoint, and a
checkpoint a running distillation replaces meanwhile is read whole (it is renamed into place). A
missing, corrupt or foreign checkpoint is one ``error:`` line with exit code 4, as a bad .gsd file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from pydantic import ValidationError

from gsdd_cli.core.errors import CheckpointError, GsdFormatError, first_line
from gsdd_cli.data import load_dataset, make_transform
from gsdd_cli.distill.checkpoint import load_checkpoint
from gsdd_cli.distill.config import DistillConfig
from gsdd_cli.distill.params import images_from_state
from gsdd_cli.sets.render_files import RenderConfig, RenderReport, RenderSource, render_files

ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive; a .gsd file is safetensors


def is_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` names a checkpoint: the ``.ckpt`` suffix, or a file that is a zip archive."""
    p = Path(path)
    if p.suffix.lower() == ".ckpt":
        return True
    try:
        with open(p, "rb") as f:
            return f.read(4) == ZIP_MAGIC
    except OSError:
        return False


@dataclass
class CheckpointRender:
    report: RenderReport
    iteration: int  # the iterations the shown set has been through
    iterations: int  # the run's total
    algo: str


def checkpoint_source(path: str | Path, device: torch.device) -> tuple[RenderSource, dict[str, Any]]:
    """The set of a checkpoint, ready to render, and what it is: iteration, the run's iterations, algorithm."""
    p = Path(path)
    if not p.exists():
        raise GsdFormatError(f"{p}: no such file")
    if not p.is_file():
        raise GsdFormatError(f"{p}: not a file")
    try:
        state = load_checkpoint(p)
    except CheckpointError as e:
        e.hint = None  # its hint is about --resume; here nothing is resumed
        raise
    try:
        cfg = DistillConfig.model_validate(state["config"])
    except (ValidationError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {p} records settings this gsdd cannot read ({first_line(e, 80)})") from None
    ds = load_dataset(cfg.dataset, cfg.data_dir)
    transform = make_transform(ds, cfg.transform).to(device) if cfg.param == "pixel" else None
    try:
        images = images_from_state(cfg, state["images"], state["labels"], ds, transform).to(device)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {p}: its images cannot be rebuilt ({first_line(e, 80)})") from None
    gpc = int(cfg.gpc or 0)
    if gpc < 1 or images.labels.numel() != gpc * ds.num_classes:
        raise CheckpointError(f"checkpoint {p} holds {images.labels.numel()} images, not {gpc} per class of "
                              f"{ds.num_classes} classes")
    src = RenderSource(images, ds.name, list(ds.class_names), gpc, ds.height, ds.width)
    return src, {"iteration": int(state["iteration"]), "iterations": cfg.iterations, "algo": cfg.algo}


def render_checkpoint(cfg: RenderConfig, on_progress: Callable[[int, int], None] | None = None) -> CheckpointRender:
    """:func:`render_files` on the set of the checkpoint ``cfg.file`` (outputs checked first)."""
    seen: dict[str, Any] = {}

    def load(device: torch.device) -> RenderSource:
        src, what = checkpoint_source(cfg.file, device)
        seen.update(what)
        return src

    report = render_files(cfg, on_progress, load=load)
    return CheckpointRender(report, **seen)


__all__ = ["CheckpointRender", "checkpoint_source", "is_checkpoint", "render_checkpoint"]
