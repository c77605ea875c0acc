"""Pure-PyTorch reference rasterizer: the oracle for the CUDA op and the CPU fallback.

It implements docs/method.md §2 exactly, densely: every Gaussian of an image is evaluated at every
sub-sample of every pixel, then masked by the same cut-offs the tiled CUDA kernel applies
(σ < 0, o·e^(−σ) < 1/255, and the 16-px tile box of §2.3). Images are processed in chunks so
memory stays bounded; under autograd each chunk is checkpointed, so the backward pass re-computes
the dense [chunk, samples, N] tensors instead of keeping them all alive. There is no Python loop
over images or Gaussians, only over chunks of images.

This module imports nothing from ``gsdd_cuda``.
"""

from __future__ import annotations


import torch
from torch.utils.checkpoint import checkpoint

TILE = 16
PIXEL_FILTER_VAR = 1.0 / 12.0  # variance of a unit box (paper eq. 9)
MIN_VAR = 1.0 / 16.0  # floor on the diagonal of Σ'
ALPHA_MIN = 1.0 / 255.0  # per-sample value cut-off
# Elements of one [chunk, samples, N] tensor; ~10 such tensors live at once per chunk.
DEFAULT_CHUNK_ELEMENTS = 1 << 22


def _clamp_min(x: torch.Tensor, lo: float) -> torch.Tensor:
    """torch.clamp(x, min=lo) with the gradient passing only where x > lo (0 at the boundary).

    The value is torch.clamp's (NaN propagates). The boundary convention is spelled out because
    torch changed it (older releases pass the gradient at x == lo, newer ones do not); the native
    kernels implement this one (gsdd_cuda/csrc/gsdd_math.h).
    """
    return torch.where(x > lo, x, x.detach().clamp(min=lo))


def _clamp_max(x: torch.Tensor, hi: float) -> torch.Tensor:
    """torch.clamp(x, max=hi) with the gradient passing only where x < hi (see _clamp_min)."""
    return torch.where(x < hi, x, x.detach().clamp(max=hi))


def project(
    xy: torch.Tensor,  # [B*N, 2] normalized means in [-1, 1]
    chol: torch.Tensor,  # [B*N, 3] Cholesky factor (L11, L21, L22), pixel units, offset applied
    height: int,
    width: int,
    antialias: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel-space centres, conics and integer tile boxes (docs/method.md §2.1–2.3).

    Returns ``p`` [B*N, 2] (x, y in pixels), ``conic`` [B*N, 3] (Q11, Q12, Q22) and ``box``
    [B*N, 4] int64 (tmin_x, tmax_x, tmin_y, tmax_y), tiles [tmin, tmax) touched.
    """
    px = (width / 2.0) * (xy[:, 0] + 1.0)
    py = (height / 2.0) * (xy[:, 1] + 1.0)
    l11, l21, l22 = chol[:, 0], chol[:, 1], chol[:, 2]
    s = PIXEL_FILTER_VAR if antialias else 0.0
    a = _clamp_min(l11 * l11 + s, MIN_VAR)  # Σ'11; the floor zeroes the gradient where it binds
    b = l11 * l21  # Σ'12
    c = _clamp_min(l21 * l21 + l22 * l22 + s, MIN_VAR)  # Σ'22
    det = a * c - b * b
    inv = 1.0 / det
    conic = torch.stack([c * inv, -b * inv, a * inv], dim=-1)

    with torch.no_grad():
        half = 0.5 * (a + c)
        lam = half + torch.sqrt(torch.clamp(half * half - det, min=0.1))
        r = torch.ceil(3.0 * torch.sqrt(lam))
        tiles_x = (width + TILE - 1) // TILE
        tiles_y = (height + TILE - 1) // TILE
        pxd, pyd = px.detach(), py.detach()
        box = torch.stack(
            [
                torch.trunc((pxd - r) / TILE).clamp(0, tiles_x),
                torch.trunc((pxd + r) / TILE + 1.0).clamp(0, tiles_x),
                torch.trunc((pyd - r) / TILE).clamp(0, tiles_y),
                torch.trunc((pyd + r) / TILE + 1.0).clamp(0, tiles_y),
            ],
            dim=-1,
        ).to(torch.int64)
    return torch.stack([px, py], dim=-1), conic, box


def _sample_grid(height: int, width: int, antialias: bool, device, dtype):
    """Sub-sample coordinates [S] (x and y) and each sample's tile (tx, ty), pixel-major.

    Sample k of pixel (i, j) sits at index (i*W + j)*ss + k with ss = 4 (2×2) or 1.
    """
    offs = [0.25, 0.75] if antialias else [0.5]
    o = torch.tensor(offs, device=device, dtype=dtype)
    jj = torch.arange(width, device=device, dtype=dtype)
    ii = torch.arange(height, device=device, dtype=dtype)
    # [H, W, oy, ox]
    sx = (jj[None, :, None, None] + o[None, None, None, :]).expand(height, width, len(offs), len(offs))
    sy = (ii[:, None, None, None] + o[None, None, :, None]).expand(height, width, len(offs), len(offs))
    tx = (torch.arange(width, device=device) // TILE)[None, :, None, None].expand_as(sx)
    ty = (torch.arange(height, device=device) // TILE)[:, None, None, None].expand_as(sx)
    return sx.reshape(-1), sy.reshape(-1), tx.reshape(-1), ty.reshape(-1), len(offs) ** 2


def _splat_chunk(
    p: torch.Tensor,  # [b, N, 2]
    conic: torch.Tensor,  # [b, N, 3]
    rgb: torch.Tensor,  # [b, N, C]
    opacity: torch.Tensor,  # [b, N]
    box: torch.Tensor,  # [b, N, 4]
    sx: torch.Tensor,
    sy: torch.Tensor,
    tx: torch.Tensor,
    ty: torch.Tensor,
    tile_mask: bool,
) -> torch.Tensor:  # [b, S, C]
    dx = p[:, None, :, 0] - sx[None, :, None]  # [b, S, N]
    dy = p[:, None, :, 1] - sy[None, :, None]
    q11, q12, q22 = (conic[:, None, :, k] for k in range(3))
    sigma = 0.5 * (q11 * dx * dx + q22 * dy * dy) + q12 * dx * dy
    w = _clamp_max(opacity[:, None, :] * torch.exp(-sigma), 1.0)
    keep = (sigma >= 0) & (w >= ALPHA_MIN)
    if tile_mask:
        keep &= (
            (tx[None, :, None] >= box[:, None, :, 0])
            & (tx[None, :, None] < box[:, None, :, 1])
            & (ty[None, :, None] >= box[:, None, :, 2])
            & (ty[None, :, None] < box[:, None, :, 3])
        )
    w = torch.where(keep, w, torch.zeros((), dtype=w.dtype, device=w.device))
    return torch.bmm(w, rgb)


def rasterize_reference(
    xy: torch.Tensor,  # [B*N, 2]
    chol: torch.Tensor,  # [B*N, 3] (L11, L21, L22) in pixels, offset already applied
    rgb: torch.Tensor,  # [B*N, C]
    opacity: torch.Tensor,  # [B*N, 1] or [B*N]
    num_images: int,
    height: int,
    width: int,
    antialias: bool = True,
    tile_mask: bool = True,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> torch.Tensor:  # [B, C, H, W]
    """Render ``num_images`` images of N = len(xy) / num_images Gaussians each.

    Image formation (docs/method.md §2.4): I(pixel) = mean over sub-samples s of Σ_g min(1, o_g·e^(−σ_gs))·c_g,
    with sample terms below 1/255 or with σ < 0 skipped. ``tile_mask=False`` gives the ideal
    untruncated splat (no 3-sigma tile box), useful to bound the truncation error.
    Differentiable w.r.t. all four inputs; works in float32 or float64 on any device.
    """
    total = xy.shape[0]
    if num_images <= 0 or total % num_images:
        raise ValueError(f"{total} Gaussians cannot be split into {num_images} images")
    n = total // num_images
    channels = rgb.shape[-1]
    dtype, device = xy.dtype, xy.device
    out_shape = (num_images, channels, height, width)
    if n == 0:
        return xy.new_zeros(out_shape)

    p, conic, box = project(xy, chol, height, width, antialias)
    p = p.view(num_images, n, 2)
    conic = conic.view(num_images, n, 3)
    rgb_b = rgb.reshape(num_images, n, channels).to(dtype)
    op = opacity.reshape(num_images, n).to(dtype)
    box = box.view(num_images, n, 4)
    sx, sy, tx, ty, ss = _sample_grid(height, width, antialias, device, dtype)
    samples = sx.shape[0]

    per_image = samples * n
    step = max(1, min(num_images, chunk_elements // max(per_image, 1)))
    use_ckpt = torch.is_grad_enabled() and any(
        t.requires_grad for t in (xy, chol, rgb, opacity)
    )
    outs = []
    for start in range(0, num_images, step):
        sl = slice(start, start + step)
        args = (p[sl], conic[sl], rgb_b[sl], op[sl], box[sl], sx, sy, tx, ty, tile_mask)
        if use_ckpt and step < num_images:
            outs.append(checkpoint(_splat_chunk, *args, use_reentrant=False))
        else:
            outs.append(_splat_chunk(*args))
    img = torch.cat(outs, 0) if len(outs) > 1 else outs[0]  # [B, S, C]
    img = img.view(num_images, height, width, ss, channels).mean(dim=3)
    return img.permute(0, 3, 1, 2).contiguous()




# The twin of each op under the op's name (torch.ops.gsdd.rasterize_fwd / rasterize_bwd / project),
# same arguments in the same order, so a test can call either side the same way.
rasterize_fwd = rasterize_reference


def rasterize_bwd(v_out, xy, chol, rgb, opacity, num_images: int, height: int, width: int, antialias: bool = True):
    """The reference's gradients (v_xy, v_chol, v_rgb, v_opacity) for the upstream gradient ``v_out``."""
    leaves = [t.detach().requires_grad_(True) for t in (xy, chol, rgb, opacity)]
    with torch.enable_grad():
        out = rasterize_fwd(*leaves, num_images, height, width, antialias)
        return torch.autograd.grad(out, leaves, v_out, allow_unused=True)


__all__ = ["rasterize_reference", "rasterize_fwd", "rasterize_bwd", "project", "TILE", "ALPHA_MIN", "PIXEL_FILTER_VAR", "MIN_VAR"]
