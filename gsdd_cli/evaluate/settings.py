"""The concrete numbers of an evaluation: :class:`EvalConfig` with the protocol defaults filled in."""

from __future__ import annotations

from dataclasses import dataclass

from gsdd_cli.core.devices import resolve_device
from gsdd_cli.evaluate.config import (
    ADAMW_WEIGHT_DECAY,
    CROSS_ARCH_DEFAULT_LR,
    CROSS_ARCH_LR,
    DEFAULT_LR,
    SGD_WEIGHT_DECAY,
    EvalConfig,
)
from gsdd_cli.models import is_convnet


@dataclass(frozen=True)
class EvalSettings:
    """Concrete numbers after applying the protocol defaults."""

    arch: str
    optimizer: str
    lr: float
    lr_source: str
    batch_size: int
    runs: int
    epochs: int
    eval_every: int
    momentum: float
    weight_decay: float
    device: str


def default_batch_size(algorithm: str | None) -> int:
    """The protocol's training batch: 256 for TM sets, else 128."""
    return 256 if (algorithm or "").lower() == "tm" else 128


def resolve_settings(cfg: EvalConfig, algorithm: str | None = None, syn_lr: float | None = None) -> EvalSettings:
    """Fill in the protocol defaults (docs/method.md §6.2, §6.3, §9.10, §9.11)."""
    conv = is_convnet(cfg.arch)
    optimizer = cfg.optimizer if cfg.optimizer != "auto" else ("sgd" if conv else "adamw")
    if cfg.lr is not None:
        lr, src = cfg.lr, "given"
    elif not conv:
        lr, src = CROSS_ARCH_LR.get(cfg.arch, CROSS_ARCH_DEFAULT_LR), f"cross-arch default for {cfg.arch}"
    elif syn_lr is not None:
        lr, src = float(syn_lr), "learned syn_lr from the file"
    else:
        lr, src = DEFAULT_LR, "default 0.01"
    batch = cfg.batch_size or default_batch_size(algorithm)
    runs = cfg.runs or (5 if conv else 3)
    wd = cfg.weight_decay if cfg.weight_decay is not None else (
        SGD_WEIGHT_DECAY if optimizer == "sgd" else ADAMW_WEIGHT_DECAY
    )
    every = cfg.eval_every or max(1, cfg.epochs // 2)
    return EvalSettings(
        arch=cfg.arch, optimizer=optimizer, lr=float(lr), lr_source=src, batch_size=int(batch),
        runs=int(runs), epochs=int(cfg.epochs), eval_every=int(every), momentum=cfg.momentum,
        weight_decay=float(wd), device=str(resolve_device(cfg.device)),
    )


__all__ = ["EvalSettings", "default_batch_size", "resolve_settings"]
