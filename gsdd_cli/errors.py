"""Typed errors. The CLI maps each to a one-line message and an exit code (see cli.main)."""

from __future__ import annotations

from typing import Any


class GsddError(Exception):
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
    """A dataset that cannot be found or read."""

    exit_code = 8


def first_validation_error(e: Any, default_loc: str) -> tuple[str, str, str]:
    """(type, location, message) of a pydantic ValidationError's first error, for one-line reports.

    The location is dotted ("a.b") or ``default_loc``; pydantic's "Value error, " prefix is dropped.
    """
    first = e.errors()[0]
    loc = ".".join(str(x) for x in first.get("loc", ())) or default_loc
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return str(first.get("type", "")), loc, msg
