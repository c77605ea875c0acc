"""Python side of the gsdd operators: the public wrapper, fake kernels and autograd.

The schemas live in C++ (``csrc/ops.cpp``: ``TORCH_LIBRARY(gsdd, m)``), the CUDA kernels in
``csrc/rasterize_{fwd,bwd}.cu``. :func:`register` attaches the fake (meta) kernels of both ops and
the autograd formula of the forward; :mod:`gsdd_cuda._backend` calls it once, right after the
library is loaded (the registrations need the schemas to exist). Importing this module touches
nothing.
"""

from __future__ import annotations

import torch

from gsdd_cuda import _backend

_registered = False


def _fake_rasterize_fwd(xy, chol, rgb, opacity, num_images, height, width, antialias):
    torch._check(xy.dim() == 2 and xy.shape[1] == 2, lambda: f"xy must be [B*N, 2], got {tuple(xy.shape)}")
    torch._check(chol.dim() == 2 and chol.shape[1] == 3, lambda: "chol must be [B*N, 3]")
    torch._check(rgb.dim() == 2, lambda: "rgb must be [B*N, C]")
    torch._check(opacity.dim() == 2 and opacity.shape[1] == 1, lambda: "opacity must be [B*N, 1]")
    torch._check(chol.shape[0] == xy.shape[0] and rgb.shape[0] == xy.shape[0]
                 and opacity.shape[0] == xy.shape[0], lambda: "inputs disagree on B*N")
    return xy.new_empty((num_images, rgb.shape[1], height, width))


def _fake_rasterize_bwd(v_out, xy, chol, rgb, opacity, num_images, height, width, antialias):
    torch._check(v_out.dim() == 4, lambda: "v_out must be [B, C, H, W]")
    return (torch.empty_like(xy), torch.empty_like(chol), torch.empty_like(rgb),
            torch.empty_like(opacity))


def _setup_context(ctx, inputs, output):
    xy, chol, rgb, opacity, num_images, height, width, antialias = inputs
    ctx.save_for_backward(xy, chol, rgb, opacity)
    ctx.meta = (num_images, height, width, antialias)


def _backward(ctx, v_out):
    xy, chol, rgb, opacity = ctx.saved_tensors
    v_xy, v_chol, v_rgb, v_opacity = torch.ops.gsdd.rasterize_bwd.default(
        v_out.contiguous(), xy, chol, rgb, opacity, *ctx.meta)
    need = ctx.needs_input_grad
    return (v_xy if need[0] else None, v_chol if need[1] else None,
            v_rgb if need[2] else None, v_opacity if need[3] else None, None, None, None, None)


def register() -> None:
    """Attach fake kernels (both ops) and autograd (forward). Idempotent; needs the library."""
    global _registered
    if _registered:
        return
    torch.library.register_fake("gsdd::rasterize_fwd")(_fake_rasterize_fwd)
    torch.library.register_fake("gsdd::rasterize_bwd")(_fake_rasterize_bwd)
    torch.library.register_autograd("gsdd::rasterize_fwd", _backward, setup_context=_setup_context)
    _registered = True


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32).contiguous()


def rasterize(
    xy: torch.Tensor,  # [B*N, 2] normalized means in [-1, 1]
    chol: torch.Tensor,  # [B*N, 3] (L11, L21, L22) pixel units, +0.5 offset already applied
    rgb: torch.Tensor,  # [B*N, C]
    opacity: torch.Tensor,  # [B*N, 1] or [B*N]
    num_images: int,
    height: int,
    width: int,
    antialias: bool = True,
) -> torch.Tensor:  # [B, C, H, W] float32
    """Render ``num_images`` images of N = len(xy) / num_images Gaussians each on the GPU.

    Same image formation as :func:`gsdd_cli.render.reference.rasterize_reference` (SPEC §2),
    differentiable w.r.t. all four tensors. bf16/fp16 inputs are cast to fp32 (gradients flow
    back through the cast); the op runs on the current CUDA stream.
    """
    if not torch.compiler.is_compiling() and not _backend.LOADED:
        _backend.require()
    return torch.ops.gsdd.rasterize_fwd.default(
        _f32(xy), _f32(chol), _f32(rgb), _f32(opacity.reshape(-1, 1)),
        int(num_images), int(height), int(width), bool(antialias))


__all__ = ["rasterize", "register"]
