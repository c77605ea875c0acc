"""--tensorboard: event files with the run log's losses, α, timings, evals and image grids; a clear
one-line error, before any work, when the tensorboard package is missing."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from typer.testing import CliRunner

from gsdd_cli.cli import app
from gsdd_cli.core.errors import ConfigError, MissingModuleError
from gsdd_cli.distill import build_config, distill
from gsdd_cli.distill.tensorboard import MISSING, TensorBoardLog, check_tensorboard, image_grid

FAST = {"device": "cpu", "backend": "reference", "init_steps": 20, "eval_epochs": 2, "batch_real": 32}


def _events(logdir):
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    ea = ea_mod.EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0})
    ea.Reload()
    return ea


def _log(out):
    return [json.loads(line) for line in out.with_name(out.name + ".log.jsonl").read_text().splitlines()]


def test_digits_run_writes_losses_timings_evals_and_images(tmp_path):
    pytest.importorskip("tensorboard")
    out, tb = tmp_path / "d.gsd", tmp_path / "tb"
    cfg = build_config("digits", flags={"algo": "dm", "ipc": 1, "iterations": 4, "out": str(out), **FAST,
                                        "eval_every": 4, "tensorboard": str(tb), "tensorboard_images_every": 2})
    result = distill(cfg)
    assert list(tb.glob("events.out.tfevents.*"))
    ea = _events(tb)
    logged = {r["iteration"]: r["loss"] for r in _log(out) if r["event"] == "iter"}
    losses = {e.step: e.value for e in ea.Scalars("train/loss")}
    assert sorted(losses) == [1, 2, 3, 4]
    for it, loss in logged.items():
        assert losses[it] == pytest.approx(loss, rel=1e-5)
    assert [e.step for e in ea.Scalars("time/render_share")] == [1, 2, 3, 4]
    assert all(0.0 <= e.value <= 1.0 for e in ea.Scalars("time/render_share"))
    assert ea.Scalars("eval/accuracy")[0].value == pytest.approx(result.evals[0]["mean"])
    images = ea.Images("synthetic/grid")
    assert [i.step for i in images] == [1, 2, 4]  # the first iteration, every 2, the last
    assert images[0].height > 10 * 16 and images[0].width > 16  # one row per class of 16-px digits


def test_resume_appends_to_the_same_folder(tmp_path):
    pytest.importorskip("tensorboard")
    out, tb = tmp_path / "d.gsd", tmp_path / "tb"
    flags = {"algo": "dm", "ipc": 1, "iterations": 4, "out": str(out), **FAST, "tensorboard": str(tb),
             "tensorboard_images_every": 0}
    assert distill(build_config("digits", flags=flags), stop_after=2).interrupted
    distill(build_config("digits", flags=flags), resume=True)
    assert len(list(tb.glob("events.out.tfevents.*"))) == 2  # both writers closed, one file per call
    ea = _events(tb)
    assert sorted(e.step for e in ea.Scalars("train/loss")) == [1, 2, 3, 4]
    assert sorted(i.step for i in ea.Images("synthetic/grid")) == [1, 2, 3, 4]  # first and last of each call


def test_tm_logs_the_learned_lr(tmp_path, tiny_npz, tiny_experts):
    pytest.importorskip("tensorboard")
    out, tb = tmp_path / "tm.gsd", tmp_path / "tb"
    cfg = build_config(tiny_npz, flags={"algo": "tm", "ipc": 1, "out": str(out), **FAST, "buffers": tiny_experts,
                                        "iterations": 2, "syn_steps": 3, "expert_epochs": 1, "max_start_epoch": 2,
                                        "tensorboard": str(tb)})
    result = distill(cfg)
    alphas = _events(tb).Scalars("train/syn_lr")
    assert [e.step for e in alphas] == [1, 2]
    assert alphas[-1].value == pytest.approx(result.syn_lr, rel=1e-5)


class _FakeWriter:
    def __init__(self, log_dir, **kwargs):
        self.scalars, self.images, self.closed = [], [], False

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def add_image(self, tag, img, step):
        self.images.append((tag, tuple(img.shape), step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_records_map_to_tags(monkeypatch, tmp_path):
    monkeypatch.setattr("gsdd_cli.core.tensorboard.summary_writer_class", lambda: _FakeWriter)
    labels = torch.tensor([0, 0, 1, 1])
    log = TensorBoardLog(str(tmp_path), images_every=3, render=lambda index: torch.rand(len(index), 1, 8, 8),
                         labels=labels)
    log.write({"event": "start", "iteration": 0, "world_size": 1})
    log.write({"event": "iter", "iteration": 3, "loss": 0.5, "syn_lr": 0.01, "expert": 2, "seconds": 0.2,
               "render_seconds": 0.1, "render_share": 0.5, "flag": True, "note": "x"})
    log.write({"event": "eval", "iteration": 3, "mean": 0.8, "std": 0.01, "best_mean": 0.85, "epochs": 2})
    assert log.wants_images(3, 1, 10) and log.wants_images(1, 1, 10) and log.wants_images(10, 1, 10)
    assert not log.wants_images(4, 1, 10)
    log.images(3)
    w = log.writer
    assert set(w.scalars) == {("train/loss", 0.5, 3), ("train/syn_lr", 0.01, 3), ("train/expert", 2.0, 3),
                              ("time/seconds", 0.2, 3), ("time/render_seconds", 0.1, 3),
                              ("time/render_share", 0.5, 3), ("eval/accuracy", 0.8, 3),
                              ("eval/accuracy_std", 0.01, 3), ("eval/best_accuracy", 0.85, 3)}
    assert w.images == [("synthetic/grid", (1, 2 * 9 + 1, 2 * 9 + 1), 3)]
    log.close()
    assert w.closed and log.writer is None


def test_image_grid_has_one_row_per_class():
    imgs = torch.zeros(6, 3, 4, 4)
    asked = []
    grid = image_grid(lambda index: asked.append(index.tolist()) or imgs[index], torch.tensor([0, 0, 0, 1, 1, 1]),
                      cols=2)
    assert asked == [[0, 1, 3, 4]]  # only the images shown are rendered
    assert grid.shape == (3, 2 * 5 + 1, 2 * 5 + 1)


def test_missing_package_is_one_line_before_any_work(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now raises ImportError
    def no_work(*a, **k):
        raise AssertionError("work started before the tensorboard check")

    monkeypatch.setattr("gsdd_cli.distill.loop.load_dataset", no_work)
    with pytest.raises(MissingModuleError, match="needs the tensorboard package"):
        check_tensorboard(str(tmp_path / "tb"))
    out, tb = tmp_path / "d.gsd", tmp_path / "tb"
    res = CliRunner().invoke(app, ["distill", "digits", "--algo", "dm", "--ipc", "1", "--iterations", "2",
                                   "--out", str(out), "--tensorboard", str(tb), "--device", "cpu"])
    assert res.exit_code == MissingModuleError.exit_code == 11, res.output
    assert res.stderr.strip().splitlines() == [f"error: {MISSING}"]
    assert list(tmp_path.iterdir()) == []  # no output, config, log or event file


def test_tensorboard_folder_that_is_a_file_is_refused(tmp_path):
    pytest.importorskip("tensorboard")
    f = tmp_path / "tb"
    f.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        check_tensorboard(str(f))
