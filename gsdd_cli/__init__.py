"""gsdd: dataset distillation with 2D Gaussian splatting (GSDD).

The public library surface is re-exported here (docs/api.md); the command-line interface lives in
:mod:`gsdd_cli.cli` and is a thin layer over these functions.

    import gsdd_cli
    s = gsdd_cli.load("digits.gsd")          # a validated DistilledSet
    train = s.dataset()                      # TensorDataset of (image, label) in network space

Everything except the error classes is imported on first use, so ``import gsdd_cli`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from gsdd_cli.core.errors import (  # noqa: E402
    BudgetError,
    ConfigError,
    CudaUnavailableError,
    DataError,
    GsddError,
    GsdFormatError,
    UnknownNameError,
)

# public name → module that defines it (loaded lazily by __getattr__)
_LAZY = {
    "load": "gsdd_cli.api",
    "DistilledSet": "gsdd_cli.api",
    "GaussianImages": "gsdd_cli.sets.gaussians",
    "rasterize": "gsdd_cuda",
    "Plan": "gsdd_cli.sets.budget",
    "make_plan": "gsdd_cli.sets.budget",
    "recommended_gpc": "gsdd_cli.sets.budget",
    "points_per_image": "gsdd_cli.sets.budget",
    "max_gpc": "gsdd_cli.sets.budget",
    "EvalConfig": "gsdd_cli.evaluate",
    "EvalResult": "gsdd_cli.evaluate",
    "make_eval_config": "gsdd_cli.evaluate",
    "evaluate_set": "gsdd_cli.evaluate",
    "evaluate_gsd": "gsdd_cli.evaluate",
    "evaluate_baseline": "gsdd_cli.evaluate",
    "fair_metrics": "gsdd_cli.evaluate",
    "export_set": "gsdd_cli.export",
    "load_dataset": "gsdd_cli.data",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gsdd_cli' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "__version__",
    "GsddError",
    "ConfigError",
    "GsdFormatError",
    "BudgetError",
    "CudaUnavailableError",
    "UnknownNameError",
    "DataError",
    *_LAZY,
]
