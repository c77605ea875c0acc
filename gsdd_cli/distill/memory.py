"""Memory pre-flight for trajectory matching: how much the unroll will need, how much there is.

The estimate is measured, not guessed: one student step (DSA, forward, gradient with create_graph,
update) is run on a probe batch under ``torch.autograd.graph.saved_tensors_hooks`` and the distinct
storages autograd keeps for the backward are summed, for two batch sizes, which gives
``step(b) = fixed + per_image · b`` on any device. The same is done for the render of the synthetic
images. Then, with N = syn_steps, b = the images per step, n = the rendered subset and P the
parameters of the network:

- ``full``:        overhead + render(n) + N · step(b) + workspace(b)
- ``checkpoint``:  overhead + render(n) + (N + 1) · 4P + step(b) + workspace(b) + 2 · n·C·H·W·4
- ``tesla``:       the same as checkpoint (one step's graph at a time, all N + 1 parameter vectors)

``workspace(b)`` is the transient memory of the backward through one step, taken as
``WORKSPACE_FACTOR · step(b)``, ``overhead`` is a constant ``OVERHEAD_BYTES``, and on a CPU the graph
terms are multiplied by ``ALLOCATOR_FACTOR`` (resident memory per saved byte); all are calibrated against measured peaks (bench/tm_memory.py,
docs/distill.md gives the accuracy). What is available: free GPU memory on CUDA; on a CPU the
smaller of ``MemAvailable`` (/proc/meminfo) and the cgroup limit minus its usage; ``GSDD_MEMORY_LIMIT``
(e.g. ``8G``) caps either.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

import torch

from gsdd_cli.core.errors import ConfigError

MEMORY_LIMIT_ENV = "GSDD_MEMORY_LIMIT"
USABLE_FRACTION = 0.85  # plan for at most this share of what is available
WORKSPACE_FACTOR = 1.0  # backward workspace of one step, in units of that step's saved graph
OVERHEAD_BYTES = 64 << 20  # what the measured peaks hold beyond the formulas (allocator, autograd engine)
# Resident memory per byte autograd keeps: glibc's heap fragments under the many large, short-lived
# CPU tensors of an unroll (peak RSS ≈ 1.0–1.5 × the saved storages, measured by bench/tm_memory.py);
# CUDA's max_memory_allocated counts the tensors themselves.
ALLOCATOR_FACTOR = {"cpu": 1.5, "cuda": 1.0}
MODES = ("full", "checkpoint", "tesla")

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(text: str) -> int:
    """'8G', '512m', '1.5g', '123456' → bytes (binary units)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgtb]?)(i?b)?\s*", str(text).lower())
    if not m:
        raise ConfigError(f"{MEMORY_LIMIT_ENV}={text!r} is not a size (use e.g. 8G, 512M or a byte count)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> int | None:
    """Limit minus usage of this process's memory cgroup (v2, else v1), or None without a limit."""
    for limit_path, usage_path in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_path), _read_int(usage_path)
        if limit is not None and usage is not None and limit < (1 << 60):
            return max(0, limit - usage)
    return None


def available_memory(device: torch.device) -> tuple[int, str]:
    """(bytes this process may still allocate on ``device``, where the figure comes from)."""
    found: list[tuple[int, str]] = []
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        found.append((int(free), "free GPU memory"))
    else:
        avail = _meminfo_available()
        if avail is not None:
            found.append((avail, "MemAvailable"))
        cg = _cgroup_available()
        if cg is not None:
            found.append((cg, "cgroup limit"))
    env = os.environ.get(MEMORY_LIMIT_ENV)
    if env:
        found.append((parse_bytes(env), MEMORY_LIMIT_ENV))
    if not found:
        return 1 << 62, "unknown"
    return min(found)


def saved_bytes(fn: Callable[[], object]) -> tuple[int, object]:
    """Run ``fn`` and return (bytes of the distinct storages autograd saved for backward, its result)."""
    seen: dict[tuple[str, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            st = t.untyped_storage()
            seen[(str(t.device), st.data_ptr())] = st.nbytes()
        except (RuntimeError, NotImplementedError):
            seen[(str(t.device), id(t))] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = fn()
    return sum(seen.values()), result


def linear_fit(f: Callable[[int], int], b1: int, b2: int) -> tuple[float, float]:
    """(fixed, per_item) of f(b) ≈ fixed + per_item·b from two batch sizes (per_item ≥ 0)."""
    y1, y2 = f(b1), f(b2)
    per = max(0.0, (y2 - y1) / (b2 - b1)) if b2 != b1 else y1 / max(1, b1)
    return max(0.0, y1 - per * b1), per


def estimates(*, steps: int, batch: int, subset: int, image_bytes: int, params: int,
              step_fixed: float, step_per_image: float, render_fixed: float, render_per_image: float,
              device_type: str = "cpu") -> dict:
    """Estimated extra peak bytes of one TM iteration in each mode (see the module docstring)."""
    f = ALLOCATOR_FACTOR.get(device_type, 1.0)
    step = f * (step_fixed + step_per_image * batch)
    render = f * (render_fixed + render_per_image * subset) + subset * image_bytes
    work = WORKSPACE_FACTOR * step
    full = OVERHEAD_BYTES + render + steps * step + work
    constant = OVERHEAD_BYTES + render + (steps + 1) * 4 * params + step + work + 2 * subset * image_bytes
    return {"full": int(full), "checkpoint": int(constant), "tesla": int(constant)}


def largest_batch(fits: Callable[[int], bool], upper: int) -> int:
    """The largest b in [1, upper] with fits(b) (fits is monotone decreasing), or 0."""
    lo, hi = 0, upper
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


__all__ = [
    "MEMORY_LIMIT_ENV",
    "MODES",
    "USABLE_FRACTION",
    "available_memory",
    "estimates",
    "fmt_bytes",
    "largest_batch",
    "linear_fit",
    "parse_bytes",
    "saved_bytes",
]
