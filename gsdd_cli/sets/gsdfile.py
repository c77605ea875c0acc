"""The .gsd file format, versions 1 and 2 (docs/format.md is the specification).

A .gsd file is a safetensors file plus a string→string ``__metadata__`` header that
:class:`GsdHeader` parses and validates. Gaussian sets (``parameterization: gaussian``, written as
version 1): bf16 tensors ``xy`` [G,N,2], ``cholesky`` [G,N,3], ``rgb`` [G,N,C], ``opacity`` [G,N,1].
Pixel sets (``parameterization: pixel``, version 2): an fp32 tensor ``pixels`` [G,C,H,W]. Both carry
an int64 ``labels`` [G]. A file is written with the lowest version whose readers understand it, so
gsdd releases that read only version 1 keep reading new Gaussian files and refuse pixel files with
"unsupported version 2". Writes are atomic (temporary file + ``os.replace``); reads validate
everything and raise :class:`GsdFormatError` with a one-line message.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from gsdd_cli import __version__
from gsdd_cli.sets.budget import budget_bytes_per_class, bytes_per_gaussian
from gsdd_cli.core.errors import GsdFormatError, first_validation_error
from gsdd_cli.sets.gaussians import ATTRIBUTES, CHOLESKY_OFFSET, GaussianImages
from gsdd_cli.core.outputs import atomic_write, atomic_write_bytes, dumps_json  # noqa: F401  (atomic_write: re-exported)
from gsdd_cli.sets.pixels import PIXEL_BYTES, PixelImages
from gsdd_cli.sets.synthetic import SyntheticImages

FORMAT_NAME = "gsdd"
FORMAT_VERSION = 2  # the highest version this gsdd reads (and writes, for pixel sets)
READ_VERSIONS = (1, 2)
# the version a file of each parameterization is written with: the lowest one that can express it
WRITE_VERSION = {"gaussian": 1, "pixel": 2}
TENSOR_WIDTHS = {"xy": 2, "cholesky": 3, "opacity": 1}  # rgb: C
Transform = Literal["zca", "normalize", "none"]


# Every header field docs/format.md lists; a file must carry all of them (readers add no defaults).
REQUIRED_FIELDS = (
    "format", "format_version", "gsdd_version", "created", "dataset", "num_classes", "class_names",
    "channels", "height", "width", "gpc", "points_per_image", "ipc", "budget_bytes", "payload_bytes",
    "color_space", "value_range", "transform", "transform_params", "antialias", "cholesky_offset",
    "algorithm", "syn_lr", "config",
)
# Fields stored as raw text; every other field is a JSON value.
TEXT_FIELDS = frozenset({"format", "gsdd_version", "created", "dataset", "color_space", "transform", "algorithm",
                         "parameterization"})


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class GsdHeader(BaseModel):
    """Typed view of the ``__metadata__`` strings (JSON values for lists, dicts and numbers).

    Reading (:meth:`from_metadata`) is strict: every field of :data:`REQUIRED_FIELDS` must be
    present, numbers must be JSON numbers (not strings), booleans JSON booleans, floats finite and
    ``created`` an ISO-8601 time with a UTC offset.
    """

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION
    gsdd_version: str = __version__
    created: str = Field(default_factory=_utc_now)
    dataset: str = Field(min_length=1)
    num_classes: int = Field(gt=0)
    class_names: list[str]
    channels: int = Field(gt=0)
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    parameterization: Literal["gaussian", "pixel"] = "gaussian"  # absent in version-1 files
    gpc: int = Field(gt=0)
    points_per_image: Optional[int] = Field(None, gt=0)  # Gaussian sets only
    ipc: int = Field(gt=0)
    budget_bytes: int = Field(gt=0)
    payload_bytes: int = Field(gt=0)
    color_space: Literal["pixel"] = "pixel"
    value_range: list[float] = [0.0, 1.0]
    transform: Transform = "none"
    transform_params: dict[str, Any] = {}
    antialias: bool = True
    cholesky_offset: list[float] = list(CHOLESKY_OFFSET)
    algorithm: str = "none"
    syn_lr: Optional[float] = None
    config: dict[str, Any] = {}

    @field_validator("created")
    @classmethod
    def _iso_time(cls, v: str) -> str:
        try:
            t = _dt.datetime.fromisoformat(v)
        except ValueError:
            raise ValueError(f"must be an ISO-8601 time such as 2025-01-31T12:00:00+00:00, got {v[:40]!r}") from None
        if t.tzinfo is None:
            raise ValueError(f"must carry a UTC offset (e.g. +00:00 or Z), got {v[:40]!r}")
        return v

    @field_validator("value_range")
    @classmethod
    def _range(cls, v: list[float]) -> list[float]:
        if len(v) != 2 or not v[0] < v[1]:
            raise ValueError(f"must be two numbers [low, high] with low < high, got {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "GsdHeader":
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"class_names has {len(self.class_names)} entries but num_classes is {self.num_classes}"
            )
        expected_budget = budget_bytes_per_class(self.ipc, self.channels, self.height, self.width) * self.num_classes
        if self.budget_bytes != expected_budget:
            raise ValueError(
                f"budget_bytes {self.budget_bytes} != ipc·C·H·W·4·classes = {expected_budget}"
            )
        expected_payload, formula = self._expected_payload()
        if self.payload_bytes != expected_payload:
            raise ValueError(f"payload_bytes {self.payload_bytes} != {formula} = {expected_payload}")
        if self.payload_bytes > self.budget_bytes:
            raise ValueError(
                f"payload of {self.payload_bytes} bytes exceeds the budget of {self.budget_bytes} bytes"
            )
        if self.format != FORMAT_NAME:
            raise ValueError(f"format must be {FORMAT_NAME!r}, got {self.format!r}")
        if list(self.cholesky_offset) != list(CHOLESKY_OFFSET):
            raise ValueError(f"unsupported cholesky_offset {self.cholesky_offset}")
        if self.syn_lr is not None and not (math.isfinite(self.syn_lr) and self.syn_lr > 0):
            raise ValueError(f"syn_lr must be a positive finite number, got {self.syn_lr}")
        return self

    def _expected_payload(self) -> tuple[int, str]:
        """Payload bytes implied by the sizes, and the formula (per parameterization)."""
        if self.parameterization == "pixel":
            if self.format_version < WRITE_VERSION["pixel"]:
                raise ValueError(f"pixel sets need format_version ≥ {WRITE_VERSION['pixel']}, got {self.format_version}")
            if self.points_per_image is not None:
                raise ValueError("points_per_image applies to Gaussian sets only, not to a pixel set")
            return self.num_images * self.channels * self.height * self.width * PIXEL_BYTES, "images·C·H·W·4"
        if self.points_per_image is None:
            raise ValueError("header is missing required field 'points_per_image'")
        return self.num_images * self.points_per_image * bytes_per_gaussian(self.channels), "images·points·(6+C)·2"

    @property
    def num_images(self) -> int:
        return self.gpc * self.num_classes

    def to_metadata(self) -> dict[str, str]:
        """Flatten to safetensors' string→string map (strings stay raw, everything else strict JSON:
        a NaN/Inf inside ``config`` is written as ``null``)."""
        md = {}
        for key, value in self.model_dump().items():
            md[key] = value if isinstance(value, str) else dumps_json(value)
        return md

    @classmethod
    def from_metadata(cls, md: dict[str, str]) -> "GsdHeader":
        missing = [k for k in REQUIRED_FIELDS if k not in md]
        if missing:
            raise GsdFormatError(f"header is missing required field {missing[0]!r}")
        parsed: dict[str, Any] = {}
        for key, raw in md.items():
            if key in TEXT_FIELDS:
                parsed[key] = raw
            else:
                try:
                    parsed[key] = json.loads(raw)
                except json.JSONDecodeError:
                    if key not in cls.model_fields:
                        parsed[key] = raw  # unknown extra field from a newer writer: keep as text
                        continue
                    raise GsdFormatError(f"header field {key!r} is not valid JSON: {raw[:60]!r}") from None
        return cls.model_validate(parsed, strict=True)


@dataclass
class GsdFile:
    header: GsdHeader
    images: SyntheticImages  # GaussianImages or PixelImages (header.parameterization says which)
    path: Path | None = None


def _fmt_validation(e: ValidationError) -> str:
    kind, loc, msg = first_validation_error(e, "header")
    if kind == "missing":
        return f"header is missing required field {loc!r}"
    got = e.errors()[0].get("input")
    if kind.endswith("_type") and isinstance(got, str):
        msg += f" (got the string {got[:40]!r}; numbers and booleans are stored as JSON, not as strings)"
    return f"header field {loc!r}: {msg}" if loc != "header" else msg


def make_header(images: SyntheticImages, *, dataset: str, class_names: list[str], ipc: int, **fields: Any) -> GsdHeader:
    """Header for ``images`` (sizes and byte counts derived from the tensors)."""
    c, h, w = images.channels, images.height, images.width
    num_classes = len(class_names)
    if images.num_images % num_classes:
        raise GsdFormatError(f"{images.num_images} images cannot be split into {num_classes} classes")
    try:
        return GsdHeader(
            dataset=dataset,
            num_classes=num_classes,
            class_names=list(class_names),
            channels=c,
            height=h,
            width=w,
            gpc=images.num_images // num_classes,
            ipc=ipc,
            budget_bytes=budget_bytes_per_class(ipc, c, h, w) * num_classes,
            payload_bytes=images.payload_bytes(),
            parameterization=images.parameterization,
            format_version=WRITE_VERSION[images.parameterization],
            **images.header_fields(),
            **fields,
        )
    except ValidationError as e:
        raise GsdFormatError(_fmt_validation(e)) from None


def save_gsd(path: str | Path, images: SyntheticImages, header: GsdHeader) -> Path:
    """Write ``images`` (Gaussians as bf16, pixels as fp32) and ``header`` atomically; returns the path."""
    path = Path(path)
    _check_images_match(header, images)
    tensors = images.stored_tensors()
    for name, t in tensors.items():
        if not torch.isfinite(t.float()).all():
            raise GsdFormatError(f"refusing to save: tensor {name!r} contains NaN or Inf")
    tensors["labels"] = images.labels.detach().cpu().long().contiguous().clone()
    metadata = header.to_metadata()
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata=metadata))
    return path


def _check_images_match(header: GsdHeader, images: SyntheticImages) -> None:
    if images.parameterization != header.parameterization:
        raise GsdFormatError(f"{images.parameterization} images do not match a header for a "
                             f"{header.parameterization} set")
    got = (images.num_images, images.header_fields().get("points_per_image"), images.channels, images.height,
           images.width)
    want = (header.num_images, header.points_per_image, header.channels, header.height, header.width)
    if got != want:
        raise GsdFormatError(f"images (G, N, C, H, W) = {got} do not match the header {want}")


def _open(path: Path):
    if not path.exists():
        raise GsdFormatError(f"{path}: no such file")
    if not path.is_file():
        raise GsdFormatError(f"{path}: not a file")
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        detail = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise GsdFormatError(f"{path}: not a valid safetensors file ({detail})") from None


def read_header(path: str | Path) -> GsdHeader:
    """Parse and validate the header only (no tensor data is read)."""
    path = Path(path)
    with _open(path) as f:
        return _header_from(path, f.metadata())


def _header_from(path: Path, md: dict[str, str] | None) -> GsdHeader:
    if not md or md.get("format") != FORMAT_NAME:
        raise GsdFormatError(
            f"{path}: not a gsdd file (safetensors without a 'format: {FORMAT_NAME}' header)"
        )
    version = md.get("format_version", "")
    if version not in {str(v) for v in READ_VERSIONS}:
        raise GsdFormatError(
            f"{path}: unsupported .gsd format version {version!r} (this gsdd reads versions "
            f"{', '.join(str(v) for v in READ_VERSIONS)})",
            hint="upgrade gsdd" if version.isdigit() and int(version) > FORMAT_VERSION else None,
        )
    try:
        return GsdHeader.from_metadata(md)
    except ValidationError as e:
        raise GsdFormatError(f"{path}: {_fmt_validation(e)}") from None
    except GsdFormatError as e:
        raise GsdFormatError(f"{path}: {e}") from None


def load_gsd(path: str | Path, device: torch.device | str = "cpu", *, quantize: bool = True) -> GsdFile:
    """Read and validate a .gsd file into fp32 images on ``device``: :class:`GaussianImages` or
    :class:`PixelImages` (pixel space), as ``header.parameterization`` says."""
    path = Path(path)
    with _open(path) as f:
        header = _header_from(path, f.metadata())
        keys = set(f.keys())
        pixel = header.parameterization == "pixel"
        required = ({"pixels"} if pixel else set(ATTRIBUTES)) | {"labels"}
        missing = sorted(required - keys)
        if missing:
            raise GsdFormatError(f"{path}: missing tensor(s) {', '.join(missing)}")
        try:
            tensors = {k: f.get_tensor(k) for k in sorted(required)}
        except Exception as e:
            raise GsdFormatError(f"{path}: tensor data unreadable or truncated ({str(e)[:100]})") from None
    labels = _check_labels(path, header, tensors["labels"])
    if pixel:
        images = _pixel_images(path, header, tensors["pixels"], labels)
        return GsdFile(header=header, images=images.to(device), path=path)
    g, n, c = header.num_images, header.points_per_image, header.channels
    for name in ATTRIBUTES:
        t = tensors[name]
        width = c if name == "rgb" else TENSOR_WIDTHS[name]
        if t.dtype != torch.bfloat16:
            raise GsdFormatError(f"{path}: tensor {name!r} has dtype {t.dtype}, expected bfloat16")
        if tuple(t.shape) != (g, n, width):
            raise GsdFormatError(
                f"{path}: tensor {name!r} has shape {list(t.shape)}, expected {[g, n, width]}"
            )
        if not torch.isfinite(t.float()).all():
            raise GsdFormatError(f"{path}: tensor {name!r} contains NaN or Inf")
    stored = sum(tensors[a].numel() * 2 for a in ATTRIBUTES)
    if stored != header.payload_bytes:
        raise GsdFormatError(f"{path}: stored parameters take {stored} bytes, header says {header.payload_bytes}")
    flat = {a: tensors[a].float().reshape(g * n, -1) for a in ATTRIBUTES}
    images = GaussianImages(
        flat["xy"], flat["cholesky"], flat["rgb"], flat["opacity"], labels,
        header.height, header.width, quantize=quantize, antialias=header.antialias,
    )
    return GsdFile(header=header, images=images.to(device), path=path)


def _check_labels(path: Path, header: GsdHeader, labels: torch.Tensor) -> torch.Tensor:
    g = header.num_images
    if labels.dtype not in (torch.int64, torch.int32) or tuple(labels.shape) != (g,):
        raise GsdFormatError(
            f"{path}: tensor 'labels' must be int64 of shape [{g}], got {labels.dtype} {list(labels.shape)}"
        )
    expected = torch.arange(header.num_classes).repeat_interleave(header.gpc)
    if not torch.equal(labels.long(), expected):
        raise GsdFormatError(
            f"{path}: labels are not class-major ({header.gpc} images of class 0, then class 1, ...)"
        )
    return labels.long()


def _pixel_images(path: Path, header: GsdHeader, pixels: torch.Tensor, labels: torch.Tensor) -> PixelImages:
    """Validate the ``pixels`` tensor of a pixel set (fp32 [G, C, H, W], finite) and wrap it."""
    want = [header.num_images, header.channels, header.height, header.width]
    if pixels.dtype != torch.float32:
        raise GsdFormatError(f"{path}: tensor 'pixels' has dtype {pixels.dtype}, expected float32")
    if list(pixels.shape) != want:
        raise GsdFormatError(f"{path}: tensor 'pixels' has shape {list(pixels.shape)}, expected {want}")
    if not torch.isfinite(pixels).all():
        raise GsdFormatError(f"{path}: tensor 'pixels' contains NaN or Inf")
    if pixels.numel() * PIXEL_BYTES != header.payload_bytes:
        raise GsdFormatError(f"{path}: stored pixels take {pixels.numel() * PIXEL_BYTES} bytes, header says "
                             f"{header.payload_bytes}")
    return PixelImages(pixels, labels)


def file_info(path: Path | str) -> dict[str, Any]:
    """A validated file's header as `gsdd info` shows it, with the image count, the budget use and
    the share of dead Gaussians (None for pixel sets)."""
    gsd = load_gsd(path)
    h = gsd.header
    data = h.model_dump()
    data["num_images"] = h.num_images
    data["utilisation"] = round(h.payload_bytes / h.budget_bytes, 6)
    dead = gsd.images.dead_fraction()
    data["dead_gaussians"] = None if dead is None else round(dead, 6)
    return data
