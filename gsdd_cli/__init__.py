"""gsdd: dataset distillation with 2D Gaussian splatting (GSDD).

The public library surface is re-exported here; the command-line interface lives in
:mod:`gsdd_cli.cli` and is a thin layer over these functions.
"""

__version__ = "0.1.0"

from gsdd_cli.errors import (  # noqa: E402
    BudgetError,
    ConfigError,
    CudaUnavailableError,
    DataError,
    GsddError,
    GsdFormatError,
    UnknownNameError,
)

__all__ = [
    "__version__",
    "GsddError",
    "ConfigError",
    "GsdFormatError",
    "BudgetError",
    "CudaUnavailableError",
    "UnknownNameError",
    "DataError",
]
