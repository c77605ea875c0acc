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
label-robust score LRS (see :func:`~gsdd_cli.evaluate.metrics.fair_metrics` and docs/evaluation.md).

This module ties the pieces together: settings (``settings``), training (``training``), metrics
(``metrics``), baselines (``baselines``) and what a file needs from the real data (``source``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from gsdd_cli.core.devices import require_memory, resolve_device
from gsdd_cli.core.errors import ConfigError, DataError
from gsdd_cli.core.tensorboard import check_tensorboard
from gsdd_cli.data import Dataset
from gsdd_cli.data.transforms import Transform, apply_in_batches
from gsdd_cli.evaluate.baselines import evaluate_baseline
from gsdd_cli.evaluate.config import EvalConfig
from gsdd_cli.evaluate.metrics import LRS_LAMBDA, fair_metrics
from gsdd_cli.evaluate.results import EvalResult, EvalStep
from gsdd_cli.evaluate.settings import resolve_settings
from gsdd_cli.evaluate.source import file_sha256, header_transform, real_dataset_for
from gsdd_cli.evaluate.tensorboard import EvalBoard
from gsdd_cli.evaluate.training import run_protocol
from gsdd_cli.sets.gsdfile import load_gsd
from gsdd_cli.sets.synthetic import render_images


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
    return run_protocol(lambda run: (images, labels), test_x, test_y, cfg, st, k, on_step, algorithm, meta)


def render_all(images, device: torch.device, backend: str = "auto") -> torch.Tensor:
    """Render every image (pixel space) on ``device`` in memory-bounded chunks (moves ``images`` there)."""
    return render_images(images.to(device), backend=backend)


def _phase(on_step: Callable[[EvalStep], None] | None, phase: str) -> Callable[[EvalStep], None] | None:
    if on_step is None:
        return None

    def tagged(step: EvalStep) -> None:
        step.phase = phase
        on_step(step)

    return tagged


# ------------------------------------------------------------------------------- distilled sets
def _check_comparisons(full: bool, full_accuracy: float | None) -> None:
    if full and full_accuracy is not None:
        raise ConfigError("give either full=True (train on the full set) or full_accuracy, not both")
    if full_accuracy is not None and not 0.0 <= full_accuracy <= 1.0:
        raise ConfigError(f"full_accuracy is a fraction in [0, 1], got {full_accuracy}")


def _evaluate_file(
    header: Any,
    path: Path | None,
    labels: torch.Tensor,
    data: Callable[[], tuple[Dataset, Transform]],
    render: Callable[[torch.device], torch.Tensor],
    cfg: EvalConfig,
    on_step: Callable[[EvalStep], None] | None,
    vs_random: bool,
    full: bool,
    full_accuracy: float | None,
    lrs_lambda: float,
) -> EvalResult:
    """The body of :func:`evaluate_set`: ``data()`` gives the real dataset and the file's transform,
    ``render(device)`` the pixel-space images there."""
    _check_comparisons(full, full_accuracy)
    check_tensorboard(cfg.tensorboard)
    h = header
    dev = resolve_device(cfg.device)
    resolve_settings(cfg)  # validate early (device, arch) before the expensive steps
    comparing = vs_random or full or full_accuracy is not None
    ds, tf = data()
    ds.require_test("gsdd eval")
    # the whole set is decoded once, in pixel space and in network space: say so before it fails
    require_memory(2 * h.num_images * h.channels * h.height * h.width * 4, dev,
                   f"decoding the {h.num_images:,} images of the set ({h.channels}×{h.height}×{h.width}, float32, "
                   "pixel and network space)",
                   hint="evaluate on a machine or GPU with more memory, or distil with a smaller --gpc")
    pixels = render(dev)
    x_syn = apply_in_batches(tf, pixels, pixels.device)
    test_x = apply_in_batches(tf, ds.x_test, dev, stream=True)
    meta = {
        "dataset": ds.name, "source": str(path) if path else "", "transform": h.transform,
        "ipc": h.ipc, "gpc": h.gpc, "points_per_image": getattr(h, "points_per_image", None), "syn_lr": h.syn_lr,
        "data_source": ds.source,
    }
    if path is not None:
        meta["file_sha256"] = file_sha256(path)
    board = EvalBoard(cfg.tensorboard)  # after the checks and the data: the folder appears now
    try:
        res = train_and_evaluate(
            x_syn, labels.to(dev), test_x, ds.y_test, cfg,
            _phase(board.hook(on_step, "distilled"), "distilled" if comparing else ""),
            algorithm=h.algorithm, syn_lr=h.syn_lr, num_classes=h.num_classes, meta=meta,
        )
        board.result(res, "distilled")
        if not comparing:
            return res
        same = cfg.model_copy(update={"lr": res.lr, "batch_size": res.batch_size, "runs": res.runs,
                                      "tensorboard": None})  # this board writes the baselines too
        for kind, wanted in (("random-real", vs_random), ("full", full)):
            if wanted:
                res.baselines[kind] = evaluate_baseline(ds, kind, int(h.ipc) if kind == "random-real" else None,
                                                        same, transform=tf,
                                                        on_step=_phase(board.hook(on_step, kind), kind))
                board.result(res.baselines[kind], kind)
        full_acc = res.baselines["full"].final_accuracy if full else full_accuracy
        res.metrics = fair_metrics(
            res.final_accuracy,
            random=res.baselines["random-real"].final_accuracy if vs_random else None,
            full=full_acc,
            lrs_lambda=lrs_lambda,
        )
        board.metrics(res.metrics, res.epochs + 1)
    finally:
        board.close()
    if full_accuracy is not None:
        res.metrics["full_accuracy"] = full_accuracy
    if full_acc is not None:
        res.metrics["full_accuracy_source"] = "trained" if full else "given"
    return res


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
    return _evaluate_file(
        s.header, s.path, s.labels, lambda: (s.real_dataset(), s.transform),
        lambda dev: s.render(device=dev, backend=backend), cfg, on_step, vs_random, full, full_accuracy, lrs_lambda,
    )


def evaluate_gsd(
    path: Path | str,
    cfg: EvalConfig,
    data_dir: Path | str | None = None,
    backend: str = "auto",
    on_step: Callable[[EvalStep], None] | None = None,
    *,
    dataset: str | None = None,
    vs_random: bool = False,
    full: bool = False,
    full_accuracy: float | None = None,
    lrs_lambda: float = LRS_LAMBDA,
) -> EvalResult:
    """Load a .gsd file and evaluate it (:func:`evaluate_set`, with the same comparison keywords).

    ``dataset`` overrides the header's dataset name (e.g. when the file names a path that moved).
    """
    check_tensorboard(cfg.tensorboard)  # before any work (the package, the folder)
    f = load_gsd(path)

    def data() -> tuple[Dataset, Transform]:
        ds = real_dataset_for(f.header, dataset, data_dir)
        return ds, header_transform(f.header, ds)

    return _evaluate_file(
        f.header, f.path, f.images.labels.detach().long().cpu(), data,
        lambda dev: render_images(f.images.to(dev), backend=backend), cfg, on_step, vs_random, full,
        full_accuracy, lrs_lambda,
    )


__all__ = ["evaluate_gsd", "evaluate_set", "render_all", "train_and_evaluate"]
