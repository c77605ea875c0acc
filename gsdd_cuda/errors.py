"""The rasterizer's own errors (stdlib only). gsdd_cli registers them under its typed errors, so
``except gsdd_cli.ConfigError`` / ``CudaUnavailableError`` catch them and the CLI gives their exit codes."""

from __future__ import annotations


class RasterizerError(Exception):
    """Base class; ``hint`` is an optional next step for the user."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class UnknownBackendError(RasterizerError, ValueError):
    """A backend name that is not one of ``BACKENDS``."""


class NativeUnavailableError(RasterizerError, RuntimeError):
    """An explicit native/cuda backend was requested but its kernels cannot be used."""


__all__ = ["NativeUnavailableError", "RasterizerError", "UnknownBackendError"]
