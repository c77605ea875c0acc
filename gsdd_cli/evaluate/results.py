"""What an evaluation reports: progress steps (:class:`EvalStep`) and the outcome (:class:`EvalResult`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict


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
    seconds: Optional[float] = None  # this pass's wall time (training and, where taken, the test)


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


__all__ = ["EvalResult", "EvalStep"]
