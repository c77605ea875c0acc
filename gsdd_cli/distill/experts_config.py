"""Settings of `gsdd experts` (:class:`ExpertsConfig`): the expert trajectories trajectory matching follows."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gsdd_cli.core.errors import ConfigError, first_validation_error
from gsdd_cli.data.augment import DSA_STRATEGY

# settings that must agree between a folder's manifest and a run that adds to it
COMPAT_KEYS = ("dataset", "model", "transform", "epochs", "lr", "momentum", "weight_decay", "batch", "dsa",
               "dsa_strategy", "seed", "param_count")
DEFAULT_NUM, DEFAULT_EPOCHS = 100, 50
DIGITS_NUM, DIGITS_EPOCHS = 5, 10


class ExpertsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    dataset: str
    out: str
    num: int = Field(DEFAULT_NUM, gt=0)
    epochs: int = Field(DEFAULT_EPOCHS, gt=0)
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    batch: int = Field(256, gt=0)
    model: str = "convnet"
    transform: Optional[Literal["zca", "normalize", "none"]] = None
    dsa: bool = True
    dsa_strategy: str = DSA_STRATEGY
    seed: int = 0
    device: str = "auto"
    data_dir: Optional[str] = None


def default_counts(dataset: str) -> tuple[int, int]:
    """(number of experts, epochs): the spec's 100 × 50, or 5 × 10 for the small `digits` set."""
    return (DIGITS_NUM, DIGITS_EPOCHS) if Path(str(dataset)).name.lower() == "digits" else (DEFAULT_NUM, DEFAULT_EPOCHS)


def make_experts_config(**kwargs) -> ExpertsConfig:
    """Build an :class:`ExpertsConfig` (``None`` values mean "default"); errors become ConfigError."""
    given = {k: v for k, v in kwargs.items() if v is not None}
    if "dataset" in given:
        num, epochs = default_counts(given["dataset"])
        given.setdefault("num", num)
        given.setdefault("epochs", epochs)
    try:
        return ExpertsConfig(**given)
    except ValidationError as e:
        _, loc, msg = first_validation_error(e, "config")
        raise ConfigError(f"invalid experts setting {loc}: {msg}") from None


__all__ = ["COMPAT_KEYS", "ExpertsConfig", "default_counts", "make_experts_config"]
