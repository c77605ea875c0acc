"""Where a teacher comes from: the ``--teacher`` value parsed, torchvision weights found (cache, local
file or download) and gsdd teacher files opened. :mod:`gsdd_cli.models.teacher` binds the result
to a dataset.

``--teacher`` grammar (docs/imagenet.md):

* ``NAME`` or ``NAME:WEIGHTS`` — a torchvision classifier (``resnet18``, ``resnet50:IMAGENET1K_V2``)
  with its published ImageNet-1K weights (``WEIGHTS`` defaults to torchvision's ``DEFAULT``), taken
  from gsdd's cache ``<data_dir>/teachers/``, else torch hub's cache, else downloaded into gsdd's cache;
* ``NAME=FILE`` or ``NAME:WEIGHTS=FILE`` — the same classifier, weights read from a local state-dict
  file (a ``.pth`` as torchvision publishes it, loaded with ``weights_only=True``, or ``.safetensors``);
  nothing is downloaded;
* ``FILE`` — a file written by ``gsdd teacher``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from gsdd_cli.core.errors import CheckpointError, ConfigError, DataError, UnknownNameError, first_line
from gsdd_cli.core.outputs import fs_error, make_dirs
from gsdd_cli.models._api import get_model
from gsdd_cli.models.teacher_file import file_sha256, read_teacher_file, weights_sha256

TEACHER_CACHE = "teachers"  # under the data dir, beside the datasets and experts
_FILE_SUFFIXES = (".pt", ".pth", ".safetensors", ".bin")
_HASH = re.compile(r"-([a-f0-9]{6,})\.")  # torchvision file names end in -<sha256 prefix>.pth


@dataclass(frozen=True)
class TeacherSpec:
    """A parsed ``--teacher`` value: ``kind`` is "torchvision" or "gsdd"."""

    kind: str
    name: str = ""  # torchvision model name
    weights: str = "DEFAULT"  # torchvision weights enum member
    path: Optional[Path] = None  # local weights (torchvision) or the gsdd teacher file

    def __str__(self) -> str:
        if self.kind == "gsdd":
            return str(self.path)
        base = self.name if self.weights == "DEFAULT" else f"{self.name}:{self.weights}"
        return f"{base}={self.path}" if self.path is not None else base


def parse_teacher_spec(spec: str) -> TeacherSpec:
    """Read a ``--teacher`` value (see the module docstring); ConfigError for an empty one."""
    text = str(spec or "").strip()
    if not text:
        raise ConfigError("--teacher is empty; give a torchvision name (resnet18), NAME=FILE or a gsdd teacher file")
    head, eq, tail = text.partition("=")
    if eq and head and not ("/" in head or "\\" in head):
        if not tail:
            raise ConfigError(f"--teacher {text}: no file after '='")
        name, _, weights = head.partition(":")
        return TeacherSpec("torchvision", name.strip().lower(), weights.strip() or "DEFAULT", Path(tail).expanduser())
    p = Path(text).expanduser()
    if p.exists() or p.suffix.lower() in _FILE_SUFFIXES or "/" in text or "\\" in text:
        return TeacherSpec("gsdd", path=p)
    name, _, weights = text.partition(":")
    return TeacherSpec("torchvision", name.strip().lower(), weights.strip() or "DEFAULT")


@dataclass(eq=False)
class TeacherSource:
    """A classifier before it meets a dataset: the network and what it expects."""

    net: nn.Module
    class_names: list[str]  # in logit order
    wnids: Optional[list[str]]
    channels: Optional[int]  # None: any (torchvision takes RGB)
    resolution: tuple[int, int]
    input_transform: dict[str, Any]  # kind + parameters (the describe() form of data/transforms.py)
    identity: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------- torchvision
def _torchvision():
    import torchvision  # here: ~1 s to import, and only torchvision teachers need it

    return torchvision


def torchvision_weights(name: str, weights: str = "DEFAULT") -> Any:
    """torchvision's weights enum member for classifier ``name`` (UnknownNameError if none)."""
    tv = _torchvision()
    names = sorted(tv.models.list_models(module=tv.models))
    if name not in names:
        close = [n for n in names if n.startswith(name[:4])][:6] or names[:6]
        raise UnknownNameError(f"unknown torchvision classifier {name!r} for --teacher (e.g. {', '.join(close)})")
    enum = tv.models.get_model_weights(name)
    if weights.upper() == "DEFAULT":
        return enum.DEFAULT
    try:
        return enum[weights.upper()]
    except KeyError:
        raise UnknownNameError(f"torchvision {name} has no weights {weights!r} "
                               f"(valid: {', '.join(m.name for m in enum)})") from None


def download(url: str, dest: Path, hash_prefix: Optional[str]) -> None:
    """Fetch ``url`` into ``dest`` (torch hub's downloader: temporary file, hash check, rename)."""
    torch.hub.download_url_to_file(url, str(dest), hash_prefix=hash_prefix, progress=False)


def _weights_file(spec: TeacherSpec, w: Any, cache_dir: Path, allow_download: bool) -> Path:
    url = str(w.url)
    fname = url.rsplit("/", 1)[-1]
    m = _HASH.search(fname)
    prefix = m.group(1) if m else None
    if spec.path is not None:
        if not spec.path.is_file():
            raise DataError(f"--teacher {spec}: no such weights file {spec.path}")
        return spec.path
    for folder in (cache_dir, Path(torch.hub.get_dir()) / "checkpoints"):
        if (folder / fname).is_file():
            return folder / fname
    offline_hint = (f"offline: download {url} elsewhere and pass --teacher {spec.name}=PATH/{fname} "
                    f"(or put the file in {cache_dir}/)")
    if not allow_download:
        raise DataError(f"the {spec.name} weights {w} are not in {cache_dir} and downloading is off",
                        hint=offline_hint)
    make_dirs(cache_dir)
    dest = cache_dir / fname
    try:
        download(url, dest, prefix)
    except Exception as e:  # no network, HTTP error, hash mismatch: one line, never a traceback
        raise DataError(f"cannot download the {spec.name} weights {w} from {url}: {first_line(e, 80)}",
                        hint=offline_hint) from None
    return dest


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise fs_error(e, path, "read") from None
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable state dict ({first_line(e, 80)})",
                              hint="give the .pth file torchvision publishes (a state dict), or .safetensors") from None
    for key in ("state_dict", "model"):  # common checkpoint layouts around a state dict
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state dict (a mapping of parameter names to tensors)")
    return obj


def torchvision_source(spec: TeacherSpec, cache_dir: Path, allow_download: bool = True) -> TeacherSource:
    """A torchvision classifier with ImageNet-1K weights (published or the local ``spec.path``)."""
    tv = _torchvision()
    w = torchvision_weights(spec.name, spec.weights)
    categories = [str(c) for c in w.meta["categories"]]
    path = _weights_file(spec, w, cache_dir, allow_download)
    state = _read_state(path)
    net = tv.models.get_model(spec.name, weights=None, num_classes=len(categories))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = " ".join(str(e).split("\n\t")[1:2]) or first_line(e)
        raise CheckpointError(f"{path}: not weights of torchvision {spec.name} ({detail[:120]})") from None
    prep = w.transforms()
    crop = [int(v) for v in prep.crop_size]
    res = (crop[0], crop[-1])
    m = _HASH.search(str(w.url).rsplit("/", 1)[-1])
    fsha = file_sha256(path)
    identity = {
        "source": "torchvision", "name": spec.name, "arch": spec.name, "weights": str(w),
        "weights_file": str(path), "weights_sha256": weights_sha256(state), "file_sha256": fsha,
        "published_url": str(w.url), "matches_published": bool(m) and fsha.startswith(m.group(1)),
        "trained_on": "imagenet-1k",
    }
    tf = {"kind": "normalize", "mean": [float(v) for v in prep.mean], "std": [float(v) for v in prep.std]}
    return TeacherSource(net, categories, None, None, res, tf, identity)


# -------------------------------------------------------------------------------------------- gsdd
def gsdd_source(path: Path) -> TeacherSource:
    """A classifier written by ``gsdd teacher`` (validated; CheckpointError otherwise)."""
    state, meta = read_teacher_file(path)
    shape = (int(meta["channels"]), int(meta["num_classes"]), int(meta["height"]), int(meta["width"]))
    try:
        net = get_model(str(meta["arch"]), *shape)
        net.load_state_dict(state, strict=True)
    except (RuntimeError, UnknownNameError, ConfigError) as e:
        raise CheckpointError(f"{path}: its weights do not fit a {meta['arch']} network ({first_line(e, 100)})") from None
    tf = {"kind": str(meta["transform"]), **dict(meta.get("transform_params") or {})}
    keep = ("arch", "dataset", "epochs", "test_accuracy", "gsdd_version", "created", "recipe")
    identity = {"source": "gsdd", "name": Path(path).name, "weights": "gsdd teacher file",
                "weights_file": str(path), "weights_sha256": meta["weights_sha256"],
                "file_sha256": file_sha256(path), **{k: meta[k] for k in keep if k in meta}}
    identity["trained_on"] = identity.pop("dataset")
    return TeacherSource(net, [str(c) for c in meta["class_names"]], meta.get("wnids"), int(meta["channels"]),
                         (int(meta["height"]), int(meta["width"])), tf, identity)


def open_source(spec: TeacherSpec, cache_dir: Path, allow_download: bool = True) -> TeacherSource:
    """The classifier a parsed ``--teacher`` value names."""
    if spec.kind == "gsdd":
        return gsdd_source(spec.path)  # type: ignore[arg-type]
    return torchvision_source(spec, cache_dir, allow_download)


__all__ = ["TEACHER_CACHE", "TeacherSource", "TeacherSpec", "download", "gsdd_source", "open_source",
           "parse_teacher_spec", "torchvision_source", "torchvision_weights"]
