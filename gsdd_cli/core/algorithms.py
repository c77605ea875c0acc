"""The distillation algorithms by name: the one list that flags, configs, `gsdd budget` and `gsdd init` read.

Each entry names the module and class of a :class:`gsdd_cli.distill.method.Method` as text; the
class is imported when it is first asked for, so this ground-floor list imports nothing above it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from gsdd_cli.core.errors import UnknownNameError


@dataclass(frozen=True)
class Algorithm:
    name: str
    title: str
    module: str
    cls: str
    loop: bool = True  # a Method class run by distill/loop.py; False: ``cls`` is its own runner (sre2l)

    def load(self) -> type:
        return getattr(importlib.import_module(self.module), self.cls)


_ALGORITHMS = {
    a.name: a
    for a in (
        Algorithm("tm", "trajectory matching", "gsdd_cli.distill.tm", "TrajectoryMatching"),
        Algorithm("dm", "distribution matching", "gsdd_cli.distill.dm", "DistributionMatching"),
        Algorithm("dc", "gradient matching", "gsdd_cli.distill.dc", "GradientMatching"),
        Algorithm("sre2l", "SRe2L recovery from a teacher", "gsdd_cli.distill.sre2l", "run_recovery", loop=False),
    )
}
ALGORITHMS: tuple[str, ...] = tuple(_ALGORITHMS)


def get_algorithm(name: str) -> Algorithm:
    key = str(name).lower()
    if key not in _ALGORITHMS:
        raise UnknownNameError(f"unknown algorithm {name!r}; valid: {', '.join(ALGORITHMS)}")
    return _ALGORITHMS[key]


def describe() -> str:
    """'tm (trajectory matching), dm (...), dc (...) or sre2l (SRe2L recovery from a teacher)'."""
    parts = [f"{a.name} ({a.title})" for a in _ALGORITHMS.values()]
    return ", ".join(parts[:-1]) + " or " + parts[-1]


__all__ = ["ALGORITHMS", "Algorithm", "describe", "get_algorithm"]
