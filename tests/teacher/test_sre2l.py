"""`gsdd distill --algo sre2l`: recovery from a small BatchNorm teacher (3 colour classes at 16²)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from gsdd_cli.cli import app
from gsdd_cli.data import load_dataset
from gsdd_cli.distill import build_config, distill
from gsdd_cli.distill.sre2l import BNMatch, augment, recover_unit, units_of
from gsdd_cli.models.teacher import load_teacher, read_teacher_fields
from gsdd_cli.sets.fit import random_start
from gsdd_cli.sets.gsdfile import load_gsd
from gsdd_cli.sets.init_run import parts_dir

from .conftest import write_color_folder

runner = CliRunner()


def _cfg(root, out, device="cpu", backend="native", **kw):
    flags = {"algo": "sre2l", "ipc": 1, "gpc": 2, "iterations": 30, "out": str(out), "device": device,
             "backend": backend, **kw}
    return build_config(str(root), flags=flags)


def test_units_follow_sre2ls_order():
    assert units_of(3, 2, 2) == [[0, 2], [4], [1, 3], [5]]  # image 0 of classes (0, 1), (2), then image 1


def test_augment_is_seeded_and_keeps_the_shape():
    x = torch.rand(2, 3, 16, 16)
    a = augment(x, torch.Generator().manual_seed(1), 2)
    b = augment(x, torch.Generator().manual_seed(1), 2)
    assert a.shape == x.shape and torch.equal(a, b)


def test_recovery_loss_falls_and_the_teacher_agrees(color_teacher):
    root, tfile, _ = color_teacher
    ds = load_dataset(str(root))
    teacher = load_teacher(str(tfile), dataset=ds)
    bn = BNMatch(teacher)
    images = random_start(3, 17, 3, 16, 16, torch.arange(3), seed=0)

    def loss_now():  # the recovery loss on the images themselves (no random view)
        with torch.no_grad():
            ce = torch.nn.functional.cross_entropy(teacher.pixel_logits(images.render()), torch.arange(3))
            return float(ce + 0.01 * bn.take())

    before = loss_now()
    losses = []
    _, prob = recover_unit(images, teacher, bn, iterations=100, lr=0.1, seed=0, unit=0, jitter=2, backend="native",
                           on_iter=lambda i, loss: losses.append(loss))
    after = loss_now()
    assert len(losses) == 100 and after < 0.7 * before, (before, after)
    with torch.no_grad():
        pred = teacher.pixel_logits(images.render()).argmax(1)
    assert pred.tolist() == [0, 1, 2] and float(prob.min()) > 1 / 3


def test_cli_run_records_the_teacher_and_beats_chance(tmp_path, color_teacher, device, backend):
    root, tfile, _ = color_teacher
    out = tmp_path / "r.gsd"
    res = runner.invoke(app, ["distill", str(root), "--algo", "sre2l", "--teacher", str(tfile), "--ipc", "1",
                              "--gpc", "2", "--iterations", "30", "--device", device, "--backend", backend,
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    f = load_gsd(out)
    assert f.header.algorithm == "sre2l" and f.header.num_images == 6
    ident = read_teacher_fields(f.header.model_dump())
    assert ident is not None and ident["weights_sha256"]
    assert f.header.config["recovery"]["r_bn"] == 0.01 and f.header.config["recovery"]["first_bn_multiplier"] == 10
    teacher = load_teacher(str(tfile), dataset=load_dataset(str(root)))
    with torch.no_grad():
        pred = teacher.pixel_logits(f.images.render()).argmax(1)
    assert float((pred == f.images.labels).double().mean()) > 2 / 3
    assert not parts_dir(out).exists()


def test_refusals(tmp_path, color_teacher):
    root, tfile, _ = color_teacher
    res = runner.invoke(app, ["distill", str(root), "--algo", "sre2l", "--ipc", "1", "--out", str(tmp_path / "a.gsd")])
    assert res.exit_code != 0 and "needs --teacher" in res.output and "Traceback" not in res.output
    other = write_color_folder(tmp_path / "swapped", classes=("red", "green", "blue"))  # sorted: blue, green, red
    os.rename(other / "train" / "red", other / "train" / "zred")
    os.rename(other / "test" / "red", other / "test" / "zred")
    res = runner.invoke(app, ["distill", str(other), "--algo", "sre2l", "--teacher", str(tfile), "--ipc", "1",
                              "--out", str(tmp_path / "b.gsd")])
    assert res.exit_code == 3, res.output
    assert not (tmp_path / "b.gsd").exists()


def test_resume_after_an_interruption_gives_the_same_file(tmp_path, color_teacher, monkeypatch, device):
    import gsdd_cli.distill.sre2l as s

    root, tfile, _ = color_teacher
    distill(_cfg(root, tmp_path / "ref.gsd", teacher=str(tfile), iterations=10, device=device,
                 backend="auto"))
    real, calls = s.recover_unit, []

    def stop_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(s, "recover_unit", stop_second)
    with pytest.raises(KeyboardInterrupt):
        distill(_cfg(root, tmp_path / "cut.gsd", teacher=str(tfile), iterations=10, device=device,
                 backend="auto"))
    assert not (tmp_path / "cut.gsd").exists() and len(list(parts_dir(tmp_path / "cut.gsd").iterdir())) == 1
    monkeypatch.setattr(s, "recover_unit", real)
    distill(_cfg(root, tmp_path / "cut.gsd", teacher=str(tfile), iterations=10, device=device,
                 backend="auto"), resume=True)
    a, b = load_gsd(tmp_path / "ref.gsd").images, load_gsd(tmp_path / "cut.gsd").images
    for k, v in a.stored_tensors().items():
        assert torch.equal(v, b.stored_tensors()[k]), k


@pytest.mark.cpu_only(reason="two gloo ranks on CPU")
def test_one_and_two_torchrun_ranks_write_the_same_file(tmp_path, color_teacher):
    root, tfile, _ = color_teacher
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    files = []
    for n in (1, 2):
        out = tmp_path / f"r{n}.gsd"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n), "-m",
               "gsdd_cli", "distill", str(root), "--algo", "sre2l", "--teacher", str(tfile), "--ipc", "1", "--gpc",
               "2", "--iterations", "8", "--device", "cpu", "--backend", "native", "--out", str(out), "-q"]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
        assert res.returncode == 0, res.stderr[-4000:]
        files.append(load_gsd(out).images.stored_tensors())
    for k in files[0]:
        assert torch.equal(files[0][k], files[1][k]), k
