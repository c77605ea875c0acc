"""RDED-style selection of fitting targets: the teacher's most confident crops of real images.

RDED (Sun et al., CVPR 2024, "On the Diversity and Realism of Distilled Dataset"; LINs-lab/RDED,
``synthesize/main.py`` and ``synthesize/utils.py``) builds a distilled image per class like this:
take ``mipc`` shuffled real images of the class, cut ``num_crop`` random square crops of each
(``RandomResizedCrop(size // factor, ratio=(1, 1))``, default scale 0.08–1), score every crop by the
teacher's cross-entropy of the class (the crop zero-padded, in normalised space, to the full input
size), keep each image's best crop, keep the ``IPC·factor²`` best images' crops, and stitch
``factor × factor`` of them into one image (the best crops go top-left).

gsdd does the same per class and fits Gaussians to the stitched images instead of storing pixels;
the budget gives GPC ≫ IPC images, so ``GPC·factor²`` crops are kept per class. Where a class has
fewer candidate images than crops to keep, each image keeps its ``ceil(n / m)`` best crops (one,
RDED's rule, whenever the class is large enough). Everything is seeded by (seed, class), so a
class's selection does not depend on which rank, unit or batch it runs in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from gsdd_cli.core.distributed import derive_seed
from gsdd_cli.core.errors import ConfigError, DataError

CROP_SCALE = (0.08, 1.0)  # MultiRandomCrop → RandomResizedCrop's default scale (--min/max-scale-crops are unused)
CROP_RATIO = (1.0, 1.0)  # MultiRandomCrop: RandomResizedCrop(..., ratio=(1, 1)): square crops
DEFAULT_CROPS = 5  # scripts/*_cr5.sh: --num-crop 5 (every script but imagenet-1k_..._cr1.sh)
DEFAULT_CANDIDATES = 300  # scripts/*.sh: --mipc 300 real images per class
FACTOR_MIN_SIZE = 128  # scripts: --factor 2 for the ImageNet subsets (128/224 px), 1 for CIFAR (32) and Tiny (64)
IMAGE_CHUNK = 64  # candidate images cropped and scored at once (fixed: scores do not depend on ranks)
CROP_FIELDS = ("index", "top", "left", "side")


def default_factor(height: int, width: int) -> int:
    """RDED's stitching factor for a resolution: 2 (2×2 crops) at ≥ 128 px, 1 below."""
    return 2 if min(height, width) >= FACTOR_MIN_SIZE else 1


def crop_boxes(gen: torch.Generator, count: int, height: int, width: int, crops: int) -> torch.Tensor:
    """[count, crops, 3] square boxes (top, left, side): torchvision's RandomResizedCrop rule with ratio 1.

    Area fraction ~ U(scale), side = round(√area); up to 10 draws until the square fits, else the
    centred square of side min(H, W) (torchvision's fallback for ratio 1).
    """
    out = torch.empty(count, crops, 3, dtype=torch.long)
    area, short = height * width, min(height, width)
    lo, hi = CROP_SCALE
    for j in range(count):
        for r in range(crops):
            for _ in range(10):
                side = round(math.sqrt(area * (lo + (hi - lo) * float(torch.rand(1, generator=gen)))))
                if 0 < side <= short:
                    top = int(torch.randint(0, height - side + 1, (1,), generator=gen))
                    left = int(torch.randint(0, width - side + 1, (1,), generator=gen))
                    break
            else:
                side, top, left = short, (height - short) // 2, (width - short) // 2
            out[j, r] = torch.tensor([top, left, side])
    return out


def cut(images: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop ``images[i]`` [N, C, H, W] to ``boxes[i]`` (top, left, side) and resize to ``size`` (bilinear,
    antialias, as RandomResizedCrop on tensors); [N, C, *size], on the CPU."""
    out = []
    for x, (top, left, side) in zip(images, boxes.tolist()):
        patch = x[None, :, top:top + side, left:left + side].float()
        if tuple(patch.shape[-2:]) != tuple(size):
            patch = F.interpolate(patch, size=size, mode="bilinear", align_corners=False, antialias=True)
        out.append(patch[0])
    return torch.stack(out) if out else images.new_zeros(0, images.shape[1], *size)


def pad_center(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Zero-pad [B, C, h, w] to [B, C, height, width], centred (RDED's ``pad``: top/left get the floor)."""
    dv, dh = height - x.shape[-2], width - x.shape[-1]
    return F.pad(x, (dh // 2, dh - dh // 2, dv // 2, dv - dv // 2)) if dv or dh else x


def quadrants(height: int, width: int, factor: int) -> list[tuple[int, int, int, int]]:
    """(top, left, h, w) of the factor × factor cells, row-major; the first ``H mod f`` rows (columns)
    are one pixel taller (wider), as RDED's ``mix_images``."""
    def spans(n: int) -> list[tuple[int, int]]:
        s, rem, at, out = n // factor, n % factor, 0, []
        for i in range(factor):
            size = s + 1 if i < rem else s
            out.append((at, size))
            at += size
        return out

    return [(t, lft, h, w) for t, h in spans(height) for lft, w in spans(width)]


def stitch(crops: torch.Tensor, images: int, factor: int, height: int, width: int) -> torch.Tensor:
    """[images, C, H, W] from [images·f², C, h, w] crops in *slot order* (image t's cell q is crop t·f² + q);
    a crop smaller than its cell is resized with nearest (RDED's ``F.interpolate`` default)."""
    c = crops.shape[1]
    out = torch.zeros(images, c, height, width, dtype=crops.dtype)
    cells = quadrants(height, width, factor)
    per = factor * factor
    for q, (top, left, h, w) in enumerate(cells):
        part = crops[q::per]
        if tuple(part.shape[-2:]) != (h, w):
            part = F.interpolate(part, size=(h, w), mode="nearest")
        out[:, :, top:top + h, left:left + w] = part
    return out


def choose(scores: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """RDED's choice on [m images, crops] scores (lower = better): each image keeps its ``ceil(keep / m)``
    best crops, then the ``keep`` best of those, best first. Returns (image position, crop position);
    ties go to the lower image, then the lower crop (stable sorts)."""
    m, crops = scores.shape
    per = max(1, -(-keep // max(1, m)))
    if per > crops or m * per < keep:
        raise DataError(f"{keep} crops to keep from {m} images × {crops} crops")
    order = torch.sort(scores, dim=1, stable=True).indices[:, :per]  # [m, per]
    pool = scores.gather(1, order).reshape(-1)  # image-major
    best = torch.sort(pool, stable=True).indices[:keep]
    return best // per, order.reshape(-1)[best]


@dataclass
class ClassSelection:
    """One class's targets and the record of how they were chosen (rows in slot order)."""

    images: torch.Tensor  # [gpc, C, H, W] stitched targets, pixel space
    index: torch.Tensor  # [gpc·f²] training-set index of each crop's source image
    boxes: torch.Tensor  # [gpc·f², 3] top, left, side in the source image
    score: torch.Tensor  # [gpc·f²] the teacher's cross-entropy of the class on each kept crop
    candidates: torch.Tensor  # [3] Σ CE, Σ probability, count over every candidate crop
    seconds: float


Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (pixel crops [B, C, h, w], labels [B]) → CE [B]


@dataclass(frozen=True)
class TeacherSelect:
    """How ``gsdd init --select teacher`` picks targets: the scorer and RDED's constants."""

    score: Scorer
    crops: int = DEFAULT_CROPS
    factor: int = 1
    candidates: int | None = None  # None: max(300, crops to keep), at most the class
    identity: dict[str, Any] | None = None  # the teacher, for the run key (weights_sha256, class_map)

    def describe(self) -> dict[str, Any]:
        """The settings (recorded in the header and part of the run key)."""
        ident = self.identity or {}
        return {"mode": "teacher", "method": "RDED (Sun et al., CVPR 2024)", "crops_per_image": self.crops,
                "factor": self.factor, "candidates": self.candidates if self.candidates is not None
                else f"max({DEFAULT_CANDIDATES}, GPC·factor²), at most the class",
                "crop_scale": list(CROP_SCALE), "crop_ratio": list(CROP_RATIO),
                "crop_resize": "bilinear, antialias", "stitch_resize": "nearest",
                "score": "teacher cross-entropy of the class on the crop, zero-padded (normalize space) to H×W",
                "teacher_weights_sha256": ident.get("weights_sha256"), "teacher_class_map": ident.get("class_map")}

    def pool_size(self, available: int, keep: int) -> int:
        """Candidate images of a class with ``available`` images when ``keep`` crops are kept."""
        want = self.candidates if self.candidates is not None else max(DEFAULT_CANDIDATES, keep)
        return min(available, want)

    def check(self, labels: torch.Tensor, num_classes: int, gpc: int, height: int, width: int) -> None:
        """Refuse, before any work, a factor larger than the images or a class too small for its crops."""
        f = self.factor
        if height // f < 1 or width // f < 1:
            raise ConfigError(f"--factor {f} cuts {height}×{width} images into cells smaller than a pixel")
        keep = gpc * f * f
        counts = torch.bincount(labels.reshape(-1).long(), minlength=num_classes).tolist()
        for cls, n in enumerate(counts[:num_classes]):
            m = self.pool_size(int(n), keep)
            if m * self.crops < keep:
                why = (f"{n} training images" if m == n else f"{m} candidate images (--candidates)")
                raise DataError(f"class {cls} has {why}: GPC {gpc} × factor² {f * f} = {keep} crops need at "
                                f"least {-(-keep // self.crops)} images with {self.crops} crops each",
                                hint="use more --crops or --candidates, a smaller --factor or --gpc, "
                                     "or --select random")

    def select_class(self, x_train: Any, labels: torch.Tensor, cls: int, gpc: int, seed: int,
                     shape: tuple[int, int, int]) -> ClassSelection:
        """Class ``cls``'s GPC stitched targets from ``x_train`` (a tensor or a streamed ImageFiles)."""
        t0 = time.perf_counter()
        _, h, w = shape
        f = self.factor
        size = (h // f, w // f)
        keep = gpc * f * f
        idx = torch.nonzero(labels == cls, as_tuple=False).flatten()
        m = self.pool_size(idx.numel(), keep)
        gen = torch.Generator().manual_seed(derive_seed(int(seed), "select", int(cls)))
        pool = idx[torch.randperm(idx.numel(), generator=gen)[:m]]
        boxes = crop_boxes(gen, m, h, w, self.crops)  # [m, crops, 3]
        scores = torch.empty(m, self.crops, dtype=torch.float64)
        for s in range(0, m, IMAGE_CHUNK):
            e = min(m, s + IMAGE_CHUNK)
            src = x_train[pool[s:e]].repeat_interleave(self.crops, 0)
            crops = cut(src, boxes[s:e].reshape(-1, 3), size)
            ce = self.score(crops, torch.full((crops.shape[0],), int(cls), dtype=torch.long))
            scores[s:e] = ce.detach().double().cpu().reshape(e - s, self.crops)
        if not bool(torch.isfinite(scores).all()):
            raise DataError(f"the teacher's score of a crop of class {cls} is not finite (NaN or Inf logits)")
        img, crop = choose(scores, keep)  # best first
        # RDED's layout: the k-th best crop goes to image k mod GPC, cell k // GPC (best crops top-left)
        k = torch.arange(keep)
        slot_order = torch.empty(keep, dtype=torch.long)
        slot_order[(k % gpc) * f * f + k // gpc] = k
        img, crop = img[slot_order], crop[slot_order]
        kept_boxes = boxes[img, crop]
        kept = cut(x_train[pool[img]], kept_boxes, size)
        prob = torch.exp(-scores)
        cand = torch.tensor([float(scores.sum()), float(prob.sum()), float(scores.numel())], dtype=torch.float64)
        return ClassSelection(stitch(kept, gpc, f, h, w), pool[img], kept_boxes, scores[img, crop], cand,
                              time.perf_counter() - t0)


def teacher_scorer(teacher: Any, transform: Any, height: int, width: int, batch: int = 256) -> Scorer:
    """The RDED score with a gsdd Teacher: pixel crops → ``transform`` (the dataset's normalize space) →
    zero-padded, centred, to H×W → ``teacher.logits`` → cross-entropy of the label, per crop."""
    transform = transform.to(teacher.device)

    @torch.no_grad()
    def score(crops: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out = []
        for s in range(0, crops.shape[0], batch):
            x = pad_center(transform(crops[s:s + batch].to(teacher.device)), height, width)
            z = teacher.logits(x).float()
            out.append(F.cross_entropy(z, labels[s:s + batch].to(z.device), reduction="none").double().cpu())
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    return score


def selection_record(index: torch.Tensor, boxes: torch.Tensor, score: torch.Tensor, candidates: torch.Tensor,
                     seconds: float, settings: dict[str, Any], crops: int) -> dict[str, Any]:
    """The header's ``config.init.select``: settings, every kept crop (flat rows of CROP_FIELDS, slot
    order), the candidate images per class and the teacher's mean score of the kept crops vs every
    candidate crop (``candidates`` [K, 3]: Σ CE, Σ probability, count per class)."""
    tot = candidates.sum(0)
    pools = [round(n) // crops for n in candidates[:, 2].tolist()]
    rows = torch.cat([index[:, None], boxes], 1).reshape(-1).tolist()
    return {**settings, "candidates_per_class": pools, "crop_fields": list(CROP_FIELDS), "crops": rows,
            "ce_kept_mean": float(score.mean()), "ce_candidates_mean": float(tot[0] / tot[2]),
            "prob_kept_mean": float(torch.exp(-score).mean()), "prob_candidates_mean": float(tot[1] / tot[2]),
            "candidate_crops": int(tot[2]), "seconds": round(float(seconds), 3)}


__all__ = [
    "CROP_FIELDS",
    "CROP_RATIO",
    "CROP_SCALE",
    "DEFAULT_CANDIDATES",
    "DEFAULT_CROPS",
    "ClassSelection",
    "TeacherSelect",
    "choose",
    "crop_boxes",
    "cut",
    "default_factor",
    "pad_center",
    "quadrants",
    "selection_record",
    "stitch",
    "teacher_scorer",
]
