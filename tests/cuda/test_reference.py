"""The pure-PyTorch reference renderer against closed forms, a naive loop oracle and gradcheck."""

import itertools
import math

import pytest
import torch

from gsdd_cuda import rasterize
from gsdd_cuda.reference import ALPHA_MIN, TILE, rasterize_reference


def naive_render(xy, chol, rgb, opacity, num_images, height, width, antialias=True):
    """Loops over images, pixels, sub-samples and Gaussians, straight from docs/method.md §2 (slow, obvious)."""
    n = xy.shape[0] // num_images
    offs = [0.25, 0.75] if antialias else [0.5]
    s = 1 / 12 if antialias else 0.0
    out = torch.zeros(num_images, rgb.shape[1], height, width, dtype=torch.float64)
    tiles_x, tiles_y = math.ceil(width / TILE), math.ceil(height / TILE)
    for b in range(num_images):
        for g in range(b * n, (b + 1) * n):
            px, py = width / 2 * (xy[g, 0].item() + 1), height / 2 * (xy[g, 1].item() + 1)
            l11, l21, l22 = chol[g].tolist()
            a = max(l11 * l11 + s, 1 / 16)
            c = max(l21 * l21 + l22 * l22 + s, 1 / 16)
            bb = l11 * l21
            det = a * c - bb * bb
            q11, q12, q22 = c / det, -bb / det, a / det
            half = (a + c) / 2
            r = math.ceil(3 * math.sqrt(half + math.sqrt(max(0.1, half * half - det))))
            txmin = min(max(int((px - r) / TILE), 0), tiles_x)
            txmax = min(max(int((px + r) / TILE + 1), 0), tiles_x)
            tymin = min(max(int((py - r) / TILE), 0), tiles_y)
            tymax = min(max(int((py + r) / TILE + 1), 0), tiles_y)
            for i in range(height):
                for j in range(width):
                    if not (txmin <= j // TILE < txmax and tymin <= i // TILE < tymax):
                        continue
                    acc = 0.0
                    for oy, ox in itertools.product(offs, offs):
                        dx, dy = px - (j + ox), py - (i + oy)
                        sigma = 0.5 * (q11 * dx * dx + q22 * dy * dy) + q12 * dx * dy
                        if sigma < 0:
                            continue
                        w = min(1.0, opacity[g, 0].item() * math.exp(-sigma))
                        if w < ALPHA_MIN:
                            continue
                        acc += w
                    out[b, :, i, j] += acc / len(offs) ** 2 * rgb[g].double()
    return out


def random_set(gen, num_images, n, channels=3, spread=1.2, big=False, dtype=torch.float64):
    total = num_images * n
    xy = (torch.rand(total, 2, generator=gen, dtype=dtype) * 2 - 1) * spread
    chol = torch.rand(total, 3, generator=gen, dtype=dtype) * (6.0 if big else 2.0) + 0.3
    chol[:, 1] -= 0.5 * chol[:, 1].mean()
    rgb = torch.rand(total, channels, generator=gen, dtype=dtype)
    opacity = torch.rand(total, 1, generator=gen, dtype=dtype) * 1.4 - 0.1
    return xy, chol, rgb, opacity


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("hw", [(20, 18), (33, 17)])
def test_matches_naive_loop_oracle(gen, antialias, hw):
    h, w = hw
    xy, chol, rgb, opacity = random_set(gen, 2, 6, big=True)
    ref = rasterize_reference(xy, chol, rgb, opacity, 2, h, w, antialias)
    naive = naive_render(xy, chol, rgb, opacity, 2, h, w, antialias)
    assert ref.shape == (2, 3, h, w)
    torch.testing.assert_close(ref, naive, atol=1e-12, rtol=0)


def test_single_isotropic_gaussian_centre_and_one_sigma():
    # Gaussian centred exactly on pixel (16, 16)'s centre: p = 16.5 px → x = 16.5/16 − 1.
    c = 16.5 / 16 - 1
    xy = torch.tensor([[c, c]], dtype=torch.float64)
    chol = torch.tensor([[2.0, 0.0, 2.0]], dtype=torch.float64)  # Σ = 4·I, σ = 2 px
    rgb = torch.tensor([[1.0, 0.5, 0.0]], dtype=torch.float64)
    op = torch.ones(1, 1, dtype=torch.float64)
    img = rasterize_reference(xy, chol, rgb, op, 1, 32, 32, antialias=False)
    assert img[0, 0, 16, 16].item() == pytest.approx(1.0, abs=1e-12)
    assert img[0, 0, 16, 18].item() == pytest.approx(math.exp(-0.5), abs=1e-12)  # 1σ = 2 px right
    assert img[0, 1, 18, 16].item() == pytest.approx(0.5 * math.exp(-0.5), abs=1e-12)  # 1σ down, green
    # With anti-aliasing: Σ' = (4 + 1/12)·I and the mean over the 2×2 sub-samples (docs/method.md Appendix A.2).
    img = rasterize_reference(xy, chol, rgb, op, 1, 32, 32, antialias=True)
    var = 4 + 1 / 12
    for (i, j) in [(16, 16), (16, 18)]:
        expect = sum(
            math.exp(-(((j + ox) - 16.5) ** 2 + ((i + oy) - 16.5) ** 2) / (2 * var))
            for ox in (0.25, 0.75) for oy in (0.25, 0.75)
        ) / 4
        assert img[0, 0, i, j].item() == pytest.approx(expect, abs=1e-12)


def _box_filtered_truth(xy, chol, height, width, factor=16):
    """Ideal image: the unfiltered, untruncated Gaussian averaged over a factor×factor grid per pixel."""
    offs = (torch.arange(factor, dtype=torch.float64) + 0.5) / factor
    out = torch.zeros(xy.shape[0], height, width, dtype=torch.float64)
    jj = torch.arange(width, dtype=torch.float64)
    ii = torch.arange(height, dtype=torch.float64)
    for g in range(xy.shape[0]):
        px, py = width / 2 * (xy[g, 0] + 1), height / 2 * (xy[g, 1] + 1)
        l11, l21, l22 = chol[g]
        cov = torch.tensor([[l11 * l11, l11 * l21], [l11 * l21, l21 * l21 + l22 * l22]], dtype=torch.float64)
        q = torch.linalg.inv(cov)
        sx = (jj[None, :, None] + offs[None, None, :]).expand(height, width, factor)
        sy = (ii[:, None, None] + offs[None, None, :]).expand(height, width, factor)
        dx = (px - sx)[..., None, :].expand(height, width, factor, factor)
        dy = (py - sy)[..., :, None].expand(height, width, factor, factor)
        sig = 0.5 * (q[0, 0] * dx * dx + q[1, 1] * dy * dy) + q[0, 1] * dx * dy
        out[g] = torch.exp(-sig).mean(dim=(-1, -2))
    return out


def test_antialiasing_reduces_error_for_subpixel_gaussians(gen):
    """Sub-pixel Gaussians (σ = 0.3 px) at random sub-pixel positions vs a 16×16-supersampled truth.

    Paper eq. 9 widens Σ by 1/12 px² without opacity compensation, so it adds energy to tiny
    Gaussians; we therefore compare the *shape* (per-image least-squares gain, then MSE) and the
    aliasing proper: how much a Gaussian's total intensity depends on where inside a pixel it sits.
    """
    g = 24
    xy = torch.rand(g, 2, generator=gen, dtype=torch.float64) * 1.2 - 0.6
    chol = torch.tensor([[0.3, 0.0, 0.3]], dtype=torch.float64).repeat(g, 1)
    ones = torch.ones(g, 1, dtype=torch.float64)
    truth = _box_filtered_truth(xy, chol, 16, 16)
    errors, wobble = {}, {}
    for aa in (True, False):
        img = rasterize_reference(xy, chol, ones, ones, g, 16, 16, antialias=aa)[:, 0]
        gain = (img * truth).sum((1, 2)) / (img * img).sum((1, 2))
        errors[aa] = (gain[:, None, None] * img - truth).square().mean().item()
        mass = img.sum((1, 2))
        wobble[aa] = (mass.std() / mass.mean()).item()
    assert errors[True] < 0.7 * errors[False], errors
    assert wobble[True] < 0.01 * wobble[False], wobble


def test_gradcheck_float64(gen):
    xy, chol, rgb, opacity = random_set(gen, 2, 3, channels=2, spread=0.8, big=True)
    opacity = opacity.clamp(0.2, 0.9)  # away from the clamp at 1 and the 1/255 cut-off edges
    inputs = [t.clone().requires_grad_(True) for t in (xy, chol, rgb, opacity)]

    def f(a, b, c, d):
        return rasterize_reference(a, b, c, d, 2, 12, 10, antialias=True)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)
    assert torch.autograd.gradcheck(
        lambda a, b, c, d: rasterize_reference(a, b, c, d, 2, 12, 10, antialias=False),
        inputs, eps=1e-6, atol=1e-6, rtol=1e-4,
    )


def test_clamp_at_one_has_exact_zero_gradient():
    xy = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    chol = torch.tensor([[3.0, 0.0, 3.0]], dtype=torch.float64)
    rgb = torch.ones(1, 1, dtype=torch.float64)
    op = torch.tensor([[5.0]], dtype=torch.float64, requires_grad=True)
    img = rasterize_reference(xy, chol, rgb, op, 1, 4, 4)
    assert torch.allclose(img, torch.ones_like(img))  # every sample clamped at 1
    img.sum().backward()
    assert op.grad.item() == 0.0 and xy.grad.abs().max().item() == 0.0


def test_chunking_and_batching_do_not_change_results(gen):
    xy, chol, rgb, opacity = random_set(gen, 5, 7, dtype=torch.float32)
    params = [t.clone().requires_grad_(True) for t in (xy, chol, rgb, opacity)]
    full = rasterize_reference(*params, 5, 24, 20)
    v = torch.randn(full.shape, generator=gen)
    grads_full = torch.autograd.grad((full * v).sum(), params)
    chunked = rasterize_reference(*params, 5, 24, 20, chunk_elements=1)  # one image per chunk
    grads_chunked = torch.autograd.grad((chunked * v).sum(), params)
    torch.testing.assert_close(chunked, full, atol=1e-6, rtol=0)
    for a, b in zip(grads_chunked, grads_full):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # Batch independence: each image rendered on its own equals its slice of the batch.
    for b in range(5):
        rows = slice(b * 7, (b + 1) * 7)
        one = rasterize_reference(xy[rows], chol[rows], rgb[rows], opacity[rows], 1, 24, 20)
        torch.testing.assert_close(one[0], full[b].detach(), atol=1e-6, rtol=0)


def test_order_independence(gen):
    xy, chol, rgb, opacity = random_set(gen, 1, 30, dtype=torch.float32)
    perm = torch.randperm(30, generator=gen)
    a = rasterize_reference(xy, chol, rgb, opacity, 1, 32, 32)
    b = rasterize_reference(xy[perm], chol[perm], rgb[perm], opacity[perm], 1, 32, 32)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_offscreen_and_zero_opacity_render_nothing():
    xy = torch.tensor([[5.0, 5.0], [0.0, 0.0]])
    chol = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
    rgb = torch.ones(2, 3)
    op = torch.tensor([[1.0], [0.0]])
    assert rasterize_reference(xy, chol, rgb, op, 1, 16, 16).abs().max().item() == 0.0
    assert rasterize_reference(xy, chol, rgb, op, 2, 16, 16).shape == (2, 3, 16, 16)  # N = 1


def test_entry_point_backend_selection(gen, monkeypatch):
    """Explicit 'reference' is the oracle itself; explicit 'cuda' on CPU tensors and unknown names
    are errors (GSDD_BACKEND too). 'auto' picks the native kernels (tests/cuda/test_cpu_kernels.py)."""
    xy, chol, rgb, opacity = random_set(gen, 2, 4, dtype=torch.float32)
    a = rasterize(xy, chol, rgb, opacity, 2, 16, 16, backend="reference")
    b = rasterize_reference(xy, chol, rgb, opacity, 2, 16, 16)
    assert torch.equal(a, b)
    from gsdd_cli.core.errors import ConfigError, CudaUnavailableError

    with pytest.raises(CudaUnavailableError):
        rasterize(xy, chol, rgb, opacity, 2, 16, 16, backend="cuda")
    with pytest.raises(ConfigError):
        rasterize(xy, chol, rgb, opacity, 2, 16, 16, backend="opengl")
    monkeypatch.setenv("GSDD_BACKEND", "cuda")
    with pytest.raises(CudaUnavailableError):
        rasterize(xy, chol, rgb, opacity, 2, 16, 16)
    monkeypatch.setenv("GSDD_BACKEND", "reference")
    assert torch.equal(rasterize(xy, chol, rgb, opacity, 2, 16, 16), b)


def test_clamp_boundaries_pass_no_gradient():
    """The reference's convention, independent of the torch release (which changed it): at o·e = 1
    exactly and at Σ'11 = 1/16 exactly the gradient of the clamp is 0."""
    p = 7.5 / 8 - 1  # the centre sample of pixel (7, 7) without antialiasing: σ = 0 there
    xy = torch.tensor([[p, p]], dtype=torch.float64, requires_grad=True)
    chol = torch.tensor([[0.25, 0.0, 2.0]], dtype=torch.float64, requires_grad=True)  # L11² = 1/16
    rgb = torch.ones(1, 1, dtype=torch.float64)
    op = torch.ones(1, 1, dtype=torch.float64, requires_grad=True)
    v = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    v[0, 0, 7, 7] = 1.0
    img = rasterize_reference(xy, chol, rgb, op, 1, 16, 16, antialias=False)
    assert img[0, 0, 7, 7].item() == 1.0
    g_xy, g_chol, g_op = torch.autograd.grad(img, (xy, chol, op), v)
    assert g_op.item() == 0.0 and torch.all(g_xy == 0)
    below = torch.tensor([[0.5]], dtype=torch.float64, requires_grad=True)
    img = rasterize_reference(xy, chol, rgb, below, 1, 16, 16, antialias=False)
    assert torch.autograd.grad(img, below, v)[0].item() == 1.0
    # the 1/16 floor binds exactly for Σ'11: no gradient to L11 through it (L21 = 0 kills Σ'12's)
    v_all = torch.ones(1, 1, 16, 16, dtype=torch.float64)
    img = rasterize_reference(xy, chol, rgb, below, 1, 16, 16, antialias=False)
    assert torch.autograd.grad(img, chol, v_all)[0][0, 0].item() == 0.0


def test_the_twin_has_the_ops_names_and_agrees_with_them():
    """gsdd_cuda.reference.rasterize_fwd / rasterize_bwd take the ops' arguments and give their values."""
    import gsdd_cuda
    from gsdd_cuda import reference
    from gsdd_cuda.testing import sample_inputs

    if not gsdd_cuda.is_available("cpu"):
        pytest.skip("native CPU kernels unavailable")
    xy, chol, rgb, opacity = (t.double() for t in sample_inputs("cpu", 2, 6, 3, 16, 16, seed=5))
    args = (xy, chol, rgb, opacity, 2, 16, 16, True)
    native = torch.ops.gsdd.rasterize_fwd.default(*args)
    torch.testing.assert_close(reference.rasterize_fwd(*args), native, atol=1e-9, rtol=1e-7)
    v = torch.randn_like(native)
    for ours, theirs in zip(reference.rasterize_bwd(v, *args), torch.ops.gsdd.rasterize_bwd.default(v, *args)):
        torch.testing.assert_close(ours, theirs, atol=1e-7, rtol=1e-5)
