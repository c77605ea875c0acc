"""Distillation configuration: one flat pydantic model, per-dataset defaults, and resolution.

Precedence (lowest first): the spec's defaults for (dataset, algorithm, IPC) (:func:`spec_defaults`),
then a ``--config`` file (YAML or JSON, keys are the field names; ``-`` and ``_`` are interchangeable),
then explicit command-line flags. :func:`build_config` applies that order and validates the result
(unknown keys are rejected), returning a fully resolved, frozen :class:`DistillConfig`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from gsdd_cli.core.algorithms import ALGORITHMS, describe
from gsdd_cli.core.errors import ConfigError, first_line
from gsdd_cli.core.options import (
    backend_option,
    data_dir_option,
    device_option,
    display_name,
    finite,
    option,
    out_option,
    seed_option,
    teacher_option,
    tensorboard_option,
    validation_message,
)
from gsdd_cli.core.outputs import fs_error
from gsdd_cli.data import dataset_info
from gsdd_cli.data.augment import DSA_STRATEGY, check_strategy
from gsdd_cli.data.transforms import TRANSFORM_KINDS
from gsdd_cli.models import MODELS
from gsdd_cli.sets.budget import make_plan, points_per_image, recommended_gpc
from gsdd_cli.sets.gsdfile import read_header
from gsdd_cuda import BACKENDS

SPEC = "by dataset, algorithm and IPC: docs/distill.md"
IMAGENET_SUBSETS = ("imagenette", "imagewoof", "imagefruit", "imageyellow", "imagemeow", "imagesquawk")

# docs/method.md §5.1 TM table: (dataset family, IPC) → (GPC, syn_steps, max_start_epoch, lr_lr, batch_syn).
TM_TABLE: dict[tuple[str, int], tuple[int, int, int, float, int]] = {
    ("cifar10", 1): (30, 60, 30, 1e-5, 300),
    ("cifar10", 10): (160, 60, 30, 1e-5, 380),
    ("cifar10", 50): (250, 60, 30, 1e-5, 360),
    ("cifar100", 1): (30, 60, 30, 1e-5, 512),
    ("cifar100", 10): (80, 60, 30, 1e-5, 512),
    ("cifar100", 50): (400, 60, 30, 1e-5, 640),
    ("imagenet", 1): (64, 20, 40, 1e-6, 150),
    ("imagenet", 10): (640, 20, 40, 1e-5, 160),
}
# docs/method.md §5.4 (ImageNet subsets, IPC 1): (GPC, batch_real, batch_syn, iterations).
DM_TABLE = {("imagenet", 1): (200, 1024, 2000, 20_000)}
DC_TABLE = {("imagenet", 1): (200, 720, 2000, 5_000)}
# DC outer/inner loops by IPC (the DC paper's schedule, docs/method.md §5.3).
DC_LOOPS = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}
ITERATIONS = {"tm": 15_000, "dm": 20_000, "dc": 5_000, "sre2l": 1_000}  # sre2l: per image (SRe2L)
DEFAULT_IPC = 10

# Pixel sets (--param pixel): the published learning rate of the images, an SGD(momentum 0.5) lr in
# network space (normalised or ZCA-whitened images), docs/distill.md gives the sources.
# TM (MTT): by (dataset family, IPC), else MTT's default 1000; DM: 1.0; DC: 0.1.
PIXEL_LR_TM = {("cifar10", 1): 100.0, ("cifar10", 10): 100.0, ("cifar10", 50): 1000.0,
               ("cifar100", 1): 1000.0, ("cifar100", 10): 1000.0, ("cifar100", 50): 1000.0,
               ("imagenet", 1): 1000.0, ("imagenet", 10): 1000.0}
PIXEL_LR = {"tm": 1000.0, "dm": 1.0, "dc": 0.1, "sre2l": 0.25}  # sre2l: Adam, normalised space (SRe2L)
PIXEL_MOMENTUM = 0.5

# Small, CPU-friendly defaults for the embedded `digits` set (not in the paper; chosen and measured so
# that `gsdd distill digits --algo dm --ipc 1` takes ~15 s on 2 CPU cores, see docs/distill.md).
DIGITS = {
    "init_steps": 200,
    "eval_epochs": 100,
    "dm": {"iterations": 40, "batch_real": 128},
    "dc": {"iterations": 40, "batch_real": 64},
    "tm": {"iterations": 60, "syn_steps": 10, "max_start_epoch": 6, "lr_lr": 1e-5, "batch_syn": 40},
    "sre2l": {"iterations": 200},
}

# Fields that may change between a run and its --resume without affecting the result.
RUN_CONTROL_FIELDS = frozenset(
    {"iterations", "eval_every", "eval_epochs", "eval_runs", "save_every", "log_every", "device", "backend",
     "out", "data_dir", "buffers", "init", "num_experts", "experts_epochs", "tensorboard",
     "tensorboard_images_every"}
)


class DistillConfig(BaseModel):
    """Everything a distillation run depends on (see docs/distill.md for the meaning of each field)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # what to distil
    dataset: str = option(..., "Dataset name (digits, cifar10, cifar100, imagenette, ...) or path.", argument=True)
    algo: Literal[ALGORITHMS] = option(..., describe() + ".")  # type: ignore[valid-type]
    ipc: int = option(DEFAULT_IPC, "Budget: the bytes of IPC real fp32 images per class.", gt=0)
    param: Literal["gaussian", "pixel"] = option(
        "gaussian", "gaussian (GSDD: GPC Gaussian images per class) or pixel (IPC plain images per class, the "
        "pixel baseline).")
    lr_img: Optional[float] = option(None, "Pixel sets: SGD(momentum 0.5) lr of the images in network space "
                                     "(default: the published one, TM 100-1000, DM 1, DC 0.1).", gt=0)
    gpc: Optional[int] = option(None, "Gaussian images per class.", default_text=SPEC, gt=0)
    points: Optional[int] = option(None, "Gaussians per image (GPC follows from the budget).", gt=0)
    out: Optional[str] = out_option("Output .gsd file (config, log and checkpoint go next to it).", None)
    data_dir: Optional[str] = data_dir_option()
    # initialization (docs/method.md §4); ignored when `init` names a .gsd file
    init: Optional[str] = option(None, "Start from this .gsd (from `gsdd init`) instead of fitting.")
    init_steps: int = option(50_000, "Fitting steps when no --init is given (50 000; digits 200).", ge=0)
    init_lr: Optional[float] = option(None, "Fitting lr (0.1 at ≤32 px, 0.01 above).", gt=0)
    init_first: bool = option(False, "Fit the first GPC images per class instead of a random choice.",
                              flags=("--init-first/--no-init-first",))
    # common (docs/method.md §5)
    seed: int = seed_option("Seed (runs are reproducible).")
    iterations: int = option(1, "Distillation iterations.", default_text=SPEC, flags=("--iterations", "-n"), gt=0)
    lr: float = option(1e-3, "Adam lr of every Gaussian attribute group.", gt=0)
    boundary_lambda: float = option(0.1, "Weight of the boundary loss.", ge=0)
    model: str = option("convnet", "Distillation network (convnet: depth by resolution).")
    transform: Optional[Literal[TRANSFORM_KINDS]] = option(  # type: ignore[valid-type]
        None, "zca, normalize or none (default: zca for CIFAR TM, else normalize).")
    dsa: bool = option(True, "DSA augmentation.")
    dsa_strategy: str = option(DSA_STRATEGY, "DSA op groups.", cli=False)
    batch_real: int = option(256, "DM/DC real images per class and step.", default_text=SPEC, gt=0)
    batch_syn: int = option(0, "Synthetic batch (TM: per student step; DM/DC: per class, 0 = all; sre2l: classes "
                            "per recovery batch, 0 = 100).", default_text=SPEC, ge=0)
    quantize: bool = option(True, "Train through bf16 rounding (straight-through), as stored.", cli=False)
    antialias: bool = option(True, "Antialiased rendering (the 0.3 px low-pass of docs/method.md).", cli=False)
    train_opacity: bool = option(True, "Learn the opacities.", cli=False)
    # DC (docs/method.md §5.3)
    outer_loop: Optional[int] = option(None, "DC outer steps per iteration (by IPC: 1→1, 10→10, 50→50).", gt=0)
    inner_loop: Optional[int] = option(None, "DC network epochs between outer steps (1→1, 10→50, 50→10).", ge=0)
    lr_net: float = option(0.01, "DC inner network lr.", gt=0)
    batch_train: int = option(128, "DC inner-loop batch.", cli=False, gt=0)
    # TM (docs/method.md §5.1)
    buffers: Optional[str] = option(None, "TM: folder of expert trajectories from `gsdd experts`.")
    syn_steps: int = option(20, "TM student steps per iteration.", default_text=SPEC, gt=0)
    expert_epochs: int = option(2, "TM target = start + this many expert epochs.", gt=0)
    max_start_epoch: int = option(20, "TM start epoch drawn from [0, this).", default_text=SPEC, gt=0)
    lr_lr: float = option(1e-5, "TM lr of the learned student lr α.", default_text=SPEC, ge=0)
    lr_init: float = option(1e-2, "TM initial α.", gt=0)
    min_syn_lr: float = option(1e-3, "TM floor of α.", cli=False, gt=0)
    tm_memory: Literal["auto", "full", "checkpoint", "tesla"] = option(
        "auto", "TM unroll memory: auto (full if it fits, else checkpoint), full, checkpoint (exact, constant in "
        "syn-steps) or tesla (approximate, constant).")
    num_experts: Optional[int] = option(None, "TM without --buffers: experts to train into the cache (100; "
                                        "digits 5).", gt=0)
    experts_epochs: Optional[int] = option(None, "TM without --buffers: epochs per cached expert (50; digits 10).",
                                           gt=0)
    # run control
    teacher: Optional[str] = teacher_option()
    r_bn: float = option(0.01, "sre2l: weight of the BatchNorm statistic loss (SRe2L's --r-bn).", ge=0)
    jitter: Optional[int] = option(None, "sre2l: largest random shift in pixels (SRe2L: 32 at 224², 4 at 32²).", ge=0)
    lr_recover: Optional[float] = option(None, "sre2l: Adam lr (Gaussians: 0.1 at ≤32 px, 0.01 above; pixels: "
                                         "SRe2L's 0.25 × the dataset's std).", gt=0)
    device: str = device_option()
    backend: Literal[BACKENDS] = backend_option()  # type: ignore[valid-type]
    eval_every: int = option(0, "Evaluate every N iterations (0 = never).", ge=0)
    eval_epochs: int = option(300, "Epochs of those evaluations (300; digits 100).", ge=1)
    eval_runs: int = option(1, "Networks per evaluation.", gt=0)
    save_every: int = option(0, "Write a checkpoint every N iterations (0 = only on Ctrl-C).", ge=0)
    log_every: int = option(1, "Write an iteration record to the log every N iterations.", gt=0)
    tensorboard: Optional[str] = tensorboard_option()
    tensorboard_images_every: int = option(100, "With --tensorboard: an image grid of the set every N iterations "
                                           "(0 = first and last only).", ge=0)

    _strategy = field_validator("dsa_strategy")(check_strategy)
    _finite = field_validator("lr", "lr_init", "lr_net", "lr_lr", "boundary_lambda", "lr_img", "init_lr",
                              "min_syn_lr")(finite)

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        if v.lower() not in MODELS:
            raise ValueError(f"unknown model {v!r}; valid: {', '.join(MODELS.names())}")
        return v.lower()

    def algo_fields(self) -> dict[str, Any]:
        """The fields that determine the result (everything except run control)."""
        return {k: v for k, v in self.model_dump().items() if k not in RUN_CONTROL_FIELDS}


def dataset_family(name: str, info: tuple[int, int, int, int]) -> str:
    """'cifar10' / 'cifar100' / 'imagenet' (a 128-px 10-class subset) / 'digits' / 'other'."""
    base = Path(str(name)).name.lower()
    for suffix in (".npz",):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    if base in ("cifar10", "cifar100", "digits"):
        return base
    if base in IMAGENET_SUBSETS:
        return "imagenet"
    k, c, h, w = info
    if (k, c, h, w) == (10, 3, 128, 128):
        return "imagenet"
    return "other"


def pixel_lr(dataset: str, algo: str, ipc: int, info: tuple[int, int, int, int]) -> float:
    """The published image learning rate of the pixel version of ``algo`` (see PIXEL_LR_TM)."""
    if algo == "tm":
        return PIXEL_LR_TM.get((dataset_family(dataset, info), ipc), PIXEL_LR["tm"])
    return PIXEL_LR[algo]


def spec_defaults(dataset: str, algo: str, ipc: int, info: tuple[int, int, int, int],
                  param: str = "gaussian") -> dict[str, Any]:
    """docs/method.md §5 defaults for (dataset, algorithm, IPC); digits gets small CPU settings.

    Settings the paper does not give (e.g. CIFAR with DM/DC, IPCs outside the tables) fall back to
    the generic values documented in docs/distill.md. GPC falls back to budget.recommended_gpc.
    A pixel set (``param="pixel"``) keeps every schedule setting and adds ``lr_img``, the published
    image lr of the pixel method; its GPC is the IPC.
    """
    k, c, h, w = info
    fam = dataset_family(dataset, info)
    d: dict[str, Any] = {"iterations": ITERATIONS[algo]}
    d["gpc"] = recommended_gpc(ipc, h, w, c, k, algo)
    if algo == "tm":
        d.update(syn_steps=20 if h >= 64 else 60, max_start_epoch=20, lr_lr=1e-5, batch_syn=256)
        row = TM_TABLE.get((fam, ipc))
        if row is not None:
            gpc, syn_steps, max_start, lr_lr, batch_syn = row
            d.update(gpc=gpc, syn_steps=syn_steps, max_start_epoch=max_start, lr_lr=lr_lr, batch_syn=batch_syn)
    elif algo == "sre2l":
        d.update(batch_syn=0)
    elif algo == "dm":
        d.update(batch_real=256, batch_syn=0)
        row = DM_TABLE.get((fam, ipc))
        if row is not None:
            d.update(gpc=row[0], batch_real=row[1], batch_syn=row[2], iterations=row[3])
    else:
        d.update(batch_real=256, batch_syn=0)
        row = DC_TABLE.get((fam, ipc))
        if row is not None:
            d.update(gpc=row[0], batch_real=row[1], batch_syn=row[2], iterations=row[3])
        key = max([i for i in DC_LOOPS if i <= ipc], default=1)
        d["outer_loop"], d["inner_loop"] = DC_LOOPS[key]
    if fam == "digits":
        d["init_steps"] = DIGITS["init_steps"]
        d["eval_epochs"] = DIGITS["eval_epochs"]
        d.update(DIGITS[algo])
    if param == "pixel":
        d.update(gpc=ipc, lr_img=pixel_lr(dataset, algo, ipc, info))
    return d


def read_config_file(path: Path | str) -> dict[str, Any]:
    """A UTF-8 YAML or JSON mapping of field names to values (``-`` in keys is read as ``_``)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise fs_error(e, path, "read") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})",
                          hint="save it as UTF-8 YAML or JSON") from None
    if "\x00" in text:
        raise ConfigError(f"config file {path} is binary, not YAML or JSON text")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml  # here, not at the top: only YAML config files need it

            data = yaml.safe_load(text)
        else:
            raise ConfigError(f"config file {path} must end in .json, .yaml or .yml")
    except (json.JSONDecodeError, ValueError) as e:
        raise ConfigError(f"config file {path} is not valid: {first_line(e, 200)}") from None
    except Exception as e:  # yaml.YAMLError
        if isinstance(e, (ConfigError, ModuleNotFoundError)):  # no PyYAML: the CLI names what to install
            raise
        raise ConfigError(f"config file {path} is not valid YAML: {first_line(e, 200)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option names to values, "
                          f"not a {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def format_validation_error(e: ValidationError, source: str = "config", *, from_file: set[str] | None = None,
                            file: str | None = None) -> str:
    """One line naming the flag (``--lr``) or the config-file key of the first error."""
    return validation_message(e, DistillConfig, from_file=from_file, file=file)


def build_config(
    dataset: str | None = None,
    *,
    config_file: Path | str | None = None,
    flags: dict[str, Any] | None = None,
    info: tuple[int, int, int, int] | None = None,
) -> DistillConfig:
    """Resolve defaults < file < flags into a validated :class:`DistillConfig`.

    ``flags`` holds explicit command-line values (``None`` means "not given"). ``info`` is
    (classes, C, H, W) of the dataset; looked up with ``gsdd_cli.data.dataset_info`` if omitted.
    """
    file_values = read_config_file(config_file) if config_file is not None else {}
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    merged = {**file_values, **given}
    if dataset is not None:
        merged["dataset"] = dataset
    unknown = sorted(set(merged) - set(DistillConfig.model_fields))
    if unknown:
        where = f"config file {config_file}" if config_file is not None and unknown[0] in file_values else "option"
        raise ConfigError(
            f"unknown {where} key {unknown[0]!r}",
            hint=f"valid keys: {', '.join(sorted(DistillConfig.model_fields))}",
        )
    if merged.get("ipc") is None and merged.get("init"):
        merged["ipc"] = read_header(merged["init"]).ipc
    if merged.get("ipc") is None:
        merged["ipc"] = DEFAULT_IPC
    for req, flag in (("dataset", "DATASET"), ("algo", "--algo")):
        if merged.get(req) is None:
            raise ConfigError(f"{flag} is required (give it on the command line or in --config)")
    param = str(merged.get("param") or "gaussian").lower()
    if merged.get("param") is not None:
        merged["param"] = param
    if param == "pixel":
        gaussian_only = [k for k in ("gpc", "points") if merged.get(k) is not None]
        if gaussian_only:
            raise ConfigError(f"--{gaussian_only[0]} applies to Gaussian sets; a pixel set (--param pixel) holds IPC "
                              "images per class")
    algo = str(merged["algo"]).lower()
    if algo not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {merged['algo']!r}; valid: {', '.join(ALGORITHMS)}")
    merged["algo"] = algo
    ipc = merged["ipc"]
    if isinstance(ipc, bool) or not isinstance(ipc, int) or ipc < 1:
        raise ConfigError(f"--ipc must be a positive integer, got {ipc!r}")
    if info is None:
        info = dataset_info(str(merged["dataset"]), merged.get("data_dir"))
    defaults = spec_defaults(str(merged["dataset"]), algo, ipc, info, param)
    if merged.get("init"):
        # an --init file fixes the budget split unless flags say otherwise (then distill() checks them)
        header = read_header(merged["init"])
        if header.parameterization != param:
            raise ConfigError(f"--init {merged['init']} is a {header.parameterization} set; this run distils a "
                              f"{param} set (--param {param})")
        if param == "gaussian":
            defaults.update(gpc=header.gpc, points=header.points_per_image)
    if "points" in merged and "gpc" not in merged:
        defaults.pop("gpc", None)  # --points alone: GPC follows from the budget
    final = {**defaults, **merged}
    try:
        cfg = DistillConfig.model_validate(final, strict=True)  # "3", 1.5 or true is not an int
    except ValidationError as e:
        from_file = {k for k in file_values if k not in given}
        raise ConfigError(format_validation_error(e, from_file=from_file, file=str(config_file))) from None
    _check_expert_epochs(cfg)
    return _resolve_budget(cfg, info)


def _check_expert_epochs(cfg: DistillConfig) -> None:
    """TM that trains its own experts: they must reach the last epoch TM follows, max_start_epoch − 1 +
    expert_epochs (checked here, before any expert is trained, not after)."""
    need = cfg.max_start_epoch - 1 + cfg.expert_epochs
    if cfg.algo == "tm" and not cfg.buffers and cfg.experts_epochs is not None and cfg.experts_epochs < need:
        def name(f: str) -> str:
            return display_name(DistillConfig, f)

        raise ConfigError(f"{name('experts_epochs')} {cfg.experts_epochs} is below the {need} epochs trajectory "
                          f"matching follows ({name('max_start_epoch')} − 1 + {name('expert_epochs')})",
                          hint=f"give {name('experts_epochs')} {need} or more, or lower {name('max_start_epoch')} "
                               f"or {name('expert_epochs')}")


def _resolve_budget(cfg: DistillConfig, info: tuple[int, int, int, int]) -> DistillConfig:
    """Fill gpc/points (exactly one may be given; points alone → the largest GPC that fits)."""
    k, c, h, w = info
    if cfg.param == "pixel":
        return cfg.model_copy(update={"gpc": cfg.ipc, "points": None})
    if cfg.gpc is not None and cfg.points is not None:
        most = points_per_image(cfg.ipc, cfg.gpc, c, h, w)
        if cfg.points > most:
            raise ConfigError(
                f"{cfg.points} points per image at GPC {cfg.gpc} exceed the IPC {cfg.ipc} budget "
                f"(at most {most})"
            )
        return cfg
    plan = make_plan(cfg.ipc, h, w, c, k, gpc=cfg.gpc, points=cfg.points)
    return cfg.model_copy(update={"gpc": plan.gpc, "points": plan.points})


__all__ = [
    "ALGORITHMS",
    "SPEC",
    "DEFAULT_IPC",
    "PIXEL_MOMENTUM",
    "DistillConfig",
    "RUN_CONTROL_FIELDS",
    "build_config",
    "dataset_family",
    "format_validation_error",
    "pixel_lr",
    "read_config_file",
    "spec_defaults",
]
