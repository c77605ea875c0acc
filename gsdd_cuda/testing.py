"""Input factories shared by the CUDA tests (tests/cuda) and the benchmark (bench/render.py).

Pure PyTorch; imports nothing compiled. Every factory returns ``(xy, chol, rgb, opacity)`` in the
layout of :func:`gsdd_cuda.rasterize` (flat [B*N, ·], chol with the +0.5 offset applied).
"""

from __future__ import annotations

import math

import torch

from gsdd_cuda.ops import rasterize

KINDS = ("mixed", "realistic", "border", "offimage")


def sample_inputs(
    device: str | torch.device = "cpu",
    num_images: int = 2,
    n: int = 16,
    channels: int = 3,
    height: int = 32,
    width: int = 32,
    *,
    kind: str = "mixed",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    requires_grad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random Gaussians for B = ``num_images`` images of N = ``n`` each.

    kinds: ``mixed`` (adversarial: centres up to 15 % outside the image, 20 % huge and 20 %
    sub-pixel covariances, opacity in [-0.3, 2.5] so some are dead and some clamp at w = 1),
    ``realistic`` (sizes so N Gaussians tile the image, opacity ≈ 1, colours in [0, 1]: the
    distillation regime; used by the benchmark), ``border`` (centres on and across the image
    border) and ``offimage`` (every Gaussian entirely outside the image).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid: {KINDS}")
    gen = torch.Generator().manual_seed(seed)
    total = num_images * n

    def u(*shape, lo=0.0, hi=1.0):
        return lo + (hi - lo) * torch.rand(*shape, generator=gen, dtype=torch.float64)

    if kind == "realistic":
        # one Gaussian per (H·W/N) pixels: std ≈ half the spacing of a regular grid of N points
        std = 0.5 * math.sqrt(height * width / max(n, 1))
        xy = u(total, 2, lo=-0.95, hi=0.95)
        diag = u(total, 2, lo=0.5, hi=1.5) * std
        chol = torch.stack([diag[:, 0], u(total, lo=-0.3, hi=0.3) * std, diag[:, 1]], -1)
        rgb = u(total, channels)
        opacity = u(total, 1, lo=0.7, hi=1.0)
    else:
        # |L11|, |L22| >= 0.2 keeps Σ' well conditioned even without the pixel filter (s = 0),
        # so float32 gradients of kernel and reference can be compared at 1e-4
        sign = torch.where(torch.rand(total, 2, generator=gen) < 0.25, -1.0, 1.0).to(torch.float64)
        diag = u(total, 2, lo=0.2, hi=3.5) * sign
        chol = torch.stack([diag[:, 0], u(total, lo=-1.5, hi=1.5), diag[:, 1]], -1)
        rgb = u(total, channels, lo=-0.2, hi=1.0)
        opacity = u(total, 1, lo=-0.3, hi=2.5)
        opacity[::7] = 1.0
        if kind == "mixed":
            xy = u(total, 2, lo=-1.15, hi=1.15)
            big = torch.rand(total, generator=gen) < 0.2
            chol[big] *= 4.0
            tiny = torch.rand(total, generator=gen) < 0.2
            chol[tiny] *= 0.05
        elif kind == "border":
            xy = u(total, 2, lo=-0.9, hi=0.9)
            side = torch.randint(0, 4, (total,), generator=gen)
            edge = torch.where(torch.rand(total, generator=gen) < 0.5, -1.0, 1.0).to(torch.float64)
            jitter = u(total, lo=-0.1, hi=0.1)
            axis = side % 2
            xy[torch.arange(total), axis] = edge + jitter
        else:  # offimage: far enough that even the 3σ tile box misses the image
            ang = u(total, lo=0.0, hi=2 * math.pi)
            xy = torch.stack([torch.cos(ang), torch.sin(ang)], -1) * 3.0
            chol = chol.clamp(-2.0, 2.0)
    out = [t.to(device=device, dtype=dtype) for t in (xy, chol, rgb, opacity)]
    if requires_grad:
        out = [t.requires_grad_(True) for t in out]
    return tuple(out)


def forward_backward(inputs, v: torch.Tensor | None, num_images: int, height: int, width: int) -> list[torch.Tensor]:
    """The native forward and the four gradients for the upstream gradient ``v`` (None: of
    ``out.sum()``), computed on fresh leaf copies of ``inputs`` (so repeated calls are independent runs)."""
    params = [t.clone().requires_grad_(True) for t in inputs]
    out = rasterize(*params, num_images, height, width)
    grads = torch.autograd.grad(out, params, v) if v is not None else torch.autograd.grad(out.sum(), params)
    return [out.detach()] + list(grads)


def assert_bitwise_equal(runs: list[list[torch.Tensor]]) -> None:
    """Every run's tensors have the same bytes as the first run's."""
    for other in runs[1:]:
        for a, z in zip(runs[0], other):
            assert a.cpu().numpy().tobytes() == z.cpu().numpy().tobytes()


__all__ = ["sample_inputs", "KINDS", "forward_backward", "assert_bitwise_equal"]
