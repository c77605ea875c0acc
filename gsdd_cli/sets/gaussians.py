"""GaussianImages: a whole distilled set as G images of N 2D Gaussians (docs/method.md §1).

Storage is one contiguous fp32 master tensor per attribute over all G·N Gaussians (image g owns
rows g·N … g·N+N−1):

- ``xy``        [G·N, 2]  mean in normalized coordinates, nominal range [-1, 1]
- ``cholesky``  [G·N, 3]  raw Cholesky entries (l1, l2, l3), pixel units; the renderer uses
                          L11 = l1 + 0.5, L21 = l2, L22 = l3 + 0.5 (the offset is a decoder constant)
- ``rgb``       [G·N, C]  colour in pixel space (≈ [0, 1]), no activation
- ``opacity``   [G·N, 1]  weight, no activation, initialised to 1

In the forward pass each raw attribute goes through a straight-through fp32 → bf16 → fp32 cast
(quantization-aware training: the stored artefact is bf16), and the offset is added afterwards.
"""

from __future__ import annotations

import torch
from torch import nn

from gsdd_cuda import rasterize
from gsdd_cli.sets.synthetic import SyntheticImages

CHOLESKY_OFFSET = (0.5, 0.0, 0.5)
BOUNDARY_EPS = 1e-6
ATTRIBUTES = ("xy", "cholesky", "rgb", "opacity")


def bf16_straight_through(x: torch.Tensor) -> torch.Tensor:
    """Round to bf16 (nearest-even) in the forward pass; identity gradient in the backward pass."""
    return x + (x.to(torch.bfloat16).to(x.dtype) - x).detach()


class GaussianImages(SyntheticImages):
    """G images of N Gaussians each, with class labels (class-major: label = index // GPC)."""

    parameterization = "gaussian"

    def __init__(
        self,
        xy: torch.Tensor,  # [G*N, 2]
        cholesky: torch.Tensor,  # [G*N, 3] raw (offset not applied)
        rgb: torch.Tensor,  # [G*N, C]
        opacity: torch.Tensor,  # [G*N, 1]
        labels: torch.Tensor,  # [G]
        height: int,
        width: int,
        *,
        quantize: bool = True,
        antialias: bool = True,
        train_opacity: bool = True,
    ):
        super().__init__()
        g = int(labels.shape[0])
        total = int(xy.shape[0])
        if g < 1 or total % g:
            raise ValueError(f"{total} Gaussians cannot be split evenly into {g} images")
        for name, t, k in (("xy", xy, 2), ("cholesky", cholesky, 3), ("opacity", opacity, 1)):
            if tuple(t.shape) != (total, k):
                raise ValueError(f"{name} must have shape [{total}, {k}], got {list(t.shape)}")
        if rgb.dim() != 2 or rgb.shape[0] != total or rgb.shape[1] < 1:
            raise ValueError(f"rgb must have shape [{total}, C], got {list(rgb.shape)}")
        self.xy = nn.Parameter(xy.detach().float().clone())
        self.cholesky = nn.Parameter(cholesky.detach().float().clone())
        self.rgb = nn.Parameter(rgb.detach().float().clone())
        self.opacity = nn.Parameter(opacity.detach().float().clone(), requires_grad=train_opacity)
        self.register_buffer("labels", labels.detach().long().clone())
        self.height = int(height)
        self.width = int(width)
        self.quantize = quantize
        self.antialias = antialias

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def random(
        cls,
        num_classes: int,
        gpc: int,
        points: int,
        channels: int,
        height: int,
        width: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        **kwargs,
    ) -> "GaussianImages":
        """The fitting start point of docs/method.md §4: xy ~ U[-1,1)², raw L ~ U[0,1)³, colour ~ U[0,1)^C,
        opacity 1; images class-major."""
        total = num_classes * gpc * points
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        xy = torch.rand(total, 2, generator=gen) * 2 - 1
        chol = torch.rand(total, 3, generator=gen)
        rgb = torch.rand(total, channels, generator=gen)
        opacity = torch.ones(total, 1)
        labels = torch.arange(num_classes).repeat_interleave(gpc)
        obj = cls(xy, chol, rgb, opacity, labels, height, width, **kwargs)
        return obj.to(device) if device is not None else obj

    # ------------------------------------------------------------------------------- properties
    @property
    def num_images(self) -> int:
        return int(self.labels.shape[0])

    @property
    def points(self) -> int:
        return int(self.xy.shape[0]) // self.num_images

    @property
    def channels(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def num_gaussians(self) -> int:
        return int(self.xy.shape[0])

    # ---------------------------------------------------------------------------------- forward
    def decoded(
        self, images: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(xy, L, rgb, opacity) as the renderer sees them: bf16-cast (if quantize), offset applied.

        ``images`` optionally selects a subset of image indices (rows are gathered per image).
        """
        attrs = [self.xy, self.cholesky, self.rgb, self.opacity]
        if images is not None:
            n = self.points
            idx = images.to(self.xy.device).long()
            rows = (idx[:, None] * n + torch.arange(n, device=idx.device)).reshape(-1)
            attrs = [a[rows] for a in attrs]
        if self.quantize:
            attrs = [bf16_straight_through(a) for a in attrs]
        xy, chol, rgb, opacity = attrs
        chol = chol + chol.new_tensor(CHOLESKY_OFFSET)
        return xy, chol, rgb, opacity

    def render(
        self,
        images: torch.Tensor | None = None,
        *,
        scale: float = 1.0,
        backend: str = "auto",
    ) -> torch.Tensor:  # [G, C, H, W] pixel space
        """Render all images (or the ``images`` subset) in one batched call.

        ``scale`` renders at a multiple of the native resolution: Gaussians are resolution-free, the
        means stay in normalized coordinates and the Cholesky factor (pixel units) scales with it.
        """
        xy, chol, rgb, opacity = self.decoded(images)
        count = self.num_images if images is None else int(images.numel())
        height, width = self.height, self.width
        if scale != 1.0:
            if scale <= 0:
                raise ValueError("scale must be positive")
            height, width = max(1, round(height * scale)), max(1, round(width * scale))
            sx, sy = width / self.width, height / self.height
            chol = chol * chol.new_tensor([sx, sy, sy])  # diag(sx, sy)·L stays lower-triangular
        return rasterize(
            xy, chol, rgb, opacity, count, height, width, antialias=self.antialias, backend=backend
        )

    # -------------------------------------------------------------------------- training helpers
    def clip_positions_(self) -> None:
        """Paper eq. 11: after every optimizer step, xy ← clamp(xy, −1 + 10ε, 1 − 10ε)."""
        eps = 1e-4 if self.quantize else 1e-5
        with torch.no_grad():
            self.xy.clamp_(-1 + 10 * eps, 1 - 10 * eps)

    def after_step(self) -> None:
        self.clip_positions_()

    def boundary_loss(self) -> torch.Tensor:
        """Paper eq. 10: mean over all coordinates of −log(1 − u²) on the fp32 master means."""
        u = self.xy.clamp(-1 + BOUNDARY_EPS, 1 - BOUNDARY_EPS)
        return -torch.log1p(-(u * u)).mean()

    def param_groups(self, lr: float | dict[str, float]) -> list[dict]:
        """One optimizer group per attribute (the paper uses one Adam per attribute group)."""
        lrs = lr if isinstance(lr, dict) else {a: lr for a in ATTRIBUTES}
        return [
            {"params": [getattr(self, a)], "lr": lrs[a], "name": a}
            for a in ATTRIBUTES
            if getattr(self, a).requires_grad
        ]

    def dead_fraction(self) -> float:
        """Fraction of Gaussians with opacity < 1/255: invisible and gradient-dead (docs/method.md §9.6)."""
        with torch.no_grad():
            return float((self.opacity < 1.0 / 255.0).float().mean())

    # ---------------------------------------------------------------------------------- storage
    def stored_tensors(self) -> dict[str, torch.Tensor]:
        """The bf16 artefact: {xy [G,N,2], cholesky [G,N,3], rgb [G,N,C], opacity [G,N,1]}."""
        g, n = self.num_images, self.points
        return {
            a: getattr(self, a).detach().to(torch.bfloat16).reshape(g, n, -1).cpu().contiguous().clone()
            for a in ATTRIBUTES
        }

    def payload_bytes(self) -> int:
        return self.num_gaussians * (6 + self.channels) * 2

    def header_fields(self) -> dict:
        return {"points_per_image": self.points, "antialias": self.antialias}

    def render_chunk(self, device: torch.device) -> int:
        if device.type == "cuda":
            return 1024
        # the dense reference touches points × H × W × 4 sub-samples per image
        return max(1, int(3e7 // max(1, self.points * self.height * self.width * 4)))
