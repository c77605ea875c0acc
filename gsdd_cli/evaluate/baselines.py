"""Baselines on real images under the same protocol: ``random-real`` (IPC random images per class, a
fresh seeded subset per run) and ``full`` (the whole training set)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable

import torch

from gsdd_cli.core.devices import resolve_device
from gsdd_cli.core.errors import ConfigError, DataError
from gsdd_cli.core.tensorboard import check_tensorboard
from gsdd_cli.data import Dataset, load_dataset, make_transform
from gsdd_cli.data.transforms import Transform, apply_in_batches
from gsdd_cli.evaluate.config import BASELINES, EvalConfig
from gsdd_cli.evaluate.results import EvalResult, EvalStep
from gsdd_cli.evaluate.settings import resolve_settings
from gsdd_cli.evaluate.source import header_transform, real_dataset_for
from gsdd_cli.evaluate.tensorboard import EvalBoard
from gsdd_cli.evaluate.training import run_protocol
from gsdd_cli.sets.gsdfile import load_gsd


def subset_seed(seed: int, run: int) -> int:
    """The seed of run ``run``'s random-real subset: a 63-bit hash of (seed, run)."""
    digest = hashlib.sha256(f"gsdd:random-real:{int(seed)}:{int(run)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def select_random_real(ds: Dataset, ipc: int, seed: int) -> torch.Tensor:
    """Indices of ``ipc`` random training images per class (class-major), seeded."""
    gen = torch.Generator().manual_seed(int(seed))
    picks = []
    for c in range(ds.num_classes):
        idx = ds.indices_of_class(c)
        if idx.numel() < ipc:
            raise DataError(f"class {c} ({ds.class_names[c]}) has only {idx.numel()} training images, need ipc={ipc}")
        picks.append(idx[torch.randperm(idx.numel(), generator=gen)[:ipc]])
    return torch.cat(picks)


def evaluate_baseline(
    dataset: str | Dataset | None,
    kind: str = "random-real",
    ipc: int | None = None,
    cfg: EvalConfig | None = None,
    *,
    data_dir: Path | str | None = None,
    transform: str | Transform | None = None,
    like: Path | str | None = None,
    on_step: Callable[[EvalStep], None] | None = None,
) -> EvalResult:
    """Baselines on real images: ``random-real`` (``ipc`` random images per class, a fresh subset per
    run drawn with :func:`subset_seed` (cfg.seed, run); the indices are in ``extra``) or ``full`` (the
    whole training set).

    ``transform`` is a kind ("zca", "normalize", "none") or a transform module; default: the
    dataset's. ``like`` names a .gsd file whose dataset, IPC and transform are used (``dataset``
    then only overrides the dataset's location, ``ipc`` and ``transform`` must be left out).
    """
    cfg = cfg or EvalConfig()
    if kind not in BASELINES:
        raise ConfigError(f"unknown baseline {kind!r}; valid: {', '.join(BASELINES)}")
    check_tensorboard(cfg.tensorboard)
    if like is not None:
        if ipc is not None or transform is not None:
            raise ConfigError("a baseline 'like' a file takes its IPC and transform from the file; leave them out")
        h = load_gsd(like).header
        ds = real_dataset_for(h, dataset if isinstance(dataset, str) else None, data_dir)
        ipc, transform = int(h.ipc), header_transform(h, ds)
    elif dataset is None:
        raise ConfigError("a baseline needs a dataset (or a .gsd file to take it from)")
    else:
        ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_dir)
    ds.require_test("gsdd eval --baseline")
    dev = resolve_device(cfg.device)
    st = resolve_settings(cfg)
    if isinstance(transform, Transform):
        tf, kind_tf = transform, transform.kind
    else:
        kind_tf = transform or ds.default_transform
        tf = make_transform(ds, kind_tf)
    meta: dict[str, Any] = {"dataset": ds.name, "source": f"baseline:{kind}", "transform": kind_tf, "ipc": ipc,
                            "data_source": ds.source}
    if like is not None:
        meta["like"] = str(like)
    if kind == "random-real":
        if ipc is None or ipc < 1:
            raise ConfigError("--baseline random-real needs --ipc K (K ≥ 1 real images per class)")
        seeds = [subset_seed(cfg.seed, r) for r in range(st.runs)]
        picks = [select_random_real(ds, ipc, sd) for sd in seeds]
        meta["subset_seeds"] = seeds
        meta["random_indices"] = [p.tolist() for p in picks]

        def draw(run: int) -> tuple[torch.Tensor, torch.Tensor]:
            return apply_in_batches(tf, ds.x_train[picks[run]], dev), ds.y_train[picks[run]].to(dev)
    else:
        x_full, y_full = apply_in_batches(tf, ds.x_train, dev, what="--full (training on the whole training set)"), ds.y_train.to(dev)

        def draw(run: int) -> tuple[torch.Tensor, torch.Tensor]:
            return x_full, y_full
    test_x = apply_in_batches(tf, ds.x_test, dev, stream=True)
    board = EvalBoard(cfg.tensorboard)  # under evaluate_set's comparisons: None (its board writes them)
    try:
        res = run_protocol(draw, test_x, ds.y_test, cfg, st, ds.num_classes, board.hook(on_step, kind), None, meta)
        board.result(res, kind)
        return res
    finally:
        board.close()


__all__ = ["evaluate_baseline", "select_random_real", "subset_seed"]
