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


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` now: CUDA's free bytes, or the host's MemAvailable (None if unknown)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def require_memory(nbytes: int, device: torch.device, what: str, hint: str | None = None) -> None:
    """ConfigError (one line, exit 2 like the TM memory pre-flight) when ``what`` needs more than the memory free on ``device``."""
    free = available_bytes(device)
    if free is not None and nbytes > free:
        raise ConfigError(f"{what} needs {nbytes / 2**30:,.1f} GiB on {device}, {free / 2**30:,.1f} GiB is free",
                            hint=hint)
