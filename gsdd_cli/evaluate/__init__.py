"""Evaluation: train fresh networks on a set and test them (the protocol, its training helpers, the
fair metrics of DD-Ranking and the real-image baselines)."""

from gsdd_cli.evaluate.protocol import *  # noqa: F401,F403
from gsdd_cli.evaluate.protocol import (  # noqa: F401
    ADAMW_WEIGHT_DECAY,
    CROSS_ARCH_DEFAULT_LR,
    CROSS_ARCH_LR,
    DEFAULT_LR,
    SGD_WEIGHT_DECAY,
    train_epoch,
)
