"""`gsdd teacher`: train a classifier on a dataset gsdd loads and write it as a gsdd teacher file.

Recipe (docs/imagenet.md): SGD with momentum 0.9, lr 0.1, weight decay 5e-4, batch 128, cosine
annealing of the lr over the epochs to 0 — the ResNet-18 CIFAR recipe of kuangliu/pytorch-cifar
(``main.py``: SGD lr 0.1, momentum 0.9, weight decay 5e-4, ``CosineAnnealingLR(T_max=200)``), with
fewer epochs by default (50; ``--epochs``). Augmentation is the evaluation protocol's: DSA on every
batch (:func:`gsdd_cli.evaluate.training.train_epoch`, crop/flip/scale/rotate/color/cutout). The
network trains in gsdd's network space of the dataset (``--transform``, default normalize), so a
teacher used on the same dataset needs no input conversion.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Optional

import torch
from pydantic import BaseModel, ConfigDict, field_validator

from gsdd_cli import __version__
from gsdd_cli.core.devices import resolve_device
from gsdd_cli.core.options import build, data_dir_option, device_option, finite, option, out_option, seed_option
from gsdd_cli.core.outputs import check_output_file
from gsdd_cli.data import dataset_path, load_dataset, make_transform
from gsdd_cli.data.augment import DSA_STRATEGY, check_strategy
from gsdd_cli.data.transforms import TRANSFORM_KINDS, apply_in_batches
from gsdd_cli.evaluate.training import test_accuracy, train_epoch
from gsdd_cli.models import get_model, list_models
from gsdd_cli.models.teacher_file import save_teacher_file

DEFAULT_ARCH = "resnet18bn"  # ResNet-18 with BatchNorm: SRe2L matches BN statistics


class TeacherConfig(BaseModel):
    """Settings of `gsdd teacher` (recorded in the file's ``recipe``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    dataset: str = option(..., "Dataset name (digits, cifar10, imagenette, ...) or path (.npz, image folder).",
                          argument=True)
    out: str = out_option("The teacher file to write (safetensors weights + JSON metadata), e.g. t.pt.")
    arch: str = option(DEFAULT_ARCH, "Network from gsdd's model registry; resnet18bn has BatchNorm "
                       "(needed by SRe2L), the others use instance norm.")
    epochs: int = option(50, "Training epochs (cosine lr schedule over them).", gt=0)
    batch: int = option(128, "Batch size.", gt=0)
    lr: float = option(0.1, "SGD learning rate at the start of the cosine schedule.", gt=0)
    momentum: float = option(0.9, "SGD momentum.", cli=False, ge=0, lt=1)
    weight_decay: float = option(5e-4, "SGD weight decay.", ge=0)
    transform: Literal[TRANSFORM_KINDS] = option(  # type: ignore[valid-type]
        "normalize", "Network space the teacher trains in: normalize (dataset mean/std), zca or none.")
    dsa: bool = option(True, "DSA augmentation on every batch (as the evaluation protocol).")
    dsa_strategy: str = option(DSA_STRATEGY, "DSA op groups.", cli=False)
    seed: int = seed_option()
    device: str = device_option()
    data_dir: Optional[str] = data_dir_option()

    _finite = field_validator("lr", "momentum", "weight_decay")(finite)
    _strategy = field_validator("dsa_strategy")(check_strategy)

    @field_validator("arch")
    @classmethod
    def _known(cls, v: str) -> str:
        if v.lower() not in list_models():
            raise ValueError(f"unknown model {v!r} (valid: {', '.join(list_models())})")
        return v.lower()


@dataclass(frozen=True)
class TeacherStep:
    """One finished epoch, for ``on_step`` callbacks."""

    epoch: int
    epochs: int
    loss: float
    train_acc: float
    lr: float


@dataclass(frozen=True)
class TeacherResult:
    out: Path
    arch: str
    dataset: str
    num_classes: int
    epochs: int
    test_accuracy: Optional[float]  # None: the dataset has no test split
    train_accuracy: float
    weights_sha256: str
    seconds: float


def make_teacher_config(**kwargs) -> TeacherConfig:
    """Build a :class:`TeacherConfig` (``None`` values mean "default"); errors become ConfigError."""
    return build(TeacherConfig, {k: v for k, v in kwargs.items() if v is not None})


def train_teacher(cfg: TeacherConfig, on_step: Callable[[TeacherStep], None] | None = None) -> TeacherResult:
    """Train ``cfg.arch`` on ``cfg.dataset`` and write ``cfg.out`` (atomically, only when done).

    The output path is checked before any work; Ctrl-C (KeyboardInterrupt) leaves no file behind.
    """
    out = check_output_file(cfg.out, "--out", {"DATASET": dataset_path(cfg.dataset)})
    dev = resolve_device(cfg.device)
    ds = load_dataset(cfg.dataset, cfg.data_dir)
    tf = make_transform(ds, cfg.transform)
    x = apply_in_batches(tf, ds.x_train, dev, what="gsdd teacher (it trains on every training image)")
    y = ds.y_train.to(dev)
    fmt = torch.channels_last if dev.type == "cpu" else torch.contiguous_format
    t0 = time.perf_counter()
    fork = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):
        torch.manual_seed(cfg.seed)
        net = get_model(cfg.arch, ds.channels, ds.num_classes, ds.height, ds.width).to(dev, memory_format=fmt)
        opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
        net.train()
        train_acc = 0.0
        for ep in range(cfg.epochs):
            lr = float(opt.param_groups[0]["lr"])
            loss, train_acc = train_epoch(net, opt, x, y, cfg.batch, cfg.dsa_strategy if cfg.dsa else None, fmt)
            sched.step()
            if on_step is not None:
                on_step(TeacherStep(ep + 1, cfg.epochs, loss, train_acc, lr))
    del x
    test_acc = None
    if ds.has_test:
        tx = apply_in_batches(tf, ds.x_test, dev).contiguous(memory_format=fmt)
        test_acc = test_accuracy(net, tx, ds.y_test.to(dev), batch=256)
    seconds = time.perf_counter() - t0
    meta = {
        "gsdd_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "arch": cfg.arch, "dataset": ds.name, "dataset_source": ds.source, "dataset_fingerprint": ds.fingerprint(),
        "class_names": list(ds.class_names), "num_classes": ds.num_classes,
        "channels": ds.channels, "height": ds.height, "width": ds.width,
        "transform": tf.kind, "transform_params": tf.describe(exact=True),
        "epochs": cfg.epochs, "test_accuracy": test_acc, "train_accuracy": train_acc,
        "num_train": int(ds.y_train.numel()), "num_test": int(ds.y_test.numel()),
        "recipe": {"optimizer": "sgd", "schedule": "cosine", "lr": cfg.lr, "momentum": cfg.momentum,
                   "weight_decay": cfg.weight_decay, "batch": cfg.batch, "dsa": cfg.dsa,
                   "dsa_strategy": cfg.dsa_strategy if cfg.dsa else None, "seed": cfg.seed},
        "train_seconds": round(seconds, 3), "device": str(dev),
    }
    digest = save_teacher_file(out, net.state_dict(), meta)
    return TeacherResult(out, cfg.arch, ds.name, ds.num_classes, cfg.epochs, test_acc, train_acc, digest,
                         seconds)


__all__ = ["DEFAULT_ARCH", "TeacherConfig", "TeacherResult", "TeacherStep", "make_teacher_config", "train_teacher"]
