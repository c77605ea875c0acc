"""Pixel sets: the PixelImages interface, the .gsd version-2 format, and info/render/eval on pixel files."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from typer.testing import CliRunner

from gsdd_cli.cli import app
from gsdd_cli.data.transforms import NormalizeTransform
from gsdd_cli.core.errors import GsdFormatError
from gsdd_cli.sets.gaussians import GaussianImages
from gsdd_cli.sets.gsdfile import load_gsd, make_header, read_header, save_gsd
from gsdd_cli.sets.pixels import PixelImages

NAMES = [str(i) for i in range(10)]


def _pixels(ipc=1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(10).repeat_interleave(ipc)
    return PixelImages(torch.rand(10 * ipc, 1, 16, 16, generator=gen), labels)


def _write(tmp_path, images=None, name="px.gsd", **fields):
    images = images or _pixels()
    path = tmp_path / name
    save_gsd(path, images, make_header(images, dataset="digits", class_names=NAMES, ipc=1, algorithm="dm",
                                       transform="normalize", **fields))
    return path, images


def test_pixel_images_interface_and_spaces():
    px = _pixels(ipc=2)
    assert (px.num_images, px.channels, px.height, px.width) == (20, 1, 16, 16)
    assert px.parameterization == "pixel" and px.payload_bytes() == 20 * 16 * 16 * 4
    assert px.render(torch.tensor([3, 5])).shape == (2, 1, 16, 16)
    assert px.render(scale=2).shape == (20, 1, 32, 32)
    assert float(px.boundary_loss()) == 0.0 and px.dead_fraction() is None
    tf = NormalizeTransform((0.3,), (0.2,))
    net = px.in_space(tf)  # trainable values in network space, render still in pixel space
    torch.testing.assert_close(net.values.detach(), (px.values.detach() - 0.3) / 0.2)
    torch.testing.assert_close(net.render().detach(), px.render().detach(), rtol=1e-6, atol=1e-6)
    idx = torch.tensor([1, 4])
    assert torch.equal(net.network_images(idx, tf), net.values[idx])  # no round trip through pixels
    torch.testing.assert_close(px.network_images(idx, tf), tf(px.values[idx]))
    torch.testing.assert_close(net.stored_tensors()["pixels"], px.values.detach(), rtol=1e-6, atol=1e-6)
    net.render().sum().backward()
    assert net.values.grad is not None


def test_pixel_gsd_round_trip_exact(tmp_path):
    path, px = _write(tmp_path)
    h = read_header(path)
    assert (h.parameterization, h.format_version, h.gpc, h.points_per_image) == ("pixel", 2, 1, None)
    assert h.payload_bytes == h.budget_bytes == 10 * 16 * 16 * 4  # IPC fp32 images meet the budget exactly
    gsd = load_gsd(path)
    assert isinstance(gsd.images, PixelImages)
    assert torch.equal(gsd.images.render(), px.render())  # fp32 storage: bit-exact
    with safe_open(str(path), framework="pt") as f:
        assert set(f.keys()) == {"pixels", "labels"} and f.get_tensor("pixels").dtype == torch.float32


def test_gaussian_files_stay_version_1(tmp_path):
    g = GaussianImages.random(num_classes=10, gpc=2, points=8, channels=1, height=16, width=16)
    path = tmp_path / "g.gsd"
    save_gsd(path, g, make_header(g, dataset="digits", class_names=NAMES, ipc=1))
    with safe_open(str(path), framework="pt") as f:
        md = f.metadata()
    assert md["format_version"] == "1" and md["parameterization"] == "gaussian"
    md.pop("parameterization")  # a file written before pixel sets existed
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(path), metadata=md)
    assert load_gsd(path).header.parameterization == "gaussian"


def _rewrite(path, meta=None, tensors=None):
    with safe_open(str(path), framework="pt") as f:
        md, ts = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    if meta:
        meta(md)
    if tensors:
        tensors(ts)
    save_file(ts, str(path), metadata=md)


@pytest.mark.parametrize("case,meta,tensors,message", [
    ("version 1", lambda m: m.update(format_version="1"), None, "format_version"),
    ("points", lambda m: m.update(points_per_image="5"), None, "points_per_image applies to Gaussian sets"),
    ("payload", lambda m: m.update(payload_bytes="12"), None, "images·C·H·W·4"),
    ("over budget", lambda m: m.update(gpc="2", payload_bytes="20480"), None, "labels|exceeds the budget"),
    ("missing", None, lambda t: t.pop("pixels"), "missing tensor"),
    ("dtype", None, lambda t: t.update(pixels=t["pixels"].half()), "expected float32"),
    ("shape", None, lambda t: t.update(pixels=t["pixels"][:, :, :8].contiguous()), "has shape"),
    ("nan", None, lambda t: t["pixels"].view(-1).__setitem__(3, float("nan")), "NaN or Inf"),
    ("labels", None, lambda t: t.update(labels=t["labels"].flip(0).contiguous()), "class-major"),
])
def test_bad_pixel_files_are_refused(tmp_path, case, meta, tensors, message):
    path, _ = _write(tmp_path)
    _rewrite(path, meta, tensors)
    with pytest.raises(GsdFormatError, match=message):
        load_gsd(path)


def test_pixel_file_through_info_render_eval(tmp_path, device):
    path, px = _write(tmp_path)
    runner = CliRunner()
    r = runner.invoke(app, ["info", str(path), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["parameterization"] == "pixel" and info["utilisation"] == 1.0 and info["dead_gaussians"] is None
    r = runner.invoke(app, ["info", str(path)])
    assert r.exit_code == 0 and "pixel" in r.output and "points_per_image" not in r.output
    r = runner.invoke(app, ["render", str(path), "--png", str(tmp_path / "png"), "--grid", str(tmp_path / "g.png"),
                            "--scale", "2", "-q"])
    assert r.exit_code == 0, r.output
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert len(pngs) == 10 and (tmp_path / "g.png").is_file()
    from PIL import Image

    first = torch.from_numpy(np.asarray(Image.open(pngs[0]), dtype=np.float32))
    expect = px.render(scale=2)[0, 0].clamp(0, 1).mul(255).round()
    assert torch.equal(first, expect)
    r = runner.invoke(app, ["eval", str(path), "--runs", "1", "--epochs", "2", "--device", device, "--json", "-q"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["num_train_images"] == 10 and 0 <= res["mean"] <= 1
