"""Distillation of a dataset into Gaussian (or, with ``param="pixel"``, plain pixel) images: trajectory
(TM), distribution (DM) and gradient (DC) matching, plus the expert trajectories TM needs. Library
only; the CLI lives in gsdd_cli.cli.commands.

    from gsdd_cli.distill import build_config, distill
    cfg = build_config("digits", flags={"algo": "dm", "ipc": 1, "out": "digits.gsd"})
    result = distill(cfg)
"""

from gsdd_cli.core.algorithms import ALGORITHMS
from gsdd_cli.distill.config import DistillConfig, build_config, spec_defaults
from gsdd_cli.distill.experts import ExpertBuffers, ExpertsResult, ExpertStep, train_experts
from gsdd_cli.distill.experts_config import ExpertsConfig, make_experts_config
from gsdd_cli.distill.checkpoint import load_checkpoint
from gsdd_cli.distill.loop import DistillInterrupted, DistillResult, DistillStep, distill
from gsdd_cli.distill.runlog import run_paths

__all__ = [
    "ALGORITHMS",
    "DistillConfig",
    "DistillInterrupted",
    "DistillResult",
    "DistillStep",
    "ExpertBuffers",
    "ExpertStep",
    "ExpertsConfig",
    "ExpertsResult",
    "build_config",
    "distill",
    "load_checkpoint",
    "make_experts_config",
    "run_paths",
    "spec_defaults",
    "train_experts",
]
