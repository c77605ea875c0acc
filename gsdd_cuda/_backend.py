"""Lazy loading of the compiled gsdd operator libraries (docs/rasterizer.md, "Building").

Importing :mod:`gsdd_cuda` builds nothing, prints nothing and does not import torch (the functions
here import it when called, so ``import gsdd_cli`` stays cheap). The first :func:`load` for a device

* ``"cpu"``: loads the **CPU library** (operator schemas + CPU kernels): a prebuilt
  ``gsdd_cuda/_C*.so`` if there is one, else a cached ninja JIT build with the system's C++
  compiler (no CUDA toolkit needed);
* ``"cuda"``: needs a GPU and the CPU library (for the schemas), then loads the **CUDA library**
  (CUDA kernels only): a prebuilt ``gsdd_cuda/_C_cuda*.so``, else a cached nvcc JIT build.

JIT builds go to ``$GSDD_EXT_DIR`` or ``${XDG_CACHE_HOME:-~/.cache}/gsdd/ext/<folder>``, where the
folder name carries the torch version, the device part (CPU vector ISA, or CUDA version and
architectures) and a hash of the sources and flags. One line goes to stderr while compiling.
``GSDD_NO_JIT=1`` disables JIT builds. Concurrent builds into one folder (torchrun ranks, two
shells) are serialized by torch's lock on ``<folder>/lock`` (an OS file lock in current torch; with
older torch's lock-file baton, a file older than 15 minutes, left by a killed build, is removed).
A ``BUILD_OK`` file, written after a build completed, lets later processes load the library
without running ninja.

A failure is remembered in-process, and a failed build leaves ``BUILD_FAILED.txt`` (the compiler
output) in its folder so later processes fail fast; :func:`unavailable_reason` says where it is.
Delete that folder to retry.
"""

from __future__ import annotations

import importlib.machinery
import os
import re
import sys
import threading
from pathlib import Path

from gsdd_cuda import _build

FAILED_MARKER = "BUILD_FAILED.txt"
BUILT_MARKER = "BUILD_OK"
DEVICES = ("cpu", "cuda")
OPS = ("rasterize_fwd", "rasterize_bwd", "project")
PKG_DIR = Path(__file__).resolve().parent

_lock = threading.RLock()
# Plain module globals (read by gsdd_cuda.ops.rasterize; torch.compile can guard on them).
CPU_LOADED = False
_on_load: list = []  # called after a library is loaded (gsdd_cuda.ops registers its fakes and autograd)
CUDA_LOADED = False
_reason: dict[str, str | None] = {"cpu": None, "cuda": None}  # why unavailable, once a load failed
_origin: dict[str, str | None] = {"cpu": None, "cuda": None}  # where the kernels came from


def _device_type(device) -> str:
    kind = getattr(device, "type", device)
    if kind not in DEVICES:
        raise ValueError(f"gsdd native kernels exist for devices {DEVICES}, not {device!r}")
    return kind


def _has_kernels(dispatch_key: str) -> bool:
    import torch

    try:
        return all(torch._C._dispatch_has_kernel_for_dispatch_key(f"gsdd::{op}", dispatch_key) for op in OPS)
    except RuntimeError:
        return False


def cache_root() -> Path:
    env = os.environ.get("GSDD_EXT_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "gsdd" / "ext"


def _folder(tag: str) -> Path:
    return cache_root() / re.sub(r"[^A-Za-z0-9._+-]", "_", tag)


def cpu_build_dir() -> Path:
    import torch

    flags = _build.cxx_flags() + _build.isa_flags() + _build.cxx_ldflags()
    digest = _build.source_hash(_build.CPU_SOURCES + _build.CPU_HEADERS, " ".join(flags))
    isa = _build.isa_tag(_build.isa_flags())
    return _folder(f"torch{torch.__version__}-cpu-{isa}-{digest}")


def detected_arch_list() -> str:
    """$TORCH_CUDA_ARCH_LIST, else the compute capabilities of the visible GPUs (e.g. '9.0')."""
    env = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if env:
        return env
    import torch

    caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
    return ";".join(f"{major}.{minor}" for major, minor in caps)


def cuda_build_dir(arch_list: str) -> Path:
    import torch

    flags = " ".join(_build.nvcc_flags())
    digest = _build.source_hash(_build.CUDA_SOURCES + _build.CUDA_HEADERS + ("ops.cpp",), f"{arch_list}|{flags}")
    return _folder(f"torch{torch.__version__}-cu{torch.version.cuda}-sm{arch_list}-{digest}")


def _prebuilt(stem: str) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = PKG_DIR / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def _jit(what: str, bdir: Path, name: str, build) -> str:
    """Load the cached library ``bdir/name.so``, else run ``build()`` (a JIT build into ``bdir``
    that loads its result) with the one-line notice and the failure marker."""
    import torch

    marker = bdir / FAILED_MARKER
    if marker.exists():
        raise RuntimeError(f"an earlier build of the {what} failed; compiler output in {marker} "
                           f"(delete {bdir} to retry)")
    cached, done = bdir / f"{name}.so", bdir / BUILT_MARKER
    if cached.is_file() and done.is_file():  # built earlier (the folder name is the source hash)
        torch.ops.load_library(str(cached))
        return str(cached)
    print(f"gsdd: compiling the {what} (first use, cached afterwards) in {bdir}", file=sys.stderr, flush=True)
    try:
        path = build()
        done.write_text(f"{path}\n")  # after the library is complete: later processes skip ninja
        return path
    except Exception as exc:
        bdir.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{type(exc).__name__}: {exc}\n")
        raise RuntimeError(f"building the {what} failed; compiler output in {marker} "
                           f"(delete {bdir} to retry)") from exc


def _load_library(key: str, stem: str, what: str, why_not_prebuilt: str, toolchain_error, bdir_and_build) -> None:
    """The common path of both libraries: kernels already registered, else a prebuilt library
    (gsdd_cuda/<stem>*.so), else a JIT build. ``toolchain_error()`` returns a reason when the JIT
    toolchain is missing; ``bdir_and_build()`` returns (cache folder, library name, build()).
    Raises RuntimeError (one-line message) when the library cannot be had."""
    import torch

    kind = key.lower()
    if _has_kernels(key):
        _origin[kind] = "already registered"
        return
    path = _prebuilt(stem)
    if path is not None:
        torch.ops.load_library(str(path))
        if not _has_kernels(key):
            raise RuntimeError(f"the prebuilt {path.name} is stale (no {key} kernels); rebuild it or delete it")
        _origin[kind] = str(path)
        return
    if os.environ.get("GSDD_NO_JIT", "") == "1":
        raise RuntimeError(f"{why_not_prebuilt}; JIT build disabled by GSDD_NO_JIT=1")
    missing = toolchain_error() or (None if _build.ensure_ninja() else "ninja is not installed (pip install ninja)")
    if missing:
        raise RuntimeError(f"{why_not_prebuilt}; {missing}")
    bdir, name, build = bdir_and_build()
    _origin[kind] = _jit(what, bdir, name, build)
    if not _has_kernels(key):
        raise RuntimeError(f"the library built in {bdir} registers no {key} kernels")


def _load_cpu() -> None:
    def toolchain():
        if _build.cxx_compiler() is None:
            return f"no C++ compiler ({os.environ.get('CXX', 'c++')}) found for a JIT build (install g++ or set CXX)"
        return None

    def target():
        bdir = cpu_build_dir()
        name = "gsdd_cpu_" + bdir.name.rsplit("-", 1)[-1]
        return bdir, name, lambda: _build.jit_build_cpu(bdir, name)

    _load_library("CPU", "_C", "native CPU rasterizer", "no prebuilt gsdd_cuda._C", toolchain, target)


def _load_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device (torch.cuda.is_available() is False)")
    if not load("cpu"):
        raise RuntimeError(f"the CPU library (operator schemas) is unavailable: {_reason['cpu']}")

    def toolchain():
        return None if _build.nvcc_available() else "no CUDA toolkit (nvcc) found for a JIT build (set CUDA_HOME)"

    def target():
        arch = detected_arch_list()
        bdir = cuda_build_dir(arch)
        name = "gsdd_cuda_" + bdir.name.rsplit("-", 1)[-1]
        return bdir, name, lambda: _build.jit_build_cuda(bdir, name, arch)

    _load_library("CUDA", "_C_cuda", "CUDA rasterizer",
                  "no prebuilt gsdd_cuda._C_cuda (install with GSDD_BUILD_CUDA=1 to build one)", toolchain, target)


def load(device="cpu") -> bool:
    """Make the gsdd kernels for ``device`` ('cpu' or 'cuda') available. False, with a reason, on
    failure (remembered: later calls return at once)."""
    global CPU_LOADED, CUDA_LOADED
    kind = _device_type(device)
    if (CPU_LOADED if kind == "cpu" else CUDA_LOADED):
        return True
    if _reason[kind] is not None:
        return False
    with _lock:
        if (CPU_LOADED if kind == "cpu" else CUDA_LOADED) or _reason[kind] is not None:
            return CPU_LOADED if kind == "cpu" else CUDA_LOADED
        try:
            if kind == "cpu":
                _load_cpu()
            else:
                _load_cuda()
            for hook in _on_load:
                hook()
        except Exception as exc:  # noqa: BLE001 - reported through unavailable_reason()
            _reason[kind] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return False
        if kind == "cpu":
            CPU_LOADED = True
        else:
            CUDA_LOADED = True
        return True


def on_load(hook) -> None:
    """Call ``hook()`` after each library load (once per device), before the load counts as done."""
    if hook not in _on_load:
        _on_load.append(hook)


def is_available(device) -> bool:
    """Whether the native kernels for ``device`` ('cpu', 'cuda' or a torch.device) can run; the
    first call may compile them (see the module docstring)."""
    return load(device)


def unavailable_reason(device) -> str:
    """Empty string when available, else a one-line reason (with where a build log is)."""
    kind = _device_type(device)
    if load(kind):
        return ""
    return _reason[kind] or "unknown"


def origin(device) -> str | None:
    """Where the loaded kernels came from: a library path or 'already registered' (diagnostics)."""
    return _origin[_device_type(device)]


def require(device) -> None:
    kind = _device_type(device)
    if not load(kind):
        raise RuntimeError(f"the gsdd native {kind.upper()} kernels are not available: {_reason[kind]}")
