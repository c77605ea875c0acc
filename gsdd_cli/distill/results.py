"""What a distillation reports: per-iteration progress, the result, the Ctrl-C exception."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from gsdd_cli.distill.config import DistillConfig


@dataclass
class DistillStep:
    """Progress after one iteration (passed to ``on_step``)."""

    iteration: int  # iterations done (1-based)
    total: int
    loss: float
    metrics: dict[str, float]
    seconds: float  # this iteration's wall time
    render_share: float  # fraction of it spent in the forward render + transform
    eval_mean: Optional[float] = None
    eval_std: Optional[float] = None


@dataclass
class DistillResult:
    out: Path
    config: DistillConfig
    iterations: int  # iterations done
    seconds: float
    final_loss: Optional[float]  # None only when no loss is known (see the header's final_loss_note)
    syn_lr: Optional[float] = None
    evals: list[dict] = field(default_factory=list)
    interrupted: bool = False
    checkpoint: Optional[Path] = None
    log: Optional[Path] = None
    init: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)  # TM: the pre-flight memory plan (mode, estimates)


class DistillInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run. ``checkpoint`` is the file to resume from (None if none could be saved)."""

    def __init__(self, checkpoint: Path | None, iteration: int):
        super().__init__(f"interrupted after iteration {iteration}")
        self.checkpoint = checkpoint
        self.iteration = iteration


__all__ = ["DistillInterrupted", "DistillResult", "DistillStep"]
