"""`gsdd render` as a library call: decode a `.gsd` file (or any :class:`RenderSource`) to PNG files and/or
a class-by-image grid."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Literal, Optional

import torch
from pydantic import BaseModel, ConfigDict, field_validator

from gsdd_cli.core.devices import resolve_device
from gsdd_cli.core.errors import ConfigError
from gsdd_cli.core.options import backend_option, device_option, option
from gsdd_cli.core.outputs import StagedDir, check_output_dir, check_output_file, same_path
from gsdd_cli.sets.gsdfile import load_gsd
from gsdd_cli.sets.imageio import label_rows, make_grid, png_bytes, safe_name, save_image, save_png
from gsdd_cli.sets.synthetic import SyntheticImages
from gsdd_cuda import BACKENDS, resolve_backend


class RenderConfig(BaseModel):
    """What `gsdd render` decodes and where it writes."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    file: str = option(..., "The .gsd file to decode, or a distillation checkpoint (OUT.ckpt: the run's "
                       "current set, read-only).", argument=True)
    png: Optional[str] = option(None, "Folder for one PNG per image (<class>_<name>_<k>.png).")
    grid: Optional[str] = option(None, "Write a class-by-image grid PNG here.")
    scale: float = option(1.0, "Render at this multiple k of the native resolution: round(H·k) × round(W·k) "
                          "pixels (Gaussians are resolution-free; pixel sets are resized nearest-neighbour; "
                          "docs/format.md).")
    classes: Optional[str] = option(None, "Classes to render, e.g. 0,3,5-7 (default all).")
    images: Optional[str] = option(None, "Images within each class, e.g. 0-9 (default all).")
    grid_cols: int = option(10, "Images per class shown in the grid.", gt=0)
    grid_labels: bool = option(True, "Write the class names left of the grid's rows.")
    batch: int = option(256, "Images rendered per call.", gt=0)
    device: str = device_option()
    backend: Literal[BACKENDS] = backend_option()  # type: ignore[valid-type]

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: float) -> float:
        if not (math.isfinite(v) and 0 < v <= 64):
            raise ValueError(f"--scale must be a finite number in (0, 64], got {v}")
        return v


@dataclass
class RenderSource:
    """What rendering needs of a set: its images (class-major, ``gpc`` per class) and their names."""

    images: SyntheticImages
    dataset: str
    class_names: list[str]
    gpc: int
    height: int
    width: int

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def gsd_source(path: str, device: torch.device) -> RenderSource:
    """A .gsd file as a :class:`RenderSource` (GsdFormatError, exit 4, for a bad file)."""
    gsd = load_gsd(path, device=device)
    h = gsd.header
    return RenderSource(gsd.images, h.dataset, list(h.class_names), h.gpc, h.height, h.width)


@dataclass
class RenderReport:
    written: int  # PNG files
    dataset: str
    height: int
    width: int
    out_height: int
    out_width: int


def parse_selection(spec: Optional[str], limit: int, what: str) -> list[int]:
    """'0,3,5-7' → [0, 3, 5, 6, 7]; None → all of range(limit)."""
    if spec is None:
        return list(range(limit))
    chosen: list[int] = []
    try:
        for part in spec.split(","):
            part = part.strip()
            if "-" in part:
                a, b = part.split("-", 1)
                chosen.extend(range(int(a), int(b) + 1))
            elif part:
                chosen.append(int(part))
    except ValueError:
        raise ConfigError(f"cannot parse {what} selection {spec!r} (use e.g. 0,3,5-7)") from None
    bad = [i for i in chosen if not 0 <= i < limit]
    if bad or not chosen:
        raise ConfigError(f"{what} selection {spec!r} is out of range 0..{limit - 1}")
    return sorted(set(chosen))


def _check_outputs(cfg: RenderConfig) -> None:
    if cfg.png is None and cfg.grid is None:
        raise ConfigError("nothing to write: give --png FOLDER and/or --grid FILE.png")
    inputs = {"FILE": cfg.file}
    if cfg.png is not None:
        check_output_dir(cfg.png, "--png", inputs)
    if cfg.grid is not None:
        check_output_file(cfg.grid, "--grid", inputs)
        if cfg.png is not None and same_path(cfg.png, cfg.grid):
            raise ConfigError(f"--png and --grid both name {cfg.png}; give the grid its own file name")


def render_files(cfg: RenderConfig, on_progress: Callable[[int, int], None] | None = None, *,
                 load: Callable[[torch.device], RenderSource] | None = None) -> RenderReport:
    """Render the selected images; PNGs appear in ``cfg.png`` only once all of them are written.

    ``load(device)`` reads the set once the outputs are checked (default: ``cfg.file`` as a .gsd; a
    distillation checkpoint is read by :func:`gsdd_cli.distill.checkpoint_view.render_checkpoint`).
    """
    dev = resolve_device(cfg.device)
    resolve_backend(cfg.backend, dev)  # an unknown --backend fails before anything is written
    _check_outputs(cfg)
    h = (load or (lambda d: gsd_source(cfg.file, d)))(dev)
    out_h, out_w = round(h.height * cfg.scale), round(h.width * cfg.scale)
    if out_h < 1 or out_w < 1:
        raise ConfigError(f"--scale {cfg.scale:g} turns {h.height}×{h.width} images into {out_h}×{out_w} pixels; "
                          f"use --scale {1 / min(h.height, h.width):.4g} or more")
    cls_sel = parse_selection(cfg.classes, h.num_classes, "class")
    img_sel = parse_selection(cfg.images, h.gpc, "image")
    index = torch.tensor([c * h.gpc + k for c in cls_sel for k in img_sel], dtype=torch.long)
    grid_rows: dict[int, list[torch.Tensor]] = {c: [] for c in cls_sel}
    written = 0
    with (StagedDir(cfg.png) if cfg.png is not None else contextlib.nullcontext()) as stage, torch.no_grad():
        for start in range(0, len(index), cfg.batch):
            idx = index[start : start + cfg.batch]
            imgs = h.images.render(idx, scale=cfg.scale, backend=cfg.backend).cpu()
            for g, img in zip(idx.tolist(), imgs):
                c, k = divmod(g, h.gpc)
                if stage is not None:
                    stage.write_bytes(f"{c:03d}_{safe_name(h.class_names[c])}_{k:04d}.png", png_bytes(img))
                    written += 1
                if cfg.grid is not None and len(grid_rows[c]) < cfg.grid_cols:
                    grid_rows[c].append(img)
            if on_progress is not None:
                on_progress(min(start + cfg.batch, len(index)), len(index))
        if cfg.grid is not None:  # inside the staging block: a failed grid write discards the PNGs too
            tiles = make_grid([grid_rows[c] for c in cls_sel])
            if cfg.grid_labels:
                row_height = next(iter(grid_rows.values()))[0].shape[1]
                save_image(label_rows(tiles, [h.class_names[c] for c in cls_sel], row_height), cfg.grid)
            else:
                save_png(tiles, cfg.grid)
    return RenderReport(written, h.dataset, h.height, h.width, out_h, out_w)


__all__ = ["RenderConfig", "RenderReport", "RenderSource", "gsd_source", "parse_selection", "render_files"]
