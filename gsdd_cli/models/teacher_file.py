"""The gsdd teacher file (``gsdd teacher DATASET --out t.pt``): safetensors weights, JSON metadata.

No pickle: the file is a safetensors file whose tensors are the network's ``state_dict`` (BatchNorm
running statistics included) and whose string metadata holds one JSON value per key (docs/imagenet.md
lists them). ``format`` is ``"gsdd-teacher"``, ``format_version`` 1, and ``weights_sha256`` the
:func:`weights_sha256` of the tensors, checked on every load. Anything else (a missing file, a torch
pickle, another safetensors file, a truncated or altered one) is one :class:`CheckpointError` line
(exit code 4, as a bad ``.gsd``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import torch

from gsdd_cli.core.errors import CheckpointError
from gsdd_cli.core.outputs import atomic_write_bytes, dumps_json, fs_error

TEACHER_FORMAT = "gsdd-teacher"
TEACHER_FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "arch", "dataset", "class_names", "num_classes", "channels",
                 "height", "width", "transform", "transform_params", "weights_sha256")


def weights_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 (hex) of a state dict: every tensor's name, dtype, shape and bytes, in name order.

    The same weights give the same digest whatever file holds them (a torchvision ``.pth`` pickle, a
    gsdd safetensors file), so a teacher's identity does not depend on how it was stored.
    """
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def file_sha256(path: Path | str) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise fs_error(e, path, "read") from None
    return h.hexdigest()


def save_teacher_file(path: Path | str, state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> str:
    """Write ``state`` and ``meta`` atomically as a gsdd teacher file; returns the weights' sha256.

    ``meta`` must hold the :data:`REQUIRED_KEYS` other than the format keys and the checksum, which
    are added here.
    """
    from safetensors.torch import save as safetensors_bytes

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    digest = weights_sha256(tensors)
    full = {**dict(meta), "format": TEACHER_FORMAT, "format_version": TEACHER_FORMAT_VERSION,
            "weights_sha256": digest}
    missing = [k for k in REQUIRED_KEYS if k not in full]
    if missing:
        raise ValueError(f"teacher metadata lacks {missing}")
    md = {k: dumps_json(v) for k, v in full.items()}
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata=md))
    return digest


def read_teacher_file(path: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, metadata) of a gsdd teacher file, validated; CheckpointError (one line) otherwise."""
    from safetensors import safe_open

    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"teacher file {path}: no such file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
    except OSError as e:
        raise fs_error(e, path, "read") from None
    except Exception:  # safetensors raises its own error types for anything that is not its format
        raise CheckpointError(f"{path} is not a gsdd teacher file (not a safetensors file, or truncated)",
                              hint="write one with: gsdd teacher DATASET --out t.pt; a torchvision "
                                   "state dict goes with --teacher NAME=FILE") from None
    if raw.get("format") != json.dumps(TEACHER_FORMAT):
        raise CheckpointError(f"{path} is a safetensors file but not a gsdd teacher "
                              f"(format {raw.get('format', 'missing')!r})",
                              hint="a torchvision state dict goes with --teacher NAME=FILE")
    meta: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            meta[key] = json.loads(value)
        except json.JSONDecodeError:
            raise CheckpointError(f"{path}: teacher metadata {key!r} is not valid JSON") from None
    if meta.get("format_version") != TEACHER_FORMAT_VERSION:
        raise CheckpointError(f"{path}: teacher format version {meta.get('format_version')!r} is not supported "
                              f"(this gsdd reads version {TEACHER_FORMAT_VERSION})")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: teacher metadata lacks {missing[0]!r}")
    names = meta["class_names"]
    if not isinstance(names, list) or len(names) != meta["num_classes"] or len(set(map(str, names))) != len(names):
        raise CheckpointError(f"{path}: teacher class_names must be {meta['num_classes']} distinct names")
    if weights_sha256(state) != meta["weights_sha256"]:
        raise CheckpointError(f"{path}: the weights do not match their recorded sha256 (the file is corrupt)")
    return state, meta


__all__ = ["REQUIRED_KEYS", "TEACHER_FORMAT", "TEACHER_FORMAT_VERSION", "file_sha256", "read_teacher_file",
           "save_teacher_file", "weights_sha256"]
