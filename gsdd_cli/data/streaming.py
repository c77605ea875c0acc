"""Images read from disk on demand: datasets too large to hold in memory (ImageNet-1K at 224²).

:class:`ImageFiles` stands where an in-memory dataset has its ``[N, C, H, W]`` float tensor: it has
the same ``shape``, and indexing it (an int, a slice, a list or a LongTensor of indices) decodes just
those files — resized so the shorter side is ``size / 0.875`` and centre-cropped to ``size``, the
standard ImageNet evaluation transform — into float32 pixels in [0, 1]. What needs a few images
(fitting Gaussians to chosen real images, scoring crops, a random-real baseline) works unchanged.

:func:`stream_transformed` is the test-time path: a read-only view of ``transform(images)`` on a
device whose sequential slices (``x[s : s + batch]``, as an accuracy loop takes them) come from a
``torch.utils.data.DataLoader`` with worker processes decoding ahead, so a 50 000-image validation
set is never resident. Work that needs every image at once (distribution/gradient matching against
the real set, expert training, ZCA, training on the full set) refuses a streamed dataset with one
line instead of swapping the machine to death: :func:`require_in_memory`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from gsdd_cli.core.errors import DataError

CROP_RATIO = 0.875  # Resize(256) + CenterCrop(224): torchvision's ImageNet evaluation transform
DEFAULT_WORKERS = min(8, os.cpu_count() or 1)


def decode_resized(path: Path, size: int, channels: int = 3) -> torch.Tensor:
    """One image file → float32 [C, size, size] in [0, 1]: shorter side to round(size / 0.875)
    (bilinear, antialiased), then the centre size×size crop. DataError if it cannot be read."""
    try:
        with Image.open(path) as im:
            a = np.array(im.convert("L" if channels == 1 else "RGB"))
    except Exception as e:  # PIL raises many kinds; one line names the file
        raise DataError(f"{path}: cannot read image ({(str(e).splitlines() or [type(e).__name__])[0][:80]})") from None
    t = torch.from_numpy(a)
    t = (t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)).float().div_(255.0)
    h, w = t.shape[1:]
    short = max(size, int(round(size / CROP_RATIO)))
    nh, nw = (short, max(size, round(w * short / h))) if h <= w else (max(size, round(h * short / w)), short)
    t = F.interpolate(t.unsqueeze(0), size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0]
    top, left = (nh - size) // 2, (nw - size) // 2
    return t[:, top : top + size, left : left + size].clamp_(0, 1).contiguous()


class ImageFiles:
    """``N`` image files as a lazily decoded ``[N, C, size, size]`` float32 pixel tensor."""

    dtype = torch.float32
    device = torch.device("cpu")

    def __init__(self, files: Sequence[Path | str], size: int, channels: int = 3, *, label: str = "",
                 workers: int | None = None):
        self.files = [Path(f) for f in files]
        self.size, self.channels = int(size), int(channels)
        self.label = label or "image files"
        self.workers = DEFAULT_WORKERS if workers is None else max(0, int(workers))

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.files), self.channels, self.size, self.size))

    def __len__(self) -> int:
        return len(self.files)

    def dim(self) -> int:
        return 4

    def numel(self) -> int:
        return int(np.prod(self.shape))

    @property
    def decoded_bytes(self) -> int:
        """What the whole set would take in memory as float32 pixels."""
        return self.numel() * 4

    def load(self, i: int) -> torch.Tensor:
        return decode_resized(self.files[int(i)], self.size, self.channels)

    def _indices(self, idx: Any) -> list[int]:
        n = len(self.files)
        if isinstance(idx, slice):
            return list(range(*idx.indices(n)))
        if isinstance(idx, torch.Tensor):
            if idx.dtype == torch.bool:
                idx = torch.nonzero(idx, as_tuple=False).flatten()
            idx = idx.tolist()
        elif isinstance(idx, np.ndarray):
            idx = idx.tolist()
        out = []
        for i in idx:
            i = int(i)
            if not -n <= i < n:
                raise IndexError(f"index {i} out of range for {n} images")
            out.append(i % n)
        return out

    def __getitem__(self, idx: Any) -> torch.Tensor:
        if isinstance(idx, (int, np.integer)) or (isinstance(idx, torch.Tensor) and idx.dim() == 0):
            return self.load(int(idx))
        picks = self._indices(idx)
        if not picks:
            return torch.empty(0, self.channels, self.size, self.size)
        if len(picks) == 1 or self.workers <= 1:
            return torch.stack([self.load(i) for i in picks])
        from concurrent.futures import ThreadPoolExecutor  # PIL decodes with the GIL released

        with ThreadPoolExecutor(max_workers=min(self.workers, len(picks))) as pool:
            return torch.stack(list(pool.map(self.load, picks)))

    def fingerprint(self, labels: torch.Tensor) -> str:
        """sha256 (16 hex) of the file names (relative to their common root), sizes and labels."""
        h = hashlib.sha256()
        h.update(f"{self.size}x{self.channels}".encode())
        root = Path(os.path.commonpath([str(f) for f in self.files])) if self.files else Path()
        for f in self.files:
            try:
                n = f.stat().st_size
            except OSError:
                n = -1
            h.update(f"{f.relative_to(root) if root != f else f.name}:{n}\n".encode())
        h.update(np.ascontiguousarray(labels.numpy()).data)
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        return f"ImageFiles({len(self.files)} files of {self.label}, {self.channels}x{self.size}x{self.size})"


class _Decode(torch.utils.data.Dataset):
    def __init__(self, images: ImageFiles):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images.load(i)


def iter_batches(images: ImageFiles, batch: int, start: int = 0, workers: int | None = None) -> Iterator[torch.Tensor]:
    """Decoded [b, C, H, W] batches of ``images[start:]`` in order, from DataLoader worker processes."""
    workers = images.workers if workers is None else workers
    sub = torch.utils.data.Subset(_Decode(images), range(start, len(images)))
    loader = torch.utils.data.DataLoader(sub, batch_size=batch, shuffle=False, num_workers=workers,
                                         persistent_workers=False, prefetch_factor=4 if workers else None)
    yield from loader


class StreamedTransformed:
    """``transform(images)`` on ``device``, computed batch by batch when sliced; never all resident."""

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor], images: ImageFiles,
                 device: torch.device | str):
        self.transform, self.images, self.device = transform, images, torch.device(device)
        self._it: Iterator[torch.Tensor] | None = None
        self._next = -1  # the start index the live iterator yields next
        self._batch = 0
        self._pending: torch.Tensor | None = None

    @property
    def shape(self) -> torch.Size:
        return self.images.shape

    def __len__(self) -> int:
        return len(self.images)

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.transform(x.to(self.device, non_blocking=True))

    def __getitem__(self, idx: Any) -> torch.Tensor:
        if not isinstance(idx, slice) or idx.step not in (None, 1):
            return self._apply(self.images[idx])
        start, stop, _ = idx.indices(len(self.images))
        want = stop - start
        if want <= 0:
            return self._apply(self.images[start:stop])
        if self._it is None or start != self._next or want > self._batch:
            self._it, self._batch, self._pending = iter_batches(self.images, want, start), want, None
            self._next = start
        got = []
        while sum(len(g) for g in got) < want:
            if self._pending is not None:
                chunk, self._pending = self._pending, None
            else:
                chunk = next(self._it, None)
            if chunk is None:
                break
            need = want - sum(len(g) for g in got)
            got.append(chunk[:need])
            if len(chunk) > need:
                self._pending = chunk[need:]
        self._next = start + want
        return self._apply(torch.cat(got))


def is_streamed(x: Any) -> bool:
    return isinstance(x, (ImageFiles, StreamedTransformed))


def require_in_memory(x: Any, what: str) -> None:
    """DataError when ``x`` is read from disk on demand and ``what`` needs every image at once."""
    if isinstance(x, ImageFiles):
        raise DataError(
            f"{x.label} is read from disk on demand ({len(x):,} images, {x.decoded_bytes / 2**30:,.1f} GiB as float "
            f"pixels) and {what} needs every image in memory",
            hint="use the teacher-guided path (gsdd distill --algo sre2l, gsdd init --select teacher, gsdd eval), "
                 "or an ImageNet subset / a smaller folder")


__all__ = ["CROP_RATIO", "ImageFiles", "StreamedTransformed", "decode_resized", "is_streamed", "iter_batches",
           "require_in_memory"]
