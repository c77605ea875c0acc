"""The files of a run beside ``OUT`` (config, log, checkpoint paths), the JSONL log, and Ctrl-C handling."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from gsdd_cli.core.errors import ConfigError
from gsdd_cli.core.outputs import atomic_write_text, check_output_file, dumps_json, fs_error
from gsdd_cli.data import dataset_path
from gsdd_cli.distill.config import DistillConfig
from gsdd_cli.distill.tensorboard import check_tensorboard


def run_paths(out: Path | str) -> dict[str, Path]:
    out = Path(out)
    return {
        "out": out,
        "config": out.with_name(out.name + ".config.json"),
        "log": out.with_name(out.name + ".log.jsonl"),
        "checkpoint": out.with_name(out.name + ".ckpt"),
    }


def check_run_outputs(cfg: DistillConfig, inputs: Mapping[str, Any] | None = None) -> None:
    """Refuse, before any work, outputs that cannot be written or that name an input.

    Checks ``cfg.out`` and its config, log and checkpoint files against the dataset (when it is a
    path), ``--init``, ``--buffers`` and ``inputs`` (label → path, e.g. ``{"--config": path}``), and
    that ``--tensorboard`` can be written (the package is installed, the folder is not a file).
    """
    if not cfg.out:
        raise ConfigError("no output file: give --out FILE.gsd")
    ins = {"DATASET": dataset_path(cfg.dataset), "--init": cfg.init, "--buffers": cfg.buffers, **(inputs or {})}
    paths = run_paths(cfg.out)
    check_output_file(paths["out"], "--out", ins)
    for key in ("config", "log", "checkpoint"):
        check_output_file(paths[key], f"{key} file", ins)
    check_tensorboard(cfg.tensorboard)


class SigintFlag:
    """First Ctrl-C: set a flag (the loop finishes the iteration, saves, stops). Second: raise."""

    def __init__(self, notify: Callable[[str], None] | None):
        self.flag = False
        self.notify = notify
        self.previous = None

    def __enter__(self) -> "SigintFlag":
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True
        if self.notify:
            self.notify("interrupt: finishing this iteration, then saving a checkpoint (Ctrl-C again to abort)")

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


class RunLog:
    """The JSONL run log (strict JSON: a non-finite number is written as null). OSError →
    FileSystemError. ``mirror`` (e.g. a TensorBoardLog) gets every record too and is closed with it."""

    def __init__(self, path: Path | None, resume_from: int | None, mirror: Any = None):
        self.path = path
        self.f = None
        self.mirror = mirror
        if path is None:
            return
        try:
            if resume_from is not None and path.is_file():
                kept = []
                for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if isinstance(rec, dict) and rec.get("iteration", 0) <= resume_from and rec.get("event") != "end":
                        kept.append(line)
                atomic_write_text(path, "".join(k + "\n" for k in kept))
                self.f = open(path, "a", encoding="utf-8")
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.f = open(path, "w", encoding="utf-8")
        except OSError as e:
            raise fs_error(e, path) from None

    def write(self, record: dict) -> None:
        if self.f is not None:
            try:
                self.f.write(dumps_json(record, default=json_default) + "\n")
                self.f.flush()
            except OSError as e:
                raise fs_error(e, self.path) from None
        if self.mirror is not None:
            self.mirror.write(record)

    def close(self) -> None:
        if self.mirror is not None:
            self.mirror.close()
        if self.f is not None:
            try:
                self.f.close()
            except OSError:
                pass
            self.f = None


def json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    return str(o)


__all__ = ["RunLog", "SigintFlag", "check_run_outputs", "json_default", "run_paths"]
