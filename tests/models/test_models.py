"""Model registry and shapes for every dataset shape gsdd uses (16×16×1, 32×32×3, 128×128×3)."""

import pytest
import torch
from torch.func import functional_call

from gsdd_cli.core.errors import ConfigError, UnknownNameError
from gsdd_cli.models import MODELS, default_convnet_depth, get_model, list_models

SHAPES = [(1, 16, 16), (3, 32, 32), (3, 128, 128)]
CROSS = ["alexnet", "vgg11", "resnet18", "resnet18bn", "vit"]


def test_registry_names():
    names = list_models()
    for n in ["convnet"] + [f"convnetd{d}" for d in range(1, 7)] + CROSS:
        assert n in names
    assert names == MODELS.names()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", ["convnet"] + CROSS)
def test_output_shape(name, shape):
    torch.manual_seed(0)
    c, h, w = shape
    net = get_model(name, c, 7, h, w)
    with torch.no_grad():
        x = torch.randn(2, c, h, w)
        out = net(x)
        emb = net.embed(x)
    assert out.shape == (2, 7)
    assert emb.shape[0] == 2 and emb.dim() == 2 and torch.isfinite(out).all()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("depth", range(1, 7))
def test_convnet_depths(depth, shape):
    c, h, w = shape
    if 2 ** depth > min(h, w):
        with pytest.raises(ConfigError, match=f"convnetd{depth}"):
            get_model(f"convnetd{depth}", c, 10, h, w)
        return
    net = get_model(f"convnetd{depth}", c, 10, h, w)
    x = torch.randn(2, c, h, w)
    with torch.no_grad():
        assert net(x).shape == (2, 10)
        assert net.embed(x).shape == (2, 128 * (h >> depth) * (w >> depth))


def test_default_depth_and_features():
    assert [default_convnet_depth(s, s) for s in (8, 16, 28, 32, 64, 128, 256)] == [3, 3, 3, 3, 4, 5, 6]
    # ConvNetD3 at 32 and ConvNetD5 at 128 both give 2 048 features (docs/method.md §6.1)
    assert get_model("convnet", 3, 10, 32, 32).feature_dim == 2048
    assert get_model("convnet", 3, 10, 128, 128).feature_dim == 2048
    net = get_model("convnet", 3, 10, 32, 32)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 3 and all(m.num_groups == 128 and m.affine for m in norms)


def test_unknown_model():
    with pytest.raises(UnknownNameError) as e:
        get_model("convnet3", 3, 10, 32, 32)
    assert "convnet" in str(e.value)


def _flat_params(net):
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    flat = torch.cat([p.detach().flatten() for p in net.parameters()]).requires_grad_(True)
    params, i = {}, 0
    for n, s in zip(names, shapes):
        params[n] = flat[i : i + s.numel()].view(s)
        i += s.numel()
    return flat, params


@pytest.mark.parametrize("name", ["convnet", "alexnet", "vgg11", "resnet18", "vit"])
def test_functional_call_with_flat_parameters(name):
    """Trajectory matching evaluates networks from a flat parameter vector."""
    torch.manual_seed(0)
    net = get_model(name, 1, 10, 16, 16).eval()
    x = torch.randn(2, 1, 16, 16)
    flat, params = _flat_params(net)
    out = functional_call(net, params, (x,))
    with torch.no_grad():
        assert torch.allclose(out, net(x), atol=1e-5)
    if name in ("convnet", "alexnet"):  # backward through the big nets is slow on CPU
        out.sum().backward()
        assert flat.grad is not None and torch.isfinite(flat.grad).all()


def test_convnet_second_order_unroll():
    """One differentiable SGD step on flat parameters, then a gradient through it (TM's pattern)."""
    torch.manual_seed(0)
    net = get_model("convnet", 1, 10, 16, 16)
    x, y = torch.randn(4, 1, 16, 16, requires_grad=True), torch.tensor([0, 1, 2, 3])
    flat, params = _flat_params(net)
    loss = torch.nn.functional.cross_entropy(functional_call(net, params, (x,)), y)
    (g,) = torch.autograd.grad(loss, flat, create_graph=True)
    stepped = flat - 0.01 * g
    (stepped.pow(2).sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
