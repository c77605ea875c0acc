"""Shared pieces of the CLI: error mapping and option aliases so every command spells flags alike."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from gsdd_cli.cli.console import err, out
from gsdd_cli.core.errors import EXIT_CODES, GsddError
from gsdd_cli.core.outputs import dumps_json, fs_error


def report_error(e: GsddError) -> None:
    err.print(f"[bold red]error:[/] {e}", markup=True, highlight=False, soft_wrap=True)
    if e.hint:
        err.print(f"[yellow]hint:[/] {e.hint}", markup=True, highlight=False, soft_wrap=True)


def as_gsdd_error(e: BaseException) -> GsddError | None:
    """The typed error to report for ``e``: itself, an OSError as a FileSystemError, else None."""
    if isinstance(e, GsddError):
        return e
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
        except (GsddError, OSError) as e:
            if os.environ.get("GSDD_DEBUG") == "1":
                raise
            typed = as_gsdd_error(e)
            report_error(typed)
            raise typer.Exit(typed.exit_code) from None

    return wrapper


def exit_codes_epilog() -> str:
    """The exit-code table for `--help` epilogs (one line each)."""
    return "Exit codes:\n" + "\n".join(f"{code:>4}  {text}" for code, text in EXIT_CODES)


def print_json(obj: Any) -> None:
    """Machine-readable strict JSON on stdout (NaN/Inf become null; no rich markup, no wrapping)."""
    typer.echo(dumps_json(obj, indent=2, sort_keys=False))


DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device", help="Torch device: auto (cuda if present, else cpu), cpu, cuda, cuda:1 ..."
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (runs are reproducible).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
DataDirOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        help="Where datasets live (default: $GSDD_DATA_DIR, else ~/.cache/gsdd/data).",
    ),
]
BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend",
        help="Renderer: auto (native CPU/CUDA kernels, compiled on first use; else reference), native, cuda, "
        "reference.",
    ),
]

__all__ = [
    "as_gsdd_error",
    "exit_codes_epilog",
    "handles_errors",
    "report_error",
    "print_json",
    "out",
    "err",
    "DeviceOpt",
    "SeedOpt",
    "JsonOpt",
    "QuietOpt",
    "DataDirOpt",
    "BackendOpt",
]
