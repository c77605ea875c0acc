"""PixelImages: a distilled set stored as plain images (the pixel baselines of MTT, DC and DM).

G images of C×H×W values, class-major labels. The trainable tensor ``values`` [G, C, H, W] lives in
one of two spaces:

- **pixel space** (``space is None``): what a ``.gsd`` file stores and ``render`` returns, ≈ [0, 1];
- **network space** of a transform T (``space = T``): what the published pixel methods optimize
  (they keep the synthetic images normalised or ZCA-whitened and take SGD steps there, so their
  learning rates are network-space learning rates). ``render`` then returns T⁻¹(values) and
  ``network_images`` returns the values as they are.

:meth:`PixelImages.in_space` converts between the two. Storage is fp32: the budget of IPC real
images per class is defined as IPC·C·H·W fp32 values, so IPC fp32 images per class meet it exactly
(docs/format.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gsdd_cli.sets.synthetic import SyntheticImages

PIXEL_BYTES = 4  # fp32


class PixelImages(SyntheticImages):
    """G pixel images with class labels (class-major: label = index // images per class)."""

    parameterization = "pixel"

    def __init__(self, values: torch.Tensor, labels: torch.Tensor, *, space: nn.Module | None = None):
        super().__init__()
        if values.dim() != 4:
            raise ValueError(f"pixel images must have shape [G, C, H, W], got {list(values.shape)}")
        if labels.dim() != 1 or labels.shape[0] != values.shape[0] or values.shape[0] < 1:
            raise ValueError(f"need one label per image: {values.shape[0]} images, labels {list(labels.shape)}")
        self.values = nn.Parameter(values.detach().float().clone())
        self.register_buffer("labels", labels.detach().long().clone())
        self.space = space
        self.height = int(values.shape[2])
        self.width = int(values.shape[3])

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def from_pixels(cls, pixels: torch.Tensor, labels: torch.Tensor, space: nn.Module | None = None) -> "PixelImages":
        """Pixel-space images, stored in ``space`` (a transform) or as they are."""
        if space is None:
            return cls(pixels, labels)
        with torch.no_grad():
            values = space(pixels.to(_device_of(space, pixels)).float())
        return cls(values, labels, space=space)

    def in_space(self, space: nn.Module | None) -> "PixelImages":
        """The same images with their trainable values in ``space`` (None: pixel space)."""
        if space is self.space:
            return self
        with torch.no_grad():
            pixels = self.render()
        return PixelImages.from_pixels(pixels, self.labels, space)

    # ------------------------------------------------------------------------------- properties
    @property
    def channels(self) -> int:
        return int(self.values.shape[1])

    # ---------------------------------------------------------------------------------- forward
    def _select(self, images: torch.Tensor | None) -> torch.Tensor:
        if images is None:
            return self.values
        return self.values[images.to(self.values.device).long()]

    def render(self, images: torch.Tensor | None = None, *, scale: float = 1.0,
               backend: str = "auto") -> torch.Tensor:
        """Pixel-space images (all, or the ``images`` subset); differentiable.

        ``scale`` ≠ 1 resizes with nearest-neighbour sampling (pixel images are not resolution-free).
        ``backend`` is accepted for interface compatibility and ignored.
        """
        del backend
        x = self._select(images)
        if self.space is not None:
            x = self.space.inverse(x)
        if scale != 1.0:
            if scale <= 0:
                raise ValueError("scale must be positive")
            size = (max(1, round(self.height * scale)), max(1, round(self.width * scale)))
            x = F.interpolate(x, size=size, mode="nearest")
        return x

    def network_images(self, images: torch.Tensor | None, transform: nn.Module,
                       backend: str = "auto") -> torch.Tensor:
        if transform is self.space:
            return self._select(images)
        return transform(self.render(images))

    # ----------------------------------------------------------------------------- optimization
    def param_groups(self, lr: float) -> list[dict]:
        return [{"params": [self.values], "lr": float(lr), "name": "pixels"}]

    # ---------------------------------------------------------------------------------- storage
    def payload_bytes(self) -> int:
        return self.values.numel() * PIXEL_BYTES

    def stored_tensors(self) -> dict[str, torch.Tensor]:
        """{"pixels": fp32 [G, C, H, W] in pixel space} (the .gsd artefact)."""
        with torch.no_grad():
            pixels = self.render()
        return {"pixels": pixels.detach().float().cpu().contiguous().clone()}

    def render_chunk(self, device: torch.device) -> int:
        return 4096


def _device_of(module: nn.Module, fallback: torch.Tensor) -> torch.device:
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return fallback.device


__all__ = ["PIXEL_BYTES", "PixelImages"]
