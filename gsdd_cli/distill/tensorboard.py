"""``--tensorboard DIR``: TensorBoard event files written beside the JSONL run log.

``OUT.log.jsonl`` stays the machine record; this is an extra view of the same records. Scalars, with
the global iteration as the step (so a ``--resume`` keeps appending to the same folder):

- ``train/<metric>`` for each number of an ``iter`` record's metrics (``train/loss``, ``train/match``,
  TM's learned lr α as ``train/syn_lr``, ...);
- ``time/seconds``, ``time/render_seconds``, ``time/render_share`` (from the same record);
- ``eval/accuracy``, ``eval/accuracy_std``, ``eval/best_accuracy`` (``--eval-every``);

and the image ``synthetic/grid``: the rendered set, one row per class, at the first iteration of a
call, every ``--tensorboard-images-every`` iterations and at its last one (the end or a ``stop_after``).

``gsdd experts --tensorboard DIR`` (:class:`ExpertsBoard`): per expert ``expert_<i>/train_loss``,
``train_acc``, ``test_acc`` (where measured) and ``epoch_seconds`` with the epoch as the step, and
``experts/test_acc`` with the expert index as the step.

TensorBoard is optional (``pip install 'gsdd[tensorboard]'``); :func:`check_tensorboard` refuses the
option before any work when the package is missing. The writer is :mod:`gsdd_cli.core.tensorboard`'s.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from gsdd_cli.core.tensorboard import MISSING, EventWriter, check_tensorboard, number, summary_writer_class
from gsdd_cli.sets.imageio import make_grid

GRID_COLS = 10  # images per class shown in the grid
_TIME_KEYS = ("seconds", "render_seconds", "render_share")
_EVAL_KEYS = {"mean": "accuracy", "std": "accuracy_std", "best_mean": "best_accuracy"}


def image_grid(render: Callable[[torch.Tensor], torch.Tensor], labels: torch.Tensor,
               cols: int = GRID_COLS) -> torch.Tensor:
    """[C, H', W'] in [0, 1]: the first ``cols`` images of each class, one row per class. Only the
    images shown are rendered: ``render(index)`` gives them in pixel space ([len(index), C, H, W])."""
    labels = labels.cpu()
    rows = [(labels == c).nonzero().flatten()[:cols] for c in torch.unique(labels).tolist()]
    with torch.no_grad():
        rendered = render(torch.cat(rows)).detach().float().cpu()
    tiles = list(rendered.split([len(r) for r in rows]))
    return make_grid([list(t) for t in tiles])


class TensorBoardLog:
    """Mirrors run-log records into an :class:`EventWriter` (a no-op when ``logdir`` is None, e.g. off rank 0).

    ``render(index)`` returns those images of the set in pixel space and ``labels`` gives every
    image's class, for the image grid (:func:`image_grid`). OSError → FileSystemError.
    """

    def __init__(self, logdir: Optional[str], *, images_every: int = 0,
                 render: Callable[[torch.Tensor], torch.Tensor] | None = None, labels: torch.Tensor | None = None):
        self.logdir = logdir
        self.images_every = images_every
        self.render, self.labels = render, labels
        self.events = EventWriter(logdir)

    @property
    def writer(self):
        return self.events.writer

    def write(self, record: dict) -> None:
        """Add the scalars of an ``iter`` or ``eval`` record (other events carry none)."""
        if not self.events.active:
            return
        event, step = record.get("event"), int(record.get("iteration", 0))
        if event == "iter":
            for k, v in record.items():
                if k not in ("event", "iteration"):
                    self.events.scalar(f"{'time' if k in _TIME_KEYS else 'train'}/{k}", v, step)
        elif event == "eval":
            for k, tag in _EVAL_KEYS.items():
                self.events.scalar(f"eval/{tag}", record.get(k), step)
        else:
            return
        self.events.flush()

    def wants_images(self, done: int, first: int, last: int) -> bool:
        """Whether iteration ``done`` gets a grid (``first``, ``last``: this call's first and last)."""
        every = self.images_every
        return self.events.active and (done in (first, last) or (every > 0 and done % every == 0))

    def images(self, step: int) -> None:
        """Render the images the grid shows now and add it at ``step``."""
        if not self.events.active or self.render is None or self.labels is None:
            return
        self.events.image("synthetic/grid", image_grid(self.render, self.labels), step)
        self.events.flush()

    def close(self) -> None:
        self.events.close()

    def discard(self) -> None:
        """Remove this call's event file (and the folders it created): a fresh run that left nothing else."""
        self.events.discard()


class ExpertsBoard:
    """``gsdd experts --tensorboard``: :class:`~gsdd_cli.distill.experts.ExpertStep` records as scalars.

    Every process writes its own event file (under torchrun, rank r's experts), tags carry the expert
    index. :meth:`hook` wraps an ``on_step`` callback.
    """

    def __init__(self, logdir: Optional[str]):
        self.events = EventWriter(logdir)

    def step(self, s) -> None:
        if not self.events.active or s.epoch == 0:  # epoch 0: an expert already complete, nothing trained
            return
        tag = f"expert_{s.expert:04d}/"
        self.events.scalars({"train_loss": s.loss, "train_acc": s.train_acc, "test_acc": s.test_acc,
                             "epoch_seconds": s.seconds}, s.epoch, prefix=tag)
        if s.test_acc is not None and s.epoch == s.epochs:  # the expert's final test accuracy
            self.events.scalar("experts/test_acc", s.test_acc, s.expert)
        self.events.flush()

    def hook(self, on_step: Callable | None) -> Callable | None:
        if not self.events.active:
            return on_step

        def both(s) -> None:
            self.step(s)
            if on_step is not None:
                on_step(s)

        return both

    def close(self) -> None:
        self.events.close()


__all__ = ["ExpertsBoard", "MISSING", "TensorBoardLog", "check_tensorboard", "image_grid", "number",
           "summary_writer_class"]
