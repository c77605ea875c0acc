"""Build script for the optional prebuilt gsdd operator libraries. Metadata is in pyproject.toml.

    pip install .                                              # pure Python, fast; the native CPU
                                                               # kernels are compiled on first use
    GSDD_BUILD_EXT=1 pip install --no-build-isolation -e .     # also prebuild gsdd_cuda._C (CPU)
    GSDD_BUILD_CUDA=1 pip install --no-build-isolation -e .    # ... and gsdd_cuda._C_cuda (nvcc)
    ... DEBUG=1                                                # -O0 -g

Prebuilding needs torch at build time (hence --no-build-isolation). ``_C`` holds the operator
schemas and the CPU kernels (any C++17 compiler); it is built for the compiler's baseline ISA
unless GSDD_CPU_FLAGS says otherwise (e.g. "-mavx2 -mfma"; the lazy JIT build picks the host's ISA
itself). ``_C_cuda`` holds the CUDA kernels (nvcc; TORCH_CUDA_ARCH_LIST picks the GPU targets, 9.0
for H100/H200). Without prebuilt libraries gsdd_cuda compiles the same sources on first use (JIT,
docs/rasterizer.md), so the csrc/ files ship as package data.
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
    want_cuda = os.environ.get("GSDD_BUILD_CUDA", "0") == "1"
    want_cpu = want_cuda or os.environ.get("GSDD_BUILD_EXT", "0") == "1"
    if not want_cpu:
        return [], {}
    build = _load_build_helpers()
    ce = build.cpp_extension()  # torch.utils.cpp_extension with CUDA_HOME resolved
    debug = os.environ.get("DEBUG", "0") == "1"

    def rel(paths):
        return [str(p.relative_to(HERE)) for p in paths]

    cpu_flags = build.cxx_flags(debug) + os.environ.get("GSDD_CPU_FLAGS", "").split()
    exts = [ce.CppExtension(name="gsdd_cuda._C", sources=rel(build.cpu_sources()),
                            extra_compile_args={"cxx": cpu_flags},
                            extra_link_args=build.cxx_ldflags() + (["-g"] if debug else []))]
    if want_cuda:
        if ce.CUDA_HOME is None:
            raise RuntimeError("GSDD_BUILD_CUDA=1 but no CUDA toolkit was found; set CUDA_HOME")
        exts.append(ce.CUDAExtension(name="gsdd_cuda._C_cuda", sources=rel(build.cuda_sources()),
                                     extra_compile_args={"cxx": ["-O3"], "nvcc": build.nvcc_flags(debug)},
                                     extra_link_args=["-g"] if debug else []))
    return exts, {"build_ext": ce.BuildExtension}


ext_modules, cmdclass = _extensions()

setup(
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    package_data={"gsdd_cuda": ["csrc/*"]},
    zip_safe=False,
)
