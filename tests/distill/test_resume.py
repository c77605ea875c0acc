"""Checkpoint/resume: an interrupted run continued with resume=True ends with the very same tensors."""

import json

import pytest
import torch
from safetensors import safe_open

from gsdd_cli.distill import DistillInterrupted, build_config, distill, load_checkpoint, run_paths

@pytest.fixture
def fast(device, backend):
    """On GSDD_TEST_DEVICE (tests/conftest.py); on CUDA the resumed run must still match bit for bit."""
    return {"device": device, "backend": backend, "init_steps": 15}


def _tensors(path):
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def _same(a, b):
    ta, ma = _tensors(a)
    tb, mb = _tensors(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    return ma, mb


def _cfg(dataset, out, fast, **flags):
    return build_config(dataset, flags={"ipc": 1, "out": str(out), **fast, **flags})


def test_dm_resume_after_stop_is_bit_identical(tmp_path, fast):
    flags = dict(algo="dm", iterations=5, batch_real=16)
    full = tmp_path / "full.gsd"
    distill(_cfg("digits", full, fast, **flags))
    part = tmp_path / "part.gsd"
    r = distill(_cfg("digits", part, fast, **flags), stop_after=2)
    assert r.interrupted and r.iterations == 2 and not part.exists()
    ckpt = load_checkpoint(run_paths(part)["checkpoint"])
    assert ckpt["iteration"] == 2 and {"torch", "numpy", "python"} <= set(ckpt["rng"])
    r2 = distill(_cfg("digits", part, fast, **flags), resume=True)
    assert r2.iterations == 5
    _same(full, part)
    assert not run_paths(part)["checkpoint"].exists()  # removed once the run completed
    log = [json.loads(line) for line in run_paths(part)["log"].read_text().splitlines()]
    assert [r["iteration"] for r in log if r["event"] == "iter"] == [1, 2, 3, 4, 5]


def test_tm_resume_after_keyboard_interrupt_is_bit_identical(tiny_npz, tiny_experts, tmp_path, fast):
    flags = dict(algo="tm", buffers=tiny_experts, iterations=5, syn_steps=3, batch_syn=8, expert_epochs=1,
                 max_start_epoch=2, lr_lr=1e-4)
    full = tmp_path / "full.gsd"
    distill(_cfg(tiny_npz, full, fast, **flags))
    part = tmp_path / "part.gsd"

    def interrupt(step):
        if step.iteration == 3:
            raise KeyboardInterrupt

    with pytest.raises(DistillInterrupted) as info:
        distill(_cfg(tiny_npz, part, fast, **flags), on_step=interrupt)
    assert info.value.iteration == 3 and info.value.checkpoint == run_paths(part)["checkpoint"]
    distill(_cfg(tiny_npz, part, fast, **flags), resume=True)
    ma, mb = _same(full, part)
    assert json.loads(ma["syn_lr"]) == json.loads(mb["syn_lr"])


def test_dc_save_every_then_resume(tiny_npz, tmp_path, fast):
    flags = dict(algo="dc", iterations=4, batch_real=4, outer_loop=2, inner_loop=1, save_every=1)
    full = tmp_path / "full.gsd"
    distill(_cfg(tiny_npz, full, fast, **flags))
    part = tmp_path / "part.gsd"
    distill(_cfg(tiny_npz, part, fast, **flags), stop_after=3)
    distill(_cfg(tiny_npz, part, fast, **flags), resume=True)
    _same(full, part)
    log = [json.loads(line) for line in run_paths(part)["log"].read_text().splitlines()]
    assert any(r["event"] == "checkpoint" for r in log)


def test_resume_refuses_changed_settings_and_missing_checkpoint(tmp_path, fast):
    from gsdd_cli.core.errors import ConfigError

    out = tmp_path / "x.gsd"
    with pytest.raises(ConfigError, match="no checkpoint"):
        distill(_cfg("digits", out, fast, algo="dm", iterations=2), resume=True)
    distill(_cfg("digits", out, fast, algo="dm", iterations=3, batch_real=8), stop_after=1)
    with pytest.raises(ConfigError, match="batch_real"):
        distill(_cfg("digits", out, fast, algo="dm", iterations=3, batch_real=9), resume=True)
