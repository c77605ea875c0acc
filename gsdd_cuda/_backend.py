"""Lazy loading of the compiled gsdd operators.

Policy (gsplat's ``_lazy_backend`` lesson): importing :mod:`gsdd_cuda` builds nothing and prints
nothing. The first :func:`load` (via ``gsdd_cuda.is_available()`` or ``gsdd_cuda.rasterize``)

1. needs ``torch.cuda.is_available()``;
2. imports a prebuilt ``gsdd_cuda._C`` (``GSDD_BUILD_CUDA=1 pip install ...``) if there is one;
3. otherwise JIT-compiles the sources with ninja into
   ``$GSDD_EXT_DIR`` or ``${XDG_CACHE_HOME:-~/.cache}/gsdd/ext/<torch>-<cuda>-sm<arch>-<hash>``,
   printing one line to stderr while it compiles (``GSDD_NO_JIT=1`` disables this step).

A failure is remembered in-process, and a failed JIT build also leaves ``BUILD_FAILED.txt`` (the
compiler output) in its cache folder so later processes fail fast; :func:`unavailable_reason`
says where to look. Delete that folder to retry.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import threading
from pathlib import Path

from gsdd_cuda import _build

FAILED_MARKER = "BUILD_FAILED.txt"

_lock = threading.Lock()
LOADED = False  # read by gsdd_cuda.ops.rasterize (a plain global, so torch.compile can guard on it)
_reason: str | None = None  # why the extension is unavailable, once a load attempt failed
_origin: str | None = None  # "prebuilt" or the JIT library path, once loaded


def _ops_registered() -> bool:
    import torch

    try:
        torch.ops.gsdd.rasterize_fwd  # noqa: B018 - attribute lookup is the test
        torch.ops.gsdd.rasterize_bwd  # noqa: B018
    except (AttributeError, RuntimeError):
        return False
    return True


def cache_root() -> Path:
    env = os.environ.get("GSDD_EXT_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "gsdd" / "ext"


def detected_arch_list() -> str:
    """$TORCH_CUDA_ARCH_LIST, else the compute capabilities of the visible GPUs (e.g. '9.0')."""
    env = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if env:
        return env
    import torch

    caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
    return ";".join(f"{major}.{minor}" for major, minor in caps)


def build_dir(arch_list: str) -> Path:
    import torch

    flags = " ".join(_build.cxx_flags() + _build.nvcc_flags())
    digest = _build.source_hash(f"{arch_list}|{flags}")
    tag = f"torch{torch.__version__}-cu{torch.version.cuda}-sm{arch_list}-{digest}"
    return cache_root() / re.sub(r"[^A-Za-z0-9._+-]", "_", tag)


def _try_prebuilt() -> str | None:
    """Import gsdd_cuda._C. Returns None on success, else a one-line reason."""
    try:
        importlib.import_module("gsdd_cuda._C")
    except ModuleNotFoundError:
        return "no prebuilt gsdd_cuda._C (install with GSDD_BUILD_CUDA=1 to build one)"
    except ImportError as exc:  # e.g. built against another torch
        return f"prebuilt gsdd_cuda._C failed to import: {str(exc).splitlines()[0]}"
    return None


def _jit() -> None:
    arch = detected_arch_list()
    bdir = build_dir(arch)
    marker = bdir / FAILED_MARKER
    if marker.exists():
        raise RuntimeError(
            f"an earlier build of the CUDA extension failed; compiler output in {marker} "
            f"(delete {bdir} to retry)"
        )
    name = "gsdd_cuda_ext_" + bdir.name.rsplit("-", 1)[-1]
    print(f"gsdd: compiling the CUDA extension for sm_{arch} (first use, ~1-2 min) in {bdir}",
          file=sys.stderr, flush=True)
    try:
        path = _build.jit_build(bdir, name, arch)
    except Exception as exc:
        bdir.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{type(exc).__name__}: {exc}\n")
        raise RuntimeError(
            f"building the CUDA extension failed; compiler output in {marker} "
            f"(delete {bdir} to retry)"
        ) from exc
    global _origin
    _origin = path


def load() -> bool:
    """Make torch.ops.gsdd.* available (prebuilt or JIT). Returns False, with a reason, on failure."""
    global LOADED, _reason, _origin
    if LOADED:
        return True
    if _reason is not None:
        return False
    with _lock:
        if LOADED or _reason is not None:
            return LOADED
        import torch

        if not torch.cuda.is_available():
            _reason = "no CUDA device (torch.cuda.is_available() is False)"
            return False
        try:
            if _ops_registered():  # e.g. a library loaded by hand with torch.ops.load_library
                _origin = "already registered"
            else:
                why_not_prebuilt = _try_prebuilt()
                if why_not_prebuilt is None:
                    _origin = "prebuilt gsdd_cuda._C"
                elif os.environ.get("GSDD_NO_JIT", "") == "1":
                    _reason = f"{why_not_prebuilt}; JIT build disabled by GSDD_NO_JIT=1"
                    return False
                elif not _build.nvcc_available():
                    _reason = f"{why_not_prebuilt}; no CUDA toolkit (nvcc) found for a JIT build (set CUDA_HOME)"
                    return False
                else:
                    _jit()
            from gsdd_cuda import ops

            ops.register()
        except Exception as exc:  # noqa: BLE001 - reported through unavailable_reason()
            _reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return False
        LOADED = True
        return True


def is_available() -> bool:
    return load()


def unavailable_reason() -> str:
    """Empty string when available, else a short message (with where the build log is)."""
    if load():
        return ""
    return _reason or "unknown"


def origin() -> str | None:
    """Where the loaded operators came from (for diagnostics)."""
    return _origin


def require() -> None:
    if not load():
        raise RuntimeError(f"the gsdd CUDA extension is not available: {_reason}")
