"""Dataset loaders: the registered names (digits, cifar10, cifar100, ImageNet subsets) and
datasets given by path (a ``.npz`` file in the shared format, or an image-folder tree)."""

from __future__ import annotations

import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from gsdd_cli.core.errors import DataError
from gsdd_cli.core.registry import Registry
from gsdd_cli.data.core import Dataset, check_dataset, check_float_pixels, from_uint8_nhwc
from gsdd_cli.data.imagenet import (
    IMAGE_EXTENSIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    RESOLUTION,
    SUBSETS,
    Subset,
    subset_class_names,
    subset_wnids,
)

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN = (0.5071, 0.4866, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
DIGITS_SEED = 0


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its shape (known without loading) and how to load it."""

    name: str
    num_classes: int
    channels: int
    height: int
    width: int
    description: str
    loader: Callable[[Path, bool], Dataset]

    @property
    def info(self) -> tuple[int, int, int, int]:
        return self.num_classes, self.channels, self.height, self.width


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def _register(spec: DatasetSpec) -> None:
    DATASETS.register(spec.name)(spec)


# ------------------------------------------------------------------------------------- digits
def load_digits_dataset(data_dir: Path | None = None, download: bool = False) -> Dataset:
    """scikit-learn's bundled 8×8 digits (1 797 images, no download), bilinearly resampled to
    16×16, values /16 → [0, 1], stratified 80/20 split with a fixed seed."""
    from sklearn.datasets import load_digits  # here: scikit-learn adds ~0.7 s to a start-up
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)  # [N,1,8,8]
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=0.2, stratify=bunch.target, random_state=DIGITS_SEED)
    tr, te = np.sort(tr), np.sort(te)
    return Dataset(
        name="digits",
        x_train=x[tr].contiguous(),
        y_train=y[tr].contiguous(),
        x_test=x[te].contiguous(),
        y_test=y[te].contiguous(),
        class_names=[str(i) for i in range(10)],
        default_transform="normalize",
        source="sklearn.datasets.load_digits (embedded)",
    )


# -------------------------------------------------------------------------------------- npz
def load_npz(path: Path, name: str | None = None) -> Dataset:
    """A dataset in the shared .npz format: x_train uint8 [N,H,W,C], y_train [N], optional x_test and
    y_test (together: without them the dataset has no test split), optional class_names [K] (strings)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            missing = sorted({"x_train", "y_train"} - keys)
            if missing:
                raise DataError(f"{path}: missing array(s) {', '.join(missing)} (see the .npz format in docs/datasets.md)")
            if ("x_test" in keys) != ("y_test" in keys):
                have, lack = ("x_test", "y_test") if "x_test" in keys else ("y_test", "x_test")
                raise DataError(f"{path}: has {have} but no {lack}; give both for a test split, or neither")
            splits = ("train", "test") if "x_test" in keys else ("train",)
            arrays = {f"{a}_{split}": z[f"{a}_{split}"] for split in splits for a in ("x", "y")}
            names = [str(s) for s in z["class_names"].tolist()] if "class_names" in keys else None
            unclamped = "unclamped" in keys and z["unclamped"].shape == () and bool(z["unclamped"])
    except DataError:
        raise
    except Exception as e:  # zipfile/ValueError/pickle refusals
        raise DataError(f"{path}: not a readable .npz dataset ({(str(e).splitlines() or [type(e).__name__])[0][:100]})") from None
    xs = {}
    for split in splits:
        x = arrays[f"x_{split}"]
        if x.ndim not in (3, 4):
            raise DataError(f"{path}: x_{split} must be [N, H, W, C] or [N, H, W], got shape {list(x.shape)}")
        if x.shape[0] == 0:
            raise DataError(f"{path}: x_{split} holds no images")
        if x.dtype == np.uint8:
            xs[split] = from_uint8_nhwc(x)
        elif np.issubdtype(x.dtype, np.floating):
            check_float_pixels(x, f"{path}: x_{split}", unclamped=unclamped and split == "train")
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            t = t.unsqueeze(-1) if t.dim() == 3 else t
            xs[split] = t.permute(0, 3, 1, 2).contiguous()
        else:
            raise DataError(f"{path}: x_{split} must be uint8 (or float in [0, 1]), got {x.dtype}")
    ys = {}
    for split in splits:
        y = arrays[f"y_{split}"]
        if y.ndim != 1 or len(y) != xs[split].shape[0] or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{path}: y_{split} must be integer [N] matching x_{split}")
        ys[split] = torch.from_numpy(y.astype(np.int64))
    if "test" not in xs:  # no test split: empty tensors of the training images' shape
        xs["test"] = xs["train"][:0].clone()
        ys["test"] = ys["train"][:0].clone()
    if xs["train"].shape[1:] != xs["test"].shape[1:]:
        raise DataError(f"{path}: train images {list(xs['train'].shape[1:])} and test images {list(xs['test'].shape[1:])} differ in shape")
    labels = torch.cat([ys["train"], ys["test"]])
    k = int(labels.max()) + 1
    if names is None:
        names = [str(i) for i in range(k)]
    if k > len(names) or int(labels.min()) < 0:
        raise DataError(f"{path}: labels must lie in [0, {len(names)}) (class_names has {len(names)} entries)")
    return check_dataset(Dataset(
        name=name or str(path.resolve()),
        x_train=xs["train"],
        y_train=ys["train"],
        x_test=xs["test"],
        y_test=ys["test"],
        class_names=names,
        default_transform="normalize",
        source=str(path.resolve()),
    ), str(path))


def _npy_member_shape(zf: zipfile.ZipFile, member: str) -> tuple[int, ...]:
    with zf.open(member) as f:
        version = np.lib.format.read_magic(f)
        reader = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }.get(version)
        if reader is None:
            raise DataError(f"unsupported .npy version {version} in {member}")
        shape, _, _ = reader(f)
        return tuple(shape)


def npz_info(path: Path) -> tuple[int, int, int, int]:
    """(num_classes, channels, height, width) from the .npy headers, without reading the images."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with zipfile.ZipFile(path) as zf:
            shape = _npy_member_shape(zf, "x_train.npy")
        with np.load(path, allow_pickle=False) as z:
            if "class_names" in z.files:
                k = len(z["class_names"])
            else:
                k = int(max(z[y].max() for y in ("y_train", "y_test") if y in z.files)) + 1
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: not a readable .npz dataset ({(str(e).splitlines() or [type(e).__name__])[0][:100]})") from None
    if len(shape) == 3:
        return k, 1, shape[1], shape[2]
    if len(shape) == 4:
        return k, shape[3], shape[1], shape[2]
    raise DataError(f"{path}: x_train must be [N, H, W, C], got shape {list(shape)}")


# -------------------------------------------------------------------------------- image folder
def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _test_dir(root: Path) -> Path | None:
    for name in ("test", "val"):
        if (root / name).is_dir():
            return root / name
    return None


def _image_mode_size(path: Path) -> tuple[str, tuple[int, int]]:
    """("L" or "RGB", (width, height)) of an image file; DataError if it cannot be read."""
    try:
        with Image.open(path) as im:
            return ("L" if im.mode in ("L", "1", "I;16", "I") else "RGB"), im.size
    except Exception as e:
        raise DataError(f"{path}: cannot read image ({(str(e).splitlines() or [type(e).__name__])[0][:80]})") from None


def _read_image(path: Path, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.array(im.convert(mode))
    except Exception as e:
        raise DataError(f"{path}: cannot read image ({(str(e).splitlines() or [type(e).__name__])[0][:80]})") from None


def load_image_folder(root: Path, name: str | None = None) -> Dataset:
    """``root/train/<class>/*.png`` and ``root/test/<class>/*`` (or ``val``); class names are the
    sorted folder names of train/, all images must share one size; grayscale if the first image is."""
    root = Path(root)
    train_dir, test_dir = root / "train", _test_dir(root)
    if not train_dir.is_dir():
        raise DataError(f"{root}: an image-folder dataset needs {root}/train/<class>/ folders "
                        f"(and {root}/test/<class>/ for a test split)")
    classes = [p.name for p in _class_folders(train_dir)]
    if not classes:
        raise DataError(f"{train_dir}: no class folders")
    first = next((f for c in classes for f in _list_images(train_dir / c)), None)
    if first is None:
        raise DataError(f"{train_dir}: no images found ({', '.join(IMAGE_EXTENSIONS)})")
    mode, size = _image_mode_size(first)
    splits = {}
    for split, d in (("train", train_dir),) + ((("test", test_dir),) if test_dir is not None else ()):
        xs, ys = [], []
        for label, c in enumerate(classes):
            folder = d / c
            if not folder.is_dir():
                continue
            for f in _list_images(folder):
                a = _read_image(f, mode)
                if (a.shape[1], a.shape[0]) != size:
                    raise DataError(f"{f}: size {a.shape[1]}x{a.shape[0]} differs from {size[0]}x{size[1]} (resize the folder first)")
                xs.append(a)
                ys.append(label)
        if not xs:
            raise DataError(f"{d}: no images found in class folders")
        splits[split] = (from_uint8_nhwc(np.stack(xs)), torch.tensor(ys, dtype=torch.int64))
    if "test" not in splits:  # no test/ (or val/) folder: no test split
        splits["test"] = (splits["train"][0][:0].clone(), splits["train"][1][:0].clone())
    return check_dataset(Dataset(
        name=name or str(root.resolve()),
        x_train=splits["train"][0],
        y_train=splits["train"][1],
        x_test=splits["test"][0],
        y_test=splits["test"][1],
        class_names=classes,
        default_transform="normalize",
        source=str(root.resolve()),
    ), str(root))


def folder_info(root: Path) -> tuple[int, int, int, int]:
    root = Path(root)
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DataError(f"{root}: an image-folder dataset needs {root}/train/<class>/ folders")
    classes = _class_folders(train_dir)
    first = next((f for c in classes for f in _list_images(c)), None)
    if first is None:
        raise DataError(f"{train_dir}: no images found")
    mode, (w, h) = _image_mode_size(first)
    return len(classes), (1 if mode == "L" else 3), h, w


# ------------------------------------------------------------------------------------ CIFAR
_CIFAR = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py", CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": ("CIFAR100", "cifar-100-python", CIFAR100_MEAN, CIFAR100_STD),
}


def _cifar_loader(name: str) -> Callable[[Path, bool], Dataset]:
    cls_name, folder, mean, std = _CIFAR[name]

    def load(data_dir: Path, download: bool) -> Dataset:
        import torchvision  # here: it adds about 1 s to every start-up, and only CIFAR needs it

        tv_cls = getattr(torchvision.datasets, cls_name)
        source = None
        if (data_dir / folder).is_dir():
            source = "torchvision"
        else:
            for fname in (f"{name}-pack.npz", f"{name}.npz"):
                if (data_dir / fname).is_file():
                    ds = load_npz(data_dir / fname, name=name)
                    if ds.shape != (3, 32, 32):
                        raise DataError(f"{data_dir / fname}: {name} images must be 32x32x3, got {ds.shape}")
                    ds.mean, ds.std, ds.default_transform = mean, std, "zca"
                    return ds
        if source is None and not download:
            raise DataError(
                f"{name} not found: put torchvision's {folder}/ folder (or {name}.npz in the gsdd .npz "
                f"format) in {data_dir}, or allow downloading"
            )
        try:
            train = tv_cls(str(data_dir), train=True, download=source is None)
            test = tv_cls(str(data_dir), train=False, download=False)
        except Exception as e:
            raise DataError(
                f"{name} could not be loaded or downloaded into {data_dir} "
                f"({str(e).splitlines()[0][:100] if str(e) else type(e).__name__}); put torchvision's "
                f"{folder}/ folder or {name}.npz there"
            ) from None
        return Dataset(
            name=name,
            x_train=from_uint8_nhwc(train.data),
            y_train=torch.tensor(train.targets, dtype=torch.int64),
            x_test=from_uint8_nhwc(test.data),
            y_test=torch.tensor(test.targets, dtype=torch.int64),
            class_names=list(train.classes),
            default_transform="zca",
            mean=mean,
            std=std,
            source=str(data_dir / folder),
        )

    return load


# ---------------------------------------------------------------------------- ImageNet subsets
def _load_resized(path: Path) -> np.ndarray:
    """RGB image → Resize(128) (shorter side, bilinear, antialias) → CenterCrop(128); uint8 HWC."""
    import torchvision.transforms.v2.functional as TF  # here, as in _cifar_loader: ~1 s to import

    a = _read_image(path, "RGB")
    t = torch.from_numpy(a).permute(2, 0, 1).float().div_(255.0)
    t = TF.resize(t, [RESOLUTION], antialias=True)
    t = TF.center_crop(t, [RESOLUTION, RESOLUTION])
    return (t.clamp_(0, 1).mul_(255).round_().to(torch.uint8)).permute(1, 2, 0).numpy()


def _imagenet_loader(subset: Subset) -> Callable[[Path, bool], Dataset]:
    def load(data_dir: Path, download: bool) -> Dataset:
        extracted = data_dir / subset.name
        imagenet = data_dir / "imagenet"
        cache = data_dir / "cache" / f"{subset.name}-{RESOLUTION}.npz"
        class_names = subset_class_names(subset)
        if cache.is_file():
            ds = load_npz(cache, name=subset.name)
        else:
            if (extracted / "train").is_dir() and _test_dir(extracted) is not None:
                root = extracted
                wnids = [p.name for p in _class_folders(extracted / "train")]
                if len(wnids) != 10:
                    raise DataError(f"{extracted / 'train'}: expected 10 class folders, found {len(wnids)}")
            elif (imagenet / "train").is_dir():
                root = imagenet
                wnids = subset_wnids(subset, imagenet)
            else:
                raise DataError(
                    f"{subset.name} not found: put ImageNet-1k as {imagenet}/train/<wnid>/*.JPEG and "
                    f"{imagenet}/val/<wnid>/*.JPEG (or the 10 classes as {extracted}/train|val/<wnid>/); "
                    "no automatic download"
                )
            test_dir = _test_dir(root)
            if test_dir is None:
                raise DataError(f"{root}: missing val/<wnid>/ folders (ImageNet val sorted into class folders)")
            arrays = {}
            for split, d in (("train", root / "train"), ("test", test_dir)):
                files, labels = [], []
                for label, w in enumerate(wnids):
                    if not (d / w).is_dir():
                        raise DataError(f"{d / w}: missing class folder of {subset.name}")
                    fs = _list_images(d / w)
                    files += fs
                    labels += [label] * len(fs)
                with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
                    imgs = list(pool.map(_load_resized, files))
                if not imgs:
                    raise DataError(f"{d}: no images for {subset.name}")
                arrays[f"x_{split}"] = np.stack(imgs)
                arrays[f"y_{split}"] = np.asarray(labels, dtype=np.int64)
            try:  # decoding 13 000 JPEGs is slow: keep a uint8 copy at 128×128
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cache, class_names=np.asarray(class_names), **arrays)
            except OSError:
                pass
            ds = Dataset(
                name=subset.name,
                x_train=from_uint8_nhwc(arrays["x_train"]),
                y_train=torch.from_numpy(arrays["y_train"]),
                x_test=from_uint8_nhwc(arrays["x_test"]),
                y_test=torch.from_numpy(arrays["y_test"]),
                class_names=class_names,
                mean=IMAGENET_MEAN,
                std=IMAGENET_STD,
            )
        ds.class_names = class_names
        ds.mean, ds.std, ds.default_transform = IMAGENET_MEAN, IMAGENET_STD, "normalize"
        ds.source = str(cache if cache.is_file() else data_dir)
        return ds

    return load


# ----------------------------------------------------------------------------- registrations
_register(DatasetSpec("digits", 10, 1, 16, 16, "scikit-learn 8x8 digits upsampled to 16x16 (embedded, no download)",
                      lambda d, dl: load_digits_dataset(d, dl)))
_register(DatasetSpec("cifar10", 10, 3, 32, 32, "CIFAR-10 (torchvision download, folder, or cifar10.npz)",
                      _cifar_loader("cifar10")))
_register(DatasetSpec("cifar100", 100, 3, 32, 32, "CIFAR-100 (torchvision download, folder, or cifar100.npz)",
                      _cifar_loader("cifar100")))
for _s in SUBSETS.values():
    _register(DatasetSpec(_s.name, 10, 3, RESOLUTION, RESOLUTION,
                          f"ImageNet subset {_s.name} at 128x128 (from <data_dir>/imagenet)", _imagenet_loader(_s)))
