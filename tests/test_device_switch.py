"""The GSDD_TEST_DEVICE switch of tests/conftest.py, run on a throw-away test folder: cpu by default,
a usage error (exit 4) for cuda without a GPU or an unknown device, cpu_only tests skipped with their
reason on cuda (a GPU is faked for that one run), the per-test JSON lines of GSDD_TEST_REPORT."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

CONFTEST = Path(__file__).with_name("conftest.py")

PROBE = '''
import pytest

def test_device(device, backend):
    print(f"DEVICE={device} BACKEND={backend}")

@pytest.mark.cpu_only(reason="reads CPU things")
def test_cpu_only():
    pass
'''

FAKE_GPU = '''
import torch
torch.cuda.is_available = lambda: True
torch.cuda.get_device_name = lambda index=0: "fake GPU"
'''


def _pytest(folder, env_device, *extra):
    env = {k: v for k, v in os.environ.items() if k not in ("GSDD_TEST_DEVICE", "GSDD_TEST_REPORT")}
    env["PYTHONPATH"] = os.pathsep.join([str(folder), *sys.path])
    if env_device is not None:
        env["GSDD_TEST_DEVICE"] = env_device
    env["GSDD_TEST_REPORT"] = str(folder / "report.jsonl")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-s", "-p", "no:cacheprovider", *extra,
                           str(folder / "test_probe.py")], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def folder(tmp_path):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(PROBE)
    (tmp_path / "fakegpu.py").write_text(FAKE_GPU)
    return tmp_path


@pytest.mark.cpu_only(reason="runs the switch itself on CPU (and fakes a GPU)")
def test_cpu_is_the_default_and_runs_everything(folder):
    res = _pytest(folder, None)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "DEVICE=cpu BACKEND=reference" in res.stdout and "2 passed" in res.stdout
    rows = [json.loads(line) for line in (folder / "report.jsonl").read_text().splitlines()]
    assert [(r["test"].split("::")[1], r["outcome"], r["device"]) for r in rows] == [
        ("test_device", "passed", "cpu"), ("test_cpu_only", "passed", "cpu")]


@pytest.mark.cpu_only(reason="needs a machine without a GPU")
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("value, needle", [("cuda", "refusing to run the suite on the CPU"),
                                           ("tpu", "use one of cpu, cuda")])
def test_cuda_without_a_gpu_or_a_bad_name_stops_the_session(folder, value, needle):
    res = _pytest(folder, value)
    assert res.returncode == 4 and needle in res.stderr, res.stdout + res.stderr
    assert not (folder / "report.jsonl").exists()  # nothing ran


@pytest.mark.cpu_only(reason="fakes a GPU")
def test_cuda_skips_cpu_only_tests_with_their_reason(folder):
    res = _pytest(folder, "cuda", "-p", "fakegpu")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "DEVICE=cuda BACKEND=native" in res.stdout and "1 passed, 1 skipped" in res.stdout
    assert "CPU-only: reads CPU things" in res.stdout
    skipped = [json.loads(line) for line in (folder / "report.jsonl").read_text().splitlines()][-1]
    assert skipped["outcome"] == "skipped" and skipped["reason"].endswith("CPU-only: reads CPU things")


@pytest.mark.cpu_only(reason="runs the switch itself on CPU")
def test_cpu_only_needs_a_reason(folder):
    (folder / "test_probe.py").write_text("import pytest\n\n@pytest.mark.cpu_only\ndef test_x():\n    pass\n")
    res = _pytest(folder, None)
    assert res.returncode == 4 and "needs reason=" in res.stderr, res.stdout + res.stderr
