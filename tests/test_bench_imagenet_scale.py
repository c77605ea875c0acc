"""bench/imagenet_scale.py runs on the CPU at a tiny size and projects hours by its stated formula."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.cpu_only(reason="a CPU smoke run of the benchmark (gpu_checks.sh runs it on the GPU)")
def test_runs_and_projects(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_in1k", ROOT / "bench" / "imagenet_scale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "r.json"
    assert mod.main(["--device", "cpu", "--batch", "1", "--reps", "1", "--warmup", "0", "--ipc", "1",
                     "--devices", "1,8", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    m, one = r["measured"], r["measured"]["per_ipc"]["1"]
    assert one["gpc"] * 1000 == one["images"] and one["points"] > 0
    h1, h8 = r["projected_hours"]["1"]["1_devices"], r["projected_hours"]["1"]["8_devices"]
    want = one["images"] * 1000 * one["recover_step_ms"] / 1 / 3.6e6
    assert h1["gaussian_recover_h"] == pytest.approx(want, rel=1e-3)
    assert h8["gaussian_recover_h"] == pytest.approx(want / 8, rel=1e-2)
    assert h1["pixel_eval_h"] == pytest.approx(300 * 1000 * m["eval_step_ms"] / 3.6e6, rel=1e-3)
