"""Transforms: ZCA (kornia-style, eps 0.1, cached) and per-channel normalisation."""

import json

import pytest
import torch

from gsdd_cli.data import Dataset, load_dataset, make_transform
from gsdd_cli.data.transforms import ZCATransform, fit_zca, zca_cache_path, _ZCA_MEMORY
from gsdd_cli.core.errors import ConfigError


def _synthetic(n=400, c=2, h=3, w=3, seed=0, cache_dir=None):
    g = torch.Generator().manual_seed(seed)
    d = c * h * w
    mix = torch.eye(d) + torch.randn(d, d, generator=g) * 0.2  # well conditioned, correlated
    x = (torch.randn(n, d, generator=g) @ mix).reshape(n, c, h, w) * 0.2 + 0.5
    y = torch.arange(n) % 2
    return Dataset(f"synthetic{seed}", x.float(), y, x[:50].float(), y[:50], ["a", "b"], cache_dir=cache_dir)


def test_zca_round_trip_and_whitening():
    ds = _synthetic()
    zca = ZCATransform.fit(ds.x_train, eps=1e-6)
    y = zca(ds.x_train)
    assert y.shape == ds.x_train.shape
    assert torch.allclose(zca.inverse(y), ds.x_train, atol=1e-4)
    cov = torch.cov(y.flatten(1).double().T)
    assert torch.allclose(cov, torch.eye(cov.shape[0], dtype=torch.float64), atol=2e-3)


def test_zca_eps_shrinks_spectrum():
    ds = _synthetic(seed=1)
    flat = ds.x_train.flatten(1).double()
    cov = torch.cov(flat.T)
    s = torch.linalg.eigvalsh(cov)
    zca = make_transform(ds, "zca")  # eps 0.1 (docs/method.md §7)
    assert zca.eps == 0.1
    white = torch.cov(zca(ds.x_train).flatten(1).double().T)
    assert torch.allclose(torch.linalg.eigvalsh(white), (s / (s + 0.1)).sort().values, atol=1e-4)
    assert torch.allclose(zca.inverse(zca(ds.x_train)), ds.x_train, atol=1e-4)


def test_zca_is_differentiable():
    ds = _synthetic(seed=2)
    zca = make_transform(ds, "zca")
    x = ds.x_train[:4].clone().requires_grad_(True)
    zca(x).pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_zca_disk_cache(tmp_path):
    ds = _synthetic(seed=3, cache_dir=tmp_path)
    first = make_transform(ds, "zca")
    path = zca_cache_path(ds)
    assert path.is_file() and path.parent == tmp_path / "zca" and "-n400-" in path.name
    _ZCA_MEMORY.clear()
    again = fit_zca(ds)  # read back from disk
    assert torch.equal(again.matrix, first.matrix)
    json.dumps(first.describe())
    assert first.describe()["kind"] == "zca" and first.describe()["eps"] == 0.1


def test_normalize_and_none():
    ds = load_dataset("digits")
    norm = make_transform(ds, "normalize")
    y = norm(ds.x_train[:8])
    assert torch.allclose(norm.inverse(y), ds.x_train[:8], atol=1e-6)
    d = norm.describe()
    json.dumps(d)
    assert d["kind"] == "normalize" and d["mean"] == [round(ds.mean[0], 6)]
    ident = make_transform(ds, "none")
    assert torch.equal(ident(ds.x_train[:2]), ds.x_train[:2]) and ident.describe() == {"kind": "none"}
    with pytest.raises(ConfigError):
        make_transform(ds, "pca")


def test_cifar_constants_in_normalize(tmp_path):
    ds = _synthetic(c=3, h=2, w=2)
    ds.mean, ds.std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    d = make_transform(ds, "normalize").describe()
    assert d["mean"] == [0.4914, 0.4822, 0.4465] and d["std"] == [0.2023, 0.1994, 0.201]


def test_zca_refuses_huge_images():
    x = torch.zeros(2, 3, 128, 128)
    with pytest.raises(ConfigError, match="ZCA"):
        ZCATransform.fit(x)
