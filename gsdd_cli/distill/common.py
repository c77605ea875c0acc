"""Pieces shared by the three algorithms and the run loop: seeding, torch.distributed, the run context.

Randomness. Every iteration starts by reseeding torch (CPU and CUDA), numpy and ``random`` from
``derive_seed(seed, iteration[, rank])`` (a hash), so an iteration's draws depend only on the seed and
its number, never on what ran before. Resuming from a checkpoint is therefore exact by construction
(the checkpoint still stores every RNG state, see loop.py).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

# torch.distributed and derive_seed live in core.distributed (sets and evaluate use them too)
from gsdd_cli.core.distributed import (  # noqa: F401  (re-exported: the algorithms import them from here)
    DistInfo,
    all_reduce_grads,
    any_rank,
    barrier,
    broadcast_params,
    derive_seed,
    init_distributed,
    rank_device,
    shutdown_distributed,
)


from gsdd_cli.sets.synthetic import SyntheticImages


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and all CUDA devices), numpy and ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % (1 << 32))
    random.seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global RNG state, in a form ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x: Any) -> Any:
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


# ------------------------------------------------------------------------------------ run context
@dataclass
class Context:
    """What an algorithm needs: config, data (network space), the synthetic images and their optimizer."""

    cfg: Any  # DistillConfig
    device: torch.device
    images: SyntheticImages  # GaussianImages or PixelImages
    optimizer: torch.optim.Optimizer
    transform: torch.nn.Module
    num_classes: int
    channels: int
    height: int
    width: int
    real_x: torch.Tensor | None = None  # [N, C, H, W] transformed real training images (DM/DC)
    real_y: torch.Tensor | None = None
    class_index: list[torch.Tensor] = field(default_factory=list)
    dist: DistInfo = field(default_factory=DistInfo)
    render_seconds: float = 0.0

    @property
    def gpc(self) -> int:
        return self.images.num_images // self.num_classes

    def image_params(self) -> list[torch.Tensor]:
        return [p for p in self.images.parameters() if p.requires_grad]

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def render(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Render (all, or the ``idx`` subset of) the synthetic images in network space (rendered
        and transformed; pixel sets that store network-space values return them as they are).

        Differentiable; the wall time of the forward pass is added to ``render_seconds``.
        """
        self._sync()
        t0 = time.perf_counter()
        x = self.images.network_images(idx, self.transform, backend=self.cfg.backend)
        self._sync()
        self.render_seconds += time.perf_counter() - t0
        return x

    def class_images(self, c: int) -> torch.Tensor:
        """Indices of class ``c``'s synthetic images (all, or a random ``batch_syn`` subset)."""
        g = self.gpc
        idx = torch.arange(c * g, (c + 1) * g, device=self.device)
        bs = self.cfg.batch_syn
        if 0 < bs < g:
            idx = idx[torch.randperm(g, device="cpu")[:bs].to(self.device)]
        return idx

    def real_batch(self, c: int, n: int) -> torch.Tensor:
        """``n`` random real training images of class ``c`` (network space, on the device)."""
        pool = self.class_index[c]
        pick = pool[torch.randperm(pool.numel())[:n]]
        return self.real_x[pick.to(self.real_x.device)].to(self.device, non_blocking=True)

    def boundary(self) -> torch.Tensor:
        return self.cfg.boundary_lambda * self.images.boundary_loss()

    def step_images(self, average: bool = False) -> None:
        """All-reduce the image gradients (multi-process), optimizer step, projection (Gaussians:
        clip the positions)."""
        all_reduce_grads(self.image_params(), self.dist, average=average)
        self.optimizer.step()
        self.images.after_step()


def draw_seed() -> int:
    """A DSA seed drawn from the (per-iteration seeded) global torch RNG."""
    return int(torch.randint(0, 2**31 - 1, (1,)).item())


__all__ = [
    "Context",
    "DistInfo",
    "all_reduce_grads",
    "any_rank",
    "barrier",
    "shutdown_distributed",
    "broadcast_params",
    "derive_seed",
    "draw_seed",
    "init_distributed",
    "rank_device",
    "rng_state",
    "seed_everything",
    "set_rng_state",
]
