"""The one renderer entry point. Picks the native op (CPU or CUDA kernels) or the PyTorch reference.

``backend`` is ``"auto"`` (default), ``"native"``, ``"cuda"`` or ``"reference"``; the environment
variable ``GSDD_BACKEND`` overrides ``"auto"``.

* ``auto`` uses the native kernels of the tensors' device (CPU or CUDA; the first use may compile
  them, see docs/rasterizer.md). If they cannot be had, it says so in one line on stderr (once per
  process and device) and uses the reference.
* ``native`` requires the native kernels of the tensors' device; ``cuda`` additionally requires
  the tensors to be on a GPU. Neither falls back: they raise :class:`NativeUnavailableError`
  (gsdd_cli reports it as a CudaUnavailableError, exit code 6).
* ``reference`` is the pure-PyTorch oracle (:mod:`gsdd_cuda.reference`), any device.
"""

from __future__ import annotations

import os
import sys

import torch

from gsdd_cuda import _backend, ops
from gsdd_cuda.errors import NativeUnavailableError, UnknownBackendError
from gsdd_cuda.reference import rasterize_reference

BACKENDS = ("auto", "native", "cuda", "reference")
NATIVE_DEVICES = ("cpu", "cuda")
_warned: set[str] = set()  # devices whose fallback to the reference was already reported


def _fallback_notice(kind: str, reason: str) -> None:
    if kind in _warned:
        return
    _warned.add(kind)
    print(f"gsdd: the native {kind.upper()} renderer is unavailable ({reason}); using the PyTorch reference "
          "renderer (slower)", file=sys.stderr, flush=True)


def resolve_backend(backend: str, device: torch.device) -> str:
    """Turn a backend name (or $GSDD_BACKEND for 'auto') into 'native' or 'reference' for tensors
    on ``device``."""
    if backend == "auto":
        backend = os.environ.get("GSDD_BACKEND", "auto") or "auto"
    if backend not in BACKENDS:
        raise UnknownBackendError(f"unknown renderer backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend == "reference":
        return backend
    kind = torch.device(device).type
    if backend == "auto":
        if kind not in NATIVE_DEVICES:
            return "reference"
        if _backend.is_available(kind):
            return "native"
        _fallback_notice(kind, _backend.unavailable_reason(kind))
        return "reference"
    if backend == "cuda" and kind != "cuda":
        raise NativeUnavailableError(
            f"the CUDA renderer needs tensors on a GPU (got device {device}); "
            "use --device cuda, --backend native or --backend reference"
        )
    if kind not in NATIVE_DEVICES:
        raise NativeUnavailableError(f"no native renderer for device {device}; use --backend reference")
    if not _backend.is_available(kind):
        hint = ("build it with `GSDD_BUILD_CUDA=1 pip install --no-build-isolation -e .` on a machine with nvcc, "
                "or use --backend reference") if kind == "cuda" else \
            "install a C++ compiler (g++) and ninja, or use --backend reference"
        raise NativeUnavailableError(
            f"the native {kind.upper()} renderer is not available: {_backend.unavailable_reason(kind)}", hint=hint
        )
    return "native"


def rasterize(
    xy: torch.Tensor,  # [B*N, 2] normalized means
    chol: torch.Tensor,  # [B*N, 3] (L11, L21, L22) pixel units, offset applied
    rgb: torch.Tensor,  # [B*N, C]
    opacity: torch.Tensor,  # [B*N, 1]
    num_images: int,
    height: int,
    width: int,
    *,
    antialias: bool = True,
    backend: str = "auto",
) -> torch.Tensor:  # [B, C, H, W]
    """Render B images of N Gaussians each (docs/method.md). Differentiable w.r.t. all four inputs.

    The native kernels return float32 (float64 for float64 CPU inputs); the reference computes in
    ``xy``'s dtype.
    """
    if resolve_backend(backend, xy.device) == "native":
        return ops.rasterize(xy, chol, rgb, opacity, num_images, height, width, antialias=antialias)
    return rasterize_reference(xy, chol, rgb, opacity, num_images, height, width, antialias)


__all__ = ["rasterize", "rasterize_reference", "resolve_backend", "BACKENDS", "NativeUnavailableError"]
