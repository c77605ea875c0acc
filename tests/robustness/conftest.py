"""Shared pieces of the robustness matrix (tests/robustness/): tiny inputs and the checks every failing
command must pass (exit code, one `error:` line, no traceback, no debris, inputs intact).

The helpers are reached through the ``rb`` fixture (this module), since tests use importlib mode.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gsdd_cli.cli import app
from gsdd_cli.sets.gaussians import GaussianImages
from gsdd_cli.sets.gsdfile import make_header, save_gsd

runner = CliRunner()
CLASSES = 3
SIZE = 8
FAST_DISTILL = ["--algo", "dm", "--ipc", "1", "--iterations", "2", "--init-steps", "2", "--batch-real", "4",
                "--device", "cpu", "--backend", "reference", "-q"]


def make_npz(path: Path, *, classes=CLASSES, train=4, test=2, dtype=np.uint8, scale=255.0, poke=None,
             test_classes=None, with_test=True) -> Path:
    rng = np.random.default_rng(0)
    x_tr = (rng.uniform(0, 1, (classes * train, SIZE, SIZE, 3)) * scale).astype(dtype)
    y_tr = np.repeat(np.arange(classes), train)
    tc = classes if test_classes is None else test_classes
    x_te = (rng.uniform(0, 1, (tc * test, SIZE, SIZE, 3)) * scale).astype(dtype)
    y_te = np.repeat(np.arange(tc), test)
    if poke is not None:
        x_tr.flat[5] = poke
    test = {"x_test": x_te, "y_test": y_te} if with_test else {}
    np.savez(path, x_train=x_tr, y_train=y_tr, **test, class_names=np.array([f"c{i}" for i in range(classes)]))
    return path


def make_gsd(path: Path, dataset: str, *, classes=CLASSES, scale_values: float = 1.0) -> Path:
    imgs = GaussianImages.random(classes, 1, 12, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    if scale_values != 1.0:
        with torch.no_grad():
            imgs.rgb.mul_(scale_values)
            imgs.opacity.mul_(scale_values)
    header = make_header(imgs, dataset=dataset, class_names=[f"c{i}" for i in range(classes)], ipc=1,
                         algorithm="init", transform="normalize")
    return save_gsd(path, imgs, header)


def invoke(*args, cwd: Path | None = None):
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return runner.invoke(app, [str(a) for a in args])
    finally:
        os.chdir(old)


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` → its bytes (None for folders)."""
    out: dict[str, bytes | None] = {}
    for p in sorted(Path(root).rglob("*")):
        out[str(p.relative_to(root))] = None if p.is_dir() else p.read_bytes()
    return out


def assert_clean_failure(res, code: int, needle: str | None = None) -> str:
    """Exit code, no traceback, exactly one `error:` line (first line of stderr); returns stderr."""
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == code, (res.exit_code, res.output)
    err = res.stderr.strip()
    assert "Traceback" not in res.output
    lines = err.splitlines()
    assert lines and lines[0].startswith("error:"), err
    assert sum(ln.startswith("error:") for ln in lines) == 1, err
    if needle is not None:
        assert needle.lower() in err.lower(), err
    return err


def assert_untouched(root: Path, before: dict[str, bytes | None]) -> None:
    """No file created, removed or changed under ``root`` (no debris, inputs intact)."""
    after = tree(root)
    assert sorted(after) == sorted(before), (sorted(set(after) ^ set(before)))
    changed = [k for k in before if before[k] != after[k]]
    assert not changed, changed


def failing_writes(monkeypatch, after: int = 0, code: int = errno.ENOSPC):
    """Make every write of gsdd_cli.core.outputs after the first ``after`` ones fail with ``code`` (after
    writing a few bytes, as a filling disk does)."""
    import gsdd_cli.core.outputs as outputs

    real = outputs._write_all
    calls = {"n": 0}

    def write(path, data):
        calls["n"] += 1
        if calls["n"] > after:
            with open(path, "wb") as f:
                f.write(data[:7])
            raise OSError(code, os.strerror(code))
        real(path, data)

    monkeypatch.setattr(outputs, "_write_all", write)
    return calls


@pytest.fixture(scope="session")
def rb():
    """This module: ``rb.invoke``, ``rb.assert_clean_failure``, ``rb.tree`` ..."""
    return sys.modules[__name__]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("GSDD_DATA_DIR", str(tmp_path / "data-dir"))
    monkeypatch.delenv("GSDD_DEBUG", raising=False)
    from gsdd_cli.data import clear_cache

    clear_cache()


@pytest.fixture
def work(tmp_path):
    """A folder with a good dataset ``ds.npz`` and a matching ``x.gsd``."""
    make_npz(tmp_path / "ds.npz")
    make_gsd(tmp_path / "x.gsd", str(tmp_path / "ds.npz"))
    return tmp_path
