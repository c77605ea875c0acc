"""Evaluation: train fresh networks on a set and test them (the protocol, its training helpers, the
fair metrics of DD-Ranking and the real-image baselines).

The package is the public face; the modules behind it each do one job: ``config`` (EvalConfig and
the protocol constants), ``settings`` (defaults resolved), ``results``, ``training``, ``metrics``,
``baselines``, ``source`` (a file's real dataset and transform) and ``protocol`` (evaluate a set).
"""

from gsdd_cli.core.devices import resolve_device
from gsdd_cli.evaluate.baselines import evaluate_baseline, select_random_real, subset_seed
from gsdd_cli.evaluate.config import (
    ADAMW_WEIGHT_DECAY,
    BASELINES,
    CROSS_ARCH_DEFAULT_LR,
    CROSS_ARCH_LR,
    DEFAULT_LR,
    SGD_WEIGHT_DECAY,
    EvalConfig,
    make_eval_config,
)
from gsdd_cli.evaluate.metrics import LRS_LAMBDA, fair_metrics, label_robust_score, label_robust_score_paper
from gsdd_cli.evaluate.protocol import evaluate_gsd, evaluate_set, render_all, train_and_evaluate
from gsdd_cli.evaluate.results import EvalResult, EvalStep
from gsdd_cli.evaluate.settings import EvalSettings, resolve_settings
from gsdd_cli.evaluate.source import file_sha256
from gsdd_cli.evaluate.training import test_accuracy, train_epoch

__all__ = [
    "ADAMW_WEIGHT_DECAY",
    "BASELINES",
    "CROSS_ARCH_DEFAULT_LR",
    "CROSS_ARCH_LR",
    "DEFAULT_LR",
    "LRS_LAMBDA",
    "SGD_WEIGHT_DECAY",
    "EvalConfig",
    "EvalResult",
    "EvalSettings",
    "EvalStep",
    "evaluate_baseline",
    "evaluate_gsd",
    "evaluate_set",
    "fair_metrics",
    "file_sha256",
    "label_robust_score",
    "label_robust_score_paper",
    "make_eval_config",
    "render_all",
    "resolve_device",
    "resolve_settings",
    "select_random_real",
    "subset_seed",
    "test_accuracy",
    "train_and_evaluate",
    "train_epoch",
]
