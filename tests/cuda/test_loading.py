"""CPU tests of the lazy loading policy of gsdd_cuda (no GPU, no compiler needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import gsdd_cuda
from gsdd_cuda import _backend


def test_import_is_silent_and_builds_nothing():
    code = ("import sys, gsdd_cuda; "
            "assert 'torch.utils.cpp_extension' not in sys.modules; "
            "assert 'gsdd_cuda._C' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""


def test_contract_functions_exist():
    assert callable(gsdd_cuda.is_available) and callable(gsdd_cuda.unavailable_reason)
    assert callable(gsdd_cuda.rasterize)


@pytest.fixture
def fresh_backend(monkeypatch, tmp_path):
    """Pretend there is a GPU and no prebuilt library; JIT into tmp_path."""
    monkeypatch.setattr(_backend, "LOADED", False)
    monkeypatch.setattr(_backend, "_reason", None)
    monkeypatch.setattr(_backend, "_ops_registered", lambda: False)
    monkeypatch.setattr(_backend, "_try_prebuilt", lambda: "no prebuilt gsdd_cuda._C")
    monkeypatch.setattr(_backend, "detected_arch_list", lambda: "9.0")
    monkeypatch.setattr(_backend._build, "nvcc_available", lambda: True)
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setenv("GSDD_EXT_DIR", str(tmp_path))
    monkeypatch.delenv("GSDD_NO_JIT", raising=False)
    return tmp_path


def test_failed_build_is_cached_with_its_log(fresh_backend, monkeypatch, capsys):
    calls = []

    def broken_build(build_dir, name, arch, **kw):
        calls.append(build_dir)
        raise RuntimeError("Error building extension 'x': rasterize_fwd.cu(1): error: boom")

    monkeypatch.setattr(_backend._build, "jit_build", broken_build)
    assert _backend.load() is False
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "compiling the CUDA extension" in err  # one clear line
    reason = _backend.unavailable_reason()
    assert "BUILD_FAILED.txt" in reason
    marker = next(fresh_backend.rglob("BUILD_FAILED.txt"))
    assert "boom" in marker.read_text()
    # in-process: remembered, no second attempt
    assert _backend.load() is False and len(calls) == 1
    # a new process (simulated by clearing the in-process state) fails fast on the marker
    monkeypatch.setattr(_backend, "_reason", None)
    assert _backend.load() is False and len(calls) == 1
    assert "earlier build" in _backend.unavailable_reason()
    assert capsys.readouterr().err == ""


def test_no_jit_env_disables_the_build(fresh_backend, monkeypatch):
    monkeypatch.setenv("GSDD_NO_JIT", "1")
    monkeypatch.setattr(_backend._build, "jit_build", lambda *a, **k: pytest.fail("must not build"))
    assert _backend.load() is False
    assert "GSDD_NO_JIT=1" in _backend.unavailable_reason()


def test_cache_dir_depends_on_sources_and_arch(monkeypatch, tmp_path):
    monkeypatch.setenv("GSDD_EXT_DIR", str(tmp_path))
    a, b = _backend.build_dir("9.0"), _backend.build_dir("8.0")
    assert a != b and a.parent == tmp_path and "sm9.0" in a.name


def test_rasterize_without_extension_raises_clearly():
    import torch

    if gsdd_cuda.is_available():
        pytest.skip("extension available here")
    x = torch.zeros(1, 2)
    with pytest.raises(RuntimeError, match="not available"):
        gsdd_cuda.rasterize(x, torch.zeros(1, 3), torch.zeros(1, 3), torch.zeros(1, 1), 1, 8, 8)
