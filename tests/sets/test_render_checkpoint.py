"""`gsdd render OUT.ckpt --grid/--png`: the current set of a real (short) distillation checkpoint,
read-only, naming its iteration; a corrupt or foreign checkpoint fails as a bad .gsd does (exit 4)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from gsdd_cli.cli import app
from gsdd_cli.distill import build_config, distill
from gsdd_cli.distill.checkpoint_view import is_checkpoint
from gsdd_cli.distill.runlog import run_paths

runner = CliRunner()
FAST = {"algo": "dm", "ipc": 1, "iterations": 4, "device": "cpu", "backend": "reference", "init_steps": 5,
        "batch_real": 16}


@pytest.fixture(scope="module", params=["gaussian", "pixel"])
def stopped_run(request, tmp_path_factory):
    """A digits run stopped after 2 of 4 iterations (its checkpoint, copied aside), and the .gsd a
    --resume with --iterations 2 writes from exactly that state."""
    tmp = tmp_path_factory.mktemp(f"ckpt-{request.param}")
    out = tmp / "d.gsd"
    flags = {**FAST, "param": request.param, "out": str(out)}
    assert distill(build_config("digits", flags=flags), stop_after=2).interrupted
    ckpt = tmp / "view" / "d.gsd.ckpt"
    ckpt.parent.mkdir()
    shutil.copy(run_paths(out)["checkpoint"], ckpt)
    distill(build_config("digits", flags={**flags, "iterations": 2}), resume=True)
    return ckpt, out, request.param


def _render(*args):
    return runner.invoke(app, ["render", *map(str, args), "--device", "cpu", "--backend", "reference", "-q"])


def _pngs(folder):
    return {p.name: np.asarray(Image.open(p)).astype(int) for p in sorted(folder.glob("*.png"))}


def test_checkpoint_renders_the_runs_current_set(stopped_run, tmp_path):
    ckpt, gsd, param = stopped_run
    before = {p.name: p.read_bytes() for p in ckpt.parent.iterdir()}
    res = _render(ckpt, "--grid", tmp_path / "g.png", "--png", tmp_path / "png")
    assert res.exit_code == 0, res.output
    assert f"checkpoint {ckpt}: the dm run's set after iteration 2 of 4" in res.stdout
    assert {p.name: p.read_bytes() for p in ckpt.parent.iterdir()} == before  # read-only, nothing beside it
    ref = _render(gsd, "--grid", tmp_path / "ref.png", "--png", tmp_path / "ref")
    assert ref.exit_code == 0, ref.output
    got, want = _pngs(tmp_path / "png"), _pngs(tmp_path / "ref")
    gpc = 1 if param == "pixel" else build_config("digits", flags={**FAST, "out": "x.gsd"}).gpc
    assert len(got) == 10 * gpc and got.keys() == want.keys()  # every image of the 10 classes
    tol = 0 if param == "gaussian" else 1  # the .gsd stores pixels in 16 bits, the checkpoint fp32 masters
    for name in got:
        assert np.abs(got[name] - want[name]).max() <= tol, name
    grid, ref_grid = (np.asarray(Image.open(tmp_path / n)).astype(int) for n in ("g.png", "ref.png"))
    assert grid.shape == ref_grid.shape and np.abs(grid - ref_grid).max() <= tol


def test_a_checkpoint_is_told_from_a_gsd(stopped_run, tmp_path):
    ckpt, gsd, _ = stopped_run
    assert is_checkpoint(ckpt) and not is_checkpoint(gsd)
    renamed = tmp_path / "no-suffix"
    shutil.copy(ckpt, renamed)
    assert is_checkpoint(renamed)  # by its content (a zip archive), not only by the suffix
    res = _render(renamed, "--grid", tmp_path / "g.png")
    assert res.exit_code == 0 and "after iteration 2 of 4" in res.stdout, res.output


def _bad(tmp_path, name, content):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    res = _render(path, "--grid", tmp_path / "g.png")
    assert res.exit_code == 4, res.output
    assert "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert not (tmp_path / "g.png").exists()
    return lines[0]


def test_bad_checkpoints_fail_like_a_bad_gsd(stopped_run, tmp_path):
    ckpt, _, _ = stopped_run
    data = ckpt.read_bytes()
    assert "truncated" in _bad(tmp_path, "cut.ckpt", data[: len(data) // 2])
    assert "empty" in _bad(tmp_path, "empty.ckpt", b"")
    assert "unreadable" in _bad(tmp_path, "text.ckpt", b"not a checkpoint\n")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    assert "not a gsdd checkpoint" in _bad(tmp_path, "foreign.ckpt", None)
    assert "no such file" in _bad(tmp_path, "missing.ckpt", None)
    gsd_line = _bad(tmp_path, "missing.gsd", None)  # the same message as a missing .gsd file
    assert gsd_line.replace("missing.gsd", "missing.ckpt") == _bad(tmp_path, "missing.ckpt", None)
