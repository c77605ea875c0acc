"""--tm-memory: checkpoint == full, tesla == full at one step, the memory pre-flight and its record."""

import json

import pytest
import torch
from safetensors import safe_open

from gsdd_cli.distill import build_config, distill
from gsdd_cli.distill.memory import available_memory, estimates, largest_batch, parse_bytes
from gsdd_cli.distill.params import fresh_context
from gsdd_cli.distill.tm import TrajectoryMatching
from gsdd_cli.core.errors import ConfigError


def _grads(npz, buffers, param, mode, steps, batch_syn=4, device="cpu"):
    """Image and α gradients of one TM iteration (fixed seeds), computed in ``mode``."""
    extra = {"ipc": 2} if param == "pixel" else {"ipc": 1, "gpc": 4}
    cfg = build_config(npz, flags=dict(algo="tm", param=param, buffers=buffers, syn_steps=steps, batch_syn=batch_syn,
                                       expert_epochs=1, max_start_epoch=1, lr_lr=0.0, init_steps=3, device=device,
                                       backend="auto", tm_memory=mode, out="unused.gsd", **extra))
    torch.manual_seed(0)
    ctx = fresh_context(cfg)
    method = TrajectoryMatching(ctx)
    torch.manual_seed(123)
    metrics = method.step(0)
    grads = [p.grad.clone() for p in ctx.images.parameters() if p.grad is not None]
    return grads, method.syn_lr.grad.clone(), metrics


def _rel(a, b):
    return max(float((x - y).abs().max() / y.abs().max().clamp_min(1e-30)) for x, y in zip(a, b))


@pytest.mark.parametrize("param", ["pixel", "gaussian"])
def test_checkpoint_gradient_equals_full(tiny_npz, tiny_experts, param):
    # 3 steps of 4 images over a subset of 8 (pixel: a re-permutation) or 16 (gaussian) images, DSA replayed
    ref_g, ref_a, ref_m = _grads(tiny_npz, tiny_experts, param, "full", 3)
    g, a, m = _grads(tiny_npz, tiny_experts, param, "checkpoint", 3)
    assert len(g) == len(ref_g) >= 1
    assert _rel(g, ref_g) < 1e-4 and float((a - ref_a).abs() / ref_a.abs()) < 1e-4
    assert m["loss"] == pytest.approx(ref_m["loss"], rel=1e-6)
    assert all(float(x.abs().max()) > 0 for x in g)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (scripts/gpu_checks.sh runs it)")
@pytest.mark.parametrize("param", ["pixel", "gaussian"])
def test_checkpoint_gradient_equals_full_cuda(tiny_npz, tiny_experts, param):
    # on the GPU the DSA draws come from the CUDA generator: the replay must restore it too
    ref_g, ref_a, _ = _grads(tiny_npz, tiny_experts, param, "full", 3, device="cuda")
    g, a, _ = _grads(tiny_npz, tiny_experts, param, "checkpoint", 3, device="cuda")
    assert _rel(g, ref_g) < 1e-3 and float((a - ref_a).abs() / ref_a.abs()) < 1e-3
    g1, a1, _ = _grads(tiny_npz, tiny_experts, param, "tesla", 1, device="cuda")
    r1, ra1, _ = _grads(tiny_npz, tiny_experts, param, "full", 1, device="cuda")
    assert _rel(g1, r1) < 1e-3 and float((a1 - ra1).abs() / ra1.abs()) < 1e-3


def test_tesla_equals_full_at_one_step_only(tiny_npz, tiny_experts):
    ref_g, ref_a, _ = _grads(tiny_npz, tiny_experts, "pixel", "full", 1)
    g, a, _ = _grads(tiny_npz, tiny_experts, "pixel", "tesla", 1)
    assert _rel(g, ref_g) < 1e-4 and float((a - ref_a).abs() / ref_a.abs()) < 1e-4
    # with several steps tesla drops the terms through later parameters: a different gradient
    ref_g, _, _ = _grads(tiny_npz, tiny_experts, "pixel", "full", 3)
    g, _, _ = _grads(tiny_npz, tiny_experts, "pixel", "tesla", 3)
    assert _rel(g, ref_g) > 1e-2


def _tm_cfg(npz, buffers, out, **flags):
    base = dict(algo="tm", ipc=1, param="pixel", buffers=buffers, syn_steps=6, batch_syn=2, expert_epochs=1,
                max_start_epoch=1, iterations=2, device="cpu", out=str(out))
    return build_config(npz, flags={**base, **flags})


def test_preflight_auto_picks_checkpoint_when_full_does_not_fit(tiny_npz, tiny_experts, tmp_path, monkeypatch):
    cfg = _tm_cfg(tiny_npz, tiny_experts, tmp_path / "a.gsd")
    est = TrajectoryMatching(fresh_context(cfg)).estimate()
    assert est["full"] > est["checkpoint"] == est["tesla"] > 0
    limit = int((est["full"] + est["checkpoint"]) / 2 / 0.85)  # full does not fit, checkpoint does
    monkeypatch.setenv("GSDD_MEMORY_LIMIT", str(limit))
    messages = []
    result = distill(cfg, notify=messages.append)
    assert result.config.tm_memory == "checkpoint" and result.memory["mode"] == "checkpoint"
    assert any(m.startswith("TM memory: checkpoint") and "full would need" in m for m in messages)
    with safe_open(str(tmp_path / "a.gsd"), framework="pt") as f:
        assert json.loads(f.metadata()["config"])["tm_memory"] == "checkpoint"
    monkeypatch.setenv("GSDD_MEMORY_LIMIT", "1T")
    assert distill(_tm_cfg(tiny_npz, tiny_experts, tmp_path / "b.gsd")).config.tm_memory == "full"


def test_preflight_refuses_what_cannot_fit(tiny_npz, tiny_experts, tmp_path, monkeypatch):
    monkeypatch.setenv("GSDD_MEMORY_LIMIT", "1K")
    out = tmp_path / "x.gsd"
    with pytest.raises(ConfigError, match=r"TM memory pre-flight: --tm-memory checkpoint needs about .* available"):
        distill(_tm_cfg(tiny_npz, tiny_experts, out, tm_memory="checkpoint"))
    assert not out.exists() and not (tmp_path / "x.gsd.config.json").exists()
    cfg = _tm_cfg(tiny_npz, tiny_experts, out, tm_memory="full", syn_steps=40, batch_syn=2)
    est = TrajectoryMatching(fresh_context(cfg)).estimate()
    monkeypatch.setenv("GSDD_MEMORY_LIMIT", str(int(est["checkpoint"] * 1.05 / 0.85)))
    with pytest.raises(ConfigError, match="use --tm-memory checkpoint"):
        distill(cfg)


def test_preflight_suggests_a_batch_that_fits(tiny_npz, tiny_experts, tmp_path, monkeypatch):
    cfg = _tm_cfg(tiny_npz, tiny_experts, tmp_path / "x.gsd", ipc=4, batch_syn=16, tm_memory="checkpoint")
    method = TrajectoryMatching(fresh_context(cfg))
    small = method.estimate(batch_syn=4)["checkpoint"]
    assert small < method.estimate()["checkpoint"]
    monkeypatch.setenv("GSDD_MEMORY_LIMIT", str(int(small / 0.85) + 1))
    with pytest.raises(ConfigError, match=r"use --batch-syn [4-9] "):
        distill(cfg)


def test_memory_helpers(monkeypatch):
    assert parse_bytes("8G") == 8 << 30 and parse_bytes("512m") == 512 << 20 and parse_bytes("100") == 100
    assert parse_bytes("1.5GiB") == int(1.5 * (1 << 30))
    with pytest.raises(ConfigError, match="not a size"):
        parse_bytes("lots")
    monkeypatch.setenv("GSDD_MEMORY_LIMIT", "2M")
    assert available_memory(torch.device("cpu")) == (2 << 20, "GSDD_MEMORY_LIMIT")
    assert largest_batch(lambda b: b <= 37, 100) == 37 and largest_batch(lambda b: False, 10) == 0
    sizes = dict(batch=4, subset=8, image_bytes=100, params=1000, step_fixed=5000, step_per_image=1000,
                 render_fixed=0, render_per_image=10)
    e, e20 = (estimates(steps=n, device_type="cuda", **sizes) for n in (10, 20))
    assert e20["full"] - e["full"] == 10 * 9000  # linear in the steps: 9000 saved bytes per step
    assert e20["checkpoint"] - e["checkpoint"] == 10 * 4000  # only the parameter vectors grow
    cpu, cpu20 = (estimates(steps=n, device_type="cpu", **sizes) for n in (10, 20))
    assert cpu20["full"] - cpu["full"] == 10 * 9000 * 1.5  # resident bytes per saved byte on a CPU


def test_cli_preflight_error_is_one_line(tiny_npz, tiny_experts, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gsdd_cli.cli import app

    monkeypatch.setenv("GSDD_MEMORY_LIMIT", "1K")
    out = tmp_path / "c.gsd"
    r = CliRunner().invoke(app, ["distill", tiny_npz, "--algo", "tm", "--ipc", "1", "--buffers", tiny_experts,
                                 "--tm-memory", "full", "--expert-epochs", "1", "--max-start-epoch", "1",
                                 "--device", "cpu", "--out", str(out), "-q"])
    assert r.exit_code == 3, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: TM memory pre-flight"), r.output
    assert not list(tmp_path.iterdir())
