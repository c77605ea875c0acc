"""TM without --buffers: experts are trained into (and reused from) a cache folder, with one line."""

import json

from typer.testing import CliRunner

from gsdd_cli.cli import app
from gsdd_cli.distill import build_config, distill


def test_tm_without_buffers_trains_then_reuses_cached_experts(tiny_npz, tmp_path, device):
    data_dir = tmp_path / "data"
    flags = dict(algo="tm", ipc=1, param="pixel", num_experts=1, experts_epochs=2, syn_steps=2, batch_syn=4,
                 expert_epochs=1, max_start_epoch=1, iterations=1, device=device, data_dir=str(data_dir))
    messages = []
    r = distill(build_config(tiny_npz, flags={**flags, "out": str(tmp_path / "a.gsd")}), notify=messages.append)
    folder = data_dir / "experts"
    (cache,) = list(folder.iterdir())
    assert cache.name.startswith("tiny.npz-convnet-normalize-e2-") and r.config.buffers == str(cache)
    assert (cache / "expert_0000.safetensors").is_file()
    assert any(m.startswith("no --buffers: training 1 expert trajectories (2 epochs each) in") for m in messages)
    stamp = (cache / "expert_0000.safetensors").stat().st_mtime_ns
    messages.clear()
    distill(build_config(tiny_npz, flags={**flags, "out": str(tmp_path / "b.gsd")}), notify=messages.append)
    assert any(m.startswith("no --buffers: reusing 1 finished expert trajectories") for m in messages)
    assert (cache / "expert_0000.safetensors").stat().st_mtime_ns == stamp  # not retrained
    # another epoch count is another cache entry
    more = {**flags, "experts_epochs": 3, "out": str(tmp_path / "c.gsd")}
    assert distill(build_config(tiny_npz, flags=more)).config.buffers != str(cache)


def test_cli_tm_without_buffers_says_where_and_how_many(tiny_npz, tmp_path, device):
    out = tmp_path / "t.gsd"
    r = CliRunner().invoke(app, ["distill", tiny_npz, "--algo", "tm", "--ipc", "1", "--param", "pixel", "--out", str(out),
                                 "--num-experts", "1", "--experts-epochs", "2", "--syn-steps", "2", "--batch-syn", "4",
                                 "--expert-epochs", "1", "--max-start-epoch", "1", "--iterations", "1", "--device",
                                 device, "--data-dir", str(tmp_path / "data"), "--json", "-q"])
    assert r.exit_code == 0, r.output
    assert "no --buffers: training 1 expert trajectories (2 epochs each) in" in r.output
    summary = json.loads(r.output[r.output.index("{"):])
    assert summary["ipc"] == 1 and summary["param"] == "pixel" and summary["tm_memory"] in ("full", "checkpoint")
    assert "experts" in summary["buffers"]
