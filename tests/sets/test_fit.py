"""Init fitting (docs/method.md §4): PSNR rises, the fit correlates with the targets, image choice, CLI."""

import json

import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from gsdd_cli.cli import app
from gsdd_cli.sets.fit import FitConfig, default_init_lr, fit_gaussians, psnr_per_image, select_init_indices


def _targets(g=6):
    from gsdd_cli.data import load_dataset

    ds = load_dataset("digits")
    return ds.x_train[:g]


def test_fit_raises_psnr_and_correlates():
    targets = _targets()
    history = []
    cfg = FitConfig(steps=80, backend="reference", report_every=1)
    images = fit_gaussians(targets, 18, cfg, on_step=lambda s: history.append(s.psnr))
    assert len(history) == 80
    first, last = sum(history[:5]) / 5, sum(history[-5:]) / 5
    assert last > first + 5.0, (first, last)
    psnr = psnr_per_image(images, targets, backend="reference")
    assert psnr.shape == (6,) and bool((psnr > 20).all())
    with torch.no_grad():
        rendered = images.render(backend="reference")
    a = rendered.flatten() - rendered.mean()
    b = targets.flatten() - targets.mean()
    corr = float((a * b).sum() / (a.norm() * b.norm()))
    assert corr > 0.9, corr
    assert float(images.xy.detach().abs().max()) <= 0.999 + 1e-7  # clipped after every step


def test_fit_is_deterministic_and_lr_default():
    targets = _targets(2)
    cfg = FitConfig(steps=5, backend="reference")
    a = fit_gaussians(targets, 8, cfg)
    b = fit_gaussians(targets, 8, cfg)
    assert torch.equal(a.xy, b.xy) and torch.equal(a.rgb, b.rgb)
    assert default_init_lr(32, 32) == 0.1 and default_init_lr(128, 128) == 0.01


def test_select_init_indices():
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1, 2, 2, 2])
    first = select_init_indices(labels, 3, 2, first=True)
    assert first.tolist() == [0, 2, 1, 3, 8, 9]
    r1 = select_init_indices(labels, 3, 2, seed=0)
    r2 = select_init_indices(labels, 3, 2, seed=0)
    assert torch.equal(r1, r2)
    assert labels[r1].tolist() == [0, 0, 1, 1, 2, 2]  # class-major
    assert len(set(r1.tolist())) == 6  # without replacement
    from gsdd_cli.core.errors import DataError

    with pytest.raises(DataError):
        select_init_indices(labels, 3, 4)


def test_init_cli_writes_header_and_psnr_table(tmp_path, device, backend):
    out = tmp_path / "init.gsd"
    res = CliRunner().invoke(app, ["init", "digits", "--ipc", "1", "--steps", "15", "--out", str(out),
                                   "--backend", backend, "--device", device, "-q"])
    assert res.exit_code == 0, res.output
    assert "PSNR" in res.output and "mean" in res.output
    with safe_open(str(out), framework="pt") as f:
        md = f.metadata()
    assert md["algorithm"] == "init"
    cfg = json.loads(md["config"])
    assert len(cfg["init"]["indices"]) == 40 and cfg["init"]["selection"] == "random"
    assert cfg["budget"]["gpc"] == 4 and cfg["budget"]["points"] == 18
    assert cfg["init"]["steps"] == 15


def test_init_cli_errors():
    runner = CliRunner()
    res = runner.invoke(app, ["init", "digits", "--ipc", "1", "--gpc", "2", "--points", "4", "--out", "x.gsd"])
    assert res.exit_code == 3 and "at most one" in res.output
    res = runner.invoke(app, ["init", "nosuchset", "--ipc", "1", "--out", "x.gsd"])
    assert res.exit_code == 7 and "unknown dataset" in res.output
