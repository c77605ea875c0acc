"""CPU tests of the loading policy of gsdd_cuda and of the renderer's fallback rules."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import gsdd_cuda
from gsdd_cuda import _backend, _build

ROOT = Path(__file__).resolve().parents[2]


def test_import_is_silent_and_builds_nothing():
    code = ("import sys, gsdd_cuda; "
            "assert 'torch.utils.cpp_extension' not in sys.modules; "
            "assert 'gsdd_cuda._C' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""


def test_contract_functions_exist():
    assert callable(gsdd_cuda.is_available) and callable(gsdd_cuda.unavailable_reason)
    assert callable(gsdd_cuda.rasterize) and callable(gsdd_cuda.project)
    with pytest.raises(ValueError):
        gsdd_cuda.is_available("mps")


@pytest.fixture
def fresh_cpu(monkeypatch, tmp_path):
    """Pretend nothing is loaded and there is no prebuilt library; JIT into tmp_path."""
    monkeypatch.setattr(_backend, "CPU_LOADED", False)
    monkeypatch.setattr(_backend, "_reason", {"cpu": None, "cuda": None})
    monkeypatch.setattr(_backend, "_has_kernels", lambda key: False)
    monkeypatch.setattr(_backend, "_prebuilt", lambda stem: None)
    monkeypatch.setattr(_build, "cxx_compiler", lambda: "/usr/bin/c++")
    monkeypatch.setattr(_build, "ensure_ninja", lambda: True)
    monkeypatch.setenv("GSDD_EXT_DIR", str(tmp_path))
    monkeypatch.delenv("GSDD_NO_JIT", raising=False)
    return tmp_path


def test_failed_build_is_cached_with_its_log(fresh_cpu, monkeypatch, capsys):
    calls = []

    def broken_build(build_dir, name, **kw):
        calls.append(build_dir)
        raise RuntimeError("Error building extension 'x': rasterize_cpu.cpp:1: error: boom")

    monkeypatch.setattr(_build, "jit_build_cpu", broken_build)
    assert _backend.load("cpu") is False
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "compiling the native CPU rasterizer" in err  # one clear line
    reason = _backend.unavailable_reason("cpu")
    assert "BUILD_FAILED.txt" in reason
    marker = next(fresh_cpu.rglob("BUILD_FAILED.txt"))
    assert "boom" in marker.read_text()
    # in-process: remembered, no second attempt
    assert _backend.load("cpu") is False and len(calls) == 1
    # a new process (simulated by clearing the in-process state) fails fast on the marker
    monkeypatch.setattr(_backend, "_reason", {"cpu": None, "cuda": None})
    assert _backend.load("cpu") is False and len(calls) == 1
    assert "earlier build" in _backend.unavailable_reason("cpu")
    assert capsys.readouterr().err == ""


def test_no_jit_env_disables_the_build(fresh_cpu, monkeypatch):
    monkeypatch.setenv("GSDD_NO_JIT", "1")
    monkeypatch.setattr(_build, "jit_build_cpu", lambda *a, **k: pytest.fail("must not build"))
    assert _backend.load("cpu") is False
    assert "GSDD_NO_JIT=1" in _backend.unavailable_reason("cpu")


def test_missing_compiler_is_reported(fresh_cpu, monkeypatch):
    monkeypatch.setattr(_build, "cxx_compiler", lambda: None)
    monkeypatch.setattr(_build, "jit_build_cpu", lambda *a, **k: pytest.fail("must not build"))
    assert _backend.load("cpu") is False
    assert "no C++ compiler" in _backend.unavailable_reason("cpu")


def test_cuda_needs_a_gpu_and_the_cpu_library(monkeypatch):
    monkeypatch.setattr(_backend, "CUDA_LOADED", False)
    monkeypatch.setattr(_backend, "_reason", {"cpu": None, "cuda": None})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _backend.load("cuda") is False
    assert "no CUDA device" in _backend.unavailable_reason("cuda")


def test_cache_folders_name_their_inputs(monkeypatch, tmp_path):
    monkeypatch.setenv("GSDD_EXT_DIR", str(tmp_path))
    a, b = _backend.cuda_build_dir("9.0"), _backend.cuda_build_dir("8.0")
    assert a != b and a.parent == tmp_path and "sm9.0" in a.name
    cpu = _backend.cpu_build_dir()
    assert cpu.parent == tmp_path and "-cpu-" in cpu.name and torch.__version__.split("+")[0] in cpu.name
    monkeypatch.setenv("GSDD_CPU_FLAGS", "-march=x86-64")
    assert _backend.cpu_build_dir() != cpu and "-cpu-custom-" in _backend.cpu_build_dir().name


def test_auto_falls_back_with_one_line_and_explicit_native_raises(monkeypatch, capsys):
    from gsdd_cuda import dispatch as render

    monkeypatch.setattr(render._backend, "is_available", lambda device: False)
    monkeypatch.setattr(render._backend, "unavailable_reason", lambda device: "no C++ compiler (c++) found")
    monkeypatch.setattr(render, "_warned", set())
    monkeypatch.delenv("GSDD_BACKEND", raising=False)
    cpu = torch.device("cpu")
    assert render.resolve_backend("auto", cpu) == "reference"
    assert render.resolve_backend("auto", cpu) == "reference"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "native CPU renderer is unavailable (no C++ compiler" in err
    with pytest.raises(render.NativeUnavailableError, match=r"no C\+\+ compiler"):
        render.resolve_backend("native", cpu)
    monkeypatch.setenv("GSDD_BACKEND", "native")
    with pytest.raises(render.NativeUnavailableError):
        render.resolve_backend("auto", cpu)


_BUILD_AND_RENDER = textwrap.dedent(
    """
    import sys, torch, gsdd_cuda, gsdd_cuda.ops
    ok = gsdd_cuda.is_available("cpu")
    assert ok, gsdd_cuda.unavailable_reason("cpu")
    from gsdd_cuda.testing import sample_inputs
    out = gsdd_cuda.ops.rasterize(*sample_inputs("cpu", 2, 5, 3, 16, 16, seed=1), 2, 16, 16)
    print("OK", float(out.sum()))
    """
)


def test_concurrent_first_use_builds_once_safely(tmp_path):
    """Two processes (say, two torchrun ranks) hit the first use at once with an empty cache: torch's
    lock on <folder>/lock serializes the builds, both load a working library and render the same."""
    if _build.cxx_compiler() is None or not _build.ensure_ninja():
        why = "no C++ compiler or ninja"
        (pytest.fail if os.environ.get("GSDD_REQUIRE_BUILD") == "1" else pytest.skip)(why)
    env = dict(os.environ, GSDD_EXT_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    env.pop("GSDD_NO_JIT", None)
    procs = [subprocess.Popen([sys.executable, "-c", _BUILD_AND_RENDER], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
        assert out.startswith("OK")
        assert err.count("\n") <= 1 and all("compiling the native CPU rasterizer" in ln for ln in err.splitlines())
    assert results[0][0] == results[1][0]
    folders = [d for d in tmp_path.iterdir() if d.is_dir()]
    assert len(folders) == 1 and (folders[0] / _backend.BUILT_MARKER).is_file()
    assert not (folders[0] / _backend.FAILED_MARKER).exists()
    # a third process loads the cached library without compiling (and says nothing)
    proc = subprocess.run([sys.executable, "-c", _BUILD_AND_RENDER], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout == results[0][0]
