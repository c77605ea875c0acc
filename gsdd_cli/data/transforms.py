"""Differentiable maps from pixel space [0, 1] to the space the networks see (docs/method.md §7).

``make_transform(dataset, kind)`` with kind ∈ {"zca", "normalize", "none"} returns a
:class:`Transform` (an ``nn.Module``) with ``forward`` (pixel → network), ``inverse`` and
``describe()``. ZCA is kornia-style with eps 0.1, fitted once on the whole real training set in
float64 and cached on disk under ``<data_dir>/zca/`` (and in-process).

``describe()`` is the one serialised form of a transform (the ``.gsd`` header's ``transform_params``,
export sidecars); :func:`transform_from_record` is its inverse: it rebuilds the module a header
records, refitting ZCA on the real training set.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any, Callable, Mapping, Union

import torch
from torch import nn

from gsdd_cli.core.errors import ConfigError, DataError, FileSystemError
from gsdd_cli.core.outputs import atomic_write_bytes
from gsdd_cli.data.streaming import ImageFiles, StreamedTransformed, require_in_memory

TRANSFORM_KINDS = ("zca", "normalize", "none")
ZCA_EPS = 0.1
ZCA_MAX_DIM = 12288  # 64×64×3; covariance of a larger image would not fit comfortably in memory


class Transform(nn.Module):
    kind = "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] → [B, C, H, W]
        return x

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def describe(self, *, exact: bool = False, tensors: bool = False) -> dict:
        """The transform as plain data: ``kind`` and its parameters.

        The default is what a ``.gsd`` header stores (normalize: mean/std rounded to 6 decimals;
        ZCA: eps, fitted_on, num_images). ``exact`` gives the full float32 values; ``tensors`` adds
        ZCA's fitted ``mean`` and ``matrix`` (CPU tensors).
        """
        return {"kind": self.kind}


class IdentityTransform(Transform):
    kind = "none"


class NormalizeTransform(Transform):
    """x ↦ (x − mean) / std per channel."""

    kind = "normalize"

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        if len(mean) != len(std):
            raise ConfigError(f"mean has {len(mean)} channels but std has {len(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean

    def describe(self, *, exact: bool = False, tensors: bool = False) -> dict:
        def values(t: torch.Tensor) -> list[float]:
            return [float(v) if exact else round(float(v), 6) for v in t.flatten()]

        return {"kind": self.kind, "mean": values(self.mean), "std": values(self.std)}


class ZCATransform(Transform):
    """x ↦ T(x − μ) on flattened images, T = U diag((S + eps)^−½) Uᵀ (kornia ZCAWhitening)."""

    kind = "zca"

    def __init__(self, mean: torch.Tensor, matrix: torch.Tensor, inverse_matrix: torch.Tensor,
                 eps: float = ZCA_EPS, fitted_on: str = "", num_fit: int = 0):
        super().__init__()
        self.register_buffer("mu", mean.float().flatten())
        self.register_buffer("matrix", matrix.float())
        self.register_buffer("inverse_matrix", inverse_matrix.float())
        self.eps = float(eps)
        self.fitted_on = fitted_on
        self.num_fit = int(num_fit)

    @classmethod
    def fit(cls, x: torch.Tensor, eps: float = ZCA_EPS, device: torch.device | str | None = None,
            fitted_on: str = "") -> "ZCATransform":
        """Fit on images [N, C, H, W] (float64 maths, unbiased covariance, chunked)."""
        n = int(x.shape[0])
        d = int(x[0].numel())
        if n < 2:
            raise ConfigError("ZCA needs at least 2 training images")
        if d > ZCA_MAX_DIM:
            raise ConfigError(
                f"ZCA on {d}-dimensional images needs a {d}x{d} covariance; gsdd allows ZCA up to "
                f"{ZCA_MAX_DIM} dimensions (use --transform normalize)"
            )
        dev = torch.device(device) if device is not None else torch.device("cpu")
        flat = x.reshape(n, d)
        mean = torch.zeros(d, dtype=torch.float64, device=dev)
        for s in range(0, n, 8192):
            mean += flat[s : s + 8192].to(dev, torch.float64).sum(0)
        mean /= n
        cov = torch.zeros(d, d, dtype=torch.float64, device=dev)
        for s in range(0, n, 8192):
            c = flat[s : s + 8192].to(dev, torch.float64) - mean
            cov.addmm_(c.T, c)
        cov /= n - 1
        evals, evecs = torch.linalg.eigh(cov)
        evals = evals.clamp_min(0.0)
        t = (evecs * (evals + eps).rsqrt()) @ evecs.T
        t_inv = (evecs * (evals + eps).sqrt()) @ evecs.T
        return cls(mean.cpu(), t.cpu(), t_inv.cpu(), eps=eps, fitted_on=fitted_on, num_fit=n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(shape[0], -1)
        if flat.shape[1] != self.mu.numel():
            raise ConfigError(f"ZCA was fitted on {self.mu.numel()}-d images, got {list(shape[1:])}")
        return ((flat - self.mu) @ self.matrix).reshape(shape)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        return (x.reshape(shape[0], -1) @ self.inverse_matrix + self.mu).reshape(shape)

    def describe(self, *, exact: bool = False, tensors: bool = False) -> dict:
        rec: dict[str, Any] = {"kind": self.kind, "eps": self.eps, "fitted_on": self.fitted_on,
                               "num_images": self.num_fit}
        if tensors:
            rec["mean"] = self.mu.detach().cpu().clone()
            rec["matrix"] = self.matrix.detach().cpu().clone()
        return rec

    def state(self) -> dict:
        return {"mean": self.mu.cpu(), "matrix": self.matrix.cpu(), "inverse_matrix": self.inverse_matrix.cpu(),
                "eps": self.eps, "fitted_on": self.fitted_on, "num_fit": self.num_fit}


_ZCA_MEMORY: dict[tuple, ZCATransform] = {}
_LOCK = threading.Lock()


def cache_stem(name: str) -> str:
    base = Path(name).name if ("/" in name or "\\" in name) else name
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in base)[:64] or "dataset"


def zca_cache_path(dataset, eps: float = ZCA_EPS) -> Path | None:
    if dataset.cache_dir is None:
        return None
    n = int(dataset.x_train.shape[0])
    return Path(dataset.cache_dir) / "zca" / f"{cache_stem(dataset.name)}-n{n}-eps{eps:g}-{dataset.fingerprint()}.pt"


def fit_zca(dataset, eps: float = ZCA_EPS, cache: bool = True, device=None) -> ZCATransform:
    """The dataset's ZCA transform: from memory, else the disk cache, else fitted (and cached)."""
    require_in_memory(dataset.x_train, "the ZCA whitening (fitted on every training image)")
    key = (dataset.name, int(dataset.x_train.shape[0]), dataset.fingerprint(), float(eps))
    with _LOCK:
        if key in _ZCA_MEMORY:
            return _ZCA_MEMORY[key]
        path = zca_cache_path(dataset, eps) if cache else None
        zca = None
        if path is not None and path.is_file():
            try:
                st = torch.load(path, map_location="cpu", weights_only=True)
                zca = ZCATransform(st["mean"], st["matrix"], st["inverse_matrix"], eps=st["eps"],
                                   fitted_on=st["fitted_on"], num_fit=st["num_fit"])
            except Exception:
                zca = None  # unreadable cache: refit and overwrite
        if zca is None:
            if device is None and torch.cuda.is_available():
                device = "cuda"
            zca = ZCATransform.fit(dataset.x_train, eps=eps, device=device, fitted_on=dataset.name)
            if path is not None:
                buf = io.BytesIO()
                torch.save(zca.state(), buf)
                try:
                    atomic_write_bytes(path, buf.getvalue())
                except FileSystemError:
                    pass  # read-only or full data dir: keep it in memory only
        _ZCA_MEMORY[key] = zca
        return zca


def make_transform(dataset, kind: str, *, eps: float = ZCA_EPS, cache: bool = True) -> Transform:
    """A fresh transform module for ``dataset`` (CPU; move it with ``.to(device)``)."""
    kind = (kind or "none").lower()
    if kind not in TRANSFORM_KINDS:
        raise ConfigError(f"unknown transform {kind!r}; valid: {', '.join(TRANSFORM_KINDS)}")
    if kind == "none":
        return IdentityTransform()
    if kind == "normalize":
        return NormalizeTransform(tuple(dataset.mean), tuple(dataset.std))
    z = fit_zca(dataset, eps=eps, cache=cache)
    return ZCATransform(z.mu, z.matrix, z.inverse_matrix, eps=z.eps, fitted_on=z.fitted_on, num_fit=z.num_fit)


DatasetSource = Union[Any, Callable[[], Any]]  # a Dataset, or a function that loads it when needed


def transform_from_record(kind: str, params: Mapping[str, Any] | None, dataset: DatasetSource, *,
                          channels: int | None = None, name: str = "") -> Transform:
    """Rebuild the transform a record (``describe()``, a ``.gsd`` header) names, on the CPU.

    ``normalize`` uses the recorded mean/std (the dataset's statistics when there are none);
    ``zca`` is refitted on the real training set (cached) and must have been fitted on as many
    images as the record says; ``none`` is the identity. ``dataset`` is the real dataset or a
    function returning it, called only when it is needed. ``channels`` checks the mean/std length;
    ``name`` (the header's dataset) words the errors when the record has no ``fitted_on``.
    """
    kind = (kind or "none").lower()
    if kind not in TRANSFORM_KINDS:
        raise ConfigError(f"unknown transform {kind!r}; valid: {', '.join(TRANSFORM_KINDS)}")
    params = dict(params or {})

    def real():
        return dataset() if callable(dataset) else dataset

    if kind == "none":
        return IdentityTransform()
    if kind == "normalize":
        mean, std = params.get("mean"), params.get("std")
        if mean is not None and std is not None:
            if channels is not None and (len(mean) != channels or len(std) != channels):
                raise DataError(f"header transform_params mean/std have {len(mean)}/{len(std)} entries, "
                                f"expected {channels}")
            return NormalizeTransform(tuple(float(v) for v in mean), tuple(float(v) for v in std))
        return make_transform(real(), "normalize")
    ds = real()
    tf = make_transform(ds, "zca", eps=float(params.get("eps", ZCA_EPS)))
    fitted = params.get("num_images")
    if fitted is not None and int(fitted) != int(ds.x_train.shape[0]):
        raise DataError(
            f"the file's ZCA was fitted on {fitted} training images of {params.get('fitted_on') or name}, "
            f"but the loaded {ds.name} has {ds.x_train.shape[0]}; its whitening would differ",
            hint="point --data-dir / data_dir at the dataset the file was distilled on",
        )
    return tf


def apply_in_batches(transform: Transform, x: torch.Tensor, device: torch.device | str,
                     batch: int = 2048, *, stream: bool = False, what: str = "this step") -> torch.Tensor:
    """Transform a large pixel-space tensor chunk by chunk on ``device`` (no autograd).

    Images read from disk on demand (:class:`~gsdd_cli.data.streaming.ImageFiles`) are refused with
    one line naming ``what`` — unless ``stream``: then the result is a lazy view whose sequential
    slices are decoded by DataLoader workers and transformed as they are taken (test sets).
    """
    transform = transform.to(device)
    if isinstance(x, ImageFiles):
        if stream:
            return StreamedTransformed(transform, x, device)
        require_in_memory(x, what)
    out = []
    with torch.no_grad():
        for s in range(0, x.shape[0], batch):
            out.append(transform(x[s : s + batch].to(device)))
    return torch.cat(out) if out else x.to(device)
