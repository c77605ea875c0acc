"""The one renderer entry point. Picks the CUDA op or the pure-PyTorch reference.

``backend`` is ``"auto"`` (default), ``"cuda"`` or ``"reference"``; the environment variable
``GSDD_BACKEND`` overrides ``"auto"``. ``auto`` uses the CUDA op when the tensors live on a GPU and
the extension is available (built or buildable), else the reference. An explicit ``"cuda"`` that
cannot be honoured raises :class:`CudaUnavailableError`; it never falls back silently.
"""

from __future__ import annotations

import os

import torch

from gsdd_cli.errors import ConfigError, CudaUnavailableError
from gsdd_cli.render.reference import rasterize_reference

BACKENDS = ("auto", "cuda", "reference")


def resolve_backend(backend: str, device: torch.device) -> str:
    """Turn 'auto' (or $GSDD_BACKEND) into a concrete backend for tensors on ``device``."""
    if backend == "auto":
        backend = os.environ.get("GSDD_BACKEND", "auto") or "auto"
    if backend not in BACKENDS:
        raise ConfigError(f"unknown renderer backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend == "reference":
        return backend
    on_gpu = device.type == "cuda"
    if backend == "auto":
        if not on_gpu:
            return "reference"
        import gsdd_cuda

        return "cuda" if gsdd_cuda.is_available() else "reference"
    # explicit cuda
    if not on_gpu:
        raise CudaUnavailableError(
            "the CUDA renderer needs tensors on a GPU (got device "
            f"{device}); use --device cuda or --backend reference"
        )
    import gsdd_cuda

    if not gsdd_cuda.is_available():
        raise CudaUnavailableError(
            f"the gsdd CUDA extension is not available: {gsdd_cuda.unavailable_reason()}",
            hint="build it with `pip install --no-build-isolation -e .` on a machine with nvcc, "
            "or use --backend reference",
        )
    return "cuda"


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
    """Render B images of N Gaussians each (SPEC §2). Differentiable w.r.t. all four inputs."""
    chosen = resolve_backend(backend, xy.device)
    if chosen == "cuda":
        import gsdd_cuda

        return gsdd_cuda.rasterize(
            xy, chol, rgb, opacity, num_images, height, width, antialias=antialias
        )
    return rasterize_reference(xy, chol, rgb, opacity, num_images, height, width, antialias)


__all__ = ["rasterize", "rasterize_reference", "resolve_backend", "BACKENDS"]
