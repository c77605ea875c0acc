"""How the gsdd CUDA extension is compiled: sources, flags, CUDA toolkit lookup, ninja JIT build.

Shared by ``setup.py`` (prebuilt ``gsdd_cuda._C``), the lazy JIT fallback in
:mod:`gsdd_cuda._backend` and ``tests/cuda/test_build.py``. Importing this module is cheap: it
imports neither torch nor ``torch.utils.cpp_extension`` until a build is requested. Kept free of
imports from the rest of ``gsdd_cuda`` so ``setup.py`` can load it by file path.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCE_SUFFIXES = (".cpp", ".cu")
HEADER_SUFFIXES = (".h", ".cuh")


def source_files(root: Path = CSRC) -> list[Path]:
    """Translation units, in a fixed order."""
    return sorted(p for p in root.iterdir() if p.suffix in SOURCE_SUFFIXES)


def all_files(root: Path = CSRC) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.suffix in SOURCE_SUFFIXES + HEADER_SUFFIXES)


def cxx_flags(debug: bool = False) -> list[str]:
    return ["-O0", "-g", "-DGSDD_DEBUG"] if debug else ["-O3"]


def nvcc_flags(debug: bool = False) -> list[str]:
    # No --use_fast_math: the kernels rely on IEEE sqrtf / division / expf to reproduce the
    # reference's culling radius and cut-offs exactly (see csrc/common.cuh).
    if debug:
        return ["-O0", "-g", "-lineinfo", "-DGSDD_DEBUG"]
    return ["-O3", "-lineinfo"]


def source_hash(extra: str = "") -> str:
    """Hash of every source and header plus ``extra`` (flags, arch): names the JIT cache folder."""
    h = hashlib.sha256()
    for p in all_files():
        h.update(p.name.encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    h.update(extra.encode())
    return h.hexdigest()[:16]


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
    """``torch.utils.cpp_extension`` with its CUDA_HOME corrected by :func:`find_cuda_home`."""
    import torch.utils.cpp_extension as ce

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
    """torch's FileBaton waits forever on a ``lock`` left by a killed build; drop an old one."""
    import time

    lock = build_dir / "lock"
    with contextlib.suppress(OSError):
        if lock.exists() and time.time() - lock.stat().st_mtime > max_age_s:
            lock.unlink()


def jit_build(build_dir: Path, name: str, arch_list: str, *, debug: bool = False,
              verbose: bool = False) -> str:
    """Compile and link all sources with ninja into ``build_dir`` and load the library into this
    process (``torch.ops.load_library``). Returns the path of the shared library. Raises
    RuntimeError with the compiler output on failure (torch includes it when not verbose)."""
    ce = cpp_extension()
    build_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_lock(build_dir)
    with _env(TORCH_CUDA_ARCH_LIST=arch_list):
        ce.load(
            name=name,
            sources=[str(p) for p in source_files()],
            extra_cflags=cxx_flags(debug),
            extra_cuda_cflags=nvcc_flags(debug),
            build_directory=str(build_dir),
            with_cuda=True,
            is_python_module=False,
            verbose=verbose,
        )
    return str(build_dir / f"{name}.so")
