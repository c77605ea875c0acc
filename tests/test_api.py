"""The library front door: gsdd_cli.load → DistilledSet (render, transform, dataset), lazy re-exports."""

import subprocess
import sys

import pytest
import torch

import gsdd_cli
from gsdd_cli.data import load_dataset
from gsdd_cli.core.errors import ConfigError, DataError, GsdFormatError
from gsdd_cli.sets.gaussians import GaussianImages
from gsdd_cli.sets.gsdfile import load_gsd, make_header, save_gsd


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GSDD_DATA_DIR", str(tmp_path / "data"))


def test_load_exposes_the_header(tmp_path, make_digits_gsd):
    s = gsdd_cli.load(make_digits_gsd(tmp_path / "d.gsd", syn_lr=0.02, algorithm="tm"))
    assert isinstance(s, gsdd_cli.DistilledSet)
    assert (s.ipc, s.gpc, s.num_classes, s.num_images, s.shape) == (1, 3, 10, 30, (1, 16, 16))
    assert s.syn_lr == 0.02 and s.algorithm == "tm" and s.class_names == [str(i) for i in range(10)]
    assert torch.equal(s.labels, torch.arange(10).repeat_interleave(3)) and s.labels.dtype == torch.int64
    assert "GPC 3 (IPC 1)" in repr(s)
    with pytest.raises(GsdFormatError, match="no such file"):
        gsdd_cli.load(tmp_path / "absent.gsd")


def test_render_matches_the_images_and_scales(tmp_path, make_digits_gsd, device):
    path = make_digits_gsd(tmp_path / "d.gsd")
    s = gsdd_cli.load(path, device=device)  # GSDD_TEST_DEVICE (tests/conftest.py)
    ref = load_gsd(path, device=device).images.render()
    px = s.render()
    assert px.dtype == torch.float32 and px.device.type == device and torch.equal(px, ref.detach())
    assert s.render(scale=2).shape == (30, 1, 32, 32)
    moved = gsdd_cli.load(path).render(device=device)  # a CPU-loaded set moves to the device to render
    assert moved.device.type == device and torch.equal(moved, px)
    with pytest.raises(ConfigError, match="scale"):
        s.render(scale=0)


def test_network_space_uses_the_recorded_transform(tmp_path, make_digits_gsd, device):
    s = gsdd_cli.load(make_digits_gsd(tmp_path / "d.gsd"), device=device)
    params = s.header.transform_params
    x, y = s.tensors("network")
    mean, std = (torch.tensor(params[k], device=device).view(1, -1, 1, 1) for k in ("mean", "std"))
    expect = (s.render() - mean) / std
    assert torch.allclose(x, expect, atol=1e-6) and torch.equal(y, s.labels)
    ds = s.dataset()
    assert isinstance(ds, torch.utils.data.TensorDataset) and len(ds) == 30
    assert torch.equal(ds.tensors[0], x)  # deterministic: same bits every call
    assert torch.equal(s.dataset("pixel").tensors[0], s.render())
    with pytest.raises(ConfigError, match="space"):
        s.dataset("latent")


def test_normalize_without_params_falls_back_to_the_dataset(tmp_path, make_digits_gsd):
    s = gsdd_cli.load(make_digits_gsd(tmp_path / "d.gsd", params=False))
    ds = load_dataset("digits")
    assert torch.allclose(s.transform.mean.flatten(), torch.tensor(ds.mean, dtype=torch.float32))


def test_zca_is_refitted_and_checked(tmp_path, make_digits_gsd, device):
    s = gsdd_cli.load(make_digits_gsd(tmp_path / "z.gsd", transform="zca"), device=device)
    tf = s.transform
    assert tf.kind == "zca" and tf.num_fit == load_dataset("digits").x_train.shape[0]
    x, _ = s.tensors("network")
    assert torch.allclose(x, tf(s.render()), atol=1e-5)
    # a header fitted on a different number of images (another copy of the dataset) is refused
    ds = load_dataset("digits")
    gi = GaussianImages.random(10, 1, 12, 1, 16, 16)
    header = make_header(gi, dataset="digits", class_names=ds.class_names, ipc=1, transform="zca",
                         transform_params={"kind": "zca", "eps": 0.1, "fitted_on": "digits", "num_images": 50000})
    bad = gsdd_cli.load(save_gsd(tmp_path / "bad.gsd", gi, header))
    with pytest.raises(DataError, match="50000"):
        bad.transform


def test_dataset_mismatch_is_a_data_error(tmp_path, make_digits_gsd):
    gi = GaussianImages.random(10, 1, 12, 1, 8, 8)
    header = make_header(gi, dataset="digits", class_names=[str(i) for i in range(10)], ipc=1, transform="zca")
    s = gsdd_cli.load(save_gsd(tmp_path / "small.gsd", gi, header))
    with pytest.raises(DataError, match="distilled for digits"):
        s.transform


def test_lazy_reexports():
    for name in ("GaussianImages", "rasterize", "make_plan", "recommended_gpc", "evaluate_gsd", "evaluate_set",
                 "EvalConfig", "export_set", "load", "DistilledSet", "fair_metrics"):
        assert name in gsdd_cli.__all__ and getattr(gsdd_cli, name) is not None
    assert gsdd_cli.make_plan(1, 16, 16, 1, 10, gpc=4).points == 18
    with pytest.raises(AttributeError):
        gsdd_cli.no_such_name
    import gsdd_cli.evaluate as module  # the submodule is not shadowed by a re-export
    assert hasattr(module, "evaluate_set")
    # importing the package alone does not import torch (cheap `import gsdd_cli`)
    code = "import sys, gsdd_cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
