"""The `gsdd` command line: a table of contents over small command modules.

Each module in :mod:`gsdd_cli.commands` defines ``register(app)``; the commands themselves are thin
adapters that check flag combinations and call the library. :func:`main` turns the library's typed
errors into one-line messages and exit codes (traceback only with ``GSDD_DEBUG=1``).
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from gsdd_cli import __version__
from gsdd_cli.cli.common import as_gsdd_error, exit_codes_epilog, report_error
from gsdd_cli.cli.console import err
from gsdd_cli.core.errors import GsddError  # noqa: F401

# Order here is the order in `gsdd --help`.
COMMAND_MODULES = [
    "budget",
    "init",
    "distill",
    "experts",
    "teacher",
    "render",
    "info",
    "eval",
    "export",
]

app = typer.Typer(
    name="gsdd",
    help="Dataset distillation with 2D Gaussian splatting (GSDD).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=exit_codes_epilog(),
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gsdd {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Dataset distillation with 2D Gaussian splatting (GSDD)."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"gsdd_cli.cli.commands.{_name}").register(app)
for _cmd in app.registered_commands:  # every command's --help ends with the exit codes
    if _cmd.epilog is None:
        _cmd.epilog = exit_codes_epilog()


def main(argv: list[str] | None = None) -> None:
    debug = os.environ.get("GSDD_DEBUG") == "1"
    try:
        app(args=argv, standalone_mode=True)
    except (GsddError, OSError, ModuleNotFoundError) as e:
        typed = as_gsdd_error(e)
        if debug or typed is None:
            raise
        report_error(typed)
        sys.exit(typed.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
