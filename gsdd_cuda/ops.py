"""Python side of the gsdd operators: the public wrapper, fake kernels and autograd.

The schemas live in C++ (``csrc/ops.cpp``: ``TORCH_LIBRARY(gsdd, m)``), with the CPU kernels; the
CUDA kernels are a second library (``csrc/rasterize_{fwd,bwd}.cu``). :func:`register` attaches the
fake (meta) kernels of the three ops and the autograd formula of the forward;
it is handed to :func:`gsdd_cuda._backend.on_load`, which calls it right after a library is loaded
(the registrations need the schemas); the dependency runs one way, ops → _backend. Importing this module touches nothing.
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


def _fake_project(xy, chol, height, width, antialias):
    torch._check(xy.dim() == 2 and xy.shape[1] == 2, lambda: "xy must be [M, 2]")
    count = xy.shape[0]
    return (xy.new_empty((count, 2)), xy.new_empty((count, 3)), xy.new_empty((count, 4), dtype=torch.int32))


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
    """Attach fake kernels (all ops) and autograd (forward). Idempotent; needs the schemas."""
    global _registered
    if _registered:
        return
    torch.library.register_fake("gsdd::rasterize_fwd")(_fake_rasterize_fwd)
    torch.library.register_fake("gsdd::rasterize_bwd")(_fake_rasterize_bwd)
    torch.library.register_fake("gsdd::project")(_fake_project)
    torch.library.register_autograd("gsdd::rasterize_fwd", _backward, setup_context=_setup_context)
    _registered = True


def kernel_dtype(t: torch.Tensor) -> torch.dtype:
    """float64 stays float64 on CPU (the CPU kernels are templated on it); everything else runs in
    float32 (the CUDA kernels are float32-only; bf16/fp16 are widened)."""
    return torch.float64 if (t.dtype == torch.float64 and t.device.type == "cpu") else torch.float32


def rasterize(
    xy: torch.Tensor,  # [B*N, 2] normalized means in [-1, 1]
    chol: torch.Tensor,  # [B*N, 3] (L11, L21, L22) pixel units, +0.5 offset already applied
    rgb: torch.Tensor,  # [B*N, C]
    opacity: torch.Tensor,  # [B*N, 1] or [B*N]
    num_images: int,
    height: int,
    width: int,
    antialias: bool = True,
) -> torch.Tensor:  # [B, C, H, W], float32 (float64 for float64 CPU inputs)
    """Render ``num_images`` images of N = len(xy) / num_images Gaussians each with the native
    kernels of the tensors' device (CPU or CUDA).

    Same image formation as :func:`gsdd_cuda.reference.rasterize_reference`, differentiable
    w.r.t. all four tensors. Inputs are cast to the kernel dtype (:func:`kernel_dtype` of ``xy``);
    gradients flow back through the cast. On CUDA the op runs on the current stream.
    """
    device = xy.device.type
    if not torch.compiler.is_compiling():
        loaded = _backend.CPU_LOADED if device == "cpu" else _backend.CUDA_LOADED
        if not loaded:
            _backend.require(device)
    dtype = kernel_dtype(xy)

    def cast(t):
        return t.to(dtype).contiguous()

    return torch.ops.gsdd.rasterize_fwd.default(
        cast(xy), cast(chol), cast(rgb), cast(opacity.reshape(-1, 1)),
        int(num_images), int(height), int(width), bool(antialias))


def project(xy: torch.Tensor, chol: torch.Tensor, height: int, width: int, antialias: bool = True):
    """The kernels' projection (pixel centres, conics, int32 tile boxes) for tests and diagnostics;
    see ``gsdd_cuda.reference.project`` for the reference it reproduces."""
    if not torch.compiler.is_compiling():
        _backend.require(xy.device.type)
    dtype = kernel_dtype(xy)
    return torch.ops.gsdd.project.default(xy.to(dtype).contiguous(), chol.to(dtype).contiguous(),
                                          int(height), int(width), bool(antialias))


_backend.on_load(register)

__all__ = ["rasterize", "project", "register", "kernel_dtype"]
