"""gsdd_cuda: the native rasterizer of gsdd, CPU and CUDA kernels behind torch.library ops.

Contract used by :mod:`gsdd_cuda`: :func:`is_available` and :func:`unavailable_reason` (per
device, ``"cpu"`` or ``"cuda"``) and :func:`rasterize` ``(xy, chol, rgb, opacity, num_images,
height, width, antialias=True)``, which runs on the tensors' device. Importing this package builds
nothing and prints nothing; the libraries are loaded (prebuilt, else a cached JIT build) on the
first ``is_available(device)`` or ``rasterize``. Operators: ``torch.ops.gsdd.rasterize_fwd``,
``torch.ops.gsdd.rasterize_bwd`` and ``torch.ops.gsdd.project``. The package keeps its historical
name; it holds both devices' kernels. See docs/rasterizer.md.
"""

from __future__ import annotations

from gsdd_cuda._backend import is_available, unavailable_reason
from gsdd_cuda.dispatch import BACKENDS, NativeUnavailableError, rasterize, rasterize_reference, resolve_backend
from gsdd_cuda.ops import project

__all__ = ["is_available", "unavailable_reason", "rasterize", "project", "BACKENDS", "NativeUnavailableError",
           "rasterize_reference", "resolve_backend"]
