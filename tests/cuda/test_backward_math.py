"""CPU check of the CUDA kernels' math, without a GPU.

``emulate_kernels`` re-implements rasterize_fwd.cu / rasterize_bwd.cu in PyTorch with the same
structure: one "block" per (image, tile) (global tile id = image·M + local tile), culling of the
image's Gaussians by their tile box (load_chunk), the 16×16 pixel grid with out-of-image pixels
masked, channel groups of at most 4, per-(pixel, Gaussian) sums over the sub-samples
(wsum, esum, o·e·QΔ, o·e·ΔΔᵀ), the per-block reduction, and the per-block chain rule
Q → Σ' → L, p → xy that the kernel applies before its global atomicAdds. Forward and gradients
are compared with the pure-PyTorch reference and its autograd in float64. If the kernel's formulas
change, change this emulation with them.
"""

from __future__ import annotations

import math

import pytest
import torch

from gsdd_cli.render.reference import project, rasterize_reference

TILE = 16
ALPHA_MIN = 1.0 / 255.0
OPACITY_CULL = 0.999 / 255.0


def _project_like_kernel(xy, chol, height, width, antialias, tiles_x, tiles_y):
    """csrc/common.cuh::project_gaussian, op by op (each torch op rounds like an _rn intrinsic)."""
    s = 1.0 / 12.0 if antialias else 0.0
    px = (0.5 * width) * (xy[:, 0] + 1.0)
    py = (0.5 * height) * (xy[:, 1] + 1.0)
    l11, l21, l22 = chol.unbind(-1)
    a = torch.clamp(l11 * l11 + s, min=1.0 / 16.0)
    b = l11 * l21
    c = torch.clamp(l21 * l21 + l22 * l22 + s, min=1.0 / 16.0)
    det = a * c - b * b
    inv = torch.reciprocal(det)
    q11, q12, q22 = c * inv, -b * inv, a * inv
    half = 0.5 * (a + c)
    lam = half + torch.sqrt(torch.clamp(half * half - det, min=0.1))
    r = torch.ceil(3.0 * torch.sqrt(lam))

    def tile(v, hi):
        return torch.trunc(v).clamp(0, hi).to(torch.int64)

    box = torch.stack([tile((px - r) * (1.0 / TILE), tiles_x), tile((px + r) * (1.0 / TILE) + 1.0, tiles_x),
                       tile((py - r) * (1.0 / TILE), tiles_y), tile((py + r) * (1.0 / TILE) + 1.0, tiles_y)], -1)
    finite = torch.isfinite(torch.stack([px, py, q11, q12, q22, r], -1)).all(-1)
    return px, py, q11, q12, q22, box, finite


def emulate_kernels(xy, chol, rgb, opacity, num_images, height, width, antialias=True, v_out=None):
    """Returns (image [B, C, H, W], grads (v_xy, v_chol, v_rgb, v_opacity) or None)."""
    dtype = xy.dtype
    total, channels = xy.shape[0], rgb.shape[1]
    n = total // num_images
    tiles_x, tiles_y = -(-width // TILE), -(-height // TILE)
    m = tiles_x * tiles_y
    opacity = opacity.reshape(-1)
    offs = torch.tensor([0.25, 0.75] if antialias else [0.5], dtype=dtype)
    scale = 0.25 if antialias else 1.0
    s_filter = 1.0 / 12.0 if antialias else 0.0
    cb = channels if channels <= 4 else 4  # channels per block (CB template), groups = blockIdx.y
    out = torch.zeros(num_images, channels, height, width, dtype=dtype)
    grads = None
    if v_out is not None:
        grads = [torch.zeros_like(xy), torch.zeros_like(chol), torch.zeros_like(rgb), torch.zeros_like(opacity)]
    px, py, q11, q12, q22, box, finite = _project_like_kernel(xy, chol, height, width, antialias, tiles_x, tiles_y)
    for block in range(num_images * m):
        b, t = divmod(block, m)
        tile_y, tile_x = divmod(t, tiles_x)
        ids = torch.arange(b * n, (b + 1) * n)
        bx = box[ids]
        hit = (opacity[ids] >= OPACITY_CULL) & finite[ids] & (bx[:, 0] <= tile_x) & (tile_x < bx[:, 1]) \
            & (bx[:, 2] <= tile_y) & (tile_y < bx[:, 3])
        g = ids[hit]  # compacted in Gaussian-id order
        cols = tile_x * TILE + torch.arange(TILE)
        rows = tile_y * TILE + torch.arange(TILE)
        rr, cc = torch.meshgrid(rows, cols, indexing="ij")  # threadIdx.y, threadIdx.x
        rr, cc = rr.reshape(-1), cc.reshape(-1)
        inside = (rr < height) & (cc < width)
        sx = cc.to(dtype)[:, None] + offs[None, :]  # [256, S]
        sy = rr.to(dtype)[:, None] + offs[None, :]
        # [pixel, gaussian, sample-y, sample-x]
        dx = (px[g][None, :, None] - sx[:, None, :])[:, :, None, :]
        dy = (py[g][None, :, None] - sy[:, None, :])[:, :, :, None]
        Q11, Q12, Q22 = (q[g][None, :, None, None] for q in (q11, q12, q22))
        o = opacity[g][None, :, None, None]
        sigma = 0.5 * (Q11 * dx * dx + Q22 * dy * dy) + Q12 * dx * dy
        e = torch.exp(-sigma)
        ow = o * e
        w = torch.where(ow > 1.0, torch.ones_like(ow), ow)
        valid = (sigma >= 0) & (w >= ALPHA_MIN) & inside[:, None, None, None]
        unclamped = valid & (ow <= 1.0)
        zero = torch.zeros((), dtype=dtype)
        wsum = torch.where(valid, w, zero).sum((2, 3))  # [pixel, gaussian]
        for c0 in range(0, channels, cb):
            ch = slice(c0, min(c0 + cb, channels))
            col = rgb[g][:, ch]  # [gaussian, cn]
            acc = wsum @ col  # [pixel, cn]
            img = out[b, ch]
            img[:, rr[inside], cc[inside]] = (acc[inside] * scale).T
            if v_out is None:
                continue
            gs = torch.zeros(TILE * TILE, col.shape[1], dtype=dtype)
            gs[inside] = v_out[b, ch][:, rr[inside], cc[inside]].T * scale
            a = gs @ col.T  # [pixel, gaussian]
            ue = torch.where(unclamped, ow, zero)
            ddx, ddy = dx.expand_as(ue), dy.expand_as(ue)
            spx = (ue * (Q11 * ddx + Q12 * ddy)).sum((2, 3))
            spy = (ue * (Q22 * ddy + Q12 * ddx)).sum((2, 3))
            sxx = (ue * ddx * ddx).sum((2, 3))
            sxy = (ue * ddx * ddy).sum((2, 3))
            syy = (ue * ddy * ddy).sum((2, 3))
            esum = torch.where(unclamped, e, zero).sum((2, 3))
            # per-thread values, then the block reduction (sum over pixels)
            v_px = (-a * spx).sum(0)
            v_py = (-a * spy).sum(0)
            v_q11 = (-0.5 * a * sxx).sum(0)
            v_q12 = (-a * sxy).sum(0)
            v_q22 = (-0.5 * a * syy).sum(0)
            v_o = (a * esum).sum(0)
            v_c = wsum.T @ gs  # [gaussian, cn]
            # per-Gaussian chain rule on the block partial (rasterize_bwd.cu)
            l11, l21, l22 = chol[g].unbind(-1)
            a_raw = l11 * l11 + s_filter
            c_raw = l21 * l21 + l22 * l22 + s_filter
            sa, sb, sc = a_raw.clamp(min=1 / 16), l11 * l21, c_raw.clamp(min=1 / 16)
            inv = 1.0 / (sa * sc - sb * sb)
            v_inv = v_q11 * sc - v_q12 * sb + v_q22 * sa
            v_det = -v_inv * inv * inv
            v_sa = torch.where(a_raw >= 1 / 16, v_q22 * inv + v_det * sc, zero)
            v_sc = torch.where(c_raw >= 1 / 16, v_q11 * inv + v_det * sa, zero)
            v_sb = -v_q12 * inv - 2.0 * sb * v_det
            grads[1][g] += torch.stack([2 * l11 * v_sa + l21 * v_sb, l11 * v_sb + 2 * l21 * v_sc, 2 * l22 * v_sc], -1)
            grads[0][g] += torch.stack([0.5 * width * v_px, 0.5 * height * v_py], -1)
            grads[3][g] += v_o
            grads[2][g, ch] += v_c
    if grads is not None:
        grads[3] = grads[3].reshape(-1, 1)
    return out, grads


def make_inputs(num_images, n, channels, height, width, seed, dtype=torch.float64, kind="mixed"):
    gen = torch.Generator().manual_seed(seed)
    total = num_images * n

    def u(*shape, lo=0.0, hi=1.0):
        return lo + (hi - lo) * torch.rand(*shape, generator=gen, dtype=dtype)

    xy = u(total, 2, lo=-1.15, hi=1.15)  # some centres outside the image, many near borders
    chol = torch.stack([u(total, lo=-0.5, hi=3.0), u(total, lo=-1.5, hi=1.5), u(total, lo=-0.5, hi=3.0)], -1) + \
        torch.tensor([0.5, 0.0, 0.5], dtype=dtype)
    if kind == "mixed":
        big = torch.rand(total, generator=gen) < 0.2
        chol[big] *= 4.0  # large covariances: boxes cover many tiles, truncated by the 3σ box
        tiny = torch.rand(total, generator=gen) < 0.2
        chol[tiny] *= 0.05  # sub-pixel: Σ' dominated by the filter (or floored without antialias)
    rgb = u(total, channels, lo=-0.2, hi=1.0)
    opacity = u(total, 1, lo=-0.3, hi=2.5)  # zero/negative (dead) and > 1 (clamped at w = 1)
    opacity[::7] = 1.0
    return xy, chol, rgb, opacity


CASES = [
    # B, N, C, H, W, antialias
    (2, 12, 3, 32, 32, True),
    (2, 9, 1, 20, 37, True),  # H != W, not multiples of 16
    (1, 7, 5, 17, 16, True),  # C > 4: two channel groups (4 + 1)
    (3, 5, 3, 24, 40, False),  # single centre sample, s = 0, 1/16 floor binds for tiny L
    (1, 1, 3, 48, 33, True),  # N = 1
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}N{}C{}_{}x{}_{}".format(*c[:5], "aa" if c[5] else "noaa"))
def test_emulated_kernels_match_reference(case):
    num_images, n, channels, height, width, aa = case
    xy, chol, rgb, opacity = make_inputs(num_images, n, channels, height, width, seed=sum(case[:5]))
    params = [t.clone().requires_grad_(True) for t in (xy, chol, rgb, opacity)]
    ref = rasterize_reference(*params, num_images, height, width, antialias=aa)
    v_out = torch.randn(ref.shape, generator=torch.Generator().manual_seed(7), dtype=ref.dtype)
    ref_grads = torch.autograd.grad(ref, params, v_out)

    emu, emu_grads = emulate_kernels(xy, chol, rgb, opacity, num_images, height, width, aa, v_out)
    assert ref.abs().max() > 0.05, "degenerate test case: nothing rendered"
    torch.testing.assert_close(emu, ref.detach(), rtol=0, atol=1e-12)
    for name, got, want in zip(("xy", "chol", "rgb", "opacity"), emu_grads, ref_grads):
        assert got.abs().max() > 0, name
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10, msg=lambda m, name=name: f"d{name}: {m}")


def test_clamp_derivative_is_exact():
    """o·e^{-σ} > 1 → w = 1: zero ∂o, ∂σ (torch.clamp semantics); only ∂c flows."""
    xy = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    chol = torch.tensor([[3.0, 0.0, 3.0]], dtype=torch.float64)
    rgb = torch.tensor([[1.0, 0.5, 0.25]], dtype=torch.float64)
    opacity = torch.tensor([[1e6]], dtype=torch.float64)  # o·e^{-σ} > 1 on every sample
    v_out = torch.ones(1, 3, 16, 16, dtype=torch.float64)
    params = [t.clone().requires_grad_(True) for t in (xy, chol, rgb, opacity)]
    ref = rasterize_reference(*params, 1, 16, 16)
    ref_grads = torch.autograd.grad(ref, params, v_out)
    _, emu_grads = emulate_kernels(xy, chol, rgb, opacity, 1, 16, 16, True, v_out)
    assert float(ref_grads[3]) == 0.0 and float(emu_grads[3]) == 0.0
    assert torch.all(ref_grads[0] == 0) and torch.all(emu_grads[0] == 0)
    torch.testing.assert_close(emu_grads[2], ref_grads[2])


def test_offdiagonal_chain_matches_spec_formulas():
    """The kernel's scalar chain (Q12 as one entry) equals SPEC §2.6's matrix form −Q(∂ℒ/∂Q)Q."""
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        l11, l21, l22 = (torch.randn((), generator=gen, dtype=torch.float64) * 2 for _ in range(3))
        vq11, vq12, vq22 = (torch.randn((), generator=gen, dtype=torch.float64) for _ in range(3))
        sa, sb, sc = l11 * l11 + 1 / 12, l11 * l21, l21 * l21 + l22 * l22 + 1 / 12
        inv = 1 / (sa * sc - sb * sb)
        v_inv = vq11 * sc - vq12 * sb + vq22 * sa
        v_det = -v_inv * inv * inv
        v_sa, v_sc = vq22 * inv + v_det * sc, vq11 * inv + v_det * sa
        v_sb = -vq12 * inv - 2 * sb * v_det
        kernel = torch.stack([2 * l11 * v_sa + l21 * v_sb, l11 * v_sb + 2 * l21 * v_sc, 2 * l22 * v_sc])
        # SPEC: symmetric ∂ℒ/∂Q with off-diagonal half of the scalar-entry gradient
        Q = inv * torch.stack([torch.stack([sc, -sb]), torch.stack([-sb, sa])])
        dQ = torch.stack([torch.stack([vq11, vq12 / 2]), torch.stack([vq12 / 2, vq22])])
        G = -Q @ dQ @ Q
        spec = torch.stack([2 * G[0, 0] * l11 + 2 * G[0, 1] * l21, 2 * G[0, 1] * l11 + 2 * G[1, 1] * l21,
                            2 * G[1, 1] * l22])
        torch.testing.assert_close(kernel, spec)


def test_kernel_projection_is_bitwise_reference_projection():
    """float32: the kernel's op order (common.cuh) gives the reference's conic and tile boxes."""
    gen = torch.Generator().manual_seed(11)
    for aa in (True, False):
        for height, width in ((32, 32), (128, 128), (20, 37)):
            total = 20000
            xy = (torch.rand(total, 2, generator=gen) * 2.4 - 1.2)
            chol = torch.randn(total, 3, generator=gen) * torch.rand(total, 1, generator=gen).pow(3) * 40
            tx, ty = -(-width // TILE), -(-height // TILE)
            px, py, q11, q12, q22, box, finite = _project_like_kernel(xy, chol, height, width, aa, tx, ty)
            p_ref, conic_ref, box_ref = project(xy, chol, height, width, aa)
            # Without the filter (s = 0) a nearly singular L can round det to 0: the conic is then
            # inf/NaN, the reference renders nothing for it and the kernel culls it.
            assert finite.all() if aa else finite.float().mean() > 0.99
            f = finite
            assert torch.equal(torch.stack([px, py], -1)[f], p_ref[f])
            assert torch.equal(torch.stack([q11, q12, q22], -1)[f], conic_ref[f])
            assert torch.equal(box[f], box_ref[f])


def test_opacity_cull_is_exact():
    """Gaussians with o < 0.999/255 are dropped at load time: they never pass w >= 1/255."""
    assert OPACITY_CULL < ALPHA_MIN
    o = torch.tensor([OPACITY_CULL * (1 - 1e-7)], dtype=torch.float32)
    e = torch.exp(-torch.linspace(0, 1e-3, 1000))
    assert (o * e < torch.tensor(ALPHA_MIN, dtype=torch.float32)).all()
    assert math.isclose(ALPHA_MIN, 1 / 255)
