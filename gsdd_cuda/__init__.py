"""gsdd_cuda: the whole rasterizer of gsdd, with one public function, :func:`rasterize`.

``rasterize(xy, chol, rgb, opacity, num_images, height, width, *, antialias=True, backend="auto")``
renders on the tensors' device with the native kernels (CPU or CUDA, ``torch.ops.gsdd.rasterize_fwd``
/ ``rasterize_bwd`` / ``project``, registered with fake kernels and autograd in :mod:`.ops`) or with
the pure-PyTorch twin in :mod:`.reference` (same names as the ops; the kernels' oracle). The package
keeps its historical name; it holds both devices' kernels and imports nothing of gsdd_cli.

Layout: ``csrc/`` kernels (one math header for both devices), ``_build.py`` / ``_backend.py``
loading (prebuilt, else a cached JIT build; importing builds and prints nothing), ``ops.py``
registration and the native-only call, ``reference.py`` the twin, ``dispatch.py`` backend choice,
``errors.py`` the errors. See docs/rasterizer.md.
"""

from __future__ import annotations

from gsdd_cuda._backend import is_available, unavailable_reason
from gsdd_cuda.dispatch import BACKENDS, rasterize, rasterize_reference, resolve_backend
from gsdd_cuda.errors import NativeUnavailableError, RasterizerError, UnknownBackendError
from gsdd_cuda.ops import project

__all__ = ["is_available", "unavailable_reason", "rasterize", "project", "BACKENDS", "NativeUnavailableError",
           "rasterize_reference", "resolve_backend", "RasterizerError", "UnknownBackendError"]
