"""gsdd_cuda: the batched tiled CUDA rasterizer of gsdd (SPEC.md §2), as torch.library ops.

Contract used by :mod:`gsdd_cli.render`: :func:`is_available`, :func:`unavailable_reason` and
:func:`rasterize` ``(xy, chol, rgb, opacity, num_images, height, width, antialias=True)``.
Importing this package builds nothing and prints nothing; the library is loaded (prebuilt
``gsdd_cuda._C``, else a cached ninja JIT build) on the first ``is_available()`` or ``rasterize``.
Operators: ``torch.ops.gsdd.rasterize_fwd`` and ``torch.ops.gsdd.rasterize_bwd``. See docs/cuda.md.
"""

from __future__ import annotations

from gsdd_cuda._backend import is_available, unavailable_reason
from gsdd_cuda.ops import rasterize

__all__ = ["is_available", "unavailable_reason", "rasterize"]
