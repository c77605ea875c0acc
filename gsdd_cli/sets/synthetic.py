"""The interface every parameterization of a distilled set implements (Gaussian images, pixel images).

A distilled set is G = GPC·K synthetic images with class-major labels. Code that trains, renders,
evaluates or stores a set (``gsdd distill``, ``render``, ``eval``, ``info``, ``gsdfile``) uses only
the members below, so it never branches on the parameterization:

- ``parameterization``       ``"gaussian"`` or ``"pixel"`` (the header field of the same name);
- ``labels`` [G], ``num_images``, ``channels``, ``height``, ``width``;
- ``render(idx=None, *, scale=1.0, backend="auto")``  → [G or len(idx), C, H, W] in pixel space,
  differentiable;
- ``network_images(idx, transform, backend)``  → what the networks see (``transform(render(idx))``
  unless the parameterization stores network-space values itself);
- ``param_groups(lr)``, ``after_step()`` (projection after each optimizer step), ``boundary_loss()``;
- ``payload_bytes()``, ``stored_tensors()`` (what a ``.gsd`` file holds), ``header_fields()``;
- ``state_tensors()`` (exact fp32 state for checkpoints) and ``render_chunk(device)`` (how many
  images one render call may hold in memory).

Implementations: :class:`gsdd_cli.sets.gaussians.GaussianImages` and :class:`gsdd_cli.sets.pixels.PixelImages`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

PARAMETERIZATIONS = ("gaussian", "pixel")


class SyntheticImages(nn.Module):
    """Base class of the parameterizations (see the module docstring for the contract)."""

    parameterization = "none"
    labels: torch.Tensor
    height: int
    width: int

    # ------------------------------------------------------------------------------ properties
    @property
    def num_images(self) -> int:
        return int(self.labels.shape[0])

    @property
    def channels(self) -> int:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    # ---------------------------------------------------------------------------------- forward
    def render(self, images: torch.Tensor | None = None, *, scale: float = 1.0,
               backend: str = "auto") -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def network_images(self, images: torch.Tensor | None, transform: nn.Module,
                       backend: str = "auto") -> torch.Tensor:
        """The (subset of) images in network space: ``transform(render(images))``, differentiable."""
        return transform(self.render(images, backend=backend))

    @torch.no_grad()
    def first_nonfinite(self) -> str | None:
        """Name of the first trainable tensor that holds a NaN or Inf (a diverged fit or run), else None."""
        for name, p in self.named_parameters():
            if not bool(torch.isfinite(p).all()):
                return name
        return None

    # ----------------------------------------------------------------------------- optimization
    def param_groups(self, lr: Any) -> list[dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def after_step(self) -> None:
        """Projection after every optimizer step (Gaussians: clip the means). Default: nothing."""

    def boundary_loss(self) -> torch.Tensor:
        """Regulariser added to every loss (Gaussians: the boundary loss). Default: 0."""
        return torch.zeros((), device=self.labels.device)

    def dead_fraction(self) -> float | None:
        """Share of invisible primitives (Gaussians), or None where the notion does not apply."""
        return None

    # ---------------------------------------------------------------------------------- storage
    def payload_bytes(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def stored_tensors(self) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def header_fields(self) -> dict[str, Any]:
        """Fields of the .gsd header that depend on the parameterization."""
        return {}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Exact fp32 state for a checkpoint (CPU clones of the trainable tensors)."""
        return {n: p.detach().cpu().clone() for n, p in self.named_parameters()}

    def render_chunk(self, device: torch.device) -> int:
        """Images per render call that keep memory bounded (training-time chunks; :func:`render_images` sizes its own)."""
        return 1024


# ------------------------------------------------------------------------------ whole-set rendering
# The dense CPU reference touches (Gaussians per image × H × W × 4 sub-samples) values per image;
# chunks of this many keep its temporaries around a few hundred MB.
_CPU_RENDER_BUDGET = 3e7
_GPU_RENDER_CHUNK = 1024


def render_chunk_size(images: Any, device: torch.device, scale: float = 1.0) -> int:
    """Images per render call in :func:`render_images` (memory-bounded on the CPU)."""
    if device.type == "cuda":
        return _GPU_RENDER_CHUNK
    points = int(getattr(images, "points", 1) or 1)  # pixel sets have no Gaussians per image
    pixels = max(1, round(images.height * scale)) * max(1, round(images.width * scale))
    return max(1, int(_CPU_RENDER_BUDGET // max(1, points * pixels * 4)))


@torch.no_grad()
def render_images(
    images: Any,
    *,
    scale: float = 1.0,
    backend: str = "auto",
    on_progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Render every image of ``images`` (pixel space, float32) in memory-bounded chunks.

    Rendering happens where ``images`` lives; ``on_progress(done, total)`` is called after each chunk.
    Only the duck-typed interface is used (``render``, ``labels``, ``num_images``, ``height``,
    ``width`` and, when present, ``points``).
    """
    device = images.labels.device
    total = int(images.num_images)
    chunk = render_chunk_size(images, device, scale)
    out = []
    for start in range(0, total, chunk):
        idx = torch.arange(start, min(total, start + chunk), device=device)
        out.append(images.render(idx, scale=scale, backend=backend).float())
        if on_progress is not None:
            on_progress(int(idx[-1]) + 1, total)
    return torch.cat(out)


__all__ = ["PARAMETERIZATIONS", "SyntheticImages", "render_chunk_size", "render_images"]
