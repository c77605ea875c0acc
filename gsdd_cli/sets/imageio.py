"""Writing rendered images: PNG files and class-by-image grids (atomic writes)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, features

from gsdd_cli.core.outputs import atomic_write_bytes


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[C, H, W] pixel-space tensor → [H, W] or [H, W, 3] uint8: ``round(clip(x, 0, 1) · 255)``
    (round half to even, as ``torch.round``; docs/format.md)."""
    arr = img.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    if arr.shape[0] == 1:
        return arr[0].numpy()
    return arr.permute(1, 2, 0).numpy()


def png_bytes(img: torch.Tensor) -> bytes:
    """The PNG encoding of a [C, H, W] pixel-space image (see :func:`to_uint8`)."""
    buf = io.BytesIO()
    Image.fromarray(to_uint8(img)).save(buf, format="PNG")
    return buf.getvalue()


def save_png(img: torch.Tensor, path: Path) -> None:
    """Write ``img`` as a PNG file atomically (gsdd_cli.core.outputs rules: umask permissions, typed errors)."""
    atomic_write_bytes(Path(path), png_bytes(img))


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "class"


def make_grid(rows: list[list[torch.Tensor]], pad: int = 1) -> torch.Tensor:
    """Tile a list of rows of [C, H, W] images into one [C, H', W'] image (white padding)."""
    c, h, w = rows[0][0].shape
    ncols = max(len(r) for r in rows)
    grid = torch.ones(c, len(rows) * (h + pad) + pad, ncols * (w + pad) + pad)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[:, y : y + h, x : x + w] = img.detach().float().cpu().clamp(0, 1)
    return grid


def _label_font(size: int):
    if features.check("freetype2"):
        try:
            return ImageFont.load_default(size=size)
        except (OSError, TypeError):  # Pillow < 10.1: no scalable default font
            pass
    return ImageFont.load_default()


def label_rows(grid: torch.Tensor, labels: list[str], row_height: int, pad: int = 1) -> Image.Image:
    """The grid image (from :func:`make_grid`) with ``labels`` written left of its rows.

    Rows are ``row_height`` pixels high with ``pad`` pixels between them; text is black on white,
    sized to the rows (at least 8 px), in the grid's mode (grayscale or RGB).
    """
    img = Image.fromarray(to_uint8(grid))
    font = _label_font(max(8, min(24, int(0.5 * row_height))))
    draw = ImageDraw.Draw(img)
    boxes = [draw.textbbox((0, 0), text, font=font) for text in labels]
    margin = 4
    width = max((b[2] - b[0] for b in boxes), default=0) + 2 * margin
    white = 255 if img.mode == "L" else (255, 255, 255)
    black = 0 if img.mode == "L" else (0, 0, 0)
    out = Image.new(img.mode, (img.width + width, img.height), white)
    out.paste(img, (width, 0))
    draw = ImageDraw.Draw(out)
    for i, (text, box) in enumerate(zip(labels, boxes)):
        top = pad + i * (row_height + pad)
        y = top + (row_height - (box[3] - box[1])) / 2 - box[1]
        draw.text((width - margin - (box[2] - box[0]) - box[0], y), text, fill=black, font=font)
    return out


def save_image(img: Image.Image, path: Path) -> None:
    """Write a PIL image as a PNG file atomically (as :func:`save_png`)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())
