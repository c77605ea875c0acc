"""How the gsdd operator libraries are compiled: sources, flags, toolchain lookup, ninja JIT builds.

Two libraries (docs/rasterizer.md, "Building"):

* the **CPU library** (``ops.cpp`` + ``rasterize_cpu.cpp``, any C++17 compiler, no CUDA toolkit):
  the operator schemas (``TORCH_LIBRARY(gsdd)``) and the CPU kernels;
* the **CUDA library** (``rasterize_fwd.cu`` + ``rasterize_bwd.cu``, nvcc): the CUDA kernels only,
  loaded after the CPU library, whose schemas it implements.

Shared by ``setup.py`` (prebuilt ``gsdd_cuda._C`` / ``gsdd_cuda._C_cuda``), the lazy JIT builds in
:mod:`gsdd_cuda._backend` and the tests. Importing this module is cheap: it imports neither torch
nor ``torch.utils.cpp_extension`` until a build is requested, and nothing from the rest of
``gsdd_cuda``, so ``setup.py`` can load it by file path.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import shutil
import sys
from pathlib import Path

CSRC = Path(__file__).resolve().parent / "csrc"
CPU_SOURCES = ("ops.cpp", "rasterize_cpu.cpp")
CUDA_SOURCES = ("rasterize_fwd.cu", "rasterize_bwd.cu")
CPU_HEADERS = ("gsdd_math.h", "checks.h", "cpu_kernels.h")
CUDA_HEADERS = ("gsdd_math.h", "checks.h", "common.cuh")


def cpu_sources(root: Path = CSRC) -> list[Path]:
    return [root / n for n in CPU_SOURCES]


def cuda_sources(root: Path = CSRC) -> list[Path]:
    return [root / n for n in CUDA_SOURCES]


def source_hash(names: tuple[str, ...], extra: str = "") -> str:
    """Hash of the named csrc files plus ``extra`` (flags, arch): names a JIT cache folder."""
    h = hashlib.sha256()
    for name in sorted(names):
        h.update(name.encode())
        h.update(b"\0")
        h.update((CSRC / name).read_bytes())
        h.update(b"\0")
    h.update(extra.encode())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------ flags ---
# -ffp-contract=off: a*b+c stays two IEEE roundings, as on the device with the _rn intrinsics and
# in the reference, so projections, tile boxes and cut-offs match bit for bit. -fno-math-errno and
# -fno-trapping-math change no result (errno and FP-exception flags only); they let the compiler
# vectorize the pixel loops. Never -ffast-math.
FP_FLAGS = ["-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math"]


def torch_uses_openmp() -> bool:
    """at::parallel_for is an inline OpenMP loop in torch builds with the OpenMP backend: the
    library must then be compiled and linked with -fopenmp (else it silently runs on one thread)."""
    import torch

    return "ATen parallel backend: OpenMP" in torch.__config__.parallel_info()


AVX512_FLAGS = ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq", "-mfma", "-mprefer-vector-width=512"]
AVX2_FLAGS = ["-mavx2", "-mfma"]


def isa_flags() -> list[str]:
    """Vector ISA of the JIT build: $GSDD_CPU_FLAGS if set (split on spaces), else AVX-512 or
    AVX2+FMA on x86-64 CPUs that have them (read from /proc/cpuinfo), else none (the compiler's
    baseline: SSE2 / NEON). The flags are part of the cache key, so a folder shared by different
    CPUs holds one build per ISA. (FMA instructions are allowed but never contracted into:
    -ffp-contract=off.)"""
    env = os.environ.get("GSDD_CPU_FLAGS")
    if env is not None:
        return env.split()
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return []
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    if {"avx512f", "avx512vl", "avx512bw", "avx512dq"} <= flags:
        return list(AVX512_FLAGS)
    return list(AVX2_FLAGS) if {"avx2", "fma"} <= flags else []


def isa_tag(flags: list[str]) -> str:
    """Short name of an ISA flag set for the cache folder: avx512, avx2, base or custom."""
    if flags == AVX512_FLAGS:
        return "avx512"
    if flags == AVX2_FLAGS:
        return "avx2"
    return "custom" if flags else "base"


def cxx_flags(debug: bool = False) -> list[str]:
    opt = ["-O0", "-g", "-DGSDD_DEBUG"] if debug else ["-O3"]
    return opt + FP_FLAGS + (["-fopenmp"] if torch_uses_openmp() else [])


def cxx_ldflags() -> list[str]:
    return ["-fopenmp"] if torch_uses_openmp() else []


def nvcc_flags(debug: bool = False) -> list[str]:
    # No --use_fast_math: the decisions rely on IEEE sqrt, division and expf (gsdd_math.h).
    flags = ["-O0", "-g", "-lineinfo", "-DGSDD_DEBUG"] if debug else ["-O3", "-lineinfo"]
    if os.environ.get("GSDD_PTXAS_VERBOSE") == "1":
        flags.append("-Xptxas=-v")  # registers, spills and shared memory per kernel
    return flags


# -------------------------------------------------------------------------------- toolchain ---
def cxx_compiler() -> str | None:
    """The C++ compiler torch's extension builder will call ($CXX, else c++), if it exists."""
    return shutil.which(os.environ.get("CXX", "c++"))


def ensure_ninja() -> bool:
    """Put ninja on PATH if it is installed but not there (the ``ninja`` wheel's binary, or the
    interpreter's bin folder when a venv is used without being activated)."""
    if shutil.which("ninja"):
        return True
    candidates = [os.path.dirname(sys.executable)]
    with contextlib.suppress(Exception):
        import ninja  # type: ignore[import-not-found]

        candidates.insert(0, ninja.BIN_DIR)
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, "ninja")):
            os.environ["PATH"] = folder + os.pathsep + os.environ.get("PATH", "")
            return True
    return False


def find_cuda_home() -> str | None:
    """The CUDA toolkit root: $CUDA_HOME / $CUDA_PATH, else the folder above a real ``nvcc``.

    torch guesses ``dirname(dirname(which nvcc))``; that is wrong when ``nvcc`` on PATH is a
    wrapper script (e.g. /usr/local/bin/nvcc → /usr/local, which has no lib64/libcudart). We accept
    a candidate only if it has ``bin/nvcc`` and ``lib64`` (what torch's linker line uses).
    """
    env = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if env:
        return env
    candidates: list[str] = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
        candidates.append(os.path.dirname(os.path.dirname(nvcc)))
        with contextlib.suppress(OSError, UnicodeDecodeError):
            text = Path(nvcc).read_text()[:4096] if os.path.getsize(nvcc) < 4096 else ""
            for tok in text.split():  # wrapper script: 'exec /usr/local/cuda-13.0/bin/nvcc "$@"'
                if tok.endswith("/bin/nvcc"):
                    candidates.append(os.path.dirname(os.path.dirname(tok)))
    candidates.append("/usr/local/cuda")
    for home in candidates:
        if os.path.isfile(os.path.join(home, "bin", "nvcc")) and os.path.isdir(os.path.join(home, "lib64")):
            return home
    return None


def nvcc_available() -> bool:
    return find_cuda_home() is not None


def cpp_extension():
    """``torch.utils.cpp_extension``, imported without its import-time log lines (it warns when it
    finds a CUDA toolkit but no CUDA runtime), with CUDA_HOME corrected by :func:`find_cuda_home`."""
    log = logging.getLogger("torch.utils.cpp_extension")
    old = log.level
    log.setLevel(logging.ERROR)
    try:
        import torch.utils.cpp_extension as ce
    finally:
        log.setLevel(old)
    home = find_cuda_home()
    if home and ce.CUDA_HOME != home:
        ce.CUDA_HOME = home  # module global read by its build helpers at call time
    return ce


@contextlib.contextmanager
def _env(**values: str | None):
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def remove_stale_lock(build_dir: Path, max_age_s: float = 900.0) -> None:
    """Older torch (a ``FileBaton``: the lock file's existence is the lock) waits forever on a
    ``lock`` left by a killed build; drop an old one. Current torch holds an OS file lock on that
    file instead (released by the kernel when the holder dies): the file is then left alone, since
    deleting it while another process holds it would let a third one in."""
    import time

    ce = cpp_extension()
    if hasattr(ce, "FileLock") or not hasattr(ce, "FileBaton"):
        return
    lock = build_dir / "lock"
    with contextlib.suppress(OSError):
        if lock.exists() and time.time() - lock.stat().st_mtime > max_age_s:
            lock.unlink()


def _quiet_load(**kwargs) -> None:
    ce = cpp_extension()
    log = logging.getLogger("torch.utils.cpp_extension")
    old = log.level
    log.setLevel(logging.ERROR)
    try:
        ce.load(is_python_module=False, **kwargs)
    finally:
        log.setLevel(old)


def jit_build_cpu(build_dir: Path, name: str, *, debug: bool = False, verbose: bool = False) -> str:
    """Compile and link the CPU library with ninja into ``build_dir`` and load it into this process
    (``torch.ops.load_library``). Concurrent builds into one folder are serialized by torch's
    FileBaton (``build_dir/lock``): the second process waits, then loads the first one's library.
    Returns the library path; raises with the compiler output on failure."""
    build_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_lock(build_dir)
    ensure_ninja()
    _quiet_load(name=name, sources=[str(p) for p in cpu_sources()], extra_cflags=cxx_flags(debug) + isa_flags(),
                extra_ldflags=cxx_ldflags(), build_directory=str(build_dir), with_cuda=False, verbose=verbose)
    return str(build_dir / f"{name}.so")


def jit_build_cuda(build_dir: Path, name: str, arch_list: str, *, debug: bool = False,
                   verbose: bool = False) -> str:
    """Compile and link the CUDA library (kernels only; the CPU library must be loaded first for its
    schemas) into ``build_dir`` and load it. Works without a GPU (only nvcc is needed)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_lock(build_dir)
    ensure_ninja()
    cpp_extension()  # CUDA_HOME
    with _env(TORCH_CUDA_ARCH_LIST=arch_list):
        _quiet_load(name=name, sources=[str(p) for p in cuda_sources()], extra_cflags=["-O3"],
                    extra_cuda_cflags=nvcc_flags(debug), build_directory=str(build_dir), with_cuda=True,
                    verbose=verbose)
    return str(build_dir / f"{name}.so")
