"""Expert trajectories for trajectory matching (docs/method.md §5.1, MTT's buffer protocol).

Each expert is a freshly initialised network (the distillation network of the dataset) trained on the
real training set in network space (ZCA for CIFAR, normalisation otherwise: the TM default transform)
with SGD (lr 0.01, momentum 0, weight decay 0), batch 256, DSA on every batch (non-Siamese), no lr
decay, cross-entropy. The flattened parameter vector (``torch.cat`` of ``net.parameters()`` in order)
is recorded at initialisation and after every epoch: ``epochs + 1`` snapshots.

Storage: one safetensors file per expert, ``expert_0000.safetensors`` … with one float32 tensor
``trajectory`` [epochs + 1, P] and string metadata, written atomically; plus ``manifest.json`` that
records the settings. Re-running the same command skips experts whose file is complete (resume); a
folder made with different settings is refused. Under ``torchrun`` rank r trains experts r, r + W, …
``batch_experts`` K > 1 trains a rank's missing experts K at a time as one vmapped network
(:mod:`gsdd_cli.distill.experts_batched`: same data order and augmentation); a group's files are
written when the whole group has finished, so an interrupted group leaves no partial file.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from gsdd_cli.core.devices import resolve_device
from gsdd_cli.core.errors import ConfigError, DivergenceError
from gsdd_cli.core.outputs import atomic_write_bytes, atomic_write_json, check_output_dir, make_dirs, remove_quietly
from gsdd_cli.data import dataset_path, default_transform_kind, load_dataset, make_transform
from gsdd_cli.data.streaming import require_in_memory
from gsdd_cli.data.transforms import apply_in_batches, cache_stem
from gsdd_cli.distill.common import (
    DistInfo,
    barrier,
    init_distributed,
    rank_device,
    shutdown_distributed,
)
from gsdd_cli.distill.config import DistillConfig
from gsdd_cli.distill.experts_config import COMPAT_KEYS, ExpertsConfig, default_counts, make_experts_config  # noqa: F401
from gsdd_cli.distill.experts_batched import batch_refusal, flat_params, train_batched, train_one
from gsdd_cli.distill.experts_eta import LONG_RUN, format_duration, shorten_flags, time_estimate  # noqa: F401
from gsdd_cli.distill.tensorboard import ExpertsBoard, check_tensorboard
from gsdd_cli.models import get_model

MANIFEST = "manifest.json"
FORMAT = "gsdd-experts"
FORMAT_VERSION = 1


@dataclass
class ExpertStep:
    expert: int  # index of the expert being trained
    done: int  # experts finished by this process so far (including skipped)
    total: int  # experts this process is responsible for
    epoch: int  # 1 … epochs (0: skipped, already complete)
    epochs: int
    loss: float
    train_acc: float
    test_acc: Optional[float] = None
    seconds: Optional[float] = None  # this epoch's wall time (training, snapshot, test)


@dataclass
class ExpertsResult:
    out: Path
    trained: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    test_acc: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0


def expert_path(folder: Path, index: int) -> Path:
    return Path(folder) / f"expert_{index:04d}.safetensors"


def param_layout(net: torch.nn.Module) -> tuple[list[str], list[list[int]]]:
    names, shapes = [], []
    for n, p in net.named_parameters():
        names.append(n)
        shapes.append(list(p.shape))
    return names, shapes


def _read_meta(path: Path) -> dict[str, str] | None:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})
    except Exception:
        return None


def _complete(path: Path, epochs: int, count: int) -> tuple[bool, Optional[float]]:
    """Is ``path`` a finished trajectory of ``epochs`` + 1 snapshots of ``count`` parameters?"""
    if not path.is_file():
        return False, None
    md = _read_meta(path)
    if not md or md.get("format") != "gsdd-expert":
        return False, None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            shape = f.get_slice("trajectory").get_shape()
    except Exception:
        return False, None
    ok = list(shape) == [epochs + 1, count]
    acc = md.get("test_acc")
    return ok, (float(acc) if acc not in (None, "", "null") else None)


def _manifest(cfg: ExpertsConfig, transform: str, transform_params: dict, names, shapes, count: int, experts) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dataset": cfg.dataset,
        "model": cfg.model,
        "transform": transform,
        "transform_params": transform_params,
        "epochs": cfg.epochs,
        "num_requested": cfg.num,
        "lr": cfg.lr,
        "momentum": cfg.momentum,
        "weight_decay": cfg.weight_decay,
        "batch": cfg.batch,
        "dsa": cfg.dsa,
        "dsa_strategy": cfg.dsa_strategy,
        "seed": cfg.seed,
        "param_count": count,
        "param_names": names,
        "param_shapes": shapes,
        "experts": experts,
    }


def _write_json(path: Path, obj: dict) -> None:
    atomic_write_json(path, obj)


def read_manifest(folder: Path | str) -> dict:
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ConfigError(f"expert folder {folder} does not exist", hint=f"create it with: gsdd experts DATASET --out {folder}")
    if not path.is_file():
        raise ConfigError(f"{folder} is not an expert folder (no {MANIFEST})",
                          hint=f"create it with: gsdd experts DATASET --out {folder}")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON ({e.msg})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text (a gsdd manifest is JSON)") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a gsdd experts manifest")
    return m


def train_experts(cfg: ExpertsConfig, on_step: Callable[[ExpertStep], None] | None = None, *,
                  shutdown: bool = True, notify: Callable[[str], None] | None = None,
                  shorten: tuple[str, str] | None = None) -> ExpertsResult:
    """Train (or complete) the expert trajectories of ``cfg`` into ``cfg.out``.

    The folder is checked before any work. If the run fails, finished experts stay (a re-run
    continues), and a folder or manifest this call created for nothing is removed again.
    ``shutdown=False`` leaves a torch.distributed process group up (a caller that goes on using it).
    ``notify`` (rank 0) gets :func:`time_estimate`'s line once the first epoch has been timed.
    ``cfg.tensorboard`` also writes the ``on_step`` records as TensorBoard scalars (:class:`ExpertsBoard`).
    """
    out = Path(cfg.out)
    check_output_dir(out, "--out", {"DATASET": dataset_path(cfg.dataset)})
    check_tensorboard(cfg.tensorboard)
    had_folder, had_manifest = out.exists(), (out / MANIFEST).is_file()
    board = ExpertsBoard(cfg.tensorboard)
    try:
        return _train_experts(cfg, board.hook(on_step), shutdown, notify, shorten)
    except BaseException:
        if not had_manifest and (out / MANIFEST).is_file() and not _count_files(out):
            remove_quietly([out / MANIFEST])
            if not had_folder:
                try:
                    out.rmdir()  # only if empty
                except OSError:
                    pass
        if shutdown and dist.is_available() and dist.is_initialized():
            shutdown_distributed(DistInfo(rank=dist.get_rank(), world=dist.get_world_size(), grouped=True),
                                 wait=False)
        raise
    finally:
        board.close()


def _train_experts(cfg: ExpertsConfig, on_step: Callable[[ExpertStep], None] | None,
                   shutdown: bool, notify: Callable[[str], None] | None,
                   shorten: tuple[str, str] | None) -> ExpertsResult:
    t_start = time.perf_counter()
    info = init_distributed(cfg.device)
    device = rank_device(resolve_device(cfg.device), info)
    out = Path(cfg.out)
    ds = load_dataset(cfg.dataset, cfg.data_dir)
    require_in_memory(ds.x_train, "expert training")
    kind = cfg.transform or default_transform_kind(ds.name, "tm")
    tf = make_transform(ds, kind)
    probe = get_model(cfg.model, ds.channels, ds.num_classes, ds.height, ds.width)
    names, shapes = param_layout(probe)
    count = sum(p.numel() for p in probe.parameters())
    manifest = _manifest(cfg, kind, tf.describe(), names, shapes, count, [])
    if (out / MANIFEST).is_file():
        old = read_manifest(out)
        diff = [k for k in COMPAT_KEYS if old.get(k) != manifest.get(k)]
        if diff:
            k = diff[0]
            raise ConfigError(
                f"{out} holds experts made with {k}={old.get(k)!r}, this run asks for {manifest.get(k)!r}",
                hint="use another --out folder, or the same settings to add experts",
            )
    if info.is_main:
        make_dirs(out)
        existing = [e for e in _scan(out, cfg.epochs, count, max(cfg.num, _count_files(out)))]
        manifest["experts"] = existing
        _write_json(out / MANIFEST, manifest)
    barrier(info)

    x = apply_in_batches(tf, ds.x_train, device, what="expert training")
    y = ds.y_train.to(device)
    test_x = apply_in_batches(tf, ds.x_test, device) if ds.has_test else None
    test_y = ds.y_test.to(device)
    mine = list(range(info.rank, cfg.num, info.world))
    result = ExpertsResult(out=out)
    make_net = partial(get_model, cfg.model, ds.channels, ds.num_classes, ds.height, ds.width)
    at_once = _at_once(cfg, make_net, (ds.channels, ds.height, ds.width), device, notify if info.is_main else None)
    train = dict(seed=cfg.seed, epochs=cfg.epochs, batch=cfg.batch, lr=cfg.lr, momentum=cfg.momentum,
                 weight_decay=cfg.weight_decay, dsa_strategy=cfg.dsa_strategy if cfg.dsa else None)
    finished, group, timed = 0, [], False  # the first trained epoch is timed for the estimate
    for pos, i in enumerate(mine):
        ok, acc = _complete(expert_path(out, i), cfg.epochs, count)
        if ok:
            finished += 1
            result.skipped.append(i)
            if acc is not None:
                result.test_acc[i] = acc
            if on_step:
                on_step(ExpertStep(i, finished, len(mine), 0, cfg.epochs, float("nan"), float("nan"), acc))
        else:
            group.append(i)
        if not group or (len(group) < at_once and pos + 1 < len(mine)):
            continue

        def on_epoch(ep: int, seconds: float, stats, group=tuple(group), pos=pos) -> None:
            nonlocal finished, timed
            if notify is not None and info.is_main and not timed:
                timed = True
                todo = len(group) + sum(1 for j in mine[pos + 1:] if not _complete(expert_path(out, j), cfg.epochs,
                                                                                   count)[0])
                notify(time_estimate(seconds, todo, cfg.epochs, device, shorten, at_once=len(group)))
            for j, (loss, train_acc, acc) in zip(group, stats):
                finished += 1 if ep == cfg.epochs else 0
                if on_step:
                    on_step(ExpertStep(j, finished, len(mine), ep, cfg.epochs, loss, train_acc, acc, seconds))

        if len(group) == 1:
            outs = [train_one(group[0], make_net, x, y, test_x, test_y, on_epoch=on_epoch, **train)]
        else:
            outs = train_batched(group, make_net, x, y, test_x, test_y, on_epoch=on_epoch, **train)
        bad = [j for j, (traj, _) in zip(group, outs) if not torch.isfinite(traj).all()]
        for j, (traj, acc) in zip(group, outs):  # every finite expert is kept, even beside a diverged one
            if j not in bad:
                _save_expert(out, j, traj, acc, cfg, kind, count)
                result.trained.append(j)
                if acc is not None:  # None: the dataset has no test split
                    result.test_acc[j] = float(acc)
        if bad:
            raise DivergenceError(f"expert {bad[0]} diverged (NaN/Inf parameters); the {len(result.trained)} "
                                  f"expert(s) finished so far are kept in {out}",
                                  hint=f"re-run with a smaller --lr (now {cfg.lr:g}); finished experts are skipped")
        group = []
    if info.enabled:  # every rank reports what it trained or skipped, so rank 0 can show all of it
        parts: list = [None] * info.world
        dist.all_gather_object(parts, (result.trained, result.skipped, result.test_acc))
        result.trained = sorted(i for t, _, _ in parts for i in t)
        result.skipped = sorted(i for _, sk, _ in parts for i in sk)
        result.test_acc = {i: a for _, _, accs in parts for i, a in accs.items()}
    barrier(info)
    if info.is_main:
        manifest["experts"] = _scan(out, cfg.epochs, count, max(cfg.num, _count_files(out)))
        _write_json(out / MANIFEST, manifest)
    if shutdown:
        shutdown_distributed(info)
    result.seconds = time.perf_counter() - t_start
    return result


def _at_once(cfg: ExpertsConfig, make_net, shape, device: torch.device, notify) -> int:
    """How many experts train at once: ``cfg.batch_experts``, or 1 (with a note) for a network that
    cannot be batched."""
    if cfg.batch_experts <= 1 or min(cfg.num, cfg.batch_experts) <= 1:
        return 1
    why = batch_refusal(make_net, shape, device)
    if why is None:
        return cfg.batch_experts
    if notify is not None:
        notify(f"experts: training one at a time, not {cfg.batch_experts} at once: {cfg.model} {why}")
    return 1


def _save_expert(out: Path, i: int, traj: torch.Tensor, acc, cfg: ExpertsConfig, kind: str, count: int) -> None:
    md = {
        "format": "gsdd-expert", "format_version": str(FORMAT_VERSION), "dataset": cfg.dataset,
        "model": cfg.model, "transform": kind, "epochs": str(cfg.epochs), "index": str(i),
        "seed": str(cfg.seed), "test_acc": f"{acc:.6f}" if acc is not None else "", "param_count": str(count),
    }
    atomic_write_bytes(expert_path(out, i), safetensors_bytes({"trajectory": traj}, metadata=md))


def _count_files(folder: Path) -> int:
    return len(list(Path(folder).glob("expert_*.safetensors")))


def _scan(folder: Path, epochs: int, count: int, upto: int) -> list[dict]:
    found = []
    for p in sorted(Path(folder).glob("expert_*.safetensors")):
        try:
            i = int(p.stem.split("_")[1])
        except (IndexError, ValueError):
            continue
        ok, acc = _complete(p, epochs, count)
        if ok:
            found.append({"index": i, "file": p.name, "test_acc": acc})
    return found


# ------------------------------------------------------------------ cached experts (TM without --buffers)
CACHE_DIR = Path("~/.cache/gsdd")


def cached_experts_plan(cfg, ds) -> tuple[ExpertsConfig, int]:
    """Where ``gsdd distill --algo tm`` without ``--buffers`` keeps its experts, and how many are done.

    The folder is ``<data dir>/experts/<dataset>-<model>-<transform>-e<epochs>-<data fingerprint>``
    (``~/.cache/gsdd/experts/…`` when the dataset has no data dir): one folder per dataset, model,
    transform and epoch count, so finished experts are reused by every later run that needs them.
    Number: ``cfg.num_experts`` (default: ``gsdd experts``'s, 100; digits 5); epochs:
    ``cfg.experts_epochs`` (default 50, digits 10, at least max_start_epoch + expert_epochs).
    """
    num, epochs = default_counts(cfg.dataset)
    num = cfg.num_experts or num
    epochs = cfg.experts_epochs or max(epochs, cfg.max_start_epoch + cfg.expert_epochs)
    kind = cfg.transform or default_transform_kind(ds.name, "tm")
    base = Path(ds.cache_dir) if ds.cache_dir is not None else CACHE_DIR.expanduser()
    folder = base / "experts" / f"{cache_stem(ds.name)}-{cfg.model}-{kind}-e{epochs}-{ds.fingerprint()[:12]}"
    ecfg = make_experts_config(dataset=cfg.dataset, out=str(folder), num=num, epochs=epochs, model=cfg.model,
                               transform=kind, device=cfg.device, data_dir=cfg.data_dir)
    count = sum(p.numel() for p in get_model(cfg.model, ds.channels, ds.num_classes, ds.height, ds.width).parameters())
    done = sum(1 for i in range(num) if _complete(expert_path(folder, i), epochs, count)[0])
    return ecfg, done


def ensure_experts(cfg, ds, *, notify: Callable[[str], None] | None = None,
                   on_step: Callable[[ExpertStep], None] | None = None) -> Path:
    """Train the missing cached experts of :func:`cached_experts_plan` (resumable) and return the folder.

    ``notify`` gets one line saying where they go and how many will be trained.
    """
    ecfg, done = cached_experts_plan(cfg, ds)
    if notify is not None:
        todo = ecfg.num - done
        what = (f"training {todo} expert trajectories ({ecfg.epochs} epochs each)" if todo
                else f"reusing {done} finished expert trajectories")
        notify(f"no --buffers: {what} in {ecfg.out}" + (f" ({done} already there)" if todo and done else ""))
    train_experts(ecfg, on_step, shutdown=False, notify=notify,
                  shorten=shorten_flags(DistillConfig, "num_experts", "experts_epochs"))
    return Path(ecfg.out)


class ExpertBuffers:
    """Read access to an expert folder: ``get(expert, epoch)`` → flat parameter vector [P]."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        self.epochs = int(self.manifest["epochs"])
        self.param_count = int(self.manifest["param_count"])
        self.files = [self.folder / e["file"] for e in self.manifest.get("experts", [])
                      if (self.folder / e["file"]).is_file()]
        if not self.files:
            raise ConfigError(f"{self.folder} holds no finished expert trajectories",
                              hint=f"train some with: gsdd experts {self.manifest.get('dataset', 'DATASET')} --out {self.folder}")

    def __len__(self) -> int:
        return len(self.files)

    def get(self, expert: int, epoch: int) -> torch.Tensor:
        if not 0 <= epoch <= self.epochs:
            raise ConfigError(f"epoch {epoch} is outside the expert trajectories (0 … {self.epochs})")
        with safe_open(str(self.files[expert]), framework="pt", device="cpu") as f:
            return f.get_slice("trajectory")[epoch].clone()

    def check(self, *, dataset: str, model: str, transform: str, param_count: int, needed_epoch: int) -> None:
        """Refuse buffers that do not fit the distillation run (one-line ConfigError)."""
        m = self.manifest
        for key, want in (("dataset", dataset), ("model", model), ("transform", transform)):
            if str(m.get(key)).lower() != str(want).lower():
                raise ConfigError(f"experts in {self.folder} were trained with {key} {m.get(key)!r}, "
                                  f"this run uses {want!r}")
        if self.param_count != param_count:
            raise ConfigError(f"experts in {self.folder} have {self.param_count} parameters, the "
                              f"{model} network of this run has {param_count}")
        if needed_epoch > self.epochs:
            raise ConfigError(
                f"max_start_epoch − 1 + expert_epochs = {needed_epoch} exceeds the {self.epochs} epochs of the "
                f"experts in {self.folder}",
                hint="lower --max-start-epoch/--expert-epochs or train longer experts",
            )


__all__ = [
    "ExpertBuffers",
    "cached_experts_plan",
    "ensure_experts",
    "ExpertStep",
    "ExpertsConfig",
    "ExpertsResult",
    "default_counts",
    "expert_path",
    "flat_params",
    "make_experts_config",
    "read_manifest",
    "train_experts",
]
