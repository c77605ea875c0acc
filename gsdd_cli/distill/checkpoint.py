"""Checkpoints of a distillation run: the state, its sha256 checksum, atomic save, verified load.

A checkpoint holds the fp32 masters, the optimizer's and the method's state, the iteration, the last
loss, the init record and every RNG state, with a checksum of all of that (format version 2).
"""

from __future__ import annotations

import copy
import hashlib
import io
from pathlib import Path
from typing import Any, Optional

import torch

from gsdd_cli.core.errors import CheckpointError, ConfigError
from gsdd_cli.core.outputs import atomic_write_bytes, fs_error
from gsdd_cli.distill.common import rng_state
from gsdd_cli.distill.config import RUN_CONTROL_FIELDS, DistillConfig
from gsdd_cli.sets.synthetic import SyntheticImages

CHECKPOINT_FORMAT = "gsdd-checkpoint"
CHECKPOINT_VERSION = 2  # 2: sha256 checksum of the content, last_loss
# Settings --resume may change beyond RUN_CONTROL_FIELDS: a lower lr after a divergence.
RESUME_ADJUSTABLE = RUN_CONTROL_FIELDS | {"lr", "lr_img"}


def _digest(h: Any, obj: Any) -> None:
    """Feed a canonical encoding of ``obj`` (nested dicts/lists of tensors and scalars) into ``h``."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for k in sorted(obj, key=repr):
            h.update(f"K{k!r}".encode())
            _digest(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for v in obj:
            _digest(h, v)
    else:
        h.update(f"S{type(obj).__name__}:{obj!r}".encode())


def checkpoint_checksum(state: dict) -> str:
    """sha256 (hex) of everything in a checkpoint except its ``checksum`` entry."""
    h = hashlib.sha256()
    _digest(h, {k: v for k, v in state.items() if k != "checksum"})
    return h.hexdigest()


def capture_state(images: SyntheticImages, optimizer: torch.optim.Optimizer, method, *, copy_state: bool) -> dict:
    """The trainable state (copies when ``copy_state``: a snapshot that later steps do not change)."""
    opt, meth = optimizer.state_dict(), method.state_dict()
    if copy_state:
        opt, meth = copy.deepcopy(opt), copy.deepcopy(meth)
    return {
        "images": images.state_tensors(),
        "labels": images.labels.detach().clone(),
        "optimizer": opt,
        "method": meth,
    }


def write_checkpoint(path: Path, cfg: DistillConfig, captured: dict, *, iteration: int, elapsed: float,
                      init: dict, last_loss: Optional[float]) -> Path:
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "iteration": int(iteration),
        "config": cfg.model_dump(mode="json"),
        "images": {a: t.cpu() for a, t in captured["images"].items()},
        "labels": captured["labels"].cpu(),
        "optimizer": captured["optimizer"],
        "method": captured["method"],
        "rng": rng_state(),
        "elapsed": float(elapsed),
        "init": init,
        "last_loss": last_loss,
    }
    state["checksum"] = checkpoint_checksum(state)
    buf = io.BytesIO()
    torch.save(state, buf)  # serialised in memory: a full disk surfaces as OSError in the write
    atomic_write_bytes(path, buf.getvalue())
    return path


def save_checkpoint(path: Path, *, cfg: DistillConfig, iteration: int, images: SyntheticImages,
                    optimizer: torch.optim.Optimizer, method, elapsed: float, init: dict,
                    last_loss: Optional[float] = None) -> Path:
    """Write the current state atomically as a checkpoint (with its checksum)."""
    return write_checkpoint(path, cfg, capture_state(images, optimizer, method, copy_state=False),
                             iteration=iteration, elapsed=elapsed, init=init, last_loss=last_loss)


_RESTART_HINT = "delete it and run without --resume to start afresh"


def load_checkpoint(path: Path) -> dict:
    """Read and verify a checkpoint (format, version, checksum); one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint {path} to resume from",
                          hint="run without --resume to start afresh (checkpoints are written with --save-every and on Ctrl-C)")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise fs_error(e, path, "read") from None
    if not data:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)", hint=_RESTART_HINT)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:100]
        raise CheckpointError(f"checkpoint {path} is unreadable or truncated ({detail})", hint=_RESTART_HINT) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a gsdd checkpoint", hint=_RESTART_HINT)
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path} has version {state.get('version')}, this gsdd reads {CHECKPOINT_VERSION}",
                              hint=_RESTART_HINT)
    try:
        ok = state.get("checksum") == checkpoint_checksum(state)
    except Exception:  # a structure the digest cannot walk is corrupt as well
        ok = False
    if not ok:
        raise CheckpointError(f"checkpoint {path} is corrupted (its content does not match its checksum)",
                              hint=_RESTART_HINT)
    return state


def check_resume_config(cfg: DistillConfig, saved: dict, path: Path) -> None:
    now = cfg.model_dump(mode="json")
    for key in sorted(now):
        if key in RESUME_ADJUSTABLE:
            continue
        if now[key] != saved.get(key):
            raise ConfigError(
                f"cannot resume from {path}: {key} was {saved.get(key)!r}, now {now[key]!r}",
                hint="resume with the same settings (only iterations, lr, eval/save/log frequency, device "
                "and backend may change), or run without --resume",
            )


__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "RESUME_ADJUSTABLE", "capture_state", "check_resume_config",
           "checkpoint_checksum", "load_checkpoint", "save_checkpoint", "write_checkpoint"]
