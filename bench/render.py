#!/usr/bin/env python3
"""Renderer benchmark: the native kernels vs the PyTorch reference vs a DDiF-style SIREN decoder.

For each setting (B images × N Gaussians at H×W: the paper's CIFAR-10 IPC1/10/50, CIFAR-100 IPC10
and ImageNet-subset IPC10 budgets) on one device (cpu or cuda):

1. **check**: the native op's forward and all four gradients are compared with the reference on
   the same inputs (all images, or the first ``--check-images`` for large settings) with the test
   suite's float32 tolerances; a mismatch fails the run (exit code 1) before anything is timed;
2. **native** (gsdd_cuda.ops.rasterize on the device's kernels) and **reference** (gsdd_cuda.
   reference, dense and chunked): forward (no autograd) and forward+backward (one forward with
   autograd, then one backward; nothing is run twice) — median of ``--reps`` after ``--warmup``
   (CUDA events on a GPU, perf_counter on CPU). When the full reference would exceed
   ``--ref-max-evals`` Gaussian-sample evaluations it is timed on the first k images only and
   scaled by B/k (it is linear in the images: chunked, no cross-image work); the JSON says so;
3. **siren**: B independent SIREN MLPs 2 → h → h → C with sin(30·) on the hidden layers, evaluated
   at every pixel with batched matmuls (eager PyTorch, fp32, TF32 off), h the widest whose
   parameters (2 bytes each, as bf16) fit the Gaussians' bytes N·(6+C)·2 — the decoder of the
   paper's Figure 5 comparison. Above ``--siren-max-bytes`` of activations it runs in image chunks,
   the forward+backward back-propagating each chunk before the next (memory bounded both ways);
4. peak memory of one call above what was allocated before it: ``torch.cuda.max_memory_allocated``
   on a GPU; on CPU the peak resident set (VmHWM after resetting it through /proc/self/clear_refs,
   minus VmRSS before the call, after malloc_trim) — RSS deltas, so allocator caching makes them
   approximate.

Ratios are computed within the run. Each setting's result is written as soon as it is measured
(the whole document to ``--out`` via a temporary file and rename, and one ``RESULT {json}`` line on
stdout), so a timeout keeps what finished.

  python3 bench/render.py --device cpu --settings cifar10-ipc1,cifar10-ipc10 --out out/bench_cpu.json
  python3 bench/render.py --out out/bench_gpu.json            # the paper settings on cuda
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import gsdd_cuda  # noqa: E402
import gsdd_cuda.ops  # noqa: E402  (ops.rasterize: the native op itself, no backend choice)
from gsdd_cuda.reference import rasterize_reference  # noqa: E402
from gsdd_cuda.testing import sample_inputs  # noqa: E402

# name: (B images, N Gaussians per image, H, W, C, what)
SETTINGS = {
    "tiny": (8, 10, 16, 16, 3, "smoke test"),
    "cifar10-ipc1": (300, 22, 32, 32, 3, "CIFAR-10 IPC1"),
    "cifar10-ipc10": (1600, 42, 32, 32, 3, "CIFAR-10 IPC10"),
    "cifar10-ipc50": (2500, 136, 32, 32, 3, "CIFAR-10 IPC50"),
    "cifar100-ipc10": (8000, 85, 32, 32, 3, "CIFAR-100 IPC10"),
    "imagenet-ipc10": (6400, 170, 128, 128, 3, "ImageNet subset IPC10 (128x128)"),
}
PAPER = ["cifar10-ipc1", "cifar10-ipc10", "cifar10-ipc50", "cifar100-ipc10", "imagenet-ipc10"]
CPU_DEFAULT = ["cifar10-ipc1", "cifar10-ipc10"]
FWD_ATOL, GRAD_RTOL, GRAD_ATOL_REL = 1e-5, 1e-4, 1e-4  # tests/cuda/test_ops.py


class CheckFailed(RuntimeError):
    pass


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn, device, reps, warmup):
    """Median milliseconds of fn() over reps (CUDA events on GPU, perf_counter on CPU)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


# --------------------------------------------------------------------------------- memory ---
def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _malloc_trim():
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def peak_memory(fn, device):
    """Peak bytes of one call of fn() above what was in use before it (None if not measurable)."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        _sync(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    try:
        _malloc_trim()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM (the peak RSS) to the current RSS
        base = _status_kib("VmRSS")
        fn()
        return max(0, (_status_kib("VmHWM") - base) * 1024)
    except (OSError, KeyError):
        return None


# ------------------------------------------------------------------------------ measuring ---
def image_spans(num_images, chunk=None):
    """[(start, stop)] image ranges of at most ``chunk`` images (one range without a chunk)."""
    chunk = num_images if chunk is None else max(1, min(int(chunk), num_images))
    return [(i, min(i + chunk, num_images)) for i in range(0, num_images, chunk)]


def chunked_grads(render, params, v_out, spans):
    """Gradients of <render(params), v_out> computed chunk by chunk: each chunk is back-propagated
    before the next one is rendered, so one chunk's activations are alive at a time."""
    grads = [[] for _ in params]
    for a, b in spans:
        part = [p[a:b].detach().requires_grad_(True) for p in params]
        out = render(*part)
        for acc, g in zip(grads, torch.autograd.grad(out, part, v_out[a:b])):
            acc.append(g)
        del out, part
    return [torch.cat(g, 0) for g in grads]


def measure(render, params, v_out, device, reps, warmup, chunk=None):
    """Forward (no autograd) and forward+backward (one forward with autograd, one backward).

    With ``chunk`` (images per chunk; the parameters' first dimension is the image), both run chunk
    by chunk: the forward concatenates the chunks' outputs, and the forward+backward back-propagates
    each chunk before the next one starts, so only one chunk's activations are alive at a time (the
    images are independent, so the gradients are those of the whole batch, concatenated).
    """
    spans = image_spans(v_out.shape[0], chunk)

    def fwd():
        with torch.no_grad():
            if len(spans) == 1:
                return render(*params)
            return torch.cat([render(*(p[a:b] for p in params)) for a, b in spans], 0)

    leaves = [p.detach().requires_grad_(True) for p in params]

    def fwd_bwd():
        if len(spans) == 1:
            out = render(*leaves)
            return torch.autograd.grad(out, leaves, v_out)
        return chunked_grads(render, params, v_out, spans)

    return {
        "fwd_ms": time_fn(fwd, device, reps, warmup),
        "fwd_bwd_ms": time_fn(fwd_bwd, device, reps, warmup),
        "fwd_peak_bytes": peak_memory(fwd, device),
        "fwd_bwd_peak_bytes": peak_memory(fwd_bwd, device),
    }


def check_native(params, v_out, num_images, n, height, width, check_images):
    """Native forward and gradients vs the reference on the first k images; raises CheckFailed."""
    k = min(num_images, check_images)
    sub = [t[: k * n] for t in params]
    v = v_out[:k]
    outs = []
    for fn in (gsdd_cuda.ops.rasterize, rasterize_reference):
        leaves = [t.detach().clone().requires_grad_(True) for t in sub]
        out = fn(*leaves, k, height, width)
        outs.append((out.detach(), torch.autograd.grad(out, leaves, v)))
    (got, got_g), (ref, ref_g) = outs
    scale = max(1.0, float(ref.abs().max()))
    fwd_err = float((got - ref).abs().max())
    report = {"images": k, "fwd_max_abs_err": fwd_err, "fwd_tolerance": FWD_ATOL * scale}
    if not fwd_err <= FWD_ATOL * scale:
        raise CheckFailed(f"forward differs from the reference by {fwd_err:.3g} > {FWD_ATOL * scale:.3g}")
    for name, g, r in zip(("xy", "chol", "rgb", "opacity"), got_g, ref_g):
        atol = GRAD_ATOL_REL * max(float(r.abs().max()), 1e-12)
        excess = float(((g - r).abs() - (atol + GRAD_RTOL * r.abs())).max())
        report[f"grad_{name}_max_rel_err"] = float((g - r).abs().max()) / max(float(r.abs().max()), 1e-30)
        if excess > 0:
            raise CheckFailed(f"d{name} differs from the reference beyond rtol {GRAD_RTOL}, atol {atol:.3g}")
    report["passed"] = True
    return report


# ----------------------------------------------------------------------------------- SIREN ---
def siren_params(hidden: int, channels: int) -> int:
    return (2 * hidden + hidden) + (hidden * hidden + hidden) + (hidden * channels + channels)


def siren_width(budget_params: int, channels: int) -> int:
    h = 1
    while siren_params(h + 1, channels) <= budget_params:
        h += 1
    return h


class BatchedSiren:
    """B independent SIRENs 2 → h → h → C, sin(ω0·) on the two hidden layers (ω0 = 30)."""

    def __init__(self, num_images, hidden, channels, height, width, device, seed=0, w0=30.0):
        g = torch.Generator().manual_seed(seed)
        self.w0, self.h, self.w, self.c = w0, height, width, channels

        def uni(shape, bound):
            return ((torch.rand(shape, generator=g) * 2 - 1) * bound).to(device)

        self.params = [
            uni((num_images, 2, hidden), 1.0 / 2),  # first layer: U(-1/fan_in, 1/fan_in)
            uni((num_images, 1, hidden), 1.0 / 2),
            uni((num_images, hidden, hidden), math.sqrt(6 / hidden) / w0),
            uni((num_images, 1, hidden), math.sqrt(6 / hidden) / w0),
            uni((num_images, hidden, channels), math.sqrt(6 / hidden) / w0),
            uni((num_images, 1, channels), math.sqrt(6 / hidden) / w0),
        ]
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.coords = torch.stack([xs, ys], -1).reshape(1, -1, 2).to(device)

    def __call__(self, w1, b1, w2, b2, w3, b3):
        coords = self.coords.expand(w1.shape[0], -1, -1)
        x = torch.sin(self.w0 * torch.baddbmm(b1, coords, w1))
        x = torch.sin(self.w0 * torch.baddbmm(b2, x, w2))
        x = torch.baddbmm(b3, x, w3)  # [B, H*W, C]
        return x.transpose(1, 2).reshape(-1, self.c, self.h, self.w)


# ------------------------------------------------------------------------------------ main ---
def run_setting(name, args, device):
    num_images, n, height, width, channels, what = SETTINGS[name]
    res = {"setting": name, "what": what, "B": num_images, "N": n, "H": height, "W": width, "C": channels,
           "gaussians": num_images * n, "bytes_per_image_bf16": n * (6 + channels) * 2}
    params = sample_inputs(device, num_images, n, channels, height, width, kind="realistic", seed=0)
    v_out = torch.randn(num_images, channels, height, width, generator=torch.Generator().manual_seed(1)).to(device)
    reps, warm = args.reps, args.warmup

    def rates(r, images):
        for k in ("fwd", "fwd_bwd"):
            r[f"{k}_images_per_s"] = images / r[f"{k}_ms"] * 1e3
        return r

    # 1. native: checked, then timed
    if not gsdd_cuda.is_available(device.type):
        res["native"] = {"skipped": gsdd_cuda.unavailable_reason(device.type)}
    else:
        res["check"] = check_native(params, v_out, num_images, n, height, width, args.check_images)

        def render_native(a, b, c, d):
            return gsdd_cuda.ops.rasterize(a, b, c, d, num_images, height, width)

        res["native"] = rates(measure(render_native, params, v_out, device, reps, warm), num_images)
        res["native"]["origin"] = gsdd_cuda._backend.origin(device.type)

    # 2. reference: all images, or a prefix of k images scaled by B/k
    per_image = height * width * 4 * n
    k = max(1, min(num_images, int(args.ref_max_evals // per_image)))
    sub = [t[: k * n] for t in params]

    def render_ref(a, b, c, d):
        return rasterize_reference(a, b, c, d, k, height, width)

    try:
        ref = measure(render_ref, sub, v_out[:k], device, min(reps, args.ref_reps), min(warm, 1))
        ref["images_timed"] = k
        if k < num_images:
            ref["scaled_from_images"] = k
            for key in ("fwd_ms", "fwd_bwd_ms"):
                ref[f"{key}_measured"] = ref[key]
                ref[key] = ref[key] * num_images / k
            ref["note"] = (f"timed on the first {k} of {num_images} images and scaled by {num_images}/{k} "
                           "(the reference is linear in the images); peak bytes are those of the subset")
        res["reference"] = rates(ref, num_images)
    except torch.OutOfMemoryError as exc:
        res["reference"] = {"skipped": f"out of memory: {str(exc).splitlines()[0]}"}
        torch.cuda.empty_cache()

    # 3. SIREN at the same byte budget
    budget = n * (6 + channels)
    hidden = siren_width(budget, channels)
    siren = BatchedSiren(num_images, hidden, channels, height, width, device)
    act_bytes = num_images * height * width * hidden * 4 * 6  # ~6 live [B, HW, h] fp32 tensors in bwd
    chunk = max(1, int(num_images * args.siren_max_bytes / max(act_bytes, 1)))
    try:
        res["siren"] = rates(measure(siren, siren.params, v_out, device, reps, warm, chunk=chunk), num_images)
        res["siren"].update({
            "label": f"DDiF-style SIREN decoder, eager PyTorch fp32 (TF32 off), 2-{hidden}-{hidden}-{channels}, "
                     f"sin(30x), {siren_params(hidden, channels)} params/image (budget {budget})",
            "hidden": hidden, "params_per_image": siren_params(hidden, channels), "budget_params_per_image": budget,
            "image_chunk": min(chunk, num_images)})
    except torch.OutOfMemoryError as exc:
        res["siren"] = {"skipped": f"out of memory: {str(exc).splitlines()[0]}"}
        torch.cuda.empty_cache()

    nat, ref, sir = res.get("native", {}), res.get("reference", {}), res.get("siren", {})
    ratios = {}
    for key in ("fwd", "fwd_bwd"):
        if f"{key}_ms" in nat and f"{key}_ms" in ref:
            ratios[f"speedup_vs_reference_{key}"] = ref[f"{key}_ms"] / nat[f"{key}_ms"]
        if f"{key}_ms" in nat and f"{key}_ms" in sir:
            ratios[f"speedup_vs_siren_{key}"] = sir[f"{key}_ms"] / nat[f"{key}_ms"]
        for other, label in ((ref, "reference"), (sir, "siren")):
            a, b = nat.get(f"{key}_peak_bytes"), other.get(f"{key}_peak_bytes")
            if a and b is not None and "scaled_from_images" not in other:
                ratios[f"memory_ratio_{label}_over_native_{key}"] = b / a
    res["ratios"] = ratios
    return res


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settings", default=None,
                    help=f"comma list of {', '.join(SETTINGS)} or 'paper' "
                         f"(default: paper on cuda, {','.join(CPU_DEFAULT)} on cpu)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--ref-reps", type=int, default=3, help="reps for the (slow) reference")
    ap.add_argument("--ref-max-evals", type=float, default=2e9,
                    help="time the reference on a prefix of images above this many Gaussian-sample evaluations")
    ap.add_argument("--check-images", type=int, default=256,
                    help="images compared with the reference before timing (a prefix)")
    ap.add_argument("--siren-max-bytes", type=float, default=None,
                    help="SIREN activation budget (default 8e9 on cuda, 2e9 on cpu); above it the forward and "
                         "the backward run in image chunks, one chunk's activations alive at a time")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON document here (after every setting)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if args.siren_max_bytes is None:
        args.siren_max_bytes = 8e9 if device.type == "cuda" else 2e9
    if args.settings is None:
        names = PAPER if device.type == "cuda" else CPU_DEFAULT
    elif args.settings == "paper":
        names = PAPER
    else:
        names = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in names if s not in SETTINGS]
    if unknown:
        ap.error(f"unknown settings {unknown}; valid: {', '.join(SETTINGS)}")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "reps": args.reps,
        "notes": [
            "inputs: gsdd_cuda.testing.sample_inputs(kind='realistic'); fwd_bwd = one forward with autograd "
            "+ one backward",
            "peak bytes: cuda max_memory_allocated during one call minus memory allocated before it; cpu "
            "VmHWM after a reset minus VmRSS before the call (approximate: allocator caching)",
            f"check: forward {FWD_ATOL} abs (x max(1, |ref|)), gradients rtol {GRAD_RTOL}, "
            f"atol {GRAD_ATOL_REL} x max|ref|",
        ],
        "results": [],
    }
    status = 0
    for name in names:
        try:
            res = run_setting(name, args, device)
        except CheckFailed as exc:
            res = {"setting": name, "check": {"passed": False, "error": str(exc)}}
            status = 1
        report["results"].append(res)
        report["load_average_now"] = os.getloadavg()
        print("RESULT " + json.dumps(res), flush=True)
        if args.out:
            write_atomic(args.out, json.dumps(report, indent=2) + "\n")
        if status:
            print(f"error: {name}: the native kernels disagree with the reference: {res['check']['error']}",
                  file=sys.stderr)
            break
    print(json.dumps(report, indent=2))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
