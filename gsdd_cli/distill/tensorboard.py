"""``--tensorboard DIR``: TensorBoard event files written beside the JSONL run log.

``OUT.log.jsonl`` stays the machine record; this is an extra view of the same records. Scalars, with
the global iteration as the step (so a ``--resume`` keeps appending to the same folder):

- ``train/<metric>`` for each number of an ``iter`` record's metrics (``train/loss``, ``train/match``,
  TM's learned lr α as ``train/syn_lr``, ...);
- ``time/seconds``, ``time/render_seconds``, ``time/render_share`` (from the same record);
- ``eval/accuracy``, ``eval/accuracy_std``, ``eval/best_accuracy`` (``--eval-every``);

and the image ``synthetic/grid``: the rendered set, one row per class, at the first iteration of a
call, every ``--tensorboard-images-every`` iterations and at its last one (the end or a ``stop_after``).

TensorBoard is optional (``pip install 'gsdd[tensorboard]'``); :func:`check_tensorboard` refuses the
option before any work when the package is missing.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from gsdd_cli.core.errors import ConfigError, MissingModuleError
from gsdd_cli.core.outputs import fs_error
from gsdd_cli.sets.imageio import make_grid

MISSING = "--tensorboard needs the tensorboard package: pip install 'gsdd[tensorboard]'"
GRID_COLS = 10  # images per class shown in the grid
_TIME_KEYS = ("seconds", "render_seconds", "render_share")
_EVAL_KEYS = {"mean": "accuracy", "std": "accuracy_std", "best_mean": "best_accuracy"}


def summary_writer_class() -> type:
    """``torch.utils.tensorboard.SummaryWriter``, or MissingModuleError (exit 11, like every missing
    package) when tensorboard is not installed."""
    try:  # imported here: tensorboard is an optional extra, and slow to import
        module = importlib.import_module("torch.utils.tensorboard")
    except ImportError:
        raise MissingModuleError(MISSING, module="tensorboard") from None
    return module.SummaryWriter


def check_tensorboard(logdir: Optional[str]) -> None:
    """Before any work: the package is importable and ``logdir`` is not a file."""
    if logdir is None:
        return
    summary_writer_class()
    if Path(logdir).exists() and not Path(logdir).is_dir():
        raise ConfigError(f"--tensorboard {logdir} is a file; give a folder")


def _number(v: Any) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


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
    """Mirrors run-log records into a ``SummaryWriter`` (a no-op when ``logdir`` is None, e.g. off rank 0).

    ``render(index)`` returns those images of the set in pixel space and ``labels`` gives every
    image's class, for the image grid (:func:`image_grid`). OSError → FileSystemError.
    """

    def __init__(self, logdir: Optional[str], *, images_every: int = 0,
                 render: Callable[[torch.Tensor], torch.Tensor] | None = None, labels: torch.Tensor | None = None):
        self.logdir = logdir
        self.images_every = images_every
        self.render, self.labels = render, labels
        self.writer = None
        if logdir is None:
            return
        writer_class = summary_writer_class()
        try:
            self.writer = writer_class(log_dir=str(logdir))
        except OSError as e:
            raise fs_error(e, logdir) from None

    def write(self, record: dict) -> None:
        """Add the scalars of an ``iter`` or ``eval`` record (other events carry none)."""
        if self.writer is None:
            return
        event, step = record.get("event"), int(record.get("iteration", 0))
        try:
            if event == "iter":
                for k, v in record.items():
                    x = _number(v)
                    if x is not None and k not in ("event", "iteration"):
                        self.writer.add_scalar(f"{'time' if k in _TIME_KEYS else 'train'}/{k}", x, step)
            elif event == "eval":
                for k, tag in _EVAL_KEYS.items():
                    x = _number(record.get(k))
                    if x is not None:
                        self.writer.add_scalar(f"eval/{tag}", x, step)
            else:
                return
            self.writer.flush()
        except OSError as e:
            raise fs_error(e, self.logdir) from None

    def wants_images(self, done: int, first: int, last: int) -> bool:
        """Whether iteration ``done`` gets a grid (``first``, ``last``: this call's first and last)."""
        every = self.images_every
        return self.writer is not None and (done in (first, last) or (every > 0 and done % every == 0))

    def images(self, step: int) -> None:
        """Render the images the grid shows now and add it at ``step``."""
        if self.writer is None or self.render is None or self.labels is None:
            return
        grid = image_grid(self.render, self.labels)
        try:
            self.writer.add_image("synthetic/grid", grid, step)
            self.writer.flush()
        except OSError as e:
            raise fs_error(e, self.logdir) from None

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except OSError:
                pass
            self.writer = None


__all__ = ["MISSING", "TensorBoardLog", "check_tensorboard", "image_grid", "summary_writer_class"]
