"""Train fresh networks on a (distilled or baseline) training set and test them on real data.

Protocol (docs/method.md §6, decisions §9): ConvNets train with SGD (momentum 0.9, weight decay 5e-4), lr =
the file's learned α for TM (else 0.01), ``epochs + 1`` passes (MTT's loop 0…epochs), lr × 0.1 once
after pass ``epochs // 2 + 1`` with a fresh optimizer, DSA (non-Siamese) on every batch,
cross-entropy. Cross-architecture nets (AlexNet, VGG11, ResNet18, ViT) use AdamW (0.9, 0.999),
weight decay 0.05, cosine annealing over the epochs, lr 1e-3 / 1e-2 / 1e-2 / 5e-5. Test accuracy
on the full real test set is taken every ``max(1, epochs // 2)`` passes and at the end; the primary
number is the **final** accuracy, the best checkpoint is reported alongside (it is selected on the
test set, as the reference code does). Accuracies are fractions in [0, 1].

Fair comparisons (DD-Ranking, Li et al. 2025, arXiv:2505.13300): :func:`evaluate_set` can also train
the same protocol on IPC random real images per class (a fresh subset per run) and on the full
training set, and reports IOR = acc(distilled) − acc(random), HLR = acc(full) − acc(distilled) and the
label-robust score LRS (see :func:`fair_metrics` and docs/evaluation.md).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gsdd_cli.data import DSA_STRATEGY, Dataset, dsa, load_dataset, make_transform
from gsdd_cli.data.augment import check_strategy
from gsdd_cli.data.transforms import Transform, apply_in_batches
from gsdd_cli.core.devices import resolve_device
from gsdd_cli.core.errors import ConfigError, DataError, first_validation_error
from gsdd_cli.evaluate.config import (
    ADAMW_WEIGHT_DECAY,
    BASELINES,
    CROSS_ARCH_DEFAULT_LR,
    CROSS_ARCH_LR,
    DEFAULT_LR,
    SGD_WEIGHT_DECAY,
    EvalConfig,
    make_eval_config,
)
from gsdd_cli.models import get_model, is_convnet

@dataclass(frozen=True)
class EvalSettings:
    """Concrete numbers after applying the protocol defaults."""

    arch: str
    optimizer: str
    lr: float
    lr_source: str
    batch_size: int
    runs: int
    epochs: int
    eval_every: int
    momentum: float
    weight_decay: float
    device: str


def resolve_settings(cfg: EvalConfig, algorithm: str | None = None, syn_lr: float | None = None) -> EvalSettings:
    """Fill in the protocol defaults (docs/method.md §6.2, §6.3, §9.10, §9.11)."""
    conv = is_convnet(cfg.arch)
    optimizer = cfg.optimizer if cfg.optimizer != "auto" else ("sgd" if conv else "adamw")
    if cfg.lr is not None:
        lr, src = cfg.lr, "given"
    elif not conv:
        lr, src = CROSS_ARCH_LR.get(cfg.arch, CROSS_ARCH_DEFAULT_LR), f"cross-arch default for {cfg.arch}"
    elif syn_lr is not None:
        lr, src = float(syn_lr), "learned syn_lr from the file"
    else:
        lr, src = DEFAULT_LR, "default 0.01"
    batch = cfg.batch_size or (256 if (algorithm or "").lower() == "tm" else 128)
    runs = cfg.runs or (5 if conv else 3)
    wd = cfg.weight_decay if cfg.weight_decay is not None else (
        SGD_WEIGHT_DECAY if optimizer == "sgd" else ADAMW_WEIGHT_DECAY
    )
    every = cfg.eval_every or max(1, cfg.epochs // 2)
    return EvalSettings(
        arch=cfg.arch, optimizer=optimizer, lr=float(lr), lr_source=src, batch_size=int(batch),
        runs=int(runs), epochs=int(cfg.epochs), eval_every=int(every), momentum=cfg.momentum,
        weight_decay=float(wd), device=str(resolve_device(cfg.device)),
    )


@dataclass
class EvalStep:
    """Progress report after each training pass (``epoch`` counts 1 … ``total``)."""

    run: int  # 0-based
    runs: int
    epoch: int
    total: int  # passes per run = epochs + 1
    loss: float
    train_acc: float
    test_acc: Optional[float] = None
    phase: str = ""  # "", or with comparisons: "distilled", "random-real", "full"


class EvalResult(BaseModel):
    """Outcome of an evaluation; JSON-able via ``model_dump()``. Accuracies are fractions."""

    model_config = ConfigDict(extra="forbid")

    dataset: Optional[str] = None
    source: str = ""
    file_sha256: Optional[str] = None
    algorithm: Optional[str] = None
    transform: Optional[str] = None
    arch: str
    optimizer: str
    lr: float
    lr_source: str
    batch_size: int
    epochs: int
    runs: int
    seed: int
    momentum: float
    weight_decay: float
    dsa: bool
    device: str
    num_classes: int
    num_train_images: int
    num_test_images: int
    checkpoints: list[int]
    final_accuracy: list[float]
    best_accuracy: list[float]
    best_epoch: list[int]
    mean: float
    std: float
    best_mean: float
    best_std: float
    train_seconds: list[float]
    time_s: float
    extra: dict[str, Any] = {}
    # with comparisons (evaluate_set's vs_random / full / full_accuracy): the baselines trained under
    # the same protocol, keyed "random-real" / "full", and DD-Ranking's metrics (see fair_metrics)
    baselines: dict[str, "EvalResult"] = {}
    metrics: dict[str, Any] = {}

    def summary(self) -> str:
        return (
            f"{self.arch}: {100 * self.mean:.2f} ± {100 * self.std:.2f} % final "
            f"(best checkpoint {100 * self.best_mean:.2f} ± {100 * self.best_std:.2f} %), {self.runs} runs"
        )


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    m = sum(values) / len(values)
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


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
            on_step(EvalStep(run, st.runs, done, passes, train_loss, train_acc, test_acc))
    return final, best, best_ep, time.perf_counter() - start

def _run_protocol(
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
    test_x = test_x.detach().to(dev, torch.float32)
    test_y = test_y.detach().to(dev, torch.long)
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
    mean, std = _mean_std(finals)
    bmean, bstd = _mean_std(bests)
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


def _check_training_set(images: torch.Tensor, labels: torch.Tensor, test_x: torch.Tensor) -> None:
    if images.shape[0] == 0 or images.shape[0] != labels.shape[0]:
        raise ConfigError(f"need a non-empty training set with one label per image, got {images.shape[0]} images "
                          f"and {labels.shape[0]} labels")
    if test_x.shape[1:] != images.shape[1:]:
        raise DataError(f"test images {list(test_x.shape[1:])} do not match training images {list(images.shape[1:])}")


def train_and_evaluate(
    images: torch.Tensor,  # [G, C, H, W] network space (already transformed)
    labels: torch.Tensor,  # [G]
    test_x: torch.Tensor,  # [M, C, H, W] network space
    test_y: torch.Tensor,  # [M]
    cfg: EvalConfig,
    on_step: Callable[[EvalStep], None] | None = None,
    *,
    algorithm: str | None = None,
    syn_lr: float | None = None,
    num_classes: int | None = None,
    meta: dict[str, Any] | None = None,
) -> EvalResult:
    """Train ``runs`` fresh networks on (images, labels) and test each on (test_x, test_y)."""
    st = resolve_settings(cfg, algorithm=algorithm, syn_lr=syn_lr)
    _check_training_set(images, labels, test_x)
    k = int(num_classes or int(max(labels.max(), test_y.max())) + 1)
    dev = torch.device(st.device)
    images = images.detach().to(dev, torch.float32)
    labels = labels.detach().to(dev, torch.long)
    return _run_protocol(lambda run: (images, labels), test_x, test_y, cfg, st, k, on_step, algorithm, meta)


def file_sha256(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def render_all(images, device: torch.device, backend: str = "auto") -> torch.Tensor:
    """Render every image (pixel space) on ``device`` in memory-bounded chunks (moves ``images`` there)."""
    from gsdd_cli.api import render_images

    return render_images(images.to(device), backend=backend)


# ------------------------------------------------------------------------------ fair metrics
LRS_LAMBDA = 0.5  # DD-Ranking's default weight w of IOR against HLR


def label_robust_score(ior: float, hlr: float, lam: float = LRS_LAMBDA) -> float:
    """DD-Ranking's label-robust score from IOR and HLR given as fractions.

    α = λ·IOR − (1 − λ)·HLR and LRS = (e^α − e^−1) / (e − e^−1). With IOR, HLR ∈ [−1, 1], α lies
    in [−1, 1] and LRS in [0, 1] (monotone in α); IOR = HLR = 0 gives (1 − e^−1)/(e − e^−1) ≈ 0.269.
    """
    alpha = lam * ior - (1.0 - lam) * hlr
    return (math.exp(alpha) - math.exp(-1.0)) / (math.e - math.exp(-1.0))


def _stats(values: list[float]) -> dict[str, Any]:
    m, s = _mean_std(values)
    return {"per_run": values, "mean": m, "std": s}


def fair_metrics(
    distilled: list[float],
    random: list[float] | None = None,
    full: list[float] | float | None = None,
    lrs_lambda: float = LRS_LAMBDA,
) -> dict[str, Any]:
    """IOR, HLR and LRS per run (DD-Ranking, arXiv:2505.13300), then mean ± population std.

    Accuracies are fractions. Run r of the distilled set is paired with run r of the random-real
    baseline (IOR_r = distilled_r − random_r) and of the full-data training (HLR_r = full_r −
    distilled_r); ``full`` may also be one given accuracy for every run. LRS needs both.
    """
    if not 0.0 <= lrs_lambda <= 1.0:
        raise ConfigError(f"the LRS weight must be in [0, 1], got {lrs_lambda}")
    n = len(distilled)
    out: dict[str, Any] = {}
    ior = hlr = None
    if random is not None:
        if len(random) != n:
            raise ConfigError(f"IOR pairs runs: {n} distilled runs but {len(random)} random-real runs")
        ior = [d - r for d, r in zip(distilled, random)]
        out["ior"] = _stats(ior)
    if full is not None:
        fulls = [float(full)] * n if isinstance(full, (int, float)) else [float(v) for v in full]
        if len(fulls) != n:
            raise ConfigError(f"HLR pairs runs: {n} distilled runs but {len(fulls)} full-data runs")
        hlr = [f - d for f, d in zip(fulls, distilled)]
        out["hlr"] = _stats(hlr)
    if ior is not None and hlr is not None:
        out["lrs"] = _stats([label_robust_score(i, h, lrs_lambda) for i, h in zip(ior, hlr)])
        out["lrs_lambda"] = lrs_lambda
    return out


def _phase(on_step: Callable[[EvalStep], None] | None, phase: str) -> Callable[[EvalStep], None] | None:
    if on_step is None:
        return None

    def tagged(step: EvalStep) -> None:
        step.phase = phase
        on_step(step)

    return tagged


# ------------------------------------------------------------------------------- distilled sets
def evaluate_set(
    s,
    cfg: EvalConfig,
    backend: str = "auto",
    on_step: Callable[[EvalStep], None] | None = None,
    *,
    vs_random: bool = False,
    full: bool = False,
    full_accuracy: float | None = None,
    lrs_lambda: float = LRS_LAMBDA,
) -> EvalResult:
    """Evaluate a :class:`~gsdd_cli.api.DistilledSet`: render it, apply its transform, train, test.

    Comparisons, each under the same protocol (architecture, epochs, runs, seeds, lr and batch size
    as resolved for the file, transform): ``vs_random`` also trains on IPC random real images per
    class (a fresh subset per run) and reports IOR; ``full`` trains on the whole training set, or
    ``full_accuracy`` (a fraction) is taken as given, and HLR is reported; with both, LRS. The
    baselines land in ``result.baselines``, the metrics in ``result.metrics``.
    """
    if full and full_accuracy is not None:
        raise ConfigError("give either full=True (train on the full set) or full_accuracy, not both")
    if full_accuracy is not None and not 0.0 <= full_accuracy <= 1.0:
        raise ConfigError(f"full_accuracy is a fraction in [0, 1], got {full_accuracy}")
    h = s.header
    dev = resolve_device(cfg.device)
    resolve_settings(cfg)  # validate early (device, arch) before the expensive steps
    comparing = vs_random or full or full_accuracy is not None
    ds = s.real_dataset()
    tf = s.transform
    x_syn = s.to_network(s.render(device=dev, backend=backend))
    test_x = apply_in_batches(tf, ds.x_test, dev)
    meta = {
        "dataset": ds.name, "source": str(s.path) if s.path else "", "transform": h.transform,
        "ipc": h.ipc, "gpc": h.gpc, "points_per_image": getattr(h, "points_per_image", None), "syn_lr": h.syn_lr,
        "data_source": ds.source,
    }
    if s.path is not None:
        meta["file_sha256"] = file_sha256(s.path)
    res = train_and_evaluate(
        x_syn, s.labels.to(dev), test_x, ds.y_test, cfg, _phase(on_step, "distilled" if comparing else ""),
        algorithm=h.algorithm, syn_lr=h.syn_lr, num_classes=h.num_classes, meta=meta,
    )
    if not comparing:
        return res
    same = cfg.model_copy(update={"lr": res.lr, "batch_size": res.batch_size, "runs": res.runs})
    if vs_random:
        res.baselines["random-real"] = evaluate_baseline(ds, "random-real", s.ipc, same, transform=tf,
                                                         on_step=_phase(on_step, "random-real"))
    if full:
        res.baselines["full"] = evaluate_baseline(ds, "full", None, same, transform=tf,
                                                  on_step=_phase(on_step, "full"))
    full_acc = res.baselines["full"].final_accuracy if full else full_accuracy
    res.metrics = fair_metrics(
        res.final_accuracy,
        random=res.baselines["random-real"].final_accuracy if vs_random else None,
        full=full_acc,
        lrs_lambda=lrs_lambda,
    )
    if full_accuracy is not None:
        res.metrics["full_accuracy"] = full_accuracy
    if full_acc is not None:
        res.metrics["full_accuracy_source"] = "trained" if full else "given"
    return res


def evaluate_gsd(
    path: Path | str,
    cfg: EvalConfig,
    data_dir: Path | str | None = None,
    backend: str = "auto",
    on_step: Callable[[EvalStep], None] | None = None,
    *,
    dataset: str | None = None,
    **comparisons: Any,
) -> EvalResult:
    """Load a .gsd file and evaluate it (:func:`evaluate_set`; ``comparisons`` are its keywords).

    ``dataset`` overrides the header's dataset name (e.g. when the file names a path that moved).
    """
    from gsdd_cli.api import load

    return evaluate_set(load(path, data_dir=data_dir, dataset=dataset), cfg, backend, on_step, **comparisons)


# ------------------------------------------------------------------------------------ baselines
def subset_seed(seed: int, run: int) -> int:
    """The seed of run ``run``'s random-real subset: a 63-bit hash of (seed, run)."""
    digest = hashlib.sha256(f"gsdd:random-real:{int(seed)}:{int(run)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def select_random_real(ds: Dataset, ipc: int, seed: int) -> torch.Tensor:
    """Indices of ``ipc`` random training images per class (class-major), seeded."""
    gen = torch.Generator().manual_seed(int(seed))
    picks = []
    for c in range(ds.num_classes):
        idx = ds.indices_of_class(c)
        if idx.numel() < ipc:
            raise DataError(f"class {c} ({ds.class_names[c]}) has only {idx.numel()} training images, need ipc={ipc}")
        picks.append(idx[torch.randperm(idx.numel(), generator=gen)[:ipc]])
    return torch.cat(picks)


def evaluate_baseline(
    dataset: str | Dataset | None,
    kind: str = "random-real",
    ipc: int | None = None,
    cfg: EvalConfig | None = None,
    *,
    data_dir: Path | str | None = None,
    transform: str | Transform | None = None,
    like: Path | str | None = None,
    on_step: Callable[[EvalStep], None] | None = None,
) -> EvalResult:
    """Baselines on real images: ``random-real`` (``ipc`` random images per class, a fresh subset per
    run drawn with :func:`subset_seed` (cfg.seed, run); the indices are in ``extra``) or ``full`` (the
    whole training set).

    ``transform`` is a kind ("zca", "normalize", "none") or a transform module; default: the
    dataset's. ``like`` names a .gsd file whose dataset, IPC and transform are used (``dataset``
    then only overrides the dataset's location, ``ipc`` and ``transform`` must be left out).
    """
    cfg = cfg or EvalConfig()
    if kind not in BASELINES:
        raise ConfigError(f"unknown baseline {kind!r}; valid: {', '.join(BASELINES)}")
    if like is not None:
        from gsdd_cli.api import load

        if ipc is not None or transform is not None:
            raise ConfigError("a baseline 'like' a file takes its IPC and transform from the file; leave them out")
        s = load(like, data_dir=data_dir, dataset=dataset if isinstance(dataset, str) else None)
        ds, ipc, transform = s.real_dataset(), s.ipc, s.transform
    elif dataset is None:
        raise ConfigError("a baseline needs a dataset (or a .gsd file to take it from)")
    else:
        ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_dir)
    dev = resolve_device(cfg.device)
    st = resolve_settings(cfg)
    if isinstance(transform, Transform):
        tf, kind_tf = transform, transform.kind
    else:
        kind_tf = transform or ds.default_transform
        tf = make_transform(ds, kind_tf)
    meta: dict[str, Any] = {"dataset": ds.name, "source": f"baseline:{kind}", "transform": kind_tf, "ipc": ipc,
                            "data_source": ds.source}
    if like is not None:
        meta["like"] = str(like)
    if kind == "random-real":
        if ipc is None or ipc < 1:
            raise ConfigError("--baseline random-real needs --ipc K (K ≥ 1 real images per class)")
        seeds = [subset_seed(cfg.seed, r) for r in range(st.runs)]
        picks = [select_random_real(ds, ipc, sd) for sd in seeds]
        meta["subset_seeds"] = seeds
        meta["random_indices"] = [p.tolist() for p in picks]

        def draw(run: int) -> tuple[torch.Tensor, torch.Tensor]:
            return apply_in_batches(tf, ds.x_train[picks[run]], dev), ds.y_train[picks[run]].to(dev)
    else:
        x_full, y_full = apply_in_batches(tf, ds.x_train, dev), ds.y_train.to(dev)

        def draw(run: int) -> tuple[torch.Tensor, torch.Tensor]:
            return x_full, y_full
    test_x = apply_in_batches(tf, ds.x_test, dev)
    return _run_protocol(draw, test_x, ds.y_test, cfg, st, ds.num_classes, on_step, None, meta)


__all__ = [
    "BASELINES",
    "LRS_LAMBDA",
    "EvalConfig",
    "EvalResult",
    "EvalSettings",
    "EvalStep",
    "evaluate_baseline",
    "evaluate_gsd",
    "evaluate_set",
    "fair_metrics",
    "file_sha256",
    "label_robust_score",
    "make_eval_config",
    "render_all",
    "resolve_device",
    "resolve_settings",
    "select_random_real",
    "subset_seed",
    "test_accuracy",
    "train_and_evaluate",
]
