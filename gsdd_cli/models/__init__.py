"""Networks for distillation and evaluation, behind a strict registry.

``get_model(name, channels, num_classes, height, width)`` builds a freshly initialised network;
``list_models()`` lists the names. Every model maps [B, C, H, W] → logits [B, K], has ``embed(x)``
(flattened features before the classifier), uses no in-place ops and no buffers that change in
training except BatchNorm's running stats (``resnet18bn``), so it works with
``torch.func.functional_call`` and second-order unrolling.
"""

from gsdd_cli.models import convnet as _convnet  # noqa: F401  (registers its networks)
from gsdd_cli.models import cross_arch as _cross  # noqa: F401
from gsdd_cli.models._api import CROSS_ARCH, MODELS, ModelFactory, get_model, is_convnet, list_models
from gsdd_cli.models.convnet import ConvNet, default_convnet_depth

__all__ = [
    "MODELS",
    "CROSS_ARCH",
    "ConvNet",
    "ModelFactory",
    "default_convnet_depth",
    "get_model",
    "is_convnet",
    "list_models",
]
