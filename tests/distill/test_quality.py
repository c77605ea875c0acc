"""End to end on digits: the distilled IPC-1 set beats random real images of the same budget; torchrun."""

import os
import subprocess
import sys
import warnings

import pytest

from gsdd_cli.distill import build_config, distill
from gsdd_cli.evaluate import EvalConfig, evaluate_baseline, evaluate_gsd

MARGIN = 0.10  # measured: DM ≈ 0.93 vs random-real ≈ 0.67 (100 epochs, 2 runs each), see docs/distill.md


@pytest.mark.slow
def test_dm_digits_beats_random_real(tmp_path):
    out = tmp_path / "digits.gsd"
    cfg = build_config("digits", flags={"algo": "dm", "ipc": 1, "out": str(out), "device": "cpu",
                                        "backend": "reference"})  # the README's defaults
    distill(cfg)
    ecfg = EvalConfig(epochs=100, runs=2, device="cpu")
    distilled = evaluate_gsd(out, ecfg, backend="reference")
    baseline = evaluate_baseline("digits", "random-real", ipc=1, cfg=ecfg)
    print(f"distilled {distilled.mean:.4f} ± {distilled.std:.4f}, random-real {baseline.mean:.4f} ± {baseline.std:.4f}")
    assert distilled.mean >= baseline.mean + MARGIN, (distilled.mean, baseline.mean)


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp.gsd"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "gsdd_cli",
           "distill", "digits", "--algo", "dc", "--ipc", "1", "--iterations", "2", "--init-steps", "5",
           "--batch-real", "8", "--device", "cpu", "--backend", "reference", "--out", str(out), "-q"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if res.returncode != 0 and "terminate called without an active exception" in res.stderr and out.exists():
        # Known rare teardown abort of a gloo rank after the run completed (seen about 1 in 10 runs
        # under heavy CPU load, never without load); the result file was written. Run once more and
        # require a clean exit then.
        warnings.warn("torchrun rank aborted at teardown after finishing; retrying once")
        out.unlink()
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-6000:]
    assert out.exists()
    assert res.stdout.count("DC distillation") == 1  # only rank 0 reports
