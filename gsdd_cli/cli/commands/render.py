"""`gsdd render`: decode a .gsd file to PNG images and/or a class-by-image grid."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Optional

import torch
import typer

from gsdd_cli.cli.common import BackendOpt, DeviceOpt, QuietOpt, handles_errors, out
from gsdd_cli.cli.console import make_progress
from gsdd_cli.core.devices import resolve_device
from gsdd_cli.core.errors import ConfigError
from gsdd_cli.sets.gsdfile import load_gsd
from gsdd_cuda import resolve_backend
from gsdd_cli.sets.imageio import label_rows, make_grid, png_bytes, safe_name, save_image, save_png
from gsdd_cli.core.outputs import StagedDir, check_output_dir, check_output_file, same_path


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


@handles_errors
def render(
    file: Path = typer.Argument(..., help="The .gsd file to decode."),
    png: Optional[Path] = typer.Option(None, "--png", help="Folder for one PNG per image (<class>_<name>_<k>.png)."),
    grid: Optional[Path] = typer.Option(None, "--grid", help="Write a class-by-image grid PNG here."),
    scale: float = typer.Option(1.0, "--scale", help="Render at this multiple k of the native resolution: round(H·k) × round(W·k) pixels (Gaussians are resolution-free; pixel sets are resized nearest-neighbour; docs/format.md)."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Classes to render, e.g. 0,3,5-7 (default all)."),
    images: Optional[str] = typer.Option(None, "--images", help="Images within each class, e.g. 0-9 (default all)."),
    grid_cols: int = typer.Option(10, "--grid-cols", help="Images per class shown in the grid."),
    grid_labels: bool = typer.Option(True, "--grid-labels/--no-grid-labels", help="Write the class names left of the grid's rows."),
    batch: int = typer.Option(256, "--batch", help="Images rendered per call."),
    device: DeviceOpt = "auto",
    backend: BackendOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Decode a .gsd file to images (pixel space, clipped to [0, 1] for PNG).

    Examples:
      gsdd render c10.gsd --png out/
      gsdd render c10.gsd --grid grid.png --scale 4 --images 0-9
    """
    if png is None and grid is None:
        raise ConfigError("nothing to write: give --png FOLDER and/or --grid FILE.png")
    if not math.isfinite(scale) or scale <= 0 or scale > 64:
        raise ConfigError(f"--scale must be a finite number in (0, 64], got {scale}")
    if batch < 1 or grid_cols < 1:
        raise ConfigError("--batch and --grid-cols must be positive")
    dev = resolve_device(device)
    resolve_backend(backend, dev)  # an unknown --backend fails before anything is written
    inputs = {"FILE": file}
    if png is not None:
        check_output_dir(png, "--png", inputs)
    if grid is not None:
        check_output_file(grid, "--grid", inputs)
        if png is not None and same_path(png, grid):
            raise ConfigError(f"--png and --grid both name {png}; give the grid its own file name")
    gsd = load_gsd(file, device=dev)
    h = gsd.header
    out_h, out_w = round(h.height * scale), round(h.width * scale)
    if out_h < 1 or out_w < 1:
        raise ConfigError(
            f"--scale {scale:g} turns {h.height}×{h.width} images into {out_h}×{out_w} pixels; "
            f"use --scale {1 / min(h.height, h.width):.4g} or more"
        )
    cls_sel = parse_selection(classes, h.num_classes, "class")
    img_sel = parse_selection(images, h.gpc, "image")
    index = torch.tensor([c * h.gpc + k for c in cls_sel for k in img_sel], dtype=torch.long)
    grid_rows: dict[int, list[torch.Tensor]] = {c: [] for c in cls_sel}
    written = 0
    # PNGs go to a hidden staging folder and appear in --png only when all of them were written
    with (StagedDir(png) if png is not None else contextlib.nullcontext()) as stage:
        with make_progress(quiet) as progress, torch.no_grad():
            task = progress.add_task("rendering", total=len(index), info="")
            for start in range(0, len(index), batch):
                idx = index[start : start + batch]
                imgs = gsd.images.render(idx, scale=scale, backend=backend).cpu()
                for g, img in zip(idx.tolist(), imgs):
                    c, k = divmod(g, h.gpc)
                    if stage is not None:
                        stage.write_bytes(f"{c:03d}_{safe_name(h.class_names[c])}_{k:04d}.png", png_bytes(img))
                        written += 1
                    if grid is not None and len(grid_rows[c]) < grid_cols:
                        grid_rows[c].append(img)
                progress.update(task, advance=len(idx))
        if grid is not None:  # inside the staging block: a failed grid write discards the PNGs too
            tiles = make_grid([grid_rows[c] for c in cls_sel])
            if grid_labels:
                row_height = next(iter(grid_rows.values()))[0].shape[1]
                save_image(label_rows(tiles, [h.class_names[c] for c in cls_sel], row_height), grid)
            else:
                save_png(tiles, grid)
    what = []
    if png is not None:
        what.append(f"{written} PNG(s) in {png}")
    if grid is not None:
        what.append(f"grid {grid}")
    out.print(f"wrote {' and '.join(what)} ({h.dataset}, {h.height}×{h.width} × {scale:g} = {out_h}×{out_w})")


def register(app: typer.Typer) -> None:
    app.command("render")(render)
