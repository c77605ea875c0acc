"""Evaluation settings (:class:`EvalConfig`) and the protocol's published constants, declared once.

docs/method.md §6 and docs/evaluation.md give the sources.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, field_validator

from gsdd_cli.core.options import build, device_option, finite, option, seed_option, tensorboard_option
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

    arch: str = option("convnet", "Network: convnet (default), convnetd1..d6, alexnet, vgg11, resnet18, "
                       "resnet18bn, vit.", default_text="")
    epochs: int = option(1000, "Training epochs per network (MTT protocol: 1000).", default_text="", gt=0)
    lr: Optional[float] = option(None, "Learning rate (default: the file's learned lr for TM, else 0.01; "
                                 "cross-arch: per architecture).", gt=0)
    batch_size: Optional[int] = option(None, "Batch size (default 256 for TM files, else 128).", gt=0)
    runs: Optional[int] = option(None, "Networks to train (default 5; 3 for cross-architecture).", gt=0)
    seed: int = seed_option()
    momentum: float = option(0.9, "SGD momentum.", cli=False, ge=0, lt=1)
    weight_decay: Optional[float] = option(None, "Weight decay (default: 5e-4 SGD, 0.05 AdamW).", cli=False, ge=0)
    optimizer: Literal["auto", "sgd", "adamw"] = option("auto", "auto: SGD for ConvNets, AdamW otherwise.",
                                                        cli=False)
    dsa: bool = option(True, "DSA augmentation on every training batch.")
    dsa_strategy: str = option(DSA_STRATEGY, "DSA op groups.", cli=False)
    device: str = device_option()
    eval_every: Optional[int] = option(None, "Test every N passes (default epochs // 2).", cli=False, gt=0)
    test_batch_size: int = option(1000, "Test batch size.", cli=False, gt=0)
    tensorboard: Optional[str] = tensorboard_option()

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, v: str) -> str:
        MODELS.get(v)  # raises UnknownNameError with suggestions
        return v.lower()

    @field_validator("dsa_strategy")
    @classmethod
    def _known_strategy(cls, v: str) -> str:
        return check_strategy(v)

    _finite = field_validator("lr", "momentum", "weight_decay")(finite)


def make_eval_config(**kwargs: Any) -> EvalConfig:
    """Build an :class:`EvalConfig`, turning validation failures into one-line ConfigErrors."""
    return build(EvalConfig, {k: v for k, v in kwargs.items() if v is not None})


__all__ = ["ADAMW_WEIGHT_DECAY", "BASELINES", "CROSS_ARCH_DEFAULT_LR", "CROSS_ARCH_LR", "DEFAULT_LR",
           "EvalConfig", "SGD_WEIGHT_DECAY", "make_eval_config"]
