"""Networks for distillation and evaluation, behind a strict registry.

``get_model(name, channels, num_classes, height, width)`` builds a freshly initialised network;
``list_models()`` lists the names. Every model maps [B, C, H, W] → logits [B, K], has ``embed(x)``
(flattened features before the classifier), uses no in-place ops and no buffers that change in
training except BatchNorm's running stats (``resnet18bn``), so it works with
``torch.func.functional_call`` and second-order unrolling.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from gsdd_cli.core.errors import ConfigError
from gsdd_cli.core.registry import Registry

ModelFactory = Callable[[int, int, int, int], nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")


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


from gsdd_cli.models import convnet as _convnet  # noqa: E402,F401  (registers)
from gsdd_cli.models import cross_arch as _cross  # noqa: E402,F401
from gsdd_cli.models.convnet import ConvNet, default_convnet_depth  # noqa: E402

CROSS_ARCH = ("alexnet", "vgg11", "resnet18", "resnet18bn", "vit")


def is_convnet(name: str) -> bool:
    return name.lower().startswith("convnet")


__all__ = [
    "MODELS",
    "CROSS_ARCH",
    "ConvNet",
    "default_convnet_depth",
    "get_model",
    "is_convnet",
    "list_models",
]
