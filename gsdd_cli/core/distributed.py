"""torch.distributed as gsdd uses it (torchrun only, NCCL on GPUs, gloo on CPU) and stable seeds.

Everything that runs under ``torchrun`` — distillation, expert training, ``gsdd init`` — starts its
group here, so each floor above (sets, evaluate, distill) shares one implementation.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any tuple of ints/strings (stable across runs, platforms and processes)."""
    h = hashlib.blake2b(":".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


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


def owned(units: int, info: DistInfo) -> list[int]:
    """The work units (0 .. units−1) this rank does: every world-th one, starting at its rank.

    Disjoint across ranks and covering every unit, so a result assembled per unit does not depend
    on the number of ranks as long as each unit's own work is seeded by the unit (derive_seed).
    """
    return list(range(info.rank, units, max(1, info.world)))


def share_object(obj: Any, owner: int, info: DistInfo) -> Any:
    """``obj`` from rank ``owner`` on every rank (a pickled broadcast); the object itself on one process."""
    if not info.enabled:
        return obj
    box = [obj if info.rank == owner else None]
    dist.broadcast_object_list(box, src=owner)
    return box[0]


def to_main(obj: Any, owner: int, info: DistInfo) -> Any:
    """``obj`` of rank ``owner`` delivered to rank 0 (point to point; None on the other ranks)."""
    if not info.enabled or owner == 0:
        return obj if info.rank == 0 else None
    if info.rank == owner:
        dist.send_object_list([obj], dst=0)
        return None
    if info.rank == 0:
        box = [None]
        dist.recv_object_list(box, src=owner)
        return box[0]
    return None


__all__ = ["DistInfo", "all_reduce_grads", "any_rank", "barrier", "broadcast_params", "derive_seed",
           "init_distributed", "owned", "rank_device", "share_object", "shutdown_distributed", "to_main"]
