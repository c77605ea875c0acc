"""Pixel sets (--param pixel) through the run loop: loss goes down, resume is bit-exact, the file is right."""

import json

import pytest
import torch
from safetensors import safe_open

from gsdd_cli.distill import build_config, distill, run_paths
from gsdd_cli.sets.gsdfile import load_gsd

FAST = {"eval_epochs": 2, "param": "pixel"}
TM = {"syn_steps": 4, "batch_syn": 4, "expert_epochs": 1, "max_start_epoch": 1}


@pytest.fixture
def fast(device, backend):
    return {**FAST, "device": device, "backend": backend}  # GSDD_TEST_DEVICE (tests/conftest.py)


def _cfg(dataset, out, fast, **flags):
    return build_config(dataset, flags={"ipc": 2, "out": str(out), **fast, **flags})


def _losses(cfg):
    losses = []
    result = distill(cfg, on_step=lambda s: losses.append(s.loss))
    return result, losses


def _decreases(losses, k):
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    return last < first, (first, last)


@pytest.mark.parametrize("algo,flags,k", [
    ("dm", {"iterations": 10, "batch_real": 8}, 3),
    ("dc", {"iterations": 12, "batch_real": 8}, 4),
])
def test_pixel_dm_dc_loss_goes_down(tiny_npz, tmp_path, fast, algo, flags, k):
    result, losses = _losses(_cfg(tiny_npz, tmp_path / f"{algo}.gsd", fast, algo=algo, **flags))
    ok, info = _decreases(losses, k)
    assert ok, info
    gsd = load_gsd(tmp_path / f"{algo}.gsd")
    h = gsd.header
    assert (h.parameterization, h.gpc, h.ipc, h.algorithm, h.payload_bytes) == ("pixel", 2, 2, algo, h.budget_bytes)
    assert h.config["param"] == "pixel" and h.config["lr_img"] == {"dm": 1.0, "dc": 0.1}[algo]
    assert h.config["init_record"]["source"] == "real" and len(h.config["init_record"]["indices"]) == 8


def test_pixel_tm_loss_goes_down_and_learns_lr(tiny_npz, tiny_experts, tmp_path, fast):
    out = tmp_path / "tm.gsd"
    result, losses = _losses(_cfg(tiny_npz, out, fast, algo="tm", buffers=tiny_experts, iterations=10, lr_img=100.0,
                                  tm_memory="checkpoint", **TM))
    ok, info = _decreases(losses, 3)
    assert ok, info
    with safe_open(str(out), framework="pt") as f:
        md = f.metadata()
    assert json.loads(md["syn_lr"]) >= 1e-3 and json.loads(md["config"])["tm_memory"] == "checkpoint"


def _tensors(path):
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def _resume_matches(dataset, tmp_path, fast, stop, **flags):
    full, part = tmp_path / "full.gsd", tmp_path / "part.gsd"
    distill(_cfg(dataset, full, fast, **flags))
    r = distill(_cfg(dataset, part, fast, **flags), stop_after=stop)
    assert r.interrupted and run_paths(part)["checkpoint"].exists()
    distill(_cfg(dataset, part, fast, **flags), resume=True)
    (ta, ma), (tb, mb) = _tensors(full), _tensors(part)
    assert ta.keys() == tb.keys() == {"pixels", "labels"}
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key
    return ma, mb


def test_pixel_dm_resume_is_bit_identical(tiny_npz, tmp_path, fast):
    _resume_matches(tiny_npz, tmp_path, fast, 2, algo="dm", iterations=4, batch_real=8)


def test_pixel_dc_resume_is_bit_identical(tiny_npz, tmp_path, fast):
    _resume_matches(tiny_npz, tmp_path, fast, 2, algo="dc", iterations=3, batch_real=4, outer_loop=2, inner_loop=1)


@pytest.mark.parametrize("mode", ["full", "checkpoint"])
def test_pixel_tm_resume_is_bit_identical(tiny_npz, tiny_experts, tmp_path, fast, mode):
    ma, mb = _resume_matches(tiny_npz, tmp_path, fast, 2, algo="tm", buffers=tiny_experts, iterations=4, lr_img=100.0,
                             tm_memory=mode, **TM)
    assert json.loads(ma["syn_lr"]) == json.loads(mb["syn_lr"])


def test_gaussian_tm_checkpoint_mode_resume_is_bit_identical(tiny_npz, tiny_experts, tmp_path, fast):
    flags = dict(param="gaussian", ipc=1, gpc=4, init_steps=5, algo="tm", buffers=tiny_experts, iterations=3,
                 tm_memory="checkpoint", **TM)
    full, part = tmp_path / "full.gsd", tmp_path / "part.gsd"
    distill(_cfg(tiny_npz, full, fast, **flags))
    distill(_cfg(tiny_npz, part, fast, **flags), stop_after=1)
    distill(_cfg(tiny_npz, part, fast, **flags), resume=True)
    (ta, _), (tb, _) = _tensors(full), _tensors(part)
    assert set(ta) == {"xy", "cholesky", "rgb", "opacity", "labels"}
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


def test_pixel_init_from_pixel_file_and_mismatch(tiny_npz, tmp_path, fast):
    from gsdd_cli.core.errors import ConfigError

    first = tmp_path / "first.gsd"
    distill(_cfg(tiny_npz, first, fast, algo="dm", iterations=1, batch_real=4))
    again = tmp_path / "again.gsd"
    r = distill(_cfg(tiny_npz, again, fast, algo="dm", iterations=1, batch_real=4, init=str(first)))
    assert r.init["source"] == str(first)
    with pytest.raises(ConfigError, match="is a pixel set"):
        build_config(tiny_npz, flags={"algo": "dm", "ipc": 2, "init": str(first), "out": "x.gsd"})
