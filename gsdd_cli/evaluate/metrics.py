"""Statistics over runs and the fair metrics of DD-Ranking (Li et al. 2025, arXiv:2505.13300).

IOR = acc(distilled) − acc(random real), HLR = acc(full) − acc(distilled) and the label-robust score
LRS, paired run by run (docs/evaluation.md). Accuracies come in as fractions; IOR and HLR come out in
percentage points, as DD-Ranking reports them, and ``lrs`` is DD-Ranking's number for those points
(``lrs_paper`` the same formula on fractions).
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


def _score(alpha: float) -> float:
    return (math.exp(alpha) - math.exp(-1.0)) / (math.e - math.exp(-1.0))


def label_robust_score(ior: float, hlr: float, lam: float = LRS_LAMBDA) -> float:
    """LRS as DD-Ranking 0.2.0 computes it, from IOR and HLR in **percentage points**.

    α = λ·IOR − (1 − λ)·HLR and LRS = (e^α − e^−1) / (e − e^−1), not scaled (DD-Ranking's
    ``LabelRobustScoreHard.compute_metrics``, ddranking/metrics/hard_label.py, whose accuracies are
    percentages). α is then not bounded by 1: LRS is not confined to [0, 1].
    """
    return _score(lam * ior - (1.0 - lam) * hlr)


def label_robust_score_paper(ior: float, hlr: float, lam: float = LRS_LAMBDA) -> float:
    """The same formula on IOR and HLR as **fractions** (the definition's intent: α ∈ [−1, 1], LRS ∈
    [0, 1]; IOR = HLR = 0 gives (1 − e^−1)/(e − e^−1) ≈ 0.269). Reported as ``lrs_paper``."""
    return _score(lam * ior - (1.0 - lam) * hlr)


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

    Accuracies are fractions; ``ior`` and ``hlr`` are percentage points, ``lrs`` DD-Ranking's score of
    those points and ``lrs_paper`` the score of the fractions. Run r of the distilled set is paired with run r of the random-real
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
        out["ior"] = _stats([100.0 * v for v in ior])
    if full is not None:
        fulls = [float(full)] * n if isinstance(full, (int, float)) else [float(v) for v in full]
        if len(fulls) != n:
            raise ConfigError(f"HLR pairs runs: {n} distilled runs but {len(fulls)} full-data runs")
        hlr = [f - d for f, d in zip(fulls, distilled)]
        out["hlr"] = _stats([100.0 * v for v in hlr])
    if ior is not None and hlr is not None:
        out["lrs"] = _stats([label_robust_score(100.0 * i, 100.0 * h, lrs_lambda) for i, h in zip(ior, hlr)])
        out["lrs_paper"] = _stats([label_robust_score_paper(i, h, lrs_lambda) for i, h in zip(ior, hlr)])
        out["lrs_lambda"] = lrs_lambda
    return out


__all__ = ["LRS_LAMBDA", "fair_metrics", "label_robust_score", "label_robust_score_paper", "mean_std"]
