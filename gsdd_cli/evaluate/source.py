"""What evaluating a ``.gsd`` file needs besides its images: the real dataset it was distilled from
(checked against the header), the network-space transform the header records, and the file's hash.

:class:`gsdd_cli.api.DistilledSet` uses the same functions, so a file means the same thing to
``gsdd eval``, ``gsdd export`` and the library.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from gsdd_cli.core.errors import DataError
from gsdd_cli.data import Dataset, load_dataset
from gsdd_cli.data.transforms import DatasetSource, Transform, transform_from_record


def file_sha256(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def real_dataset_for(header: Any, dataset: str | None = None, data_dir: Path | str | None = None) -> Dataset:
    """Load the real dataset a header names (``dataset`` overrides the name) and check that its
    (classes, C, H, W) match the header's."""
    ds = load_dataset(str(dataset) if dataset is not None else header.dataset, data_dir)
    want = (header.num_classes, header.channels, header.height, header.width)
    got = (ds.num_classes, ds.channels, ds.height, ds.width)
    if want != got:
        raise DataError(
            f"the file was distilled for {header.dataset} with (classes, C, H, W) = {want}, but the loaded "
            f"dataset has {got}"
        )
    return ds


def header_transform(header: Any, dataset: DatasetSource) -> Transform:
    """The pixel → network map a header records (see :func:`transform_from_record`)."""
    return transform_from_record(header.transform, header.transform_params, dataset,
                                 channels=int(header.channels), name=header.dataset)


__all__ = ["file_sha256", "header_transform", "real_dataset_for"]
