"""Kill and resume: a `gsdd distill` process killed with SIGKILL mid-run (no handler runs) continues from
its last --save-every checkpoint with --resume and ends with the tensors of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

ITERATIONS = 60  # ≈ 0.09 s each on a 2-core CPU: the kill lands mid-run with room to spare


def _tensors(path):
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _args(out, device, backend):
    return ["distill", "digits", "--algo", "dm", "--ipc", "1", "--iterations", str(ITERATIONS), "--batch-real", "8",
            "--init-steps", "5", "--save-every", "1", "--device", device, "--backend", backend, "--out", str(out),
            "-q"]


def _iterations_logged(log: Path) -> int:
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines() if line.strip() and json.loads(line)["event"] == "iter")


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_then_resume_is_bit_identical(tmp_path, device, backend):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    full = tmp_path / "full.gsd"
    done = subprocess.run([sys.executable, "-m", "gsdd_cli", *_args(full, device, backend)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]

    part = tmp_path / "part.gsd"
    ckpt, log = Path(f"{part}.ckpt"), Path(f"{part}.log.jsonl")
    proc = subprocess.Popen([sys.executable, "-m", "gsdd_cli", *_args(part, device, backend)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            if ckpt.exists() and _iterations_logged(log) >= 3:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    killed_at = _iterations_logged(log)
    assert ckpt.exists() and not part.exists() and 3 <= killed_at < ITERATIONS

    resumed = subprocess.run([sys.executable, "-m", "gsdd_cli", *_args(part, device, backend), "--resume"], env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert part.exists() and not ckpt.exists()
    a, b = _tensors(full), _tensors(part)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
