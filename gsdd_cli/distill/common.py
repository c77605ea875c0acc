"""Pieces shared by the three algorithms and the run loop: seeding, torch.distributed, the run context.

Randomness. Every iteration starts by reseeding torch (CPU and CUDA), numpy and ``random`` from
``derive_seed(seed, iteration[, rank])`` (a hash), so an iteration's draws depend only on the seed and
its number, never on what ran before. Resuming from a checkpoint is therefore exact by construction
(the checkpoint still stores every RNG state, see loop.py).
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from gsdd_cli.sets.synthetic import SyntheticImages


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any tuple of ints/strings (stable across runs, platforms and processes)."""
    h = hashlib.blake2b(":".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


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


# ------------------------------------------------------------------------------ torch.distributed
@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    grouped: bool = False  # a process group exists (torchrun forms one even for a single process)

    @property
    def enabled(self) -> bool:
        return self.world > 1 or self.grouped

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_spec: str = "auto") -> DistInfo:
    """Initialise torch.distributed from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK).

    Nothing happens for a single process started without torchrun (no WORLD_SIZE or WORLD_SIZE=1 and
    no TORCHELASTIC_RUN_ID); under torchrun even one process forms a group, so one GPU still runs the
    NCCL path. Backend: nccl when the run uses CUDA, gloo on CPU. Each rank uses cuda:LOCAL_RANK.
    """
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1 and not os.environ.get("TORCHELASTIC_RUN_ID"):
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    use_cuda = torch.cuda.is_available() and device_spec in ("auto", "cuda") or device_spec.startswith("cuda")
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local)
        _import_group_capturing_modules()
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local, grouped=True)


def rank_device(device: torch.device, info: DistInfo) -> torch.device:
    if info.enabled and device.type == "cuda":
        return torch.device("cuda", info.local_rank)
    return device


def all_reduce_grads(params: list[torch.Tensor], info: DistInfo, average: bool) -> None:
    """Sum (or average) the .grad of every tensor across ranks; no-op on one process."""
    if not info.enabled:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        if average:
            p.grad /= info.world


def broadcast_params(module: torch.nn.Module, info: DistInfo) -> None:
    if not info.enabled:
        return
    with torch.no_grad():
        for p in module.parameters():
            dist.broadcast(p.data, src=0)


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any rank."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def _import_group_capturing_modules() -> None:
    """Import, before the process group exists, the torch modules that capture it at import time.

    ``torch.distributed.nn.functional`` declares ``def broadcast(..., group=group.WORLD)`` and nine
    more collectives like it: the default is evaluated when the module is imported. The first
    ``torch.optim`` optimizer imports ``torch._dynamo`` → FSDP → ``torch.distributed.nn`` lazily, so
    after ``init_process_group`` those ten defaults held the live default group. Then
    ``destroy_process_group()`` could not free it: its gloo threads (``pt_gloo_runloop``,
    ``gloo_tcp_loop``) lived on into interpreter shutdown, where their destruction raced with the
    peer's exit and now and then aborted a finished rank with "terminate called without an active
    exception" (SIGABRT). Imported first, the defaults are ``None`` and the group dies on destroy.
    """
    import torch.distributed.nn  # noqa: F401


def shutdown_distributed(info: DistInfo, wait: bool = True) -> None:
    """Tear the process group down (after a final barrier when ``wait``) before the interpreter exits.

    A group left alive at interpreter exit keeps its gloo threads running into shutdown, which can
    abort (SIGABRT) a rank whose peer has already gone. ``wait=False`` is for error paths, where a
    peer may never reach the barrier; the destroy itself is local.
    """
    if info.enabled and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


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
