"""Divergence and resume: a non-finite loss or parameter stops the run with exit code 10, keeps (or
writes) the last good checkpoint and says how to resume with a lower lr; no header or JSON carries NaN."""

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open


def _strict_json(text):
    def bad(token):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=bad)


@pytest.fixture
def diverge_at(monkeypatch):
    """Make DM iteration ``k`` (0-based) blow up: a NaN loss, or a NaN parameter with a finite loss."""
    from gsdd_cli.distill.dm import DistributionMatching

    real = DistributionMatching.step

    def arm(k, what="loss"):
        def step(self, iteration):
            out = real(self, iteration)
            if iteration == k:
                if what == "loss":
                    out = {**out, "loss": float("nan")}
                else:
                    with torch.no_grad():
                        self.ctx.images.xy[0, 0] = float("inf")
            return out

        monkeypatch.setattr(DistributionMatching, "step", step)

    return arm


def _run(rb, work, *extra, out="o.gsd"):
    return rb.invoke("distill", work / "ds.npz", *rb.FAST_DISTILL, "--out", work / out, *extra)


@pytest.mark.parametrize("what", ["loss", "parameter"])
def test_divergence_keeps_the_last_good_state_and_resumes(rb, work, diverge_at, monkeypatch, what):
    diverge_at(2, what)
    err = rb.assert_clean_failure(_run(rb, work, "--iterations", "5"), 10, "diverged")
    assert "at iteration 3" in err and "--resume --lr" in err and "after iteration 2" in err
    assert not (work / "o.gsd").exists()
    from gsdd_cli.distill import load_checkpoint

    ckpt = load_checkpoint(work / "o.gsd.ckpt")
    assert ckpt["iteration"] == 2 and all(torch.isfinite(t).all() for t in ckpt["images"].values())
    log = [json.loads(line) for line in (work / "o.gsd.log.jsonl").read_text().splitlines()]
    assert log[-1]["event"] == "diverged" and log[-1]["iteration"] == 3
    monkeypatch.undo()  # the fault is gone: resuming with a lower lr completes
    res = _run(rb, work, "--iterations", "5", "--resume", "--lr", "0.0001", "--json")
    assert res.exit_code == 0, res.output
    summary = _strict_json(res.stdout)
    assert summary["iterations"] == 5 and summary["final_loss"] is not None
    assert not (work / "o.gsd.ckpt").exists()


def test_divergence_in_the_first_iteration_saves_the_start_point(rb, work):
    rb.make_gsd(work / "huge.gsd", str(work / "ds.npz"), scale_values=1e30)  # finite in bf16, explodes in the loss
    err = rb.assert_clean_failure(_run(rb, work, "--init", work / "huge.gsd"), 10, "diverged")
    assert "check the data and the --init file" in err and "start point" in err
    from gsdd_cli.distill import load_checkpoint

    assert load_checkpoint(work / "o.gsd.ckpt")["iteration"] == 0
    assert not (work / "o.gsd").exists()


def test_resumed_run_that_diverges_at_once_keeps_its_checkpoint(rb, work, diverge_at):
    assert _run(rb, work, "--iterations", "5", "--stop-after", "2").exit_code == 0
    ckpt = work / "o.gsd.ckpt"
    before = ckpt.read_bytes()
    diverge_at(2)
    err = rb.assert_clean_failure(_run(rb, work, "--iterations", "5", "--resume"), 10, "diverged")
    assert str(ckpt) in err and ckpt.read_bytes() == before


def test_resume_to_the_checkpoint_iteration_writes_a_finite_header(rb, work):
    assert _run(rb, work, "--iterations", "4", "--stop-after", "2").exit_code == 0
    res = _run(rb, work, "--iterations", "2", "--resume", "--json")
    assert res.exit_code == 0, res.output
    summary = _strict_json(res.stdout)
    assert isinstance(summary["final_loss"], float)
    with safe_open(str(work / "o.gsd"), "pt") as f:
        config = _strict_json(f.metadata()["config"])
    assert config["final_loss"] == pytest.approx(summary["final_loss"], rel=1e-6)


def test_resume_below_the_checkpoint_iteration_is_refused(rb, work):
    assert _run(rb, work, "--iterations", "4", "--stop-after", "3").exit_code == 0
    rb.assert_clean_failure(_run(rb, work, "--iterations", "2", "--resume"), 3, "--iterations 3")


def test_resume_may_only_lower_lr_among_algorithm_settings(rb, work):
    assert _run(rb, work, "--iterations", "4", "--stop-after", "2").exit_code == 0
    rb.assert_clean_failure(_run(rb, work, "--iterations", "4", "--resume", "--boundary-lambda", "0.5"), 3,
                            "boundary_lambda")
    res = _run(rb, work, "--iterations", "4", "--resume", "--lr", "0.0005")
    assert res.exit_code == 0, res.output
    log = [json.loads(line) for line in Path(str(work / "o.gsd") + ".log.jsonl").read_text().splitlines()]
    resumed = [r for r in log if r["event"] == "resume"][0]
    assert resumed["lr"] == 0.0005 and resumed["checkpoint_lr"] == 0.001


def test_init_and_expert_divergence(rb, work, monkeypatch):
    # lr 1e30 drives the fit to NaN through the dense reference renderer (0 * inf in the gradient of
    # Gaussians far off the image); the native kernels cull those Gaussians and may stay finite.
    monkeypatch.setenv("GSDD_BACKEND", "reference")
    before = rb.tree(work)
    rb.assert_clean_failure(rb.invoke("init", work / "ds.npz", "--ipc", "1", "--steps", "5", "--lr", "1e30",
                                      "--device", "cpu", "--out", work / "i.gsd", "-q"), 10, "diverged")
    rb.assert_clean_failure(rb.invoke("experts", work / "ds.npz", "--lr", "1e12", "--num", "1", "--epochs", "3",
                                      "--device", "cpu", "--out", work / "buf", "-q"), 10, "diverged")
    rb.assert_untouched(work, before)  # no .gsd, no expert folder or manifest
