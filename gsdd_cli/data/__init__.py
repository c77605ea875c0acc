"""Datasets, pixel-space → network-space transforms (ZCA / normalisation) and DSA augmentation.

``load_dataset(name)`` accepts a registered name (``gsdd_cli.data.DATASETS.names()``), a path to a
``.npz`` file in the shared format, or a path to an image-folder tree. Loaded datasets are kept in
an in-process LRU cache (treat their tensors as read-only).
"""

from __future__ import annotations

import functools
from pathlib import Path

from gsdd_cli.data.core import DATA_DIR_ENV, Dataset, channel_stats, resolve_data_dir
from gsdd_cli.data.sources import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    DATASETS,
    DatasetSpec,
    folder_info,
    load_image_folder,
    load_npz,
    npz_info,
)
from gsdd_cli.core.errors import DataError
from gsdd_cli.data import imagenet1k as _imagenet1k  # noqa: F401  (registers "imagenet1k")

ZCA_DATASETS = ("cifar10", "cifar100")


def _as_path(name: str) -> Path | None:
    """A dataset argument that names a file or folder (not a registered name)."""
    if name.lower() in DATASETS:
        return None
    p = Path(name).expanduser()
    if name.endswith(".npz") or "/" in name or "\\" in name or p.exists():
        return p
    return None


def dataset_path(name: str) -> Path | None:
    """The file or folder a dataset argument names, or None for a registered name."""
    return _as_path(str(name))


@functools.lru_cache(maxsize=3)
def _load_cached(key: str, data_dir: str, download: bool) -> Dataset:
    path = _as_path(key)
    if path is not None:
        if path.is_dir():
            return load_image_folder(path)
        if not path.exists():
            raise DataError(f"{path}: no such dataset file or folder")
        return load_npz(path)
    spec = DATASETS.get(key)
    ds = spec.loader(Path(data_dir), download)
    ds.cache_dir = Path(data_dir)
    return ds


def load_dataset(name: str, data_dir: Path | str | None = None, download: bool = True) -> Dataset:
    """Load a dataset by registered name or path (see module docstring); cached in-process.

    Data dir: ``data_dir`` > ``$GSDD_DATA_DIR`` > ``~/.cache/gsdd/data``. Raises
    :class:`UnknownNameError` for an unknown name and :class:`DataError` (one line saying which files
    to put where) when the data is missing.
    """
    name = str(name)
    root = resolve_data_dir(data_dir)
    path = _as_path(name)
    if path is not None:
        key = str(path.resolve())
        ds = _load_cached(key, str(root), False)
        if ds.cache_dir is None:
            ds.cache_dir = root
        return ds
    return _load_cached(name.lower(), str(root), bool(download))


def clear_cache() -> None:
    """Forget the in-process dataset cache."""
    _load_cached.cache_clear()


def dataset_info(name: str, data_dir: Path | str | None = None) -> tuple[int, int, int, int]:
    """(num_classes, channels, height, width) without loading the images."""
    path = _as_path(str(name))
    if path is not None:
        if path.is_dir():
            return folder_info(path)
        return npz_info(path)
    return DATASETS.get(str(name)).info


def dataset_names() -> list[str]:
    return DATASETS.names()


def default_transform_kind(dataset_name: str, algorithm: str | None = None) -> str:
    """docs/method.md §7: ZCA for CIFAR-10/100 with trajectory matching, mean/std normalisation otherwise."""
    name = str(dataset_name).lower()
    algo = (algorithm or "").lower()
    if name in ZCA_DATASETS and algo == "tm":
        return "zca"
    return "normalize"


from gsdd_cli.data.augment import DSA_STRATEGY, DSAParams, dsa  # noqa: E402
from gsdd_cli.data.transforms import (  # noqa: E402
    NormalizeTransform,
    Transform,
    ZCATransform,
    make_transform,
)

__all__ = [
    "DATA_DIR_ENV",
    "DATASETS",
    "Dataset",
    "DatasetSpec",
    "DSA_STRATEGY",
    "DSAParams",
    "NormalizeTransform",
    "Transform",
    "ZCATransform",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "channel_stats",
    "clear_cache",
    "dataset_info",
    "dataset_path",
    "dataset_names",
    "default_transform_kind",
    "dsa",
    "load_dataset",
    "make_transform",
    "resolve_data_dir",
]
