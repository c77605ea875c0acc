"""Typed errors. The CLI maps each to a one-line message and an exit code (see cli.main)."""

from __future__ import annotations

from abc import ABCMeta
from typing import Any

from gsdd_cuda.errors import NativeUnavailableError, RasterizerError, UnknownBackendError


class GsddError(Exception, metaclass=ABCMeta):  # ABCMeta: the rasterizer's errors register below
    """Base class of every error gsdd reports to a user. ``hint`` is an optional next step."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class ConfigError(GsddError):
    """Invalid option values or configuration files."""

    exit_code = 3


class GsdFormatError(GsddError):
    """A .gsd file that is missing, corrupt, foreign or inconsistent."""

    exit_code = 4


class BudgetError(GsddError):
    """A storage budget that cannot be met (e.g. not even one Gaussian per image fits)."""

    exit_code = 5


class CudaUnavailableError(GsddError):
    """The CUDA backend was requested but cannot be used."""

    exit_code = 6


class UnknownNameError(GsddError):
    """A registry lookup (dataset, model, algorithm) failed."""

    exit_code = 7


class DataError(GsddError):
    """A dataset that cannot be found, read, or used (non-finite or out-of-range pixels, too few classes)."""

    exit_code = 8


class FileSystemError(GsddError):
    """A path that cannot be written or read: read-only, disk full, permission denied, name too long,
    a folder where a file is meant (or the reverse). ``path`` and ``reason`` say which and why."""

    exit_code = 9

    def __init__(self, message: str, hint: str | None = None, *, path: object = None, reason: str = ""):
        super().__init__(message, hint)
        self.path = path
        self.reason = reason


class DivergenceError(GsddError):
    """The optimisation produced a non-finite loss or parameter. ``checkpoint`` is the last good state
    (None when there is none) and ``iteration`` the last good iteration."""

    exit_code = 10

    def __init__(self, message: str, hint: str | None = None, *, checkpoint: object = None, iteration: int = 0):
        super().__init__(message, hint)
        self.checkpoint = checkpoint
        self.iteration = iteration


class CheckpointError(GsddError):
    """A checkpoint that is unreadable, truncated, foreign or fails its checksum."""

    exit_code = 4


class MissingModuleError(GsddError):
    """A Python package gsdd needs here is not installed (an optional extra, or a dependency lost in
    a broken install). ``module`` is the top-level module that failed to import."""

    exit_code = 11

    def __init__(self, message: str, hint: str | None = None, *, module: str = ""):
        super().__init__(message, hint)
        self.module = module


# Import name -> what to pip-install, where the two differ or an extra of gsdd brings it.
_PIP_NAMES = {"yaml": "pyyaml", "sklearn": "scikit-learn", "PIL": "pillow", "tensorboard": "'gsdd[tensorboard]'"}


def missing_module_error(e: ModuleNotFoundError) -> MissingModuleError | None:
    """The one-line error for a failed import of a package (None when the name is unknown)."""
    name = (e.name or "").split(".")[0]
    if not name:
        return None
    if name in ("gsdd_cli", "gsdd_cuda"):
        return MissingModuleError(f"gsdd's own module {e.name} is missing: the installation is broken",
                                  hint="reinstall gsdd (pip install --force-reinstall ...)", module=name)
    pip = _PIP_NAMES.get(name, name)
    return MissingModuleError(f"the Python package {name!r} is not installed; install it with: pip install {pip}",
                              module=name)


# Exit codes of the CLI, one line each (README and `gsdd --help` show this table).
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (0, "success"),
    (1, "internal error (a bug; GSDD_DEBUG=1 shows the traceback)"),
    (2, "command-line usage error (unknown option, missing argument)"),
    (3, "bad option or config value, or an output that names an input"),
    (4, "bad .gsd file or checkpoint (missing, corrupt, foreign, checksum)"),
    (5, "storage budget cannot be met"),
    (6, "CUDA or the requested native renderer unavailable"),
    (7, "unknown name (dataset, model, algorithm)"),
    (8, "dataset missing or unusable (NaN/Inf, out of range, < 2 classes, empty)"),
    (9, "file-system error (read-only, disk full, permission, name too long, ...)"),
    (10, "training diverged (NaN/Inf loss or parameter); last good checkpoint kept"),
    (11, "a Python package is missing (an optional extra, or a broken install)"),
    (130, "interrupted (Ctrl-C); distill saves a checkpoint for --resume"),
)


# gsdd_cuda sits below gsdd_cli and has its own errors; they count as these typed errors.
ConfigError.register(UnknownBackendError)
CudaUnavailableError.register(NativeUnavailableError)


def from_rasterizer_error(e: BaseException) -> GsddError | None:
    """The typed error (same message and hint, its exit code) for an error of gsdd_cuda, else None."""
    if not isinstance(e, RasterizerError):
        return None
    kind = ConfigError if isinstance(e, UnknownBackendError) else CudaUnavailableError
    return kind(str(e), hint=e.hint)


def first_line(e: BaseException, limit: int = 100) -> str:
    """The first non-empty line of an exception's message (its type name if it has none)."""
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:limit]


def first_validation_error(e: Any, default_loc: str) -> tuple[str, str, str]:
    """(type, location, message) of a pydantic ValidationError's first error, for one-line reports.

    The location is dotted ("a.b") or ``default_loc``; pydantic's "Value error, " prefix is dropped.
    """
    first = e.errors()[0]
    loc = ".".join(str(x) for x in first.get("loc", ())) or default_loc
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return str(first.get("type", "")), loc, msg
