"""`gsdd init --select teacher`: RDED's choice of the teacher's best crops, their stitching, and the init
around it (random selection unchanged, ranks, resume, the header record)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from gsdd_cli.cli import app
from gsdd_cli.data import load_dataset
from gsdd_cli.models.teacher import load_teacher, read_teacher_fields
from gsdd_cli.sets.fit import (
    FitConfig,
    fit_gaussians,
    psnr_per_image,
    select_init_indices,
)
from gsdd_cli.sets.gsdfile import load_gsd
from gsdd_cli.sets.init_run import parts_dir
from gsdd_cli.sets.initialize import InitConfig, init_set
from gsdd_cli.sets.select import (
    TeacherSelect,
    choose,
    cut,
    pad_center,
    quadrants,
    stitch,
)

runner = CliRunner()


# ------------------------------------------------------------------------------------------ helpers
class Recorder:
    """An injected score: −(mean brightness of the crop), with every call's crops and scores kept."""

    def __init__(self):
        self.crops, self.scores = [], []

    def __call__(self, crops, labels):
        s = -crops.double().flatten(1).mean(1)
        self.crops.append(crops.clone())
        self.scores.append(s)
        return s


def _toy(per_class=(9, 5), size=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(per_class)])
    y = y[torch.randperm(y.numel(), generator=gen)]  # classes interleaved in the training set
    return torch.rand(y.numel(), 3, size, size, generator=gen), y


def _tensors(path):
    f = load_gsd(path)
    return {k: v.clone() for k, v in f.images.stored_tensors().items()}, f.header


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """Two convnet teachers of digits (1 epoch each, seeds 0 and 1): (path, other path)."""
    from gsdd_cli.evaluate.teacher_train import make_teacher_config, train_teacher

    base = tmp_path_factory.mktemp("teachers")
    paths = []
    for seed in (0, 1):
        out = base / f"t{seed}.pt"
        train_teacher(make_teacher_config(dataset="digits", arch="convnet", epochs=1, seed=seed, device="cpu",
                                          out=str(out)))
        paths.append(str(out))
    return paths


def _cfg(tmp_path, name, teacher, **kw):
    return InitConfig(**{"dataset": "digits", "ipc": 1, "gpc": 2, "steps": 10, "out": str(tmp_path / name),
                         "device": "cpu", "backend": "native", "select": "teacher", "teacher": teacher, **kw})


# ------------------------------------------------------------------------------ the choice itself
def test_kept_crops_are_the_top_k_by_score():
    x, y = _toy()
    rec = Recorder()
    sel = TeacherSelect(rec, crops=4, factor=1)
    got = sel.select_class(x, y, 0, gpc=3, seed=5, shape=(3, 8, 8))
    scores = torch.cat(rec.scores).view(9, 4)  # 9 images of class 0, 4 crops each, image-major
    expect = torch.sort(scores.min(1).values).values[:3]  # RDED: each image's best crop, then the 3 best
    assert torch.equal(got.score, expect)  # factor 1: slot order = best first
    assert got.index.unique().numel() == 3 and bool((y[got.index] == 0).all())
    # the targets are those very crops, cut again from the recorded boxes
    assert torch.equal(got.images, cut(x[got.index], got.boxes, (8, 8)))
    all_crops = torch.cat(rec.crops)
    for img, s in zip(got.images, got.score):
        j = int(torch.nonzero(torch.cat(rec.scores) == s)[0])
        assert torch.equal(img, all_crops[j])
    assert got.candidates.tolist()[2] == 36
    assert got.candidates[0].item() == pytest.approx(float(scores.sum()))


def test_a_small_class_keeps_several_crops_per_image():
    x, y = _toy()
    rec = Recorder()
    got = TeacherSelect(rec, crops=3, factor=1).select_class(x, y, 1, gpc=7, seed=0, shape=(3, 8, 8))
    scores = torch.cat(rec.scores).view(5, 3)  # 5 images: 7 crops need the 2 best of each image
    best2 = torch.sort(scores, 1).values[:, :2].reshape(-1)
    assert torch.equal(got.score, torch.sort(best2).values[:7])
    assert int(torch.bincount(got.index).max()) <= 2


def test_choose_breaks_ties_by_position():
    img, crop = choose(torch.tensor([[1.0, 0.0], [0.0, 0.0], [2.0, 2.0]]), 2)
    assert img.tolist() == [0, 1] and crop.tolist() == [1, 0]


def test_selection_is_seeded_by_seed_and_class():
    x, y = _toy()
    a = TeacherSelect(Recorder(), crops=2, factor=2).select_class(x, y, 0, 1, 3, (3, 8, 8))
    b = TeacherSelect(Recorder(), crops=2, factor=2).select_class(x, y, 0, 1, 3, (3, 8, 8))
    c = TeacherSelect(Recorder(), crops=2, factor=2).select_class(x, y, 0, 1, 4, (3, 8, 8))
    assert torch.equal(a.images, b.images) and torch.equal(a.boxes, b.boxes)
    assert not torch.equal(a.boxes, c.boxes)


# ----------------------------------------------------------------------------------- the stitching
def test_factor_two_puts_four_half_size_crops_in_the_quadrants():
    crops = torch.arange(8, dtype=torch.float32)[:, None, None, None] + torch.rand(8, 2, 4, 4)
    out = stitch(crops, 2, 2, 8, 8)
    assert out.shape == (2, 2, 8, 8)
    for t in range(2):
        cells = [out[t, :, :4, :4], out[t, :, :4, 4:], out[t, :, 4:, :4], out[t, :, 4:, 4:]]
        for q, cell in enumerate(cells):
            assert torch.equal(cell, crops[t * 4 + q])


def test_odd_sizes_give_the_first_cells_the_extra_pixel():
    assert quadrants(9, 9, 2) == [(0, 0, 5, 5), (0, 5, 5, 4), (5, 0, 4, 5), (5, 5, 4, 4)]
    crops = torch.rand(4, 1, 4, 4)
    out = stitch(crops, 1, 2, 9, 9)
    assert torch.equal(out[0, :, 5:, 5:], crops[3])  # a 4×4 cell: the crop itself
    assert torch.equal(out[0, :, :5, :5], torch.nn.functional.interpolate(crops[:1], size=(5, 5))[0])


def test_best_crops_go_top_left_and_the_scoring_pads_at_the_centre():
    x, y = _toy()
    got = TeacherSelect(Recorder(), crops=2, factor=2).select_class(x, y, 0, gpc=2, seed=1, shape=(3, 8, 8))
    # RDED's layout: k-th best crop → image k mod GPC, cell k // GPC; rows are in slot order (t·4 + q)
    rank = torch.argsort(torch.argsort(got.score, stable=True), stable=True)
    assert rank.tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    cells = cut(x[got.index], got.boxes, (4, 4))
    assert torch.equal(stitch(cells, 2, 2, 8, 8), got.images)
    p = pad_center(torch.ones(1, 1, 4, 4), 8, 8)
    assert float(p[0, 0, 2:6, 2:6].min()) == 1 and float(p.sum()) == 16


# -------------------------------------------------------------------------------------- gsdd init
def test_random_selection_is_unchanged(tmp_path):
    cfg = InitConfig(dataset="digits", ipc=1, gpc=2, steps=10, seed=3, out=str(tmp_path / "r.gsd"), device="cpu",
                     backend="native")
    assert cfg.select == "random" and cfg.teacher is None
    r = init_set(cfg)
    ds = load_dataset("digits")
    idx = select_init_indices(ds.y_train, 10, 2, seed=3)
    # the file is the plain fit of the seeded random real images, as before --select existed
    direct = fit_gaussians(ds.x_train[idx], r.result.plan.points, FitConfig(steps=10, seed=3, backend="native"),
                           labels=ds.y_train[idx], slots=torch.arange(20))
    got, header = _tensors(tmp_path / "r.gsd")
    _same(got, direct.stored_tensors())
    init = header.config["init"]
    assert init["selection"] == "random" and init["indices"] == idx.tolist() and "select" not in init
    assert read_teacher_fields(header.model_dump()) is None
    assert r.selection() is None and "select" not in r.summary(cfg)


@pytest.mark.parametrize("args, says", [
    (["--select", "teacher"], "--select teacher needs --teacher"),
    (["--crops", "3"], "--crops only applies to --select teacher"),
    (["--select", "teacher", "--teacher", "t.pt", "--first"], "--first"),
    (["--select", "teacher", "--teacher", "t.pt", "--factor", "0"], "--factor"),
])
def test_bad_selection_options_are_one_line(tmp_path, args, says):
    res = runner.invoke(app, ["init", "digits", "--ipc", "1", "--out", str(tmp_path / "x.gsd"), *args])
    assert res.exit_code == 3, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and says in lines[0], res.output
    assert not (tmp_path / "x.gsd").exists()


def test_a_class_too_small_for_its_crops_fails_before_any_fit(tmp_path, teachers):
    res = runner.invoke(app, ["init", "digits", "--ipc", "1", "--gpc", "2", "--select", "teacher", "--teacher",
                              teachers[0], "--crops", "1", "--candidates", "3", "--factor", "2", "--steps", "5",
                              "--device", "cpu", "--out", str(tmp_path / "x.gsd")])
    assert res.exit_code == 8, res.output
    assert "8 crops need at least 8 images" in res.output and not parts_dir(tmp_path / "x.gsd").exists()


def test_teacher_selection_beats_random_crops_and_is_recorded(tmp_path, teachers):
    r = init_set(_cfg(tmp_path, "s.gsd", teachers[0], factor=2))
    f = load_gsd(tmp_path / "s.gsd")
    rec = f.header.config["init"]["select"]
    assert rec["factor"] == 2 and rec["crops_per_image"] == 5 and f.header.config["init"]["selection"] == "teacher"
    assert rec["prob_kept_mean"] > rec["prob_candidates_mean"] + 0.1, rec
    assert rec["ce_kept_mean"] < rec["ce_candidates_mean"]
    assert len(rec["crops"]) == 10 * 2 * 4 * 4 and rec["crop_fields"] == ["index", "top", "left", "side"]
    ds = load_dataset("digits")
    rows = torch.tensor(rec["crops"]).view(-1, 4)
    assert torch.equal(rows[:, 0], torch.tensor(f.header.config["init"]["indices"]))
    assert torch.equal(ds.y_train[rows[:, 0]], torch.arange(10).repeat_interleave(8))  # each class's own images
    assert rec["candidates_per_class"] == torch.bincount(ds.y_train).tolist()  # digits: < 300 per class
    ident = read_teacher_fields(f.header.model_dump())
    assert ident["weights_sha256"] == rec["teacher_weights_sha256"] == load_teacher(teachers[0], dataset=ds).identity[
        "weights_sha256"]
    # the recorded crops rebuild the targets the fit saw; the teacher prefers them to its random crops
    targets = torch.cat([stitch(cut(ds.x_train[rows[s:s + 8, 0]], rows[s:s + 8, 1:], (8, 8)), 2, 2, 16, 16)
                         for s in range(0, 80, 8)])
    assert targets.shape == (20, 1, 16, 16)
    rebuilt = psnr_per_image(f.images, targets, backend="native")  # the stored (bf16) set vs the rebuilt targets
    assert torch.allclose(rebuilt, r.result.psnr, atol=0.5), (rebuilt, r.result.psnr)
    shuffled = psnr_per_image(f.images, targets.roll(1, 0), backend="native")
    assert float(shuffled.mean()) < float(rebuilt.mean()) - 1
    assert r.selection()["prob_kept_mean"] == rec["prob_kept_mean"]


def test_resume_keeps_units_and_another_teacher_refits(tmp_path, teachers, monkeypatch):
    import gsdd_cli.sets.init_run as run

    init_set(_cfg(tmp_path, "ref.gsd", teachers[0], max_images=4))
    real_fit, calls = run.fit_gaussians, []

    def crash_on_third(targets, *a, **k):
        calls.append(int(targets.shape[0]))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_fit(targets, *a, **k)

    monkeypatch.setattr(run, "fit_gaussians", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        init_set(_cfg(tmp_path, "crash.gsd", teachers[0], max_images=4))
    assert len(list(parts_dir(tmp_path / "crash.gsd").glob("unit-*.safetensors"))) == 2
    calls.clear()
    monkeypatch.setattr(run, "fit_gaussians", lambda t, *a, **k: (calls.append(1), real_fit(t, *a, **k))[1])
    again = init_set(_cfg(tmp_path, "crash.gsd", teachers[0], max_images=4, resume=True))
    assert len(calls) == 3 and again.result.config["init"]["units"]["units_resumed"] == 2
    a, ha = _tensors(tmp_path / "ref.gsd")
    b, hb = _tensors(tmp_path / "crash.gsd")
    _same(a, b)
    sa, sb = ha.config["init"]["select"], hb.config["init"]["select"]
    assert {k: v for k, v in sa.items() if k != "seconds"} == {k: v for k, v in sb.items() if k != "seconds"}

    # the parts of a run with another teacher are not mixed in: every unit is selected and fitted again
    monkeypatch.setattr(run, "fit_gaussians", crash_on_third)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        init_set(_cfg(tmp_path, "swap.gsd", teachers[0], max_images=4))
    assert len(list(parts_dir(tmp_path / "swap.gsd").glob("unit-*.safetensors"))) == 2
    calls.clear()
    monkeypatch.setattr(run, "fit_gaussians", lambda t, *a, **k: (calls.append(1), real_fit(t, *a, **k))[1])
    other = init_set(_cfg(tmp_path, "swap.gsd", teachers[1], max_images=4, resume=True))
    assert len(calls) == 5 and other.result.config["init"]["units"]["units_resumed"] == 0
    ho = load_gsd(tmp_path / "swap.gsd").header
    assert read_teacher_fields(ho.model_dump())["weights_sha256"] == ho.config["init"]["select"][
        "teacher_weights_sha256"] != sa["teacher_weights_sha256"]


@pytest.mark.cpu_only(reason="two gloo ranks on CPU; the NCCL path of torchrun is tested by the distill test")
def test_one_and_two_torchrun_ranks_select_and_write_the_same_file(tmp_path, teachers):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    outs = {}
    for n in (1, 2):
        out = tmp_path / f"r{n}.gsd"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n),
               "-m", "gsdd_cli", "init", "digits", "--ipc", "1", "--gpc", "2", "--steps", "10", "--max-images", "6",
               "--select", "teacher", "--teacher", teachers[0], "--factor", "2", "--crops", "3",
               "--device", "cpu", "--backend", "native", "--out", str(out), "-q"]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
        assert res.returncode == 0, res.stderr[-4000:]
        outs[n] = _tensors(out)
        assert not parts_dir(out).exists()
    _same(outs[1][0], outs[2][0])
    s1, s2 = (outs[n][1].config["init"]["select"] for n in (1, 2))
    assert s1["crops"] == s2["crops"] and s1["prob_kept_mean"] == s2["prob_kept_mean"]
    assert outs[2][1].config["init"]["units"]["ranks"] == 2
