"""Experts in batches (ExpertsConfig.batch_experts): K experts trained at once give the trajectories
of one-at-a-time training (same seeds, data order and DSA), and keep files, resume, Ctrl-C, on_step
and torchrun working.

Tolerances. float64 (library level): both trainers draw the same random numbers, so the only
difference is the order of float64 sums inside the kernels (grouped vs plain convolutions, ~1e-16
relative); the recorded snapshots are float32, so they agree to a few float32 ulps: atol 1e-6 on
parameters of size ≤ ~1. float32 (the real path, through the files): rounding differences of ~1e-7
per op, and a ReLU whose input sits within rounding of 0 can switch for one pixel, which moves a
parameter by ~1e-5 and then grows slowly; measured ≤ 2e-5 after 3 epochs on this data, so atol
1e-4 — while a different data order or augmentation changes parameters by more than 1e-3 per epoch
(checked below: another expert's trajectory is far outside the tolerance).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from gsdd_cli.distill import ExpertBuffers, make_experts_config, train_experts
from gsdd_cli.distill.experts import time_estimate
from gsdd_cli.distill.experts_batched import batch_refusal, train_batched, train_one
from gsdd_cli.models import get_model

ATOL_F64, ATOL_F32 = 1e-6, 1e-4
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small_npz(tmp_path_factory):
    """4 classes × 10 training images of 8×8 px (class c brightens quadrant c), 2 test images each."""
    rng = np.random.default_rng(1)

    def images(n, c):
        x = rng.uniform(0, 80, size=(n, 8, 8, 3))
        x[:, (c // 2) * 4:(c // 2) * 4 + 4, (c % 2) * 4:(c % 2) * 4 + 4, c % 3] += 170
        return np.clip(x, 0, 255).astype(np.uint8)

    path = tmp_path_factory.mktemp("bexp") / "small.npz"
    np.savez(path, x_train=np.concatenate([images(10, c) for c in range(4)]), y_train=np.repeat(np.arange(4), 10),
             x_test=np.concatenate([images(2, c) for c in range(4)]), y_test=np.repeat(np.arange(4), 2))
    return str(path)


def _cfg(npz, out, device, **kw):
    # TM's expert schedule: ExpertsConfig's defaults (SGD lr 0.01, no momentum, no decay, no lr decay,
    # full DSA); a batch of 16 gives 3 steps per epoch, the last one partial (40 = 16 + 16 + 8)
    return make_experts_config(dataset=npz, out=str(out), **{"num": 3, "epochs": 3, "batch": 16, "device": device,
                                                              **kw})


def _traj(folder, i):
    return load_file(str(Path(folder) / f"expert_{i:04d}.safetensors"))["trajectory"]


@pytest.fixture(scope="module")
def one_at_a_time(small_npz, tmp_path_factory, device):
    out = tmp_path_factory.mktemp("bexp") / "seq"
    steps = []
    train_experts(_cfg(small_npz, out, device), steps.append)
    return out, steps


def test_float64_batched_equals_one_at_a_time_with_dsa():
    """Library level in float64: data order, augmentation and initialisation are exactly shared."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 3, 8, 8, generator=g, dtype=torch.float64), torch.arange(40) % 4
    test_x, test_y = x[:8], y[:8]

    def make_net():
        return get_model("convnet", 3, 4, 8, 8).double()

    kw = dict(seed=5, epochs=3, batch=16, lr=0.01, momentum=0.0, weight_decay=0.0,
              dsa_strategy="color_crop_cutout_flip_scale_rotate")
    batched = train_batched([0, 1, 2], make_net, x, y, test_x, test_y, **kw)
    for i, (traj, acc) in enumerate(batched):
        ref, ref_acc = train_one(i, make_net, x, y, test_x, test_y, **kw)
        assert traj.shape == ref.shape == (4, sum(p.numel() for p in make_net().parameters()))
        assert torch.allclose(traj, ref, rtol=0, atol=ATOL_F64), float((traj - ref).abs().max())
        assert acc == ref_acc
    assert float((batched[0][0] - batched[1][0]).abs().max()) > 1e3 * ATOL_F64  # experts really differ


def test_float32_files_equal_one_at_a_time(small_npz, tmp_path, one_at_a_time, device):
    seq, seq_steps = one_at_a_time
    steps = []
    result = train_experts(_cfg(small_npz, tmp_path / "bat", device, batch_experts=3), steps.append)
    assert result.trained == [0, 1, 2]
    for i in range(3):
        a, b = _traj(seq, i), _traj(tmp_path / "bat", i)
        assert a.shape == b.shape == (4, ExpertBuffers(seq).param_count)
        assert torch.equal(a[0], b[0])  # the same initialisation, bit for bit
        assert torch.allclose(a, b, rtol=0, atol=ATOL_F32), (i, float((a - b).abs().max()))
    # the tolerance separates a different data order / augmentation / initialisation by far
    assert float((_traj(seq, 0)[1:] - _traj(tmp_path / "bat", 1)[1:]).abs().max()) > 10 * ATOL_F32
    # on_step: one ExpertStep per expert and epoch, with the meaning of one-at-a-time training
    assert sorted((s.expert, s.epoch) for s in steps) == sorted((s.expert, s.epoch) for s in seq_steps)
    assert [s.done for s in steps][-3:] == [1, 2, 3] and all(s.total == 3 for s in steps)
    for s, r in zip(sorted(steps, key=lambda s: (s.expert, s.epoch)), sorted(seq_steps, key=lambda s: (s.expert, s.epoch))):
        assert s.loss == pytest.approx(r.loss, abs=1e-4) and s.train_acc == pytest.approx(r.train_acc, abs=0.03)
        assert (s.test_acc is None) == (r.test_acc is None) and (s.epoch == 3) == (s.test_acc is not None)
    seq_m, bat_m = ExpertBuffers(seq).manifest, ExpertBuffers(tmp_path / "bat").manifest
    assert {k: v for k, v in seq_m.items()} == {k: v for k, v in bat_m.items()}


def test_interrupted_batch_leaves_no_partial_file_and_resumes(small_npz, tmp_path, one_at_a_time, device):
    """4 experts, 2 at a time: Ctrl-C in the second group's second epoch keeps the first group's
    files only; the next run skips them and trains the rest to the one-at-a-time trajectories."""
    out = tmp_path / "int"
    cfg = _cfg(small_npz, out, device, num=4, batch_experts=2)

    def stop(s):
        if s.expert >= 2 and s.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_experts(cfg, stop)
    assert sorted(p.name for p in out.glob("expert_*")) == ["expert_0000.safetensors", "expert_0001.safetensors"]
    assert not [p for p in out.iterdir() if p.name.startswith(".") or p.suffix not in (".safetensors", ".json")]
    steps = []
    result = train_experts(cfg, steps.append)
    assert result.skipped == [0, 1] and result.trained == [2, 3]
    assert [(s.expert, s.epoch, s.done) for s in steps[:2]] == [(0, 0, 1), (1, 0, 2)]
    for i in range(3):
        assert torch.allclose(_traj(out, i), _traj(one_at_a_time[0], i), rtol=0, atol=ATOL_F32)
    assert len(ExpertBuffers(out)) == 4


def test_unbatchable_network_trains_one_at_a_time_with_a_note(small_npz, tmp_path, device):
    assert batch_refusal(lambda: get_model("convnet", 3, 4, 8, 8), (3, 8, 8), torch.device("cpu")) is None
    why = batch_refusal(lambda: get_model("resnet18bn", 3, 4, 8, 8), (3, 8, 8), torch.device("cpu"))
    assert why and "BatchNorm" in why
    notes = []
    cfg = _cfg(small_npz, tmp_path / "bn", device, model="resnet18bn", num=2, epochs=1, batch_experts=2)
    result = train_experts(cfg, notify=notes.append)
    assert result.trained == [0, 1]
    assert [n for n in notes if "one at a time" in n] == [
        "experts: training one at a time, not 2 at once: resnet18bn " + why]


def test_time_estimate_counts_groups():
    line = time_estimate(2.0, 10, 5, torch.device("cpu"), at_once=4)  # 3 groups × 5 epochs × 2 s
    assert line.startswith("experts: the first epoch of 4 experts at once took 2.00 s on cpu; 10 expert(s)")
    assert line.endswith("about 30 s")
    assert "the first epoch took 2.00 s" in time_estimate(2.0, 10, 5, torch.device("cpu"))


def test_batch_experts_option_is_validated(small_npz, tmp_path):
    from gsdd_cli.core.errors import ConfigError

    with pytest.raises(ConfigError, match="batch_experts|batch-experts"):
        _cfg(small_npz, tmp_path / "x", "cpu", batch_experts=0)


@pytest.mark.slow
@pytest.mark.cpu_only(reason="two ranks share one machine through gloo; NCCL needs a GPU per rank")
def test_torchrun_two_ranks_batched_equal_one_at_a_time(small_npz, tmp_path, one_at_a_time):
    """Rank r trains experts r, r + 2 (as one batch of 2); the files match the one-process run."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "gsdd_cli",
           "experts", small_npz, "--out", str(out), "--num-experts", "3", "--epochs", "3", "--batch", "16",
           "--batch-experts", "2", "--device", "cpu", "-q"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    for i in range(3):
        assert torch.allclose(_traj(out, i), _traj(one_at_a_time[0], i), rtol=0, atol=ATOL_F32)
    assert len(ExpertBuffers(out)) == 3
