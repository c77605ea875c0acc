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

import importlib
from typing import Any

# Names are loaded on first use (PEP 562), so `gsdd_cuda.errors` can be imported without torch.
# Every name goes through `dispatch`, which imports `ops`, so the ops' registrations are in place
# before any library is loaded.
_NAMES = {
    "rasterize": "dispatch", "resolve_backend": "dispatch", "BACKENDS": "dispatch", "rasterize_reference": "dispatch",
    "is_available": "_backend", "unavailable_reason": "_backend", "project": "ops",
    "NativeUnavailableError": "errors", "RasterizerError": "errors", "UnknownBackendError": "errors",
}


def __getattr__(name: str) -> Any:
    where = _NAMES.get(name)
    if where is None:
        raise AttributeError(f"module 'gsdd_cuda' has no attribute {name!r}")
    importlib.import_module("gsdd_cuda.dispatch")
    value = getattr(importlib.import_module(f"gsdd_cuda.{where}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))


__all__ = list(_NAMES)
