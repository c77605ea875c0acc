"""Settings of `gsdd experts` (:class:`ExpertsConfig`): the expert trajectories trajectory matching follows."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from gsdd_cli.core.options import (
    build,
    data_dir_option,
    device_option,
    finite,
    option,
    out_option,
    seed_option,
    tensorboard_option,
)
from gsdd_cli.data.augment import DSA_STRATEGY, check_strategy
from gsdd_cli.data.transforms import TRANSFORM_KINDS

# settings that must agree between a folder's manifest and a run that adds to it
COMPAT_KEYS = ("dataset", "model", "transform", "epochs", "lr", "momentum", "weight_decay", "batch", "dsa",
               "dsa_strategy", "seed", "param_count")
DEFAULT_NUM, DEFAULT_EPOCHS = 100, 50
DIGITS_NUM, DIGITS_EPOCHS = 5, 10


class ExpertsConfig(BaseModel):
    """Everything an expert folder depends on (docs/distill.md); COMPAT_KEYS must agree on re-runs."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    dataset: str = option(..., "Dataset name (digits, cifar10, cifar100, imagenette, ...) or path.", argument=True)
    out: str = out_option("Folder for the trajectories (expert_0000.safetensors, manifest.json).")
    num: int = option(DEFAULT_NUM, "Number of experts (spec: 100; digits: 5). Under torchrun spell it "
                      "--num-experts (torchrun takes --num for its own --numa-binding).",
                      flags=("--num", "--num-experts"), default_text="", gt=0)
    epochs: int = option(DEFAULT_EPOCHS, "Epochs per expert (spec: 50; digits: 10).", default_text="", gt=0)
    lr: float = option(0.01, "SGD lr.", gt=0)
    momentum: float = option(0.0, "SGD momentum.", cli=False, ge=0, lt=1)
    weight_decay: float = option(0.0, "SGD weight decay.", cli=False, ge=0)
    batch: int = option(256, "Batch size.", gt=0)
    model: str = option("convnet", "Network (convnet: the distillation network).")
    transform: Optional[Literal[TRANSFORM_KINDS]] = option(  # type: ignore[valid-type]
        None, "zca, normalize or none (default: zca for CIFAR, else normalize).")
    dsa: bool = option(True, "DSA augmentation on every batch.")
    dsa_strategy: str = option(DSA_STRATEGY, "DSA op groups.", cli=False)
    batch_experts: int = option(
        1, "Experts trained at once as one batched network (torch.func.vmap over stacked parameters; the "
        "same data order, augmentation and trajectories within float tolerance, K trajectories held in "
        "memory). 1 is the default because on CPU it is the fastest (docs/distill.md); on a GPU raise it "
        "and measure with bench/experts.py. Networks with BatchNorm train one at a time.", gt=0)
    seed: int = seed_option("Seed (expert i is seeded from (seed, i)).")
    device: str = device_option()
    data_dir: Optional[str] = data_dir_option()
    tensorboard: Optional[str] = tensorboard_option()

    _finite = field_validator("lr", "momentum", "weight_decay")(finite)
    _strategy = field_validator("dsa_strategy")(check_strategy)

    @model_validator(mode="before")
    @classmethod
    def _counts_by_dataset(cls, data: Any) -> Any:
        """Unset num/epochs take the dataset's defaults (:func:`default_counts`)."""
        if isinstance(data, dict) and data.get("dataset") is not None:
            num, epochs = default_counts(data["dataset"])
            data = {"num": num, "epochs": epochs, **data}
        return data


def default_counts(dataset: str) -> tuple[int, int]:
    """(number of experts, epochs): the spec's 100 × 50, or 5 × 10 for the small `digits` set."""
    return (DIGITS_NUM, DIGITS_EPOCHS) if Path(str(dataset)).name.lower() == "digits" else (DEFAULT_NUM, DEFAULT_EPOCHS)


def make_experts_config(**kwargs) -> ExpertsConfig:
    """Build an :class:`ExpertsConfig` (``None`` values mean "default"); errors become ConfigError."""
    return build(ExpertsConfig, {k: v for k, v in kwargs.items() if v is not None})


__all__ = ["COMPAT_KEYS", "ExpertsConfig", "default_counts", "make_experts_config"]
