"""One declaration per option: a pydantic field that also says how the command line spells it.

A setting is declared once, as a field of its pydantic model, with :func:`option`: name, type, default,
constraints, a one-line description and, where the flag is not simply ``--field-name``, its
spellings. The CLI (:mod:`gsdd_cli.cli.options`) builds each command's flags and ``--help`` from the
model, config files use the field names as keys, and ``OUT.config.json`` is the model dumped.

Declarations shared by several commands (device, backend, seed, data folder, --json, --quiet) are
the factories at the end of this module, so their wording exists once too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from pydantic import BaseModel, Field, ValidationError
from pydantic.fields import FieldInfo

from gsdd_cli.core.errors import ConfigError, first_validation_error

_KEY = "gsdd_cli"


@dataclass(frozen=True)
class CliSpec:
    """How one field appears on the command line."""

    flags: tuple[str, ...] = ()  # e.g. ("--out", "-o") or ("--dsa/--no-dsa",); () → --field-name
    argument: bool = False  # a positional argument instead of an option
    cli: bool = True  # False: config files (and the library) only
    hidden: bool = False
    default_text: Optional[str] = None  # how --help states the default when it is not the field's own


def option(default: Any = ..., help: str = "", *, flags: tuple[str, ...] = (), argument: bool = False,
           cli: bool = True, hidden: bool = False, default_text: str | None = None, **constraints: Any) -> Any:
    """A pydantic ``Field`` carrying its command-line spelling (see :class:`CliSpec`)."""
    spec = CliSpec(tuple(flags), argument, cli, hidden, default_text)
    return Field(default, description=help, json_schema_extra={_KEY: spec.__dict__}, **constraints)


def cli_spec(field: FieldInfo) -> CliSpec:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    raw = extra.get(_KEY)
    return CliSpec(**raw) if isinstance(raw, dict) else CliSpec()


def flag_names(name: str, field: FieldInfo) -> tuple[str, ...]:
    """The spellings of a field's flag: its declared ones, else ``--field-name``."""
    spec = cli_spec(field)
    return spec.flags or ("--" + name.replace("_", "-"),)


def display_name(model: type[BaseModel], name: str) -> str:
    """How errors name a field: its first flag (``--lr``), its argument (``DATASET``), or the key."""
    field = model.model_fields.get(name)
    if field is None:
        return repr(name)
    spec = cli_spec(field)
    if spec.argument:
        return name.upper()
    if not spec.cli:
        return f"config key {name!r}"
    return flag_names(name, field)[0].split("/")[0]


def validation_message(e: ValidationError, model: type[BaseModel], *, from_file: set[str] | None = None,
                       file: str | None = None) -> str:
    """One line for the first error of a model's validation, naming the flag or config-file key."""
    kind, loc, msg = first_validation_error(e, "option")
    key = str(loc).split(".")[0]
    if key not in model.model_fields and kind != "extra_forbidden":
        return msg  # a check across fields (model validator): its message says it all
    if from_file and key in from_file:
        where = f"config file {file}: key {key!r}"
    else:
        where = display_name(model, key)
    if kind == "extra_forbidden":
        return f"unknown option {where} (valid: {', '.join(sorted(model.model_fields))})"
    if kind == "missing":
        return f"{where} is required"
    got = e.errors()[0].get("input")
    shown = "" if got is None else f" (got {str(got)[:60]})"
    return f"invalid value for {where}: {msg}{shown}"


def build(model: type[BaseModel], values: dict[str, Any], **context: Any) -> Any:
    """``model(**values)`` with every validation error turned into one ConfigError line (exit 3)."""
    try:
        return model.model_validate(values)
    except ValidationError as e:
        raise ConfigError(validation_message(e, model, **context)) from None


def finite(v: Optional[float]) -> Optional[float]:
    """Validator body: reject NaN and ±Inf (pydantic's ``allow_inf_nan=False`` misses strings)."""
    if v is not None and not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


# -- declarations shared by several commands -------------------------------------------------------

def device_option(default: str = "auto") -> Any:
    return option(default, "Torch device: auto (cuda if present, else cpu), cpu, cuda, cuda:1 ...")


def backend_option(default: str = "auto") -> Any:
    return option(default, "Renderer: auto (native CPU/CUDA kernels, compiled on first use; else reference), "
                  "native, cuda, reference.")


def data_dir_option() -> Any:
    return option(None, "Where datasets live (default: $GSDD_DATA_DIR, else ~/.cache/gsdd/data).")


def seed_option(help: str = "Random seed (runs are reproducible).", default: Any = 0) -> Any:
    return option(default, help)


def teacher_option(default: Any = None) -> Any:
    """``--teacher NAME|NAME=FILE|FILE``: the one declaration every teacher-guided command includes
    (read by ``gsdd_cli.models.teacher.load_teacher``; grammar in docs/imagenet.md)."""
    return option(default, "Teacher classifier: a torchvision name with its ImageNet-1K weights (resnet18, "
                  "resnet50:IMAGENET1K_V2; downloaded into <data_dir>/teachers), NAME=FILE for a local "
                  "torchvision weights file (offline), or a file written by gsdd teacher.",
                  flags=("--teacher",))


def json_option() -> Any:
    return option(False, "Print machine-readable JSON on stdout.", flags=("--json",))


def quiet_option() -> Any:
    return option(False, "No progress bars.", flags=("--quiet", "-q"))


def out_option(help: str, default: Any = ...) -> Any:
    return option(default, help, flags=("--out", "-o"))


def tensorboard_option() -> Any:
    """``--tensorboard DIR`` of distill, experts and eval (:mod:`gsdd_cli.core.tensorboard`)."""
    return option(None, "Also write TensorBoard event files of the run's curves (distill: image grids too) to "
                  "this folder; view with `tensorboard --logdir DIR` (needs gsdd[tensorboard]).")


class OutputFlags(BaseModel):
    """--json and --quiet, for commands that have both."""

    model_config = {"extra": "forbid", "frozen": True}

    quiet: bool = quiet_option()
    as_json: bool = json_option()


__all__ = [
    "CliSpec",
    "OutputFlags",
    "backend_option",
    "build",
    "cli_spec",
    "data_dir_option",
    "device_option",
    "display_name",
    "finite",
    "flag_names",
    "json_option",
    "option",
    "out_option",
    "quiet_option",
    "seed_option",
    "teacher_option",
    "tensorboard_option",
    "validation_message",
]
