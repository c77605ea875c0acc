"""Train fresh networks on a (distilled or baseline) training set and test them on real data.

Protocol (SPEC §6, decisions §9): ConvNets train with SGD (momentum 0.9, weight decay 5e-4), lr =
the file's learned α for TM (else 0.01), ``epochs + 1`` passes (MTT's loop 0…epochs), lr × 0.1 once
after pass ``epochs // 2 + 1`` with a fresh optimizer, DSA (non-Siamese) on every batch,
cross-entropy. Cross-architecture nets (AlexNet, VGG11, ResNet18, ViT) use AdamW (0.9, 0.999),
weight decay 0.05, cosine annealing over the epochs, lr 1e-3 / 1e-2 / 1e-2 / 5e-5. Test accuracy
on the full real test set is taken every ``max(1, epochs // 2)`` passes and at the end; the primary
number is the **final** accuracy, the best checkpoint is reported alongside (it is selected on the
test set, as the reference code does). Accuracies are fractions in [0, 1].
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
from gsdd_cli.data.transforms import apply_in_batches
from gsdd_cli.devices import resolve_device
from gsdd_cli.errors import ConfigError, DataError, first_validation_error
from gsdd_cli.models import MODELS, get_model, is_convnet

CROSS_ARCH_LR = {"alexnet": 1e-3, "vit": 5e-5}
CROSS_ARCH_DEFAULT_LR = 1e-2
DEFAULT_LR = 0.01
SGD_WEIGHT_DECAY = 5e-4
ADAMW_WEIGHT_DECAY = 0.05
BASELINES = ("random-real", "full")


class EvalConfig(BaseModel):
    """Evaluation settings; ``None`` means "the protocol default" (see :func:`resolve_settings`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    arch: str = "convnet"
    epochs: int = Field(1000, gt=0)
    lr: Optional[float] = Field(None, gt=0)
    batch_size: Optional[int] = Field(None, gt=0)
    runs: Optional[int] = Field(None, gt=0)
    seed: int = 0
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: Optional[float] = Field(None, ge=0)
    optimizer: Literal["auto", "sgd", "adamw"] = "auto"
    dsa: bool = True
    dsa_strategy: str = DSA_STRATEGY
    device: str = "auto"
    eval_every: Optional[int] = Field(None, gt=0)
    test_batch_size: int = Field(1000, gt=0)

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, v: str) -> str:
        MODELS.get(v)  # raises UnknownNameError with suggestions
        return v.lower()

    @field_validator("dsa_strategy")
    @classmethod
    def _known_strategy(cls, v: str) -> str:
        return check_strategy(v)

    @field_validator("lr")
    @classmethod
    def _finite_lr(cls, v: Optional[float]) -> Optional[float]:
        if v is not None and not math.isfinite(v):
            raise ValueError("lr must be finite")
        return v


def make_eval_config(**kwargs: Any) -> EvalConfig:
    """Build an :class:`EvalConfig`, turning validation failures into one-line ConfigErrors."""
    try:
        return EvalConfig(**{k: v for k, v in kwargs.items() if v is not None})
    except ValidationError as e:
        _, loc, msg = first_validation_error(e, "config")
        raise ConfigError(f"invalid evaluation setting {loc}: {msg}") from None


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
    """Fill in the protocol defaults (SPEC §6.2, §6.3, §9.10, §9.11)."""
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
    if images.shape[0] == 0 or images.shape[0] != labels.shape[0]:
        raise ConfigError(f"need a non-empty training set with one label per image, got {images.shape[0]} images "
                          f"and {labels.shape[0]} labels")
    if test_x.shape[1:] != images.shape[1:]:
        raise DataError(f"test images {list(test_x.shape[1:])} do not match training images {list(images.shape[1:])}")
    k = int(num_classes or int(max(labels.max(), test_y.max())) + 1)
    dev = torch.device(st.device)
    images = images.detach().to(dev, torch.float32)
    labels = labels.detach().to(dev, torch.long)
    test_x = test_x.detach().to(dev, torch.float32)
    test_y = test_y.detach().to(dev, torch.long)
    if dev.type == "cpu" and test_x.dim() == 4:
        test_x = test_x.contiguous(memory_format=torch.channels_last)
    finals, bests, best_eps, secs = [], [], [], []
    t0 = time.perf_counter()
    fork_devices = [dev.index or 0] if dev.type == "cuda" else []
    for run in range(st.runs):
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(cfg.seed + run)
            final, best, best_ep, sec = _train_one(run, images, labels, test_x, test_y, cfg, st, k, on_step)
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
        dsa=cfg.dsa, device=st.device, num_classes=k, num_train_images=int(images.shape[0]),
        num_test_images=int(test_x.shape[0]), checkpoints=checkpoints,
        final_accuracy=finals, best_accuracy=bests, best_epoch=best_eps,
        mean=mean, std=std, best_mean=bmean, best_std=bstd,
        train_seconds=[round(s, 3) for s in secs], time_s=round(time.perf_counter() - t0, 3),
        extra=meta,
    )


def file_sha256(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@torch.no_grad()
def render_all(images, device: torch.device, backend: str = "auto") -> torch.Tensor:
    """Render every image of a distilled set (pixel space) in memory-bounded chunks."""
    images = images.to(device)
    g = images.num_images
    chunk = images.render_chunk(device)
    out = []
    for s in range(0, g, chunk):
        idx = torch.arange(s, min(g, s + chunk), device=device)
        out.append(images.render(idx, backend=backend).float())
    return torch.cat(out)


def _check_matches(ds: Dataset, header) -> None:
    want = (header.num_classes, header.channels, header.height, header.width)
    got = (ds.num_classes, ds.channels, ds.height, ds.width)
    if want != got:
        raise DataError(
            f"the file was distilled for {header.dataset} with (classes, C, H, W) = {want}, but the loaded "
            f"dataset has {got}"
        )


def evaluate_gsd(
    path: Path | str,
    cfg: EvalConfig,
    data_dir: Path | str | None = None,
    backend: str = "auto",
    on_step: Callable[[EvalStep], None] | None = None,
    *,
    dataset: str | None = None,
) -> EvalResult:
    """Render a .gsd file, apply its transform (fitted on the real training set) and evaluate.

    ``dataset`` overrides the header's dataset name (e.g. when the file names a path that moved).
    """
    from gsdd_cli.gsdfile import load_gsd

    path = Path(path)
    f = load_gsd(path)
    h = f.header
    dev = resolve_device(cfg.device)
    resolve_settings(cfg)  # validate early (device, arch) before the expensive steps
    ds = load_dataset(dataset or h.dataset, data_dir)
    _check_matches(ds, h)
    pixels = render_all(f.images, dev, backend)
    tf = make_transform(ds, h.transform).to(dev)
    with torch.no_grad():
        x_syn = tf(pixels)
    test_x = apply_in_batches(tf, ds.x_test, dev)
    meta = {
        "dataset": ds.name, "source": str(path), "file_sha256": file_sha256(path), "transform": h.transform,
        "ipc": h.ipc, "gpc": h.gpc, "points_per_image": h.points_per_image, "syn_lr": h.syn_lr,
        "data_source": ds.source,
    }
    return train_and_evaluate(
        x_syn, f.images.labels.to(dev), test_x, ds.y_test, cfg, on_step,
        algorithm=h.algorithm, syn_lr=h.syn_lr, num_classes=h.num_classes, meta=meta,
    )


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
    dataset: str | Dataset,
    kind: str = "random-real",
    ipc: int | None = None,
    cfg: EvalConfig | None = None,
    *,
    data_dir: Path | str | None = None,
    transform: str | None = None,
    on_step: Callable[[EvalStep], None] | None = None,
) -> EvalResult:
    """Baselines on real images: ``random-real`` (``ipc`` random images per class, seeded with
    cfg.seed) or ``full`` (the whole training set). ``transform`` defaults to the dataset's."""
    cfg = cfg or EvalConfig()
    if kind not in BASELINES:
        raise ConfigError(f"unknown baseline {kind!r}; valid: {', '.join(BASELINES)}")
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_dir)
    dev = resolve_device(cfg.device)
    resolve_settings(cfg)
    if kind == "random-real":
        if ipc is None or ipc < 1:
            raise ConfigError("--baseline random-real needs --ipc K (K ≥ 1 real images per class)")
        idx = select_random_real(ds, ipc, cfg.seed)
    else:
        idx = torch.arange(ds.x_train.shape[0])
    kind_tf = transform or ds.default_transform
    tf = make_transform(ds, kind_tf)
    x = apply_in_batches(tf, ds.x_train[idx], dev)
    test_x = apply_in_batches(tf, ds.x_test, dev)
    meta = {"dataset": ds.name, "source": f"baseline:{kind}", "transform": kind_tf, "ipc": ipc,
            "data_source": ds.source}
    return train_and_evaluate(x, ds.y_train[idx], test_x, ds.y_test, cfg, on_step,
                              num_classes=ds.num_classes, meta=meta)


__all__ = [
    "BASELINES",
    "EvalConfig",
    "EvalResult",
    "EvalSettings",
    "EvalStep",
    "evaluate_baseline",
    "evaluate_gsd",
    "file_sha256",
    "make_eval_config",
    "render_all",
    "resolve_device",
    "resolve_settings",
    "select_random_real",
    "test_accuracy",
    "train_and_evaluate",
]
