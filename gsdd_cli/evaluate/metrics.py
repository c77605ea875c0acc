"""Statistics over runs and the fair metrics of DD-Ranking (Li et al. 2025, arXiv:2505.13300).

IOR = acc(distilled) − acc(random real), HLR = acc(full) − acc(distilled) and the label-robust score
LRS, paired run by run (docs/evaluation.md). Accuracies are fractions.
"""

from __future__ import annotations

import math
from typing import Any

from gsdd_cli.core.errors import ConfigError

LRS_LAMBDA = 0.5  # DD-Ranking's default weight w of IOR against HLR


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation (NaN, NaN for no values)."""
    if not values:
        return float("nan"), float("nan")
    m = sum(values) / len(values)
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


def label_robust_score(ior: float, hlr: float, lam: float = LRS_LAMBDA) -> float:
    """DD-Ranking's label-robust score from IOR and HLR given as fractions.

    α = λ·IOR − (1 − λ)·HLR and LRS = (e^α − e^−1) / (e − e^−1). With IOR, HLR ∈ [−1, 1], α lies
    in [−1, 1] and LRS in [0, 1] (monotone in α); IOR = HLR = 0 gives (1 − e^−1)/(e − e^−1) ≈ 0.269.
    """
    alpha = lam * ior - (1.0 - lam) * hlr
    return (math.exp(alpha) - math.exp(-1.0)) / (math.e - math.exp(-1.0))


def _stats(values: list[float]) -> dict[str, Any]:
    m, s = mean_std(values)
    return {"per_run": values, "mean": m, "std": s}


def fair_metrics(
    distilled: list[float],
    random: list[float] | None = None,
    full: list[float] | float | None = None,
    lrs_lambda: float = LRS_LAMBDA,
) -> dict[str, Any]:
    """IOR, HLR and LRS per run (DD-Ranking, arXiv:2505.13300), then mean ± population std.

    Accuracies are fractions. Run r of the distilled set is paired with run r of the random-real
    baseline (IOR_r = distilled_r − random_r) and of the full-data training (HLR_r = full_r −
    distilled_r); ``full`` may also be one given accuracy for every run. LRS needs both.
    """
    if not 0.0 <= lrs_lambda <= 1.0:
        raise ConfigError(f"the LRS weight must be in [0, 1], got {lrs_lambda}")
    n = len(distilled)
    out: dict[str, Any] = {}
    ior = hlr = None
    if random is not None:
        if len(random) != n:
            raise ConfigError(f"IOR pairs runs: {n} distilled runs but {len(random)} random-real runs")
        ior = [d - r for d, r in zip(distilled, random)]
        out["ior"] = _stats(ior)
    if full is not None:
        fulls = [float(full)] * n if isinstance(full, (int, float)) else [float(v) for v in full]
        if len(fulls) != n:
            raise ConfigError(f"HLR pairs runs: {n} distilled runs but {len(fulls)} full-data runs")
        hlr = [f - d for f, d in zip(fulls, distilled)]
        out["hlr"] = _stats(hlr)
    if ior is not None and hlr is not None:
        out["lrs"] = _stats([label_robust_score(i, h, lrs_lambda) for i, h in zip(ior, hlr)])
        out["lrs_lambda"] = lrs_lambda
    return out


__all__ = ["LRS_LAMBDA", "fair_metrics", "label_robust_score", "mean_std"]
