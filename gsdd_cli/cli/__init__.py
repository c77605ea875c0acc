"""The `gsdd` command line (typer), a thin layer over the library: see :mod:`gsdd_cli.cli.app`.

If the command tree cannot be imported because a package is missing from a broken install (torch,
typer, rich, ...), :func:`main` (the ``gsdd`` entry point) reports it as one ``error:`` line with
exit code 11 instead of an import traceback.
"""

from __future__ import annotations

import os
import sys

try:
    from gsdd_cli.cli.app import app
    from gsdd_cli.cli.app import main as _run
except ModuleNotFoundError as _e:
    _missing: ModuleNotFoundError | None = _e
else:
    _missing = None


def main(argv: list[str] | None = None) -> None:
    if _missing is not None:
        from gsdd_cli.core.errors import missing_module_error

        typed = missing_module_error(_missing)
        if typed is None or os.environ.get("GSDD_DEBUG") == "1":
            raise _missing
        print(f"error: {typed}", file=sys.stderr)  # plain print: rich may be what is missing
        if typed.hint:
            print(f"hint: {typed.hint}", file=sys.stderr)
        sys.exit(typed.exit_code)
    _run(argv)


__all__ = ["app", "main"]
