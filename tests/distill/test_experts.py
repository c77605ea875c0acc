"""Expert trajectories: files, manifest, resume (skip complete experts), incompatible folders."""

import json

import pytest
from safetensors import safe_open

from gsdd_cli.distill import ExpertBuffers, make_experts_config, train_experts
from gsdd_cli.core.errors import ConfigError


def test_expert_files_and_manifest(tiny_experts):
    manifest = json.loads((__import__("pathlib").Path(tiny_experts) / "manifest.json").read_text())
    assert manifest["epochs"] == 2 and len(manifest["experts"]) == 2
    assert manifest["transform"] == "normalize" and manifest["lr"] == 0.01 and manifest["momentum"] == 0.0
    with safe_open(f"{tiny_experts}/expert_0000.safetensors", framework="pt") as f:
        traj = f.get_tensor("trajectory")
    assert traj.shape == (3, manifest["param_count"])  # init + one snapshot per epoch
    assert not (traj[0] == traj[1]).all()
    buf = ExpertBuffers(tiny_experts)
    assert len(buf) == 2 and buf.get(1, 2).shape == (manifest["param_count"],)


def test_experts_resume_skips_complete_ones(tiny_npz, tiny_experts, device):
    cfg = make_experts_config(dataset=tiny_npz, out=tiny_experts, num=2, epochs=2, batch=16, device=device)
    result = train_experts(cfg)
    assert result.trained == [] and result.skipped == [0, 1]
    bad = make_experts_config(dataset=tiny_npz, out=tiny_experts, num=2, epochs=3, batch=16, device=device)
    with pytest.raises(ConfigError, match="epochs"):
        train_experts(bad)


def test_buffers_folder_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        ExpertBuffers(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="manifest"):
        ExpertBuffers(tmp_path)
