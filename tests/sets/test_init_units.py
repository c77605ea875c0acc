"""`gsdd init` in units of classes: the file does not depend on the unit size or the number of torchrun
ranks, finished units survive a crash for --resume, and nothing is left behind at the end."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from gsdd_cli.sets.fit import FitConfig, fit_gaussians
from gsdd_cli.sets.gsdfile import load_gsd
from gsdd_cli.sets.init_run import parts_dir, plan_units
from gsdd_cli.sets.initialize import InitConfig, init_set


def _tensors(path):
    f = load_gsd(path)
    return {k: v.clone() for k, v in f.images.stored_tensors().items()}, f.header


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_units_cover_whole_classes():
    assert plan_units(5, 4, 8) == [[0, 1], [2, 3], [4]]
    assert plan_units(3, 10, 4) == [[0], [1], [2]]  # a class never splits
    assert plan_units(3, 2, 100) == [[0, 1, 2]]


def test_an_image_fits_the_same_alone_or_in_a_batch():
    t = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    cfg = FitConfig(steps=12, seed=4)
    whole = fit_gaussians(t, 9, cfg, slots=torch.arange(5))
    part = fit_gaussians(t[3:5], 9, cfg, slots=torch.arange(3, 5))
    for name in ("xy", "cholesky", "rgb", "opacity"):
        assert torch.equal(getattr(whole, name).detach()[3 * 9:], getattr(part, name).detach()), name


def _cfg(tmp_path, name, device="cpu", **kw):
    return InitConfig(dataset="digits", ipc=1, gpc=2, steps=15, out=str(tmp_path / name), device=device,
                      backend="native" if device == "cpu" else "auto", **kw)


def test_unit_size_does_not_change_the_file(tmp_path, device):
    one = init_set(_cfg(tmp_path, "one.gsd", device))
    many = init_set(_cfg(tmp_path, "many.gsd", device, max_images=6))  # 3 classes per unit: 4 units
    assert one.result.config["init"]["units"]["units"] == 1
    assert many.result.config["init"]["units"]["units"] == 4
    a, _ = _tensors(tmp_path / "one.gsd")
    b, _ = _tensors(tmp_path / "many.gsd")
    _same(a, b)
    assert not parts_dir(tmp_path / "many.gsd").exists()


def test_resume_keeps_finished_units(tmp_path, monkeypatch):
    import gsdd_cli.sets.init_run as run

    ref = init_set(_cfg(tmp_path, "ref.gsd", max_images=4))
    real_fit, calls = run.fit_gaussians, []

    def crash_on_third(targets, *a, **k):
        calls.append(int(targets.shape[0]))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_fit(targets, *a, **k)

    monkeypatch.setattr(run, "fit_gaussians", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        init_set(_cfg(tmp_path, "crash.gsd", max_images=4))
    assert not (tmp_path / "crash.gsd").exists()
    assert len(list(parts_dir(tmp_path / "crash.gsd").glob("unit-*.safetensors"))) == 2
    calls.clear()
    monkeypatch.setattr(run, "fit_gaussians", lambda t, *a, **k: (calls.append(int(t.shape[0])), real_fit(t, *a, **k))[1])
    again = init_set(_cfg(tmp_path, "crash.gsd", max_images=4, resume=True))
    assert len(calls) == 3  # 5 units, 2 kept
    assert again.result.config["init"]["units"]["units_resumed"] == 2
    _same(_tensors(tmp_path / "ref.gsd")[0], _tensors(tmp_path / "crash.gsd")[0])
    assert not parts_dir(tmp_path / "crash.gsd").exists()
    assert ref.result.plan.gpc == 2


def test_parts_of_another_run_are_not_reused(tmp_path, monkeypatch):
    import gsdd_cli.sets.init_run as run

    init_set(_cfg(tmp_path, "a.gsd", max_images=4))
    real_fit = run.fit_gaussians
    monkeypatch.setattr(run, "fit_gaussians", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        init_set(_cfg(tmp_path, "b.gsd", max_images=4))
    monkeypatch.setattr(run, "fit_gaussians", real_fit)
    parts = parts_dir(tmp_path / "b.gsd")
    parts.mkdir(exist_ok=True)
    # a unit file of a different run (other seed) in b's parts folder: ignored, refitted
    other = init_set(_cfg(tmp_path, "c.gsd", max_images=4, seed=9))
    assert other is not None
    r = init_set(_cfg(tmp_path, "b.gsd", max_images=4, resume=True))
    assert r.result.config["init"]["units"]["units_resumed"] == 0
    _same(_tensors(tmp_path / "a.gsd")[0], _tensors(tmp_path / "b.gsd")[0])


@pytest.mark.cpu_only(reason="two gloo ranks on CPU; the NCCL path of torchrun is tested by the distill test")
def test_one_and_two_torchrun_ranks_write_the_same_file(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    outs = {}
    for n in (1, 2):
        out = tmp_path / f"r{n}.gsd"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n),
               "-m", "gsdd_cli", "init", "digits", "--ipc", "1", "--gpc", "2", "--steps", "15", "--max-images", "6",
               "--device", "cpu", "--backend", "native", "--out", str(out), "-q"]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
        assert res.returncode == 0, res.stderr[-4000:]
        outs[n] = _tensors(out)
        assert not parts_dir(out).exists()
    _same(outs[1][0], outs[2][0])
    assert outs[2][1].config["init"]["units"]["ranks"] == 2
