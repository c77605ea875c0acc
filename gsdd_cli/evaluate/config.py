"""Evaluation settings (:class:`EvalConfig`) and the protocol's published constants, declared once.

docs/method.md §6 and docs/evaluation.md give the sources.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gsdd_cli.core.errors import ConfigError, first_validation_error
from gsdd_cli.data.augment import DSA_STRATEGY, check_strategy
from gsdd_cli.models import MODELS

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


__all__ = ["ADAMW_WEIGHT_DECAY", "BASELINES", "CROSS_ARCH_DEFAULT_LR", "CROSS_ARCH_LR", "DEFAULT_LR",
           "EvalConfig", "SGD_WEIGHT_DECAY", "make_eval_config"]
