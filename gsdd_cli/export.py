"""Export a distilled set to formats other tools read (``gsdd export``; docs/export.md).

- ``pt``: one ``torch.save`` dict: images [G, C, H, W] float32 (unclamped) in network or pixel
  space, labels, class names, IPC/GPC, syn_lr, the transform's name and parameters (for ZCA the
  fitted mean and matrix).
- ``npz``: gsdd's dataset ``.npz`` format (docs/datasets.md): ``x_train`` [G, H, W, C] pixel space,
  float32 unclamped or uint8 (clipped, rounded), ``y_train``, ``class_names``; ``x_test``/``y_test``
  copied from the source dataset with ``with_test``.
- ``imagefolder``: ``OUT/train/<class>/<k>.png`` (and ``OUT/test/...`` with ``with_test``) plus a JSON
  sidecar. PNG clips to [0, 1] and quantizes to 8 bits.
- ``ddranking``: a folder for DD-Ranking: the network-space tensor, hard labels, the lr and a YAML
  config fragment (the budget IPC, ``use_zca``, protocol settings).

Files are written atomically (temporary file, then rename); folders are built in a temporary sibling
folder and renamed into place, so an interrupted export never leaves a half-written result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from gsdd_cli import __version__
from gsdd_cli.api import DistilledSet, check_space, load
from gsdd_cli.core.errors import ConfigError
from gsdd_cli.core.outputs import atomic_write, dumps_json, replace_dir
from gsdd_cli.data.augment import DSAParams
from gsdd_cli.evaluate import DEFAULT_LR, EvalConfig, file_sha256, resolve_settings
from gsdd_cli.models import default_convnet_depth
from gsdd_cli.sets.imageio import safe_name

FORMATS = ("pt", "npz", "imagefolder", "ddranking")
SPACES_BY_FORMAT = {
    "pt": ("network", "pixel"),
    "npz": ("pixel",),
    "imagefolder": ("pixel",),
    "ddranking": ("network",),
}
SIDECAR = "gsdd_export.json"
PNG_NOTE = "PNG clips values to [0, 1] and quantizes them to 8 bits; the .gsd (or a pt/npz export) keeps them exact"
EXPORT_FORMAT_VERSION = 1
# DD-Ranking 0.2.0's names for the datasets its get_dataset (ddranking/utils/data.py) loads; any other
# name leaves it without a dataset (UnboundLocalError 'channel'). Values: (name, its Normalize mean, std).
_DD_CIFAR = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))  # it uses these for CIFAR100 too
_DD_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
DDRANKING_DATASETS = {"cifar10": ("CIFAR10", *_DD_CIFAR), "cifar100": ("CIFAR100", *_DD_CIFAR),
                      "tinyimagenet": ("TinyImageNet", *_DD_IMAGENET),
                      **{n.lower(): (n, *_DD_IMAGENET) for n in ("ImageNette", "ImageWoof", "ImageMeow",
                                                                "ImageSquawk", "ImageFruit", "ImageYellow")}}
DDRANKING_TRANSFORMS = "ddranking_transforms.py"
# DD-Ranking's aug_params keys → our DSA parameters (data/augment.py DSAParams: the DSA paper's values)
_DSA = DSAParams()
DDRANKING_DSA = {"flip": _DSA.flip_prob, "rotate": _DSA.rotate_degrees, "saturation": _DSA.saturation,
                 "brightness": _DSA.brightness, "contrast": _DSA.contrast, "scale": _DSA.scale_ratio,
                 "crop": _DSA.crop_pad_ratio, "cutout": _DSA.cutout_ratio}

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class ExportResult:
    format: str
    path: Path
    space: str
    num_images: int
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "path": str(self.path), "space": self.space, "num_images": self.num_images,
                "files": self.files, "notes": self.notes}


# ---------------------------------------------------------------------------- shared pieces
def transform_record(s: DistilledSet, tensors: bool = True) -> dict[str, Any]:
    """The network-space transform as plain data: kind and parameters (ZCA: mean and matrix)."""
    tf = s.transform
    rec: dict[str, Any] = {"kind": s.header.transform}
    if rec["kind"] == "normalize":
        rec["mean"] = [float(v) for v in tf.mean.flatten()]
        rec["std"] = [float(v) for v in tf.std.flatten()]
    elif rec["kind"] == "zca":
        rec.update(eps=tf.eps, fitted_on=tf.fitted_on, num_images=tf.num_fit)
        if tensors:
            rec["mean"] = tf.mu.detach().cpu().clone()
            rec["matrix"] = tf.matrix.detach().cpu().clone()
    return rec


def eval_lr(s: DistilledSet) -> tuple[float, str]:
    """The lr ``gsdd eval`` trains a ConvNet on this set with: the learned one, else the protocol's."""
    if s.syn_lr is not None:
        return float(s.syn_lr), "learned"
    return DEFAULT_LR, "protocol default"


def _meta(s: DistilledSet, fmt: str, space: str) -> dict[str, Any]:
    c, h, w = s.shape
    return {
        "format": f"gsdd-export-{fmt}",
        "format_version": EXPORT_FORMAT_VERSION,
        "gsdd_version": __version__,
        "source": str(s.path) if s.path else None,
        "source_sha256": file_sha256(s.path) if s.path else None,
        "dataset": s.header.dataset,
        "space": space,
        "num_classes": s.num_classes,
        "class_names": s.class_names,
        "ipc": s.ipc,
        "gpc": s.gpc,
        "shape": [c, h, w],
        "algorithm": s.algorithm,
        "syn_lr": s.syn_lr,
    }


def _check_out(s: DistilledSet, out: Path, folder: bool, force: bool) -> None:
    if s.path is not None and out.resolve() == s.path.resolve():
        raise ConfigError(f"--out {out} is the input file; choose another path")
    if folder:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} exists and is not a folder")
        if out.is_dir() and any(out.iterdir()) and not force:
            raise ConfigError(f"--out {out} exists and is not empty", hint="use --force to replace it")
    elif out.is_dir():
        raise ConfigError(f"--out {out} is a folder; this format writes one file")


def _write_json(path: Path, obj: Any) -> None:
    """Plain write: only used inside a temporary folder that is renamed into place as a whole."""
    path.write_text(dumps_json(obj, indent=2, sort_keys=False) + "\n")


def to_uint8_nhwc(x: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] pixel space → uint8 [N, H, W, C]: clipped to [0, 1], ×255, rounded (as PNG)."""
    return x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _nhwc(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().float().permute(0, 2, 3, 1).cpu().numpy())


def class_folder_names(class_names: list[str]) -> list[str]:
    """Folder names that sort in label order: the class names when they already do (and are
    distinct after sanitizing), else ``<label:03d>_<name>``."""
    names = [safe_name(n) for n in class_names]
    if len(set(names)) == len(names) and names == sorted(names):
        return names
    width = max(3, len(str(len(names) - 1)))
    return [f"{i:0{width}d}_{n}" for i, n in enumerate(names)]


# -------------------------------------------------------------------------------- writers
def _export_pt(s: DistilledSet, out: Path, space: str, x: torch.Tensor, y: torch.Tensor) -> list[str]:
    obj = {
        **_meta(s, "pt", space),
        "images": x.detach().float().cpu().contiguous(),
        "labels": y.detach().long().cpu(),
        "transform": transform_record(s),
    }
    atomic_write(out, lambda tmp: torch.save(obj, tmp))
    return [out.name]


def _export_npz(s: DistilledSet, out: Path, x: torch.Tensor, y: torch.Tensor, uint8: bool,
                with_test: bool) -> list[str]:
    arrays: dict[str, np.ndarray] = {
        "x_train": to_uint8_nhwc(x) if uint8 else _nhwc(x),
        "y_train": y.detach().long().cpu().numpy(),
        "class_names": np.asarray(s.class_names),
    }
    if not uint8:
        arrays["unclamped"] = np.array(True)  # rendered values may leave [0, 1]; the loader accepts them
    if with_test:
        ds = s.real_dataset()
        arrays["x_test"] = to_uint8_nhwc(ds.x_test) if uint8 else _nhwc(ds.x_test)
        arrays["y_test"] = ds.y_test.long().numpy()

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a path
            np.savez(f, **arrays)

    atomic_write(out, write)
    return [out.name]


def _save_pngs(root: Path, split: str, x: torch.Tensor, y: torch.Tensor, folders: list[str],
               on_progress: Progress | None) -> list[str]:
    arr = to_uint8_nhwc(x)
    counts = [0] * len(folders)
    width = max(4, len(str(max(1, int(torch.bincount(y, minlength=len(folders)).max()) - 1))))
    for f in folders:
        (root / split / f).mkdir(parents=True, exist_ok=True)
    written = []
    total = arr.shape[0]
    for i in range(total):
        c = int(y[i])
        img = arr[i, :, :, 0] if arr.shape[-1] == 1 else arr[i]
        rel = f"{split}/{folders[c]}/{counts[c]:0{width}d}.png"
        Image.fromarray(img).save(root / rel, format="PNG")
        counts[c] += 1
        written.append(rel)
        if on_progress is not None and ((i + 1) % 256 == 0 or i + 1 == total):
            on_progress(f"writing {split}", i + 1, total)
    return written


def _export_imagefolder(s: DistilledSet, out: Path, x: torch.Tensor, y: torch.Tensor, with_test: bool,
                        on_progress: Progress | None) -> list[str]:
    folders = class_folder_names(s.class_names)
    meta = {**_meta(s, "imagefolder", "pixel"), "class_folders": folders, "note": PNG_NOTE,
            "transform": {"kind": s.header.transform, **dict(s.header.transform_params or {})}}
    files: list[str] = []

    def build(tmp: Path) -> None:
        files.extend(_save_pngs(tmp, "train", x, y.cpu(), folders, on_progress))
        if with_test:
            ds = s.real_dataset()
            files.extend(_save_pngs(tmp, "test", ds.x_test, ds.y_test, folders, on_progress))
        _write_json(tmp / SIDECAR, meta)

    replace_dir(out, build)
    return [SIDECAR, "train/"] + (["test/"] if with_test else [])


def ddranking_dataset(s: DistilledSet) -> tuple[str | None, str | None]:
    """DD-Ranking's name for the set's dataset (None where it has none) and, where the set's
    normalization is not the one DD-Ranking applies to that dataset or it has no name, a one-line note."""
    known = DDRANKING_DATASETS.get(s.header.dataset.lower())
    tf = transform_record(s, tensors=False)
    if known is None:
        return None, (f"DD-Ranking cannot load dataset {s.header.dataset!r} by name (its get_dataset knows only "
                      f"{', '.join(v[0] for v in DDRANKING_DATASETS.values())}, ImageNet1K): ddranking.yaml has "
                      "dataset: null; its LabelRobustScoreHard needs one of those names for the real data, "
                      "so compute the random-real and full-data baselines with gsdd eval --vs-random --full")
    name, mean, std = known
    if tf["kind"] == "normalize" and not (np.allclose(tf["mean"], mean, atol=1e-4)
                                          and np.allclose(tf["std"], std, atol=1e-4)):
        return name, (f"the set is normalized with mean {_fmt(tf['mean'])} std {_fmt(tf['std'])} but DD-Ranking "
                      f"trains its random and full-data baselines on {name} normalized with mean {_fmt(mean)} "
                      f"std {_fmt(std)} (custom_val_trans changes only its test transform): its baselines do not "
                      "share the set's transform; gsdd eval --vs-random --full does")
    return name, None


def _fmt(v: Any) -> str:
    return "[" + ", ".join(f"{float(x):.4g}" for x in v) + "]"


def ddranking_config(s: DistilledSet, epochs: int | None = None) -> dict[str, Any]:
    """Keyword arguments for DD-Ranking's ``LabelRobustScoreHard`` matching gsdd's protocol, plus
    ``syn_lr`` (an argument of ``compute_metrics``, not of the constructor).

    ``epochs`` (default gsdd eval's) sets the schedule as gsdd eval runs it: ``epochs + 1`` passes, lr
    × 0.1 after pass ``epochs // 2 + 1`` (evaluate/training.py), i.e. StepLR ``step_size = epochs // 2 + 2``
    (DD-Ranking steps its scheduler once per epoch).
    """
    c, h, w = s.shape
    lr, _ = eval_lr(s)
    base = EvalConfig(arch="convnet") if epochs is None else EvalConfig(arch="convnet", epochs=epochs)
    st = resolve_settings(base, s.algorithm, s.syn_lr)  # gsdd eval's own protocol
    name, _ = ddranking_dataset(s)
    return {
        "dataset": name,
        "ipc": s.ipc,
        "im_size": [h, w],
        "model_name": f"ConvNet-{default_convnet_depth(h, w)}",
        "use_zca": s.header.transform == "zca",
        "data_aug_func": "dsa",
        "aug_params": dict(DDRANKING_DSA),
        "optimizer": st.optimizer,
        "lr_scheduler": "step",
        "step_size": st.epochs // 2 + 2,
        "weight_decay": st.weight_decay,
        "momentum": st.momentum,
        "num_epochs": st.epochs + 1,
        "syn_batch_size": st.batch_size,
        "num_eval": st.runs,
        "eval_full_data": True,
        "syn_lr": lr,
    }


def _ddranking_yaml(s: DistilledSet, cfg: dict[str, Any]) -> str:
    import yaml

    lr, src = eval_lr(s)
    tf = transform_record(s, tensors=False)
    lines = [
        f"# DD-Ranking config fragment written by gsdd {__version__} for {s.path or 'a distilled set'}",
        f"# {s.num_images} images = {s.num_classes} classes x GPC {s.gpc}; ipc below is the storage budget",
        "# (real images per class), which sizes DD-Ranking's random baseline, not the number of images.",
        "# Add real_data_path, device, save_path, ... and pass every key except syn_lr to",
        "# LabelRobustScoreHard(...); syn_lr goes to compute_metrics(syn_lr=...). See docs/export.md.",
        f"# syn_lr: {src} ({lr:g}). num_epochs/step_size: gsdd eval's {cfg['num_epochs'] - 1} epochs (lr x 0.1 once;",
        "# gsdd also resets momentum there, StepLR does not).",
    ]
    _, note = ddranking_dataset(s)
    if note:
        lines.append(f"# NOTE: {note}.")
    if tf["kind"] == "normalize":
        lines.append(f"# images.pt is normalized with mean {tf['mean']} and std {tf['std']}: the real data must be")
        lines.append(f"# normalized the same way: {DDRANKING_TRANSFORMS} has that Normalize as custom_val_trans.")
    elif tf["kind"] == "zca":
        lines.append(f"# images.pt is ZCA-whitened (eps {tf['eps']}, fitted on {tf['num_images']} training images);")
        lines.append("# zca.pt holds that mean and matrix to check DD-Ranking's own fit against.")
    else:
        lines.append("# images.pt is in pixel space (no transform); use_zca must stay false.")
    return "\n".join(lines) + "\n" + yaml.safe_dump(cfg, sort_keys=False)


def _transforms_py(s: DistilledSet) -> str:
    """A snippet with the set's Normalize, for DD-Ranking's custom_val_trans (its test transform)."""
    tf = transform_record(s, tensors=False)
    return "\n".join([
        f"# The normalization of {s.path or 'the distilled set'} (written by gsdd {__version__}).",
        "# DD-Ranking 0.2.0 applies custom_val_trans to the test images of the synthetic and random runs",
        "# (get_dataset's dst_test_syn); it trains the random and full-data baselines on its own get_dataset",
        "# transform, which custom_* do not change. custom_train_trans applies only to an image_path folder.",
        "from torchvision import transforms",
        "",
        f"MEAN = {[round(v, 6) for v in tf['mean']]}",
        f"STD = {[round(v, 6) for v in tf['std']]}",
        "custom_val_trans = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])",
    ]) + "\n"


def _export_ddranking(s: DistilledSet, out: Path, x: torch.Tensor, y: torch.Tensor,
                      epochs: int | None = None) -> list[str]:
    cfg = ddranking_config(s, epochs)
    text = _ddranking_yaml(s, cfg)
    meta = {**_meta(s, "ddranking", "network"), "transform": transform_record(s, tensors=False),
            "ddranking": cfg}
    kind = s.header.transform
    files = ["images.pt", "labels.pt", "syn_lr.pt", *(["zca.pt"] if kind == "zca" else []), "ddranking.yaml",
             *([DDRANKING_TRANSFORMS] if kind == "normalize" else []), SIDECAR]

    def build(tmp: Path) -> None:
        torch.save(x.detach().float().cpu().contiguous(), tmp / "images.pt")
        torch.save(y.detach().long().cpu(), tmp / "labels.pt")
        torch.save(torch.tensor(cfg["syn_lr"], dtype=torch.float32), tmp / "syn_lr.pt")
        if kind == "zca":
            rec = transform_record(s)
            torch.save({"mean": rec["mean"], "matrix": rec["matrix"], "eps": rec["eps"]}, tmp / "zca.pt")
        (tmp / "ddranking.yaml").write_text(text)
        if kind == "normalize":
            (tmp / DDRANKING_TRANSFORMS).write_text(_transforms_py(s))
        _write_json(tmp / SIDECAR, meta)

    replace_dir(out, build)
    return files


# ---------------------------------------------------------------------------------- entry
def export_set(
    source: DistilledSet | str | Path,
    fmt: str,
    out: str | Path,
    *,
    space: str | None = None,
    uint8: bool = False,
    with_test: bool = False,
    force: bool = False,
    device: torch.device | str | None = None,
    backend: str = "auto",
    data_dir: str | Path | None = None,
    on_progress: Progress | None = None,
    epochs: int | None = None,
) -> ExportResult:
    """Export ``source`` (a :class:`DistilledSet` or a .gsd path) as ``fmt`` to ``out``.

    ``space`` defaults to ``network`` for pt/ddranking and must be ``pixel`` for npz/imagefolder.
    ``uint8`` (npz only) stores clipped, rounded bytes instead of float32; ``with_test`` (npz,
    imagefolder) copies the source dataset's test split; ``force`` replaces a non-empty output folder;
    ``epochs`` (ddranking only) the training epochs its schedule follows (default gsdd eval's).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    allowed = SPACES_BY_FORMAT[fmt]
    space = check_space(space) if space is not None else allowed[0]
    if space not in allowed:
        raise ConfigError(f"--space {space} does not apply to {fmt} (it stores {' or '.join(allowed)} space)")
    if uint8 and fmt != "npz":
        raise ConfigError("--uint8 only applies to --format npz (imagefolder is always 8-bit PNG)")
    if epochs is not None and (fmt != "ddranking" or epochs < 1):
        raise ConfigError("--epochs only applies to --format ddranking" if fmt != "ddranking"
                          else f"--epochs must be at least 1, got {epochs}")
    if with_test and fmt not in ("npz", "imagefolder"):
        raise ConfigError("--with-test only applies to --format npz or imagefolder")
    s = source if isinstance(source, DistilledSet) else load(source, data_dir=data_dir)
    out = Path(out)
    folder = fmt in ("imagefolder", "ddranking")
    _check_out(s, out, folder, force)
    # fail early (missing dataset, ZCA mismatch) before the expensive rendering
    if with_test:
        s.real_dataset().require_test("--with-test")
    if space == "network" or fmt in ("pt", "ddranking"):
        _ = s.transform

    def rendered(done: int, total: int) -> None:
        if on_progress is not None:
            on_progress("rendering", done, total)

    x, y = s.tensors(space, device=device, backend=backend, on_progress=rendered)
    if fmt == "pt":
        files = _export_pt(s, out, space, x, y)
    elif fmt == "npz":
        files = _export_npz(s, out, x, y, uint8, with_test)
    elif fmt == "imagefolder":
        files = _export_imagefolder(s, out, x, y, with_test, on_progress)
    else:
        files = _export_ddranking(s, out, x, y, epochs)
    notes = [PNG_NOTE] if fmt == "imagefolder" else []
    if fmt == "ddranking":
        notes += [n for n in [ddranking_dataset(s)[1]] if n]
    if fmt == "npz" and uint8:
        notes.append("uint8: values clipped to [0, 1] and rounded to 8 bits")
    if fmt == "npz" and not with_test:
        notes.append("no test split (x_test/y_test): the file can start gsdd init/distill/experts; add --with-test "
                     "to evaluate on it")
    return ExportResult(fmt, out, space, int(x.shape[0]), files, notes)


__all__ = [
    "FORMATS",
    "SPACES_BY_FORMAT",
    "ExportResult",
    "class_folder_names",
    "ddranking_config",
    "ddranking_dataset",
    "export_set",
    "to_uint8_nhwc",
    "transform_record",
]
