"""Shared pieces of the CLI: one-line error reports with their exit codes, strict JSON on stdout."""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

import typer
from rich.markup import escape

from gsdd_cli.cli.console import err, out
from gsdd_cli.core.errors import EXIT_CODES, GsddError, from_rasterizer_error, missing_module_error
from gsdd_cli.core.outputs import dumps_json, fs_error


def report_error(e: GsddError) -> None:
    err.print(f"[bold red]error:[/] {escape(str(e))}", markup=True, highlight=False, soft_wrap=True)
    if e.hint:
        err.print(f"[yellow]hint:[/] {escape(str(e.hint))}", markup=True, highlight=False, soft_wrap=True)


def as_gsdd_error(e: BaseException) -> GsddError | None:
    """The typed error to report for ``e``: itself, a rasterizer error or an OSError as the typed
    error it stands for, else None."""
    rasterizer = from_rasterizer_error(e)
    if rasterizer is not None:
        return rasterizer
    if isinstance(e, GsddError):
        return e
    if isinstance(e, ModuleNotFoundError):
        return missing_module_error(e)
    if isinstance(e, OSError):
        return fs_error(e, e.filename, "access")
    return None


def handles_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a library GsddError (or a stray OSError) into a one-line message and its exit code.

    Set GSDD_DEBUG=1 to see the traceback instead.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (GsddError, OSError, ModuleNotFoundError) as e:
            typed = as_gsdd_error(e)
            if typed is None or os.environ.get("GSDD_DEBUG") == "1":
                raise
            report_error(typed)
            raise typer.Exit(typed.exit_code) from None

    return wrapper


def exit_codes_epilog() -> str:
    """The exit-code table for `--help` epilogs (one line each)."""
    return "Exit codes:\n" + "\n".join(f"{code:>4}  {text}" for code, text in EXIT_CODES)


def print_json(obj: Any) -> None:
    """Machine-readable strict JSON on stdout (NaN/Inf become null; no rich markup, no wrapping)."""
    typer.echo(dumps_json(obj, indent=2, sort_keys=False))


__all__ = ["as_gsdd_error", "err", "exit_codes_epilog", "handles_errors", "out", "print_json", "report_error"]
