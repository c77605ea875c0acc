import math

import pytest
import torch

from gsdd_cli.sets.gaussians import CHOLESKY_OFFSET, GaussianImages, bf16_straight_through
from gsdd_cuda.reference import rasterize_reference


def small_set(quantize=True, **kw):
    return GaussianImages.random(3, 2, 5, 3, 16, 20, generator=torch.Generator().manual_seed(0), quantize=quantize, **kw)


def test_layout_and_labels():
    g = small_set()
    assert (g.num_images, g.points, g.channels, g.num_gaussians) == (6, 5, 3, 30)
    assert g.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert g.xy.dtype == torch.float32 and g.xy.shape == (30, 2)
    assert g.render().shape == (6, 3, 16, 20)
    assert g.payload_bytes() == 30 * 9 * 2


def test_bf16_forward_equals_quantised_copy_and_gradient_is_straight_through():
    g = small_set(quantize=True)
    with torch.no_grad():
        g.xy.add_(1e-3 * torch.randn_like(g.xy))  # values that bf16 must round
    q = GaussianImages(
        g.xy.detach().bfloat16().float(), g.cholesky.detach().bfloat16().float(),
        g.rgb.detach().bfloat16().float(), g.opacity.detach().bfloat16().float(),
        g.labels, 16, 20, quantize=False,
    )
    assert not torch.equal(g.xy.detach(), q.xy.detach())
    a, b = g.render(), q.render()
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    v = torch.randn_like(a)
    (a * v).sum().backward()
    (b * v).sum().backward()
    for name in ("xy", "cholesky", "rgb", "opacity"):
        torch.testing.assert_close(getattr(g, name).grad, getattr(q, name).grad, atol=1e-6, rtol=1e-6)


def test_straight_through_cast():
    x = torch.tensor([1.0 + 2**-10, 0.999], requires_grad=True)
    y = bf16_straight_through(x)
    assert y.tolist() == [1.0, 1.0]
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0]


def test_cholesky_offset_and_decoded():
    g = small_set(quantize=False)
    _, chol, _, _ = g.decoded()
    torch.testing.assert_close(chol, g.cholesky.detach() + torch.tensor(CHOLESKY_OFFSET))
    ref = rasterize_reference(*[t.detach() for t in g.decoded()], 6, 16, 20)
    torch.testing.assert_close(g.render().detach(), ref)


def test_subset_render_matches_full():
    g = small_set()
    full = g.render().detach()
    idx = torch.tensor([4, 1])
    torch.testing.assert_close(g.render(idx).detach(), full[idx])


def test_clipping():
    g = small_set()
    with torch.no_grad():
        g.xy[0] = torch.tensor([3.0, -2.0])
        g.xy[1] = torch.tensor([0.9995, -0.9995])
    g.clip_positions_()
    assert g.xy.abs().max().item() <= 0.999 + 1e-7
    assert g.xy[0].tolist() == pytest.approx([0.999, -0.999])
    f = small_set(quantize=False)
    with torch.no_grad():
        f.xy[0] = 5.0
    f.clip_positions_()
    assert f.xy.abs().max().item() == pytest.approx(0.9999)


def test_boundary_loss_zero_inside_grows_outside():
    g = small_set()
    with torch.no_grad():
        g.xy.zero_()
    assert g.boundary_loss().item() == 0.0
    values = []
    for u in (0.5, 0.9, 0.99, 0.999, 1.5):
        with torch.no_grad():
            g.xy.fill_(u)
        values.append(g.boundary_loss().item())
    assert all(math.isfinite(v) for v in values)
    assert values == sorted(values) and values[0] > 0
    assert values[3] == pytest.approx(-math.log(1 - 0.999**2), rel=1e-4)  # ≈ 6.2 at the clip limit
    g.boundary_loss().backward()
    assert torch.isfinite(g.xy.grad).all()


def test_render_at_double_resolution():
    g = small_set()
    one = g.render().detach()
    two = g.render(scale=2.0).detach()
    assert two.shape == (6, 3, 32, 40)
    down = torch.nn.functional.avg_pool2d(two, 2)
    # Same picture at twice the resolution (the pixel filter differs slightly in relative size).
    assert (down - one).abs().mean().item() < 0.12 * one.abs().mean().item()
    corr = torch.corrcoef(torch.stack([down.flatten(), one.flatten()]))[0, 1].item()
    assert corr > 0.98


def test_frozen_opacity_ablation():
    g = small_set(train_opacity=False)
    assert [grp["name"] for grp in g.param_groups(1e-3)] == ["xy", "cholesky", "rgb"]
    assert len(small_set().param_groups({"xy": 1, "cholesky": 2, "rgb": 3, "opacity": 4})) == 4


def test_shape_validation():
    with pytest.raises(ValueError):
        GaussianImages(torch.zeros(10, 2), torch.zeros(10, 3), torch.zeros(10, 3), torch.zeros(10, 1), torch.zeros(3), 8, 8)
    with pytest.raises(ValueError):
        GaussianImages(torch.zeros(10, 2), torch.zeros(10, 2), torch.zeros(10, 3), torch.zeros(10, 1), torch.zeros(2), 8, 8)
