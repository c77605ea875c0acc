#!/usr/bin/env python
"""Renderer benchmark: CUDA op vs the PyTorch reference vs a DDiF-style SIREN decoder.

Prints one JSON document (and writes it with --out). For each setting (B images × N Gaussians at
H×W; the paper's CIFAR-10 IPC1/10/50, CIFAR-100 IPC10 and ImageNet-subset IPC10 budgets) it times
forward and forward+backward (CUDA events, warm-up, median of --reps), peak extra memory
(torch.cuda.max_memory_allocated after a reset, minus what was allocated before), images/s and
Gaussians/s, for

* ``cuda``: gsdd_cuda.rasterize (skipped, with a note, on CPU or without the extension);
* ``reference``: gsdd_cli.render.reference.rasterize_reference on the same device (dense and
  chunked; skipped when B·H·W·4·N exceeds --ref-max-evals, with fewer reps: --ref-reps);
* ``siren``: per image a SIREN MLP (x, y) → C with sin(ω0·) activations, ω0 = 30, 3 linear layers
  2 → h → h → C, evaluated at every pixel with torch.baddbmm over images. h is the largest width
  whose parameter count fits N·(6 + C) parameters, i.e. the Gaussian bytes N·(6 + C)·2 at 2 bytes
  per parameter (bf16 storage for both); it computes in fp32.

Ratios (speedup vs reference / SIREN, memory ratio) come from the same run. The roofline estimate
uses documented H100 SXM peaks (override with --peak-bw-tbs / --peak-fp32-tflops): bytes = what
must cross DRAM at least once, flops = Gaussian-sample evaluations (exact count from the tile
boxes) × a per-evaluation instruction estimate (FLOPS_PER_EVAL_*).

  python bench/render.py                       # all paper settings on cuda
  python bench/render.py --device cpu --settings tiny
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gsdd_cli.render.reference import TILE, project, rasterize_reference  # noqa: E402
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

# H100 SXM5 (NVIDIA datasheet): HBM3 3.35 TB/s, FP32 (non-tensor) 67 TFLOP/s.
H100_SXM_BW_TBS = 3.35
H100_SXM_FP32_TFLOPS = 67.0
# Per Gaussian-sample evaluation, counted from the inner loops of rasterize_{fwd,bwd}.cu
# (sub/mul/add of σ with row/column sharing, expf ≈ 4, weight, cut-offs, accumulation); estimates.
FLOPS_PER_EVAL_FWD = 16
FLOPS_PER_EVAL_BWD = 36  # backward kernel alone (recomputes the forward terms)


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


def peak_memory(fn, device):
    """Peak bytes allocated by one call of fn() above what was allocated before (None on CPU)."""
    if device.type != "cuda":
        return None
    _sync(device)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    _sync(device)
    return int(torch.cuda.max_memory_allocated(device) - base)


def measure(render, params, v_out, device, reps, warmup):
    """Time forward (no grad) and forward+backward of render(*params)."""

    def fwd():
        with torch.no_grad():
            return render(*params)

    leaves = [p.detach().requires_grad_(True) for p in params]

    def fwd_bwd():
        out = render(*leaves)
        return torch.autograd.grad(out, leaves, v_out)

    out = {}
    out["fwd_ms"] = time_fn(fwd, device, reps, warmup)
    out["fwd_bwd_ms"] = time_fn(fwd_bwd, device, reps, warmup)
    out["fwd_peak_bytes"] = peak_memory(fwd, device)
    out["fwd_bwd_peak_bytes"] = peak_memory(fwd_bwd, device)
    return out


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


def chunked(render, num_images, chunk):
    """Apply render on image chunks (keeps dense baselines within memory); same math."""
    if chunk >= num_images:
        return render

    def run(*params):
        outs = [render(*(p[i : i + chunk] for p in params)) for i in range(0, num_images, chunk)]
        return torch.cat(outs, 0)

    return run


# -------------------------------------------------------------------------------- roofline ---
def work_counts(xy, chol, num_images, n, height, width, channels, antialias=True):
    """Exact tile intersections and Gaussian-sample evaluations the kernels perform."""
    _, _, box = project(xy.float(), chol.float(), height, width, antialias)
    ss = 4 if antialias else 1

    def covered(lo, hi, size):  # pixels of tiles [lo, hi) inside the image
        return (hi * TILE).clamp(max=size) - (lo * TILE).clamp(max=size)

    nx = covered(box[:, 0], box[:, 1], width).clamp(min=0)
    ny = covered(box[:, 2], box[:, 3], height).clamp(min=0)
    tiles = ((box[:, 1] - box[:, 0]).clamp(min=0) * (box[:, 3] - box[:, 2]).clamp(min=0))
    return int(tiles.sum()), int((nx * ny).sum()) * ss


def roofline(num_images, n, height, width, channels, intersections, evals, bw_tbs, tflops):
    params_bytes = num_images * n * (6 + channels) * 4
    image_bytes = num_images * channels * height * width * 4
    fwd_bytes = params_bytes + image_bytes
    # backward: params + v_out read, gradients written (zero-init + read-modify-write in L2)
    bwd_bytes = params_bytes + image_bytes + 2 * params_bytes
    fwd_flops = evals * FLOPS_PER_EVAL_FWD
    bwd_flops = evals * FLOPS_PER_EVAL_BWD
    bw, peak = bw_tbs * 1e12, tflops * 1e12

    def est(b, f):
        return {"bytes": b, "flops": f, "memory_ms": b / bw * 1e3, "compute_ms": f / peak * 1e3,
                "bound_ms": max(b / bw, f / peak) * 1e3}

    return {"tile_intersections": intersections, "sample_evals": evals,
            "fwd": est(fwd_bytes, fwd_flops),
            "fwd_bwd": est(fwd_bytes + bwd_bytes, fwd_flops + FLOPS_PER_EVAL_FWD * evals + bwd_flops)}


# ------------------------------------------------------------------------------------ main ---
def run_setting(name, args, device, notes):
    num_images, n, height, width, channels, what = SETTINGS[name]
    res = {"setting": name, "what": what, "B": num_images, "N": n, "H": height, "W": width, "C": channels,
           "gaussians": num_images * n, "bytes_per_image_bf16": n * (6 + channels) * 2}
    xy, chol, rgb, opacity = sample_inputs(device, num_images, n, channels, height, width,
                                           kind="realistic", seed=0)
    params = (xy, chol, rgb, opacity)
    v_out = torch.randn(num_images, channels, height, width, device=device,
                        generator=torch.Generator(device).manual_seed(1))
    intersections, evals = work_counts(xy, chol, num_images, n, height, width, channels)
    res["roofline"] = roofline(num_images, n, height, width, channels, intersections, evals,
                               args.peak_bw_tbs, args.peak_fp32_tflops)
    reps, warm = args.reps, args.warmup

    def rates(r):
        for k in ("fwd", "fwd_bwd"):
            ms = r[f"{k}_ms"]
            r[f"{k}_images_per_s"] = num_images / ms * 1e3
            r[f"{k}_gaussians_per_s"] = num_images * n / ms * 1e3
        return r

    # CUDA op
    if device.type == "cuda":
        import gsdd_cuda

        if gsdd_cuda.is_available():
            def render_cuda(a, b, c, d):
                return gsdd_cuda.rasterize(a, b, c, d, num_images, height, width)

            res["cuda"] = rates(measure(render_cuda, params, v_out, device, reps, warm))
            r = res["cuda"]
            r["sample_evals_per_s_fwd"] = evals / r["fwd_ms"] * 1e3
            r["roofline_fraction_fwd"] = res["roofline"]["fwd"]["bound_ms"] / r["fwd_ms"]
            r["roofline_fraction_fwd_bwd"] = res["roofline"]["fwd_bwd"]["bound_ms"] / r["fwd_bwd_ms"]
        else:
            res["cuda"] = {"skipped": gsdd_cuda.unavailable_reason()}
    else:
        res["cuda"] = {"skipped": "the CUDA op needs --device cuda"}

    # dense reference
    dense = num_images * height * width * 4 * n
    if dense > args.ref_max_evals:
        res["reference"] = {"skipped": f"dense evaluations {dense:.3g} > --ref-max-evals {args.ref_max_evals:.3g}"}
    else:
        def render_ref(a, b, c, d):
            return rasterize_reference(a, b, c, d, num_images, height, width)

        try:
            res["reference"] = rates(measure(render_ref, params, v_out, device, min(reps, args.ref_reps),
                                             min(warm, 1)))
        except torch.OutOfMemoryError as exc:
            res["reference"] = {"skipped": f"out of memory: {str(exc).splitlines()[0]}"}
            torch.cuda.empty_cache()

    # SIREN at the same byte budget
    budget = n * (6 + channels)
    hidden = siren_width(budget, channels)
    siren = BatchedSiren(num_images, hidden, channels, height, width, device)
    act_bytes = num_images * height * width * hidden * 4 * 6  # ~6 live [B, HW, h] fp32 tensors in bwd
    chunk = max(1, int(num_images * args.siren_max_bytes / max(act_bytes, 1)))
    try:
        res["siren"] = rates(measure(chunked(siren, num_images, chunk), siren.params, v_out, device, reps, warm))
        res["siren"].update({"hidden": hidden, "params_per_image": siren_params(hidden, channels),
                             "budget_params_per_image": budget, "image_chunk": min(chunk, num_images)})
    except torch.OutOfMemoryError as exc:
        res["siren"] = {"skipped": f"out of memory: {str(exc).splitlines()[0]}"}
        torch.cuda.empty_cache()

    cu, ref, sir = res.get("cuda", {}), res.get("reference", {}), res.get("siren", {})
    ratios = {}
    for k in ("fwd", "fwd_bwd"):
        if f"{k}_ms" in cu and f"{k}_ms" in ref:
            ratios[f"speedup_vs_reference_{k}"] = ref[f"{k}_ms"] / cu[f"{k}_ms"]
            if cu.get(f"{k}_peak_bytes") and ref.get(f"{k}_peak_bytes") is not None:
                ratios[f"memory_ratio_reference_over_cuda_{k}"] = ref[f"{k}_peak_bytes"] / cu[f"{k}_peak_bytes"]
        if f"{k}_ms" in cu and f"{k}_ms" in sir:
            ratios[f"speedup_vs_siren_{k}"] = sir[f"{k}_ms"] / cu[f"{k}_ms"]
            if cu.get(f"{k}_peak_bytes") and sir.get(f"{k}_peak_bytes") is not None:
                ratios[f"memory_ratio_siren_over_cuda_{k}"] = sir[f"{k}_peak_bytes"] / cu[f"{k}_peak_bytes"]
    res["ratios"] = ratios
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settings", default=None,
                    help=f"comma list of {', '.join(SETTINGS)} or 'paper' (default: paper on cuda, tiny on cpu)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--ref-reps", type=int, default=3, help="reps for the (slow) reference")
    ap.add_argument("--ref-max-evals", type=float, default=2e10,
                    help="skip the dense reference above this many Gaussian-sample evaluations")
    ap.add_argument("--siren-max-bytes", type=float, default=8e9,
                    help="SIREN activation budget; images are processed in chunks above it")
    ap.add_argument("--peak-bw-tbs", type=float, default=H100_SXM_BW_TBS,
                    help="DRAM bandwidth for the roofline, TB/s (default: H100 SXM HBM3)")
    ap.add_argument("--peak-fp32-tflops", type=float, default=H100_SXM_FP32_TFLOPS,
                    help="FP32 (non-tensor) peak for the roofline, TFLOP/s (default: H100 SXM)")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if args.settings is None:
        names = PAPER if device.type == "cuda" else ["tiny"]
    elif args.settings == "paper":
        names = PAPER
    else:
        names = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in names if s not in SETTINGS]
    if unknown:
        ap.error(f"unknown settings {unknown}; valid: {', '.join(SETTINGS)}")
    torch.backends.cuda.matmul.allow_tf32 = False
    notes = [
        f"peaks for the roofline: {args.peak_bw_tbs} TB/s, {args.peak_fp32_tflops} TFLOP/s "
        "(defaults: NVIDIA H100 SXM datasheet)",
        f"flops per Gaussian-sample evaluation: fwd {FLOPS_PER_EVAL_FWD}, bwd {FLOPS_PER_EVAL_BWD} (estimates)",
        "SIREN budget: parameters × 2 bytes (bf16-equivalent) <= N·(6+C)·2 bytes; computed in fp32",
        "inputs: gsdd_cuda.testing.sample_inputs(kind='realistic')",
        "peak bytes: max_memory_allocated during one call minus memory allocated before it",
    ]
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "reps": args.reps,
        "notes": notes,
        "results": [run_setting(name, args, device, notes) for name in names],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
