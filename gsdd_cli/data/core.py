"""The in-memory dataset object and where datasets live on disk."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gsdd_cli.core.errors import DataError
from gsdd_cli.data.streaming import ImageFiles

DEFAULT_DATA_DIR = Path("~/.cache/gsdd/data")
PIXEL_TOLERANCE = 1e-6  # float pixels may overshoot [0, 1] by rounding error this small
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

    ``x_train``/``x_test`` are float32 [N, C, H, W]; ``y_train``/``y_test`` int64 [N]. The test split
    may be empty (``has_test`` is False): fitting, distilling and training experts need only the
    training images; what measures accuracy calls :meth:`require_test`.
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
        if self._fingerprint is None and self.streamed:
            self._fingerprint = self.x_train.fingerprint(self.y_train)
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(str(tuple(self.x_train.shape)).encode())
            h.update(np.ascontiguousarray(self.x_train.numpy()).data)
            h.update(np.ascontiguousarray(self.y_train.numpy()).data)
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    @property
    def streamed(self) -> bool:
        """Whether the images are read from disk on demand (:class:`~gsdd_cli.data.streaming.ImageFiles`)."""
        return isinstance(self.x_train, ImageFiles)

    @property
    def has_test(self) -> bool:
        return int(self.y_test.numel()) > 0

    def require_test(self, what: str) -> None:
        """DataError unless there is a test split: ``what`` (e.g. "gsdd eval") needs it."""
        if not self.has_test:
            raise DataError(f"{self.source or self.name}: the dataset has no test split, and {what} needs test "
                            "images to measure accuracy",
                            hint="add x_test/y_test to the .npz or a test/ folder beside train/ "
                                 "(gsdd export --with-test keeps the source's test split)")

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
            **({"streamed": True} if self.streamed else {}),
        }


def check_float_pixels(x: np.ndarray, where: str, unclamped: bool = False) -> None:
    """Float pixels must be finite and lie in [0, 1] (a 0–255 array gets a hint); with ``unclamped``
    (rendered images, e.g. a ``gsdd export --format npz`` file) only finite. Raises DataError."""
    if x.size == 0:
        return
    finite = np.isfinite(x)
    if not finite.all():
        bad = int(x.size - np.count_nonzero(finite))
        kinds = " and ".join(k for k, m in (("NaN", np.isnan(x).any()), ("Inf", np.isinf(x).any())) if m)
        raise DataError(f"{where} holds {bad:,} {kinds} value(s); pixels must be finite")
    if unclamped:
        return
    lo, hi = float(x.min()), float(x.max())
    if lo < -PIXEL_TOLERANCE or hi > 1 + PIXEL_TOLERANCE:
        if lo >= 0 and hi <= 255:
            raise DataError(f"{where} holds float pixels in [{lo:g}, {hi:g}], which looks like 0–255; "
                            "float pixels must lie in [0, 1]",
                            hint="divide by 255, or store the images as uint8")
        raise DataError(f"{where} holds float pixels in [{lo:g}, {hi:g}]; they must lie in [0, 1]")


def check_dataset(ds: "Dataset", where: str) -> "Dataset":
    """A usable dataset: at least 2 classes, at least one training image per class and, if there is a
    test split, at least one test image per class."""
    k = ds.num_classes
    if k < 2:
        raise DataError(f"{where}: a dataset needs at least 2 classes, this one has {k}")
    splits = [("training", ds.y_train)] + ([("test", ds.y_test)] if ds.has_test else [])
    for split, y in splits:
        if y.numel() == 0:
            raise DataError(f"{where}: no {split} images")
        counts = torch.bincount(y, minlength=k)
        empty = [c for c in range(k) if int(counts[c]) == 0]
        if empty:
            c = empty[0]
            more = f" (and {len(empty) - 1} more class(es))" if len(empty) > 1 else ""
            raise DataError(f"{where}: class {c} ({ds.class_names[c]}) has no {split} images{more}; "
                            f"every class needs at least one {split} image")
    return ds


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
