"""The `gsdd` command line (typer), a thin layer over the library: see :mod:`gsdd_cli.cli.app`."""

from gsdd_cli.cli.app import app, main

__all__ = ["app", "main"]
