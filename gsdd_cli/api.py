"""The library's front door: ``load(path)`` gives a :class:`DistilledSet`.

A :class:`DistilledSet` wraps a validated ``.gsd`` file and knows how to turn it into training data:

- ``render()`` decodes every image to **pixel space** ([G, C, H, W] float32, unclamped, nominally
  [0, 1]);
- ``transform`` is the network-space map the file records (``zca``, ``normalize`` or ``none``) as an
  ``nn.Module``, rebuilt from the header — and from the real training set when it has to be fitted
  (ZCA);
- ``dataset(space="network")`` is a ``torch.utils.data.TensorDataset`` of (image, label) pairs, ready
  for a ``DataLoader``; ``space="pixel"`` gives the raw renders instead.

Only the duck-typed image interface is used (``render(idx, scale=, backend=)``, ``labels``,
``num_images``, ``channels``, ``height``, ``width``), so any parameterization stored in a ``.gsd``
works the same way. See docs/api.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Literal

import torch

from gsdd_cli.core.errors import ConfigError
from gsdd_cli.data.transforms import apply_in_batches
from gsdd_cli.evaluate import EvalConfig, evaluate_set
from gsdd_cli.evaluate.source import header_transform, real_dataset_for
from gsdd_cli.sets.gsdfile import load_gsd
from gsdd_cli.sets.synthetic import render_images  # public here too (docs/api.md)

Space = Literal["network", "pixel"]
SPACES = ("network", "pixel")


def check_space(space: str) -> str:
    if space not in SPACES:
        raise ConfigError(f"unknown space {space!r}; valid: {', '.join(SPACES)}")
    return space


class DistilledSet:
    """A validated distilled set: header, images and the recorded network-space transform.

    Build it with :func:`load`. ``data_dir`` / ``dataset`` say where the real dataset is found when it
    is needed (ZCA fitting, evaluation); ``dataset`` overrides the header's dataset name.
    """

    def __init__(self, header: Any, images: Any, path: Path | None = None, *,
                 data_dir: Path | str | None = None, dataset: str | None = None):
        self.header = header
        self.images = images
        self.path = Path(path) if path is not None else None
        self.data_dir = data_dir
        self.dataset_name = str(dataset) if dataset is not None else header.dataset
        self._real = None
        self._transform = None

    # --------------------------------------------------------------------------- header views
    @property
    def labels(self) -> torch.Tensor:
        """[G] int64 class labels on the CPU (class-major: label = index // GPC)."""
        return self.images.labels.detach().long().cpu()

    @property
    def class_names(self) -> list[str]:
        return list(self.header.class_names)

    @property
    def num_classes(self) -> int:
        return int(self.header.num_classes)

    @property
    def num_images(self) -> int:
        return int(self.images.num_images)

    @property
    def ipc(self) -> int:
        """The budget in real images per class (sizes a fair random-real baseline)."""
        return int(self.header.ipc)

    @property
    def gpc(self) -> int:
        """Stored images per class (≥ IPC for Gaussian sets)."""
        return int(self.header.gpc)

    @property
    def syn_lr(self) -> float | None:
        """The learned training lr (TM), else None (the evaluation protocol then uses 0.01)."""
        return self.header.syn_lr

    @property
    def algorithm(self) -> str:
        return self.header.algorithm

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) at native resolution."""
        return int(self.header.channels), int(self.header.height), int(self.header.width)

    @property
    def device(self) -> torch.device:
        return self.images.labels.device

    def __repr__(self) -> str:
        c, h, w = self.shape
        return (f"DistilledSet({self.path or '<memory>'}: {self.header.dataset}, {self.num_classes} classes × "
                f"GPC {self.gpc} (IPC {self.ipc}) of {c}×{h}×{w}, {self.algorithm}, transform "
                f"{self.header.transform})")

    # ---------------------------------------------------------------------------- real dataset
    def real_dataset(self):
        """The real dataset the file was distilled from (loaded once; checked against the header)."""
        if self._real is None:
            self._real = real_dataset_for(self.header, self.dataset_name, self.data_dir)
        return self._real

    @property
    def transform(self):
        """The recorded pixel → network map as an ``nn.Module`` (on the CPU; move it with ``.to``).

        ``normalize`` uses the mean/std stored in the header (the dataset's statistics when the header
        has none); ``zca`` is refitted on the real training set (cached, see docs/datasets.md) and must
        have been fitted on as many images as the header records; ``none`` is the identity.
        """
        if self._transform is None:
            self._transform = self._build_transform()
        return self._transform

    def _build_transform(self):
        return header_transform(self.header, self.real_dataset)

    # ------------------------------------------------------------------------------- decoding
    def _images_on(self, device: torch.device | str | None) -> Any:
        if device is None:
            return self.images
        dev = torch.device(device)
        if self.images.labels.device != dev:
            if not hasattr(self.images, "to"):
                raise ConfigError(f"these images cannot move to {dev}; load the file with device={str(dev)!r}")
            self.images = self.images.to(dev)
        return self.images

    def render(
        self,
        scale: float = 1.0,
        device: torch.device | str | None = None,
        backend: str = "auto",
        on_progress: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """All images in pixel space: [G, C, H·scale, W·scale] float32, unclamped, on ``device``.

        ``device`` moves the images there first (they stay there); default: where they are.
        """
        if not scale > 0:
            raise ConfigError(f"scale must be positive, got {scale}")
        return render_images(self._images_on(device), scale=scale, backend=backend, on_progress=on_progress)

    def to_network(self, pixels: torch.Tensor) -> torch.Tensor:
        """Apply :attr:`transform` to pixel-space images [B, C, H, W] (no autograd, chunked)."""
        return apply_in_batches(self.transform, pixels, pixels.device)

    def tensors(
        self,
        space: Space = "network",
        device: torch.device | str | None = None,
        backend: str = "auto",
        on_progress: Callable[[int, int], None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(images [G, C, H, W] float32 in ``space``, labels [G] int64), both on ``device``."""
        check_space(space)
        pixels = self.render(device=device, backend=backend, on_progress=on_progress)
        x = self.to_network(pixels) if space == "network" else pixels
        return x, self.labels.to(x.device)

    def dataset(
        self,
        space: Space = "network",
        device: torch.device | str | None = None,
        backend: str = "auto",
    ) -> torch.utils.data.TensorDataset:
        """A ``TensorDataset`` of (image, label): network space (what the networks train on, the
        default) or pixel space. Rendered once; wrap it in a ``DataLoader``."""
        x, y = self.tensors(space, device=device, backend=backend)
        return torch.utils.data.TensorDataset(x, y)

    def evaluate(self, cfg=None, backend: str = "auto", on_step=None, **options: Any):
        """Train fresh networks on this set and test them (see :func:`gsdd_cli.evaluate.evaluate_set`)."""
        return evaluate_set(self, cfg or EvalConfig(), backend=backend, on_step=on_step, **options)


def load(
    path: str | Path,
    *,
    device: torch.device | str = "cpu",
    data_dir: str | Path | None = None,
    dataset: str | None = None,
) -> DistilledSet:
    """Read and validate a ``.gsd`` file (raises :class:`GsdFormatError` with a one-line message).

    ``data_dir`` and ``dataset`` are only used when the real dataset is needed (a ZCA transform to
    refit, a normalize header without statistics, evaluation).
    """
    f = load_gsd(path, device=device)
    return DistilledSet(f.header, f.images, f.path, data_dir=data_dir, dataset=dataset)


__all__ = ["DistilledSet", "SPACES", "check_space", "load", "render_images"]
