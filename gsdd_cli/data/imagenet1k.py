"""ImageNet-1K at 224² from its usual folder layout, read as a stream (never loaded into memory).

``<data_dir>/imagenet/train/<wnid>/*.JPEG`` for the 1 000 classes (label = position of the wnid in
sorted order, the class ids of torchvision's published weights), and the validation set either
sorted into class folders (``val/<wnid>/*.JPEG``) or flat (``val/*.JPEG``) with a label list beside
it: Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``, the first token the wnid) or a
``val.txt`` / ``val_labels.txt`` of ``<file> <wnid or class id>`` lines. Images are decoded on
demand by :class:`gsdd_cli.data.streaming.ImageFiles` (shorter side 256, centre crop 224).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import torch

from gsdd_cli.core.errors import DataError
from gsdd_cli.data.core import Dataset
from gsdd_cli.data.imagenet import IMAGE_EXTENSIONS, IMAGENET_MEAN, IMAGENET_STD, read_class_index
from gsdd_cli.data.sources import DatasetSpec, _register
from gsdd_cli.data.streaming import ImageFiles

NAME = "imagenet1k"
NUM_CLASSES = 1000
RESOLUTION_1K = 224
VAL_LABEL_FILES = ("LOC_val_solution.csv", "val.txt", "val_labels.txt")


def _images_in(folder: Path) -> list[Path]:
    with os.scandir(folder) as it:
        return sorted(Path(e.path) for e in it
                      if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS)


def _class_files(split_dir: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    files, labels = [], []
    for label, w in enumerate(wnids):
        d = split_dir / w
        if not d.is_dir():
            raise DataError(f"{d}: missing class folder ({split_dir.name}/ has {len(wnids)} classes in train/)")
        fs = _images_in(d)
        files += fs
        labels += [label] * len(fs)
    return files, labels


def _val_list(root: Path, val_dir: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    """Flat ``val/`` with a label list: (files, labels) in file-name order."""
    index = {w: i for i, w in enumerate(wnids)}
    by_name = {p.stem: p for p in _images_in(val_dir)}
    for fname in VAL_LABEL_FILES:
        f = next((p for p in (root / fname, val_dir / fname) if p.is_file()), None)
        if f is None:
            continue
        pairs = []
        if f.suffix == ".csv":
            with f.open(newline="") as fh:
                for row in csv.DictReader(fh):
                    pred = (row.get("PredictionString") or "").split()
                    if row.get("ImageId") and pred:
                        pairs.append((row["ImageId"], pred[0]))
        else:
            for line in f.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    pairs.append((Path(parts[0]).stem, parts[1]))
        labels = {}
        for stem, tag in pairs:
            if tag in index:
                labels[stem] = index[tag]
            elif tag.isdigit() and int(tag) < len(wnids):
                labels[stem] = int(tag)
            else:
                raise DataError(f"{f}: label {tag!r} of {stem} is neither a wnid of train/ nor a class id < {len(wnids)}")
        missing = [s for s in by_name if s not in labels]
        if missing:
            raise DataError(f"{f}: no label for {len(missing):,} of the {len(by_name):,} images in {val_dir} "
                            f"(e.g. {missing[0]})")
        stems = sorted(by_name)
        return [by_name[s] for s in stems], [labels[s] for s in stems]
    raise DataError(f"{val_dir}: flat validation images need a label list ({' or '.join(VAL_LABEL_FILES)} in {root}) "
                    f"or val/<wnid>/ class folders")


def load_imagenet1k(data_dir: Path, download: bool = False, *, size: int = RESOLUTION_1K,
                    workers: int | None = None) -> Dataset:
    """The ImageNet-1K dataset under ``<data_dir>/imagenet`` (no download: it is not redistributable)."""
    del download
    root = Path(data_dir) / "imagenet"
    train = root / "train"
    if not train.is_dir():
        raise DataError(f"imagenet1k not found: put the training images as {train}/<wnid>/*.JPEG and the "
                        f"validation images as {root}/val/<wnid>/*.JPEG (or flat with LOC_val_solution.csv); "
                        "ImageNet is not downloaded automatically")
    wnids = sorted(p.name for p in train.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(wnids) != NUM_CLASSES:
        raise DataError(f"{train}: expected {NUM_CLASSES} class folders, found {len(wnids):,}",
                        hint="an ImageNet subset of other classes loads as a folder dataset (a path)")
    if any((root / f).is_file() for f in ("LOC_synset_mapping.txt", "synset_mapping.txt", "synsets.txt", "wnids.txt")):
        known, _ = read_class_index(root)
        if known != wnids:
            bad = next(w for w in wnids if w not in set(known))
            raise DataError(f"{train}: folder {bad!r} is not a wnid of the class-index file in {root}")
    x_files, y = _class_files(train, wnids)
    val = root / "val"
    if not val.is_dir():
        vx, vy = [], []
    elif all((val / w).is_dir() for w in wnids[:3]):
        vx, vy = _class_files(val, wnids)
    else:
        vx, vy = _val_list(root, val, wnids)
    empty = [w for w, n in zip(wnids, torch.bincount(torch.tensor(y, dtype=torch.long), minlength=NUM_CLASSES))
             if int(n) == 0]
    if empty:
        raise DataError(f"{train / empty[0]}: no images ({len(empty)} class folder(s) empty)")
    ds = Dataset(
        name=NAME,
        x_train=ImageFiles(x_files, size, 3, label=f"{NAME} train ({train})", workers=workers),
        y_train=torch.tensor(y, dtype=torch.int64),
        x_test=ImageFiles(vx, size, 3, label=f"{NAME} val ({val})", workers=workers),
        y_test=torch.tensor(vy, dtype=torch.int64),
        class_names=wnids,
        default_transform="normalize",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        source=str(root),
    )
    return ds


_register(DatasetSpec(NAME, NUM_CLASSES, 3, RESOLUTION_1K, RESOLUTION_1K,
                      "ImageNet-1K at 224x224 from <data_dir>/imagenet/train|val, streamed from disk",
                      lambda d, dl: load_imagenet1k(d, dl)))

__all__ = ["NAME", "NUM_CLASSES", "RESOLUTION_1K", "load_imagenet1k"]
