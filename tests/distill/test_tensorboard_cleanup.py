"""A fresh `distill --tensorboard DIR` that fails or is interrupted before it wrote any checkpoint or
output takes back its event file and the folders it created (a folder that was there keeps what it
held); with --resume, or once a checkpoint exists, the events stay."""

from __future__ import annotations

import pytest

from gsdd_cli.distill import DistillInterrupted, build_config, distill
from gsdd_cli.distill.dm import DistributionMatching
from gsdd_cli.distill.runlog import run_paths

FAST = {"algo": "dm", "ipc": 1, "iterations": 4, "device": "cpu", "backend": "reference", "init_steps": 5,
        "batch_real": 16, "tensorboard_images_every": 0}


def _cfg(out, tb, **kw):
    return build_config("digits", flags={**FAST, "out": str(out), "tensorboard": str(tb), **kw})


def _fail_at(n, exc=RuntimeError):
    def on_step(step):
        if step.iteration == n:
            raise exc("boom") if exc is RuntimeError else exc
    return on_step


def _events(folder):
    return sorted(p.name for p in folder.glob("events.out.tfevents.*"))


@pytest.fixture(autouse=True)
def _needs_tensorboard():
    pytest.importorskip("tensorboard")


def test_failed_fresh_run_leaves_no_event_folder(tmp_path):
    out, tb = tmp_path / "d.gsd", tmp_path / "runs" / "a"
    with pytest.raises(RuntimeError, match="boom"):
        distill(_cfg(out, tb), on_step=_fail_at(2))
    assert list(tmp_path.iterdir()) == []  # no runs/, no config, no log


def test_interrupt_before_any_checkpoint_leaves_no_event_folder(tmp_path, monkeypatch):
    out, tb = tmp_path / "d.gsd", tmp_path / "tb"

    def interrupted(self, iteration):
        raise KeyboardInterrupt  # inside iteration 1: nothing consistent to save

    monkeypatch.setattr(DistributionMatching, "step", interrupted)
    with pytest.raises(DistillInterrupted) as info:
        distill(_cfg(out, tb))
    assert info.value.checkpoint is None
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_existed_keeps_its_contents(tmp_path):
    out, tb = tmp_path / "d.gsd", tmp_path / "tb"
    distill(_cfg(out, tb, iterations=2))  # an earlier, finished run into the same folder
    (tb / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in tb.iterdir()}
    assert len(_events(tb)) == 1
    with pytest.raises(RuntimeError, match="boom"):
        distill(_cfg(tmp_path / "e.gsd", tb), on_step=_fail_at(1))
    assert {p.name: p.read_bytes() for p in tb.iterdir()} == before


def test_events_stay_once_a_checkpoint_exists(tmp_path):
    out, tb = tmp_path / "d.gsd", tmp_path / "tb"
    with pytest.raises(RuntimeError, match="boom"):
        distill(_cfg(out, tb, save_every=1), on_step=_fail_at(2))
    assert run_paths(out)["checkpoint"].is_file()
    assert len(_events(tb)) == 1


def test_events_stay_with_resume(tmp_path):
    out, tb = tmp_path / "d.gsd", tmp_path / "tb"
    assert distill(_cfg(out, tb), stop_after=2).interrupted
    first = _events(tb)
    assert len(first) == 1
    with pytest.raises(RuntimeError, match="boom"):
        distill(_cfg(out, tb), resume=True, on_step=_fail_at(3))
    assert len(_events(tb)) == 2 and set(first) <= set(_events(tb))
    # a resumed run interrupted in its first iteration (nothing new to save) keeps them too
    with pytest.raises(DistillInterrupted):
        distill(_cfg(out, tb), resume=True, on_step=_fail_at(3, KeyboardInterrupt))
    assert len(_events(tb)) == 3
