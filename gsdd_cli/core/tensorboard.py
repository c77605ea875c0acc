"""``--tensorboard DIR`` for every command that has it (distill, experts, eval): the writer itself.

TensorBoard is an optional extra (``pip install 'gsdd[tensorboard]'``). :func:`check_tensorboard`
refuses the option before any work when the package is missing (MissingModuleError, exit 11) or the
folder cannot be written; :class:`EventWriter` wraps ``torch.utils.tensorboard.SummaryWriter``: a
no-op without a folder, every OSError a one-line FileSystemError, and :meth:`EventWriter.discard`
takes back what it wrote (its own event file and the folders it created), for a run that leaves
nothing else behind. The commands' own tags live with them (``distill/tensorboard.py``,
``evaluate/tensorboard.py``).
"""

from __future__ import annotations

import importlib
import os
import uuid
from pathlib import Path
from typing import Any, Mapping, Optional

from gsdd_cli.core.errors import ConfigError, MissingModuleError
from gsdd_cli.core.outputs import check_output_dir, fs_error

MISSING = "--tensorboard needs the tensorboard package: pip install 'gsdd[tensorboard]'"


def summary_writer_class() -> type:
    """``torch.utils.tensorboard.SummaryWriter``, or MissingModuleError (exit 11, like every missing
    package) when tensorboard is not installed."""
    try:  # imported here: tensorboard is an optional extra, and slow to import
        module = importlib.import_module("torch.utils.tensorboard")
    except ImportError:
        raise MissingModuleError(MISSING, module="tensorboard") from None
    return module.SummaryWriter


def check_tensorboard(logdir: Optional[str]) -> None:
    """Before any work: the package is importable and ``logdir`` is (or can become) a writable folder."""
    if logdir is None:
        return
    summary_writer_class()
    p = Path(logdir).expanduser()
    if p.exists() and not p.is_dir():
        raise ConfigError(f"--tensorboard {logdir} is a file; give a folder")
    check_output_dir(p, "--tensorboard")


def number(v: Any) -> Optional[float]:
    """``v`` as a float when it is a real number (not a bool, not text), else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


class EventWriter:
    """A ``SummaryWriter`` on ``logdir`` (every method a no-op when ``logdir`` is None).

    Its event file carries a suffix of its own, so :meth:`discard` removes exactly that file (and the
    folders this writer had to create, if they are empty then), never anything that was there before.
    """

    def __init__(self, logdir: Optional[str]):
        self.logdir = logdir
        self.writer = None
        self._suffix = f".gsdd-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._created: list[Path] = []  # folders this writer made, deepest first
        if logdir is None:
            return
        writer_class = summary_writer_class()
        folder = Path(logdir).expanduser()
        q = folder
        while not q.exists() and q != q.parent:
            self._created.append(q)
            q = q.parent
        self._folder = folder
        try:
            self.writer = writer_class(log_dir=str(folder), filename_suffix=self._suffix)
        except OSError as e:
            raise fs_error(e, logdir) from None

    @property
    def active(self) -> bool:
        return self.writer is not None

    def _call(self, name: str, *args: Any) -> None:
        if self.writer is None:
            return
        try:
            getattr(self.writer, name)(*args)
        except OSError as e:
            raise fs_error(e, self.logdir) from None

    def scalar(self, tag: str, value: Any, step: int) -> None:
        """Add ``value`` under ``tag`` at ``step`` when it is a number (None, text and bools are skipped)."""
        x = number(value)
        if x is not None:
            self._call("add_scalar", tag, x, int(step))

    def scalars(self, values: Mapping[str, Any], step: int, prefix: str = "") -> None:
        for k, v in values.items():
            self.scalar(prefix + k, v, step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self._call("add_text", tag, text, int(step))

    def image(self, tag: str, img: Any, step: int) -> None:
        self._call("add_image", tag, img, int(step))

    def flush(self) -> None:
        self._call("flush")

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except OSError:
                pass
            self.writer = None

    def discard(self) -> None:
        """Close, then remove this writer's event file and the (then empty) folders it created."""
        self.close()
        if self.logdir is None:
            return
        for f in self._folder.glob(f"events.out.tfevents.*{self._suffix}"):
            try:
                f.unlink()
            except OSError:
                pass
        for d in self._created:
            try:
                d.rmdir()  # only if empty
            except OSError:
                break


__all__ = ["EventWriter", "MISSING", "check_tensorboard", "number", "summary_writer_class"]
