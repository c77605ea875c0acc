"""Training fresh networks under the protocol: one pass (:func:`train_epoch`, shared with expert
training), test accuracy, the optimizer and its schedule, and ``runs`` seeded networks per set.

SGD: lr × 0.1 once after pass ``epochs // 2 + 1`` with a fresh optimizer (MTT's loop 0…epochs);
AdamW: cosine annealing over the epochs. Test accuracy every ``eval_every`` passes and at the end.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch
import torch.nn.functional as F

from gsdd_cli.data.augment import dsa
from gsdd_cli.data.streaming import is_streamed
from gsdd_cli.evaluate.config import EvalConfig
from gsdd_cli.evaluate.metrics import mean_std
from gsdd_cli.evaluate.results import EvalResult, EvalStep
from gsdd_cli.evaluate.settings import EvalSettings
from gsdd_cli.models import get_model


@torch.no_grad()
def test_accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    was_training = net.training
    net.eval()
    correct = 0
    for s in range(0, x.shape[0], batch):
        correct += int((net(x[s : s + batch]).argmax(1) == y[s : s + batch]).sum())
    net.train(was_training)
    return correct / max(1, x.shape[0])


def train_epoch(
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    images: torch.Tensor,  # [N, C, H, W] network space
    labels: torch.Tensor,  # [N]
    batch_size: int,
    dsa_strategy: str | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[float, float]:
    """One pass in a random order with cross-entropy and (non-Siamese) DSA on every batch.

    Returns (mean training loss, training accuracy). Shared by evaluation and expert training.
    """
    n = images.shape[0]
    perm = torch.randperm(n, device=images.device)
    loss_sum, correct = 0.0, 0
    for s in range(0, n, batch_size):
        idx = perm[s : s + batch_size]
        x, y = images[idx], labels[idx]
        if dsa_strategy:
            x = dsa(x, dsa_strategy, seed=-1)
        out = net(x.contiguous(memory_format=memory_format))
        loss = F.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += float(loss.detach()) * y.shape[0]
        correct += int((out.detach().argmax(1) == y).sum())
    return loss_sum / max(1, n), correct / max(1, n)


def _make_optimizer(net: torch.nn.Module, st: EvalSettings, lr: float) -> torch.optim.Optimizer:
    if st.optimizer == "sgd":
        return torch.optim.SGD(net.parameters(), lr=lr, momentum=st.momentum, weight_decay=st.weight_decay)
    return torch.optim.AdamW(net.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=st.weight_decay)


def _train_one(run: int, images, labels, test_x, test_y, cfg: EvalConfig, st: EvalSettings,
               num_classes: int, on_step) -> tuple[float, float, int, float]:
    dev = images.device
    c, h, w = images.shape[1:]
    net = get_model(st.arch, c, num_classes, h, w).to(dev)
    # channels_last makes oneDNN convolutions several times faster on CPU
    fmt = torch.channels_last if dev.type == "cpu" else torch.contiguous_format
    net = net.to(memory_format=fmt)
    net.train()
    passes = st.epochs + 1
    decay_after = st.epochs // 2 + 1
    opt = _make_optimizer(net, st, st.lr)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, st.epochs))
             if st.optimizer == "adamw" else None)
    best, best_ep, final = -1.0, 0, 0.0
    # bound the first layer's activations at test time (~1 GB on CPU, ~8 GB on GPU in fp32)
    budget = 2.5e8 if dev.type == "cpu" else 2e9
    test_batch = max(1, min(cfg.test_batch_size, int(budget // (h * w * 128))))
    start = time.perf_counter()
    for ep in range(passes):
        t_pass = time.perf_counter()
        train_loss, train_acc = train_epoch(net, opt, images, labels, st.batch_size,
                                            cfg.dsa_strategy if cfg.dsa else None, fmt)
        if sched is not None:
            sched.step()
        elif ep == decay_after:  # MTT: lr × 0.1 once, with a new optimizer (momentum reset)
            opt = _make_optimizer(net, st, st.lr * 0.1)
        done = ep + 1
        test_acc = None
        if done % st.eval_every == 0 or done == passes:
            test_acc = test_accuracy(net, test_x, test_y, test_batch)
            if test_acc > best:
                best, best_ep = test_acc, done
            if done == passes:
                final = test_acc
        if on_step is not None:
            on_step(EvalStep(run, st.runs, done, passes, train_loss, train_acc, test_acc,
                             seconds=time.perf_counter() - t_pass))
    return final, best, best_ep, time.perf_counter() - start


def run_protocol(
    draw: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    cfg: EvalConfig,
    st: EvalSettings,
    num_classes: int,
    on_step: Callable[[EvalStep], None] | None,
    algorithm: str | None,
    meta: dict[str, Any] | None,
) -> EvalResult:
    """Train ``st.runs`` networks, run r on ``draw(r)`` (network-space images and labels on the device)."""
    dev = torch.device(st.device)
    test_y = test_y.detach().to(dev, torch.long)
    if not is_streamed(test_x):  # a streamed test set is decoded and moved batch by batch
        test_x = test_x.detach().to(dev, torch.float32)
        if dev.type == "cpu" and test_x.dim() == 4:
            test_x = test_x.contiguous(memory_format=torch.channels_last)
    finals, bests, best_eps, secs = [], [], [], []
    num_train = 0
    t0 = time.perf_counter()
    fork_devices = [dev.index or 0] if dev.type == "cuda" else []
    for run in range(st.runs):
        images, labels = draw(run)  # before seeding: a draw never touches the global RNG
        num_train = int(images.shape[0])
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(cfg.seed + run)
            final, best, best_ep, sec = _train_one(run, images, labels, test_x, test_y, cfg, st, num_classes,
                                                   on_step)
        finals.append(final)
        bests.append(best)
        best_eps.append(best_ep)
        secs.append(sec)
    mean, std = mean_std(finals)
    bmean, bstd = mean_std(bests)
    passes = st.epochs + 1
    checkpoints = sorted({e for e in range(st.eval_every, passes + 1, st.eval_every)} | {passes})
    meta = dict(meta or {})
    return EvalResult(
        dataset=meta.pop("dataset", None),
        source=meta.pop("source", ""),
        file_sha256=meta.pop("file_sha256", None),
        algorithm=algorithm,
        transform=meta.pop("transform", None),
        arch=st.arch, optimizer=st.optimizer, lr=st.lr, lr_source=st.lr_source, batch_size=st.batch_size,
        epochs=st.epochs, runs=st.runs, seed=cfg.seed, momentum=st.momentum, weight_decay=st.weight_decay,
        dsa=cfg.dsa, device=st.device, num_classes=num_classes, num_train_images=num_train,
        num_test_images=int(test_x.shape[0]), checkpoints=checkpoints,
        final_accuracy=finals, best_accuracy=bests, best_epoch=best_eps,
        mean=mean, std=std, best_mean=bmean, best_std=bstd,
        train_seconds=[round(s, 3) for s in secs], time_s=round(time.perf_counter() - t0, 3),
        extra=meta,
    )


__all__ = ["run_protocol", "test_accuracy", "train_epoch"]
