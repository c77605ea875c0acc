"""``gsdd eval --tensorboard DIR``: an evaluation's curves and results as TensorBoard scalars.

Each trained set has its own group: ``distilled`` (the .gsd file), and with comparisons (or a
``--baseline``) ``random-real`` and ``full``. Per run r (1-based), with the training pass as the step:
``<group>/run_<r>/train_loss``, ``train_acc``, ``pass_seconds`` every pass and ``test_acc`` at each
evaluation point. At the end: ``<group>/final_accuracy`` (the step is the run),
``<group>/final_accuracy_mean``, ``final_accuracy_std``, ``best_accuracy_mean``, ``best_accuracy_std``
(the step is the last pass), the text ``<group>/summary``, and with comparisons ``metrics/ior``,
``metrics/hlr``, ``metrics/lrs``, ``metrics/lrs_paper`` (means over the runs; IOR and HLR in points).
Accuracies are fractions, as in ``--json``. The writer is :mod:`gsdd_cli.core.tensorboard`'s.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from gsdd_cli.core.tensorboard import EventWriter
from gsdd_cli.evaluate.results import EvalResult, EvalStep

METRIC_KEYS = ("ior", "hlr", "lrs", "lrs_paper")


class EvalBoard:
    """Writes :class:`EvalStep` records and :class:`EvalResult` outcomes (a no-op when ``logdir`` is None)."""

    def __init__(self, logdir: Optional[str]):
        self.events = EventWriter(logdir)

    def hook(self, on_step: Callable[[EvalStep], None] | None, group: str) -> Callable[[EvalStep], None] | None:
        """``on_step`` that writes each step first (under its phase, else ``group``), then calls ``on_step``."""
        if not self.events.active:
            return on_step

        def both(step: EvalStep) -> None:
            self.step(step, step.phase or group)
            if on_step is not None:
                on_step(step)

        return both

    def step(self, s: EvalStep, group: str) -> None:
        self.events.scalars({"train_loss": s.loss, "train_acc": s.train_acc, "test_acc": s.test_acc,
                             "pass_seconds": s.seconds}, s.epoch, prefix=f"{group}/run_{s.run + 1}/")
        self.events.flush()

    def result(self, res: EvalResult, group: str) -> None:
        if not self.events.active:
            return
        last = res.epochs + 1
        for r, acc in enumerate(res.final_accuracy):
            self.events.scalar(f"{group}/final_accuracy", acc, r + 1)
        self.events.scalars({"final_accuracy_mean": res.mean, "final_accuracy_std": res.std,
                             "best_accuracy_mean": res.best_mean, "best_accuracy_std": res.best_std},
                            last, prefix=f"{group}/")
        self.events.text(f"{group}/summary", res.summary(), last)
        self.events.flush()

    def metrics(self, metrics: dict[str, Any], step: int) -> None:
        for key in METRIC_KEYS:
            if isinstance(metrics.get(key), dict):
                self.events.scalar(f"metrics/{key}", metrics[key].get("mean"), step)
        self.events.flush()

    def close(self) -> None:
        self.events.close()


__all__ = ["EvalBoard", "METRIC_KEYS"]
