"""Training expert networks: one at a time (:func:`train_one`) or K at once (:func:`train_batched`).

Both give each expert the same random streams. Expert i is seeded with ``seed_everything(derive_seed(
seed, "expert", i))`` and then built (its initialisation draws from the global RNG); every later draw
of that expert — the epoch's ``randperm`` data order and the non-Siamese DSA of each batch (the op
choice on the CPU generator, the per-sample parameters on the data's device) — continues that
expert's stream. The batched trainer keeps each expert's generator states (:class:`ExpertRng`) and
swaps them in around that expert's draws, so its data order and augmentation are exactly the
sequential ones; only the arithmetic differs: the K networks run as one ``torch.func.vmap`` of
``functional_call`` over stacked parameters [K, ...] (the convolutions become grouped ones), the sum
of the K mean losses is back-propagated (expert k's gradient is that of its own loss) and one SGD
steps the stacked tensors (SGD is element-wise, so it is K independent optimizers).

Networks with buffers (BatchNorm's running statistics) or with ops vmap cannot batch (random ops
such as dropout) are not batched: :func:`batch_refusal` says why, and the caller trains them one
at a time.
"""

from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from gsdd_cli.data.augment import dsa
from gsdd_cli.distill.common import derive_seed, seed_everything
from gsdd_cli.evaluate import test_accuracy, train_epoch

# (loss, train accuracy, test accuracy or None) of each expert after one epoch
EpochStats = list[tuple[float, float, Optional[float]]]
# on_epoch(epoch 1…E, seconds the epoch's training took, per-expert stats)
OnEpoch = Callable[[int, float, EpochStats], None]


def flat_params(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()]).float().cpu()


def batch_refusal(make_net: Callable[[], torch.nn.Module], shape: tuple[int, int, int], device) -> str | None:
    """Why the networks of ``make_net`` cannot be trained in batches (``None``: they can).

    Tries one vmapped forward and backward of two copies on two zero images (no random draws)."""
    net = make_net()
    if any(True for _ in net.buffers()):
        return "has buffers (BatchNorm running statistics) that vmap cannot update per expert"
    try:
        params, _ = stack_module_state([net, copy.deepcopy(net)])
        params = {k: v.to(device).requires_grad_(True) for k, v in params.items()}
        base = copy.deepcopy(net).to("meta")
        out = vmap(lambda p, x: functional_call(base, p, (x,)))(params, torch.zeros(2, 2, *shape, device=device))
        out.sum().backward()
    except Exception as e:  # noqa: BLE001 — any failure means: train one at a time
        return f"cannot run under torch.func.vmap ({type(e).__name__}: {str(e).splitlines()[0][:80]})"
    return None


class ExpertRng:
    """One expert's global generator states: the CPU one and, on a GPU, that device's."""

    def __init__(self, device: torch.device):
        self.cuda = device if device.type == "cuda" else None
        self.cpu_state = torch.get_rng_state()
        self.cuda_state = torch.cuda.get_rng_state(self.cuda) if self.cuda is not None else None

    @contextmanager
    def active(self) -> Iterator[None]:
        """Run the block on this expert's streams; the caller's streams are restored after it."""
        outer_cpu = torch.get_rng_state()
        outer_cuda = torch.cuda.get_rng_state(self.cuda) if self.cuda is not None else None
        torch.set_rng_state(self.cpu_state)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda_state, self.cuda)
        try:
            yield
        finally:
            self.cpu_state = torch.get_rng_state()
            torch.set_rng_state(outer_cpu)
            if self.cuda is not None:
                self.cuda_state = torch.cuda.get_rng_state(self.cuda)
                torch.cuda.set_rng_state(outer_cuda, self.cuda)


def train_one(index: int, make_net: Callable[[], torch.nn.Module], x, y, test_x, test_y, *, seed: int,
              epochs: int, batch: int, lr: float, momentum: float, weight_decay: float,
              dsa_strategy: str | None, on_epoch: OnEpoch | None = None) -> tuple[torch.Tensor, Optional[float]]:
    """Expert ``index`` alone: its trajectory [epochs + 1, P] (float32, CPU) and final test accuracy."""
    seed_everything(derive_seed(seed, "expert", index))
    net = make_net().to(x.device)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    snapshots = [flat_params(net)]
    acc = None
    for ep in range(epochs):
        t0 = time.perf_counter()
        loss, train_acc = train_epoch(net, opt, x, y, batch, dsa_strategy)
        seconds = time.perf_counter() - t0
        snapshots.append(flat_params(net))
        if ep + 1 == epochs and test_x is not None:
            acc = test_accuracy(net, test_x, test_y)
        if on_epoch is not None:
            on_epoch(ep + 1, seconds, [(loss, train_acc, acc)])
    return torch.stack(snapshots).contiguous(), acc


def _stacked_flat(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """[K, P]: each expert's parameters flattened in ``net.parameters()`` order (float32, CPU)."""
    k = next(iter(params.values())).shape[0]
    return torch.cat([p.detach().reshape(k, -1) for p in params.values()], 1).float().cpu()


@torch.no_grad()
def _test_accuracies(fmodel, params, test_x, test_y, k: int) -> list[float]:
    correct = torch.zeros(k, dtype=torch.long, device=test_x.device)
    chunk = max(1, 1000 // k)  # K networks see each chunk: keep the activations of ~1000 images
    for s in range(0, test_x.shape[0], chunk):
        out = vmap(fmodel, in_dims=(0, None))(params, test_x[s : s + chunk])  # [K, b, classes]
        correct += (out.argmax(-1) == test_y[s : s + chunk]).sum(1)
    return [int(c) / max(1, test_x.shape[0]) for c in correct.tolist()]


def train_batched(indices: list[int], make_net: Callable[[], torch.nn.Module], x, y, test_x, test_y, *,
                  seed: int, epochs: int, batch: int, lr: float, momentum: float, weight_decay: float,
                  dsa_strategy: str | None,
                  on_epoch: OnEpoch | None = None) -> list[tuple[torch.Tensor, Optional[float]]]:
    """Experts ``indices`` trained at once; per expert what :func:`train_one` returns for it."""
    device, n, k = x.device, x.shape[0], len(indices)
    nets, rngs = [], []
    for i in indices:  # each expert's initialisation and streams exactly as train_one makes them
        seed_everything(derive_seed(seed, "expert", i))
        nets.append(make_net())
        rngs.append(ExpertRng(device))
    stacked, _ = stack_module_state(nets)
    params = {name: p.detach().to(device).requires_grad_(True) for name, p in stacked.items()}
    base = copy.deepcopy(nets[0]).to("meta")
    base.train()
    del nets

    def fmodel(p, xb):
        return functional_call(base, p, (xb,))

    def loss_fn(p, xb, yb):
        out = fmodel(p, xb)
        return F.cross_entropy(out, yb), out

    step = vmap(loss_fn)
    opt = torch.optim.SGD(list(params.values()), lr=lr, momentum=momentum, weight_decay=weight_decay)
    snapshots = [_stacked_flat(params)]
    accs: list[Optional[float]] = [None] * k
    for ep in range(epochs):
        t0 = time.perf_counter()
        perms = []
        for r in rngs:
            with r.active():
                perms.append(torch.randperm(n, device=device))
        loss_sum = torch.zeros(k, dtype=torch.float64, device=device)
        correct = torch.zeros(k, dtype=torch.long, device=device)
        for s in range(0, n, batch):
            xs, ys = [], []
            for r, perm in zip(rngs, perms):
                idx = perm[s : s + batch]
                xb = x[idx]
                if dsa_strategy:
                    with r.active():
                        xb = dsa(xb, dsa_strategy, seed=-1)
                xs.append(xb)
                ys.append(y[idx])
            yb = torch.stack(ys)
            losses, out = step(params, torch.stack(xs).contiguous(), yb)
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            loss_sum += losses.detach().double() * yb.shape[1]
            correct += (out.detach().argmax(-1) == yb).sum(1)
        seconds = time.perf_counter() - t0
        snapshots.append(_stacked_flat(params))
        if ep + 1 == epochs and test_x is not None:
            accs = _test_accuracies(fmodel, params, test_x, test_y, k)
        if on_epoch is not None:
            losses_l, correct_l = loss_sum.tolist(), correct.tolist()
            on_epoch(ep + 1, seconds, [(losses_l[j] / max(1, n), correct_l[j] / max(1, n), accs[j])
                                       for j in range(k)])
    traj = torch.stack(snapshots, 1)  # [K, epochs + 1, P]
    return [(traj[j].contiguous(), accs[j]) for j in range(k)]


__all__ = ["ExpertRng", "batch_refusal", "flat_params", "train_batched", "train_one"]
