"""Build script for the optional CUDA extension ``gsdd_cuda._C``. Metadata is in pyproject.toml.

    pip install .                                              # pure Python (CPU; fast)
    GSDD_BUILD_CUDA=1 pip install --no-build-isolation -e .    # also compile gsdd_cuda._C
    GSDD_BUILD_CUDA=1 DEBUG=1 ...                              # -O0 -g -lineinfo

With GSDD_BUILD_CUDA=1 torch must already be installed (hence --no-build-isolation) and nvcc must
be found ($CUDA_HOME, or nvcc on PATH). TORCH_CUDA_ARCH_LIST picks the GPU targets (9.0 for
H100/H200); unset, torch builds for the GPUs it sees. Without a prebuilt _C, gsdd_cuda compiles
the same sources on first GPU use (JIT, see docs/cuda.md), so the csrc/ files ship as package data.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent


def _load_build_helpers():
    # gsdd_cuda/_build.py by path: no package import, nothing from torch until asked
    spec = importlib.util.spec_from_file_location("_gsdd_build", HERE / "gsdd_cuda" / "_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _extensions():
    if os.environ.get("GSDD_BUILD_CUDA", "0") != "1":
        return [], {}
    build = _load_build_helpers()
    ce = build.cpp_extension()  # torch.utils.cpp_extension with CUDA_HOME resolved
    if ce.CUDA_HOME is None:
        raise RuntimeError("GSDD_BUILD_CUDA=1 but no CUDA toolkit was found; set CUDA_HOME")
    debug = os.environ.get("DEBUG", "0") == "1"
    sources = [str(p.relative_to(HERE)) for p in build.source_files()]
    ext = ce.CUDAExtension(
        name="gsdd_cuda._C",
        sources=sources,
        extra_compile_args={"cxx": build.cxx_flags(debug), "nvcc": build.nvcc_flags(debug)},
        extra_link_args=["-g"] if debug else [],
    )
    return [ext], {"build_ext": ce.BuildExtension}


ext_modules, cmdclass = _extensions()

setup(
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    package_data={"gsdd_cuda": ["csrc/*"]},
    zip_safe=False,
)
