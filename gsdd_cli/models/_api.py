"""The model registry, at the bottom of the models package (as torchvision's ``_api``): the network
modules register into it, the package face re-exports it."""

from __future__ import annotations

from typing import Callable

from torch import nn

from gsdd_cli.core.errors import ConfigError
from gsdd_cli.core.registry import Registry

ModelFactory = Callable[[int, int, int, int], nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")
CROSS_ARCH = ("alexnet", "vgg11", "resnet18", "resnet18bn", "vit")


def get_model(name: str, channels: int, num_classes: int, height: int, width: int) -> nn.Module:
    """A freshly initialised network ``name`` for [B, channels, height, width] inputs."""
    factory = MODELS.get(name)
    if min(channels, num_classes, height, width) < 1:
        raise ConfigError(
            f"model {name!r} needs positive sizes, got channels={channels} classes={num_classes} "
            f"height={height} width={width}"
        )
    return factory(int(channels), int(num_classes), int(height), int(width))


def list_models() -> list[str]:
    return MODELS.names()


def is_convnet(name: str) -> bool:
    return name.lower().startswith("convnet")


__all__ = ["CROSS_ARCH", "MODELS", "ModelFactory", "get_model", "is_convnet", "list_models"]
