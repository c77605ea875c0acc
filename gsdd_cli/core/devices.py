"""Device selection shared by every command."""

from __future__ import annotations

import torch

from gsdd_cli.core.errors import ConfigError, CudaUnavailableError


def resolve_device(spec: str = "auto") -> torch.device:
    """'auto' → cuda when available else cpu; validates explicit devices."""
    spec = (spec or "auto").lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {spec!r} (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CudaUnavailableError(f"device {spec!r} requested but no CUDA GPU is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CudaUnavailableError(f"device {spec!r} does not exist ({torch.cuda.device_count()} GPU(s))")
    elif dev.type != "cpu":
        raise ConfigError(f"unsupported device {spec!r} (use auto, cpu, cuda or cuda:N)")
    return dev
