"""Teachers: a trained classifier bound to a dataset, for teacher-guided distillation (docs/imagenet.md).

``load_teacher(spec, dataset=ds)`` opens a torchvision classifier with its ImageNet-1K weights or a
``gsdd teacher`` file (:mod:`gsdd_cli.models.teacher_sources`), checks that its classes are the
dataset's — same count and same order, or, for an ImageNet-1K teacher and an ImageNet subset, the
subset's classes picked by class id and checked by name — and returns a :class:`Teacher`:

* ``net`` — the network in eval mode, ``requires_grad`` off, BatchNorm layers in ``bn_layers()``;
* ``logits(x)`` — logits over the dataset's classes, in dataset label order, for images in the
  caller's network space (``transform``, default gsdd's normalize space of the dataset); the images
  are converted to what the teacher expects (:class:`TeacherInput`), differentiably;
* ``identity`` — a JSON-able record of who the teacher is; :func:`teacher_header_fields` flattens it
  for the files a teacher touches.

A mismatch is refused with one :class:`ConfigError` line naming the first classes that differ.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from gsdd_cli.core.devices import resolve_device
from gsdd_cli.core.errors import ConfigError, DataError
from gsdd_cli.core.outputs import dumps_json
from gsdd_cli.data.core import resolve_data_dir
from gsdd_cli.data.imagenet import SUBSETS, Subset, read_class_index, subset_class_names
from gsdd_cli.data.transforms import Transform, make_transform, transform_from_record
from gsdd_cli.models.teacher_sources import TEACHER_CACHE, TeacherSource, open_source, parse_teacher_spec

_WNID = re.compile(r"^n\d{8}$")
_SHOW = 3  # classes named in a mismatch message


class TeacherInput(nn.Module):
    """Caller's network space → the teacher's input: ``inverse`` of the caller's transform (back to
    pixels), bilinear antialiased resize to the teacher's resolution when the sizes differ, then the
    teacher's own transform. Steps that change nothing are skipped; ``describe()`` says which ran."""

    def __init__(self, source: Transform, target: Transform, size: tuple[int, int], same_space: bool):
        super().__init__()
        self.source, self.target, self.size, self.same_space = source, target, tuple(size), bool(same_space)

    def _resize(self, p: torch.Tensor) -> torch.Tensor:
        if tuple(p.shape[-2:]) == self.size:
            return p
        return F.interpolate(p, size=self.size, mode="bilinear", align_corners=False, antialias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same_space:  # a per-channel affine map commutes with the (normalised) resize
            return self._resize(x)
        return self.target(self._resize(self.source.inverse(x)))

    def from_pixels(self, p: torch.Tensor) -> torch.Tensor:
        """Pixel-space images [0, 1] → the teacher's input."""
        return self.target(self._resize(p))

    def describe(self, height: int, width: int) -> str:
        steps = []
        if not self.same_space:
            steps.append(f"undo {self.source.kind} (back to pixels)")
        if (height, width) != self.size:
            steps.append(f"resize {height}x{width} -> {self.size[0]}x{self.size[1]} (bilinear, antialias)")
        if not self.same_space:
            steps.append(f"apply the teacher's {_transform_text(self.target)}")
        return "; ".join(steps) or "none (the teacher was trained in this network space)"


def _transform_text(t: Transform) -> str:
    d = t.describe()
    if d["kind"] == "normalize":
        return f"normalize(mean={d['mean']}, std={d['std']})"
    return d["kind"]


def _same_space(a: Transform, b: Transform) -> bool:
    da, db = a.describe(exact=True), b.describe(exact=True)
    if da["kind"] != db["kind"]:
        return False
    if da["kind"] == "normalize":
        vals = [(x, y) for k in ("mean", "std") for x, y in zip(da[k], db[k])]
        return len(da["mean"]) == len(db["mean"]) and all(abs(x - y) <= 1e-6 for x, y in vals)
    return da == db  # zca: same eps, fitted on the same images; none


@dataclass(eq=False)
class Teacher:
    """A classifier bound to one dataset. See the module docstring; ``class_map`` [K] holds the
    teacher's logit index of each dataset class (None: the teacher's classes are the dataset's)."""

    net: nn.Module
    identity: dict[str, Any]
    input: TeacherInput
    class_map: Optional[torch.Tensor] = None

    @property
    def num_classes(self) -> int:
        """Classes of the dataset the teacher is bound to (the width of :meth:`logits`)."""
        return int(self.identity["dataset_num_classes"])

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def logits(self, x: torch.Tensor, *, all_classes: bool = False) -> torch.Tensor:
        """[B, K] logits (dataset label order) for network-space images [B, C, H, W]; with
        ``all_classes`` every teacher class in the teacher's order. Gradients flow to ``x``."""
        z = self.net(self.input(x))
        return z if all_classes or self.class_map is None else z.index_select(1, self.class_map)

    def pixel_logits(self, p: torch.Tensor, *, all_classes: bool = False) -> torch.Tensor:
        """:meth:`logits` for pixel-space images in [0, 1] (e.g. real images, renders)."""
        z = self.net(self.input.from_pixels(p))
        return z if all_classes or self.class_map is None else z.index_select(1, self.class_map)

    def bn_layers(self) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
        """(name, layer) of every BatchNorm layer, in forward order (for BN-statistics matching)."""
        return [(n, m) for n, m in self.net.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def to(self, device: torch.device | str) -> "Teacher":
        self.net.to(device)
        self.input.to(device)
        if self.class_map is not None:
            self.class_map = self.class_map.to(device)
        return self


# ------------------------------------------------------------------------------- the class check
def _names_differ(teacher: str, dataset: str, t: list[str], d: list[str]) -> str:
    if len(t) != len(d):
        return f"{teacher} has {len(t)} classes but {dataset} has {len(d)}; a teacher must be trained on the same classes"
    if set(t) == set(d):
        bad = [i for i in range(len(t)) if t[i] != d[i]]
        shown = ", ".join(f"{i}: {t[i]!r} vs {d[i]!r}" for i in bad[:_SHOW])
        return (f"{teacher} orders the classes differently from {dataset} ({len(bad)} of {len(t)} positions "
                f"differ; teacher vs dataset at {shown}); logits would go to the wrong classes")
    only_t = [c for c in t if c not in set(d)]
    only_d = [c for c in d if c not in set(t)]
    return (f"{teacher} and {dataset} have different classes: the teacher has {_few(only_t)} that the dataset "
            f"lacks, the dataset has {_few(only_d)}")


def _few(names: list[str]) -> str:
    more = f" and {len(names) - _SHOW} more" if len(names) > _SHOW else ""
    return ", ".join(repr(n) for n in names[:_SHOW]) + more


def _subset_of(dataset: Any) -> Optional[Subset]:
    s = SUBSETS.get(str(dataset.name).lower())
    if s is not None:
        return s
    names = list(dataset.class_names)  # its class names, or its published wnids (an extracted folder)
    return next((s for s in SUBSETS.values() if subset_class_names(s) == names
                 or (s.wnids is not None and sorted(s.wnids) == names)), None)


def _imagenet_map(src: TeacherSource, dataset: Any, data_dir: Path, label: str) -> tuple[list[int], list[str] | None, str]:
    """Teacher logit index per dataset class, the dataset's wnids (when known) and how it was mapped,
    for a 1000-class ImageNet-1K teacher; ConfigError/DataError when there is no safe mapping."""
    subset = _subset_of(dataset)
    imagenet = data_dir / "imagenet"
    if subset is not None:
        ids = sorted(subset.class_ids)  # label order = ascending wnid = ascending class id
        for j, (cid, want) in enumerate(zip(ids, subset_class_names(subset))):
            if want not in src.class_names[cid].lower():
                raise ConfigError(f"{label}: class {cid} is {src.class_names[cid]!r}, but {subset.name} class {j} "
                                  f"is {want!r}; the weights do not use the standard ImageNet-1K class order")
        wnids = sorted(subset.wnids) if subset.wnids else None
        if wnids is None and any((imagenet / f).is_file() for f in ("LOC_synset_mapping.txt", "synsets.txt",
                                                                    "synset_mapping.txt", "wnids.txt")):
            all_wnids, _ = read_class_index(imagenet)
            wnids = [all_wnids[i] for i in ids]
        return ids, wnids, f"{subset.name}: ImageNet-1K class ids {ids} (sorted wnids), checked by class name"
    names = list(dataset.class_names)
    if len(names) == 1000 and all(_WNID.match(n) for n in names) and names == sorted(names):
        return list(range(1000)), names, "all 1000 ImageNet-1K classes, sorted wnids = class ids"
    if names and all(_WNID.match(n) for n in names):
        try:
            all_wnids, _ = read_class_index(imagenet)
        except DataError as e:
            raise DataError(f"{label}: the dataset's classes are wnids, and mapping them to ImageNet-1K class ids "
                            f"needs the 1000-wnid list; {e}") from None
        index = {w: i for i, w in enumerate(all_wnids)}
        unknown = [n for n in names if n not in index]
        if unknown:
            raise ConfigError(f"{label}: {_few(unknown)} are not ImageNet-1K wnids")
        return [index[n] for n in names], names, f"wnids mapped by {imagenet} class index"
    if names == src.class_names:
        return list(range(1000)), None, "the dataset's class names are the teacher's categories, in order"
    raise ConfigError(_names_differ(label, f"dataset {dataset.name}", src.class_names, names))


def match_classes(src: TeacherSource, dataset: Any, data_dir: Path, label: str) -> tuple[Optional[list[int]], dict]:
    """(class map or None, identity fields) for ``src`` on ``dataset``; refuses any mismatch."""
    names = [str(c) for c in dataset.class_names]
    if src.identity.get("source") == "torchvision" and len(src.class_names) == 1000:
        cmap, wnids, how = _imagenet_map(src, dataset, data_dir, label)
        identity = {"class_map": None if cmap == list(range(len(names))) and len(names) == 1000 else cmap,
                    "class_map_rule": how, "dataset_wnids": wnids}
        return identity["class_map"], identity
    if src.class_names != names:
        raise ConfigError(_names_differ(label, f"dataset {dataset.name}", src.class_names, names))
    return None, {"class_map": None, "class_map_rule": "same class names in the same order",
                  "dataset_wnids": None}


# ----------------------------------------------------------------------------------- the front door
def load_teacher(spec: str, *, dataset: Any, device: torch.device | str = "cpu", transform: Transform | None = None,
                 data_dir: Path | str | None = None, download: bool = True) -> Teacher:
    """The teacher ``spec`` names (a ``--teacher`` value), bound to ``dataset`` (a loaded Dataset).

    ``transform`` is the pixel → network map of the images you will pass to :meth:`Teacher.logits`
    (default: ``make_transform(dataset, "normalize")``). ``data_dir`` locates gsdd's cache
    (``<data_dir>/teachers/`` for downloaded weights) and the ImageNet class index;
    ``download=False`` never touches the network.
    """
    parsed = parse_teacher_spec(spec)
    root = resolve_data_dir(data_dir)
    src = open_source(parsed, root / TEACHER_CACHE, allow_download=download)
    label = f"teacher {parsed}"
    if src.channels is not None and src.channels != dataset.channels:
        raise ConfigError(f"{label} takes {src.channels}-channel images, dataset {dataset.name} has {dataset.channels}")
    if src.channels is None and dataset.channels != 3:
        raise ConfigError(f"{label} takes RGB images, dataset {dataset.name} has {dataset.channels} channel(s)")
    cmap, class_fields = match_classes(src, dataset, root, label)
    source_tf = transform if transform is not None else make_transform(dataset, "normalize")
    params = {k: v for k, v in src.input_transform.items() if k != "kind"}
    target_tf = transform_from_record(src.input_transform["kind"], params, dataset, channels=dataset.channels)
    same = _same_space(source_tf, target_tf) and (target_tf.kind != "zca" or
                                                  tuple(src.resolution) == (dataset.height, dataset.width))
    conv = TeacherInput(source_tf, target_tf, src.resolution, same)
    net = src.net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    identity = {
        **src.identity,
        "num_classes": len(src.class_names), "class_names": list(src.class_names), "wnids": src.wnids,
        "resolution": list(src.resolution), "input_transform": dict(src.input_transform),
        "dataset": str(dataset.name), "dataset_num_classes": dataset.num_classes, **class_fields,
        "input_conversion": conv.describe(dataset.height, dataset.width),
    }
    dev = resolve_device(str(device)) if isinstance(device, str) else device
    t = Teacher(net, identity, conv, None if cmap is None else torch.tensor(cmap, dtype=torch.long))
    return t.to(dev)


TEACHER_FIELDS = ("source", "name", "arch", "weights", "weights_sha256", "num_classes", "class_names", "wnids",
                  "resolution", "input_transform", "class_map", "class_map_rule", "input_conversion", "trained_on")


def teacher_header_fields(identity: dict[str, Any]) -> dict[str, str]:
    """The teacher's identity as flat ``teacher_<key>`` fields for any file a teacher touches, every
    value JSON text (``make_header(..., **teacher_header_fields(t.identity))``, JSON sidecars);
    :func:`read_teacher_fields` is the inverse."""
    return {f"teacher_{k}": dumps_json(identity.get(k)) for k in TEACHER_FIELDS}


def read_teacher_fields(fields: Mapping[str, Any]) -> dict[str, Any] | None:
    """The identity keys recorded by :func:`teacher_header_fields` (None when no teacher is recorded).
    Values may be the JSON text or already decoded (a ``.gsd`` header decodes JSON fields itself)."""
    if "teacher_weights_sha256" not in fields:
        return None
    out = {}
    for k in TEACHER_FIELDS:
        v = fields.get(f"teacher_{k}")
        if isinstance(v, str):
            try:
                v = json.loads(v)
            except json.JSONDecodeError:
                pass  # already decoded text
        out[k] = v
    return out


__all__ = ["TEACHER_FIELDS", "Teacher", "TeacherInput", "load_teacher", "match_classes", "read_teacher_fields",
           "teacher_header_fields"]
