"""The in-memory dataset object and where datasets live on disk."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

DEFAULT_DATA_DIR = Path("~/.cache/gsdd/data")
DATA_DIR_ENV = "GSDD_DATA_DIR"


def resolve_data_dir(data_dir: Path | str | None = None) -> Path:
    """Explicit argument > ``$GSDD_DATA_DIR`` > ``~/.cache/gsdd/data`` (never created here)."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return DEFAULT_DATA_DIR.expanduser()


@dataclass(eq=False)
class Dataset:
    """A labelled image dataset held as CPU tensors in [0, 1] pixel space.

    ``x_train``/``x_test`` are float32 [N, C, H, W]; ``y_train``/``y_test`` int64 [N].
    ``default_transform`` names the transform the network sees ("zca" or "normalize"),
    ``mean``/``std`` are the per-channel constants of the "normalize" transform.
    ``source`` says where the data came from; ``cache_dir`` is where derived artefacts (the fitted
    ZCA matrix) may be cached, ``None`` disables the disk cache.
    """

    name: str
    x_train: torch.Tensor  # [N, C, H, W] float32 in [0, 1]
    y_train: torch.Tensor  # [N] int64
    x_test: torch.Tensor  # [M, C, H, W]
    y_test: torch.Tensor  # [M]
    class_names: list[str]
    default_transform: str = "normalize"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    source: str = ""
    cache_dir: Path | None = None
    _fingerprint: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.mean or not self.std:
            mean, std = channel_stats(self.x_train)
            self.mean = self.mean or mean
            self.std = self.std or std

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def height(self) -> int:
        return int(self.x_train.shape[2])

    @property
    def width(self) -> int:
        return int(self.x_train.shape[3])

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.channels, self.height, self.width

    def fingerprint(self) -> str:
        """sha256 (hex, 16 chars) of the training images and labels; computed once per object."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(str(tuple(self.x_train.shape)).encode())
            h.update(np.ascontiguousarray(self.x_train.numpy()).data)
            h.update(np.ascontiguousarray(self.y_train.numpy()).data)
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def indices_of_class(self, c: int) -> torch.Tensor:
        return torch.nonzero(self.y_train == c, as_tuple=False).flatten()

    def summary(self) -> dict:
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "channels": self.channels,
            "height": self.height,
            "width": self.width,
            "train": int(self.x_train.shape[0]),
            "test": int(self.x_test.shape[0]),
            "default_transform": self.default_transform,
            "source": self.source,
        }


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of [N, C, H, W] images, in float64, chunked."""
    c = x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    count = 0
    for start in range(0, x.shape[0], 4096):
        chunk = x[start : start + 4096].double()
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += (chunk * chunk).sum(dim=(0, 2, 3))
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    if count == 0:
        return tuple([0.5] * c), tuple([0.25] * c)
    mean = total / count
    var = (total_sq / count - mean * mean).clamp_min(0)
    std = var.sqrt().clamp_min(1e-6)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def from_uint8_nhwc(x: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, C] (or [N, H, W]) → float32 [N, C, H, W] in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(x))
    if t.dim() == 3:
        t = t.unsqueeze(-1)
    return t.permute(0, 3, 1, 2).contiguous().float().div_(255.0)
