#!/usr/bin/env python3
"""Expert-training benchmark: K experts one at a time vs K at once (``batch_experts``), in one run.

For each K in ``--k``, the same K experts (seeds 0 … K-1, SGD lr 0.01 as TM's experts, full DSA
unless ``--no-dsa``) are trained for ``--epochs`` epochs on the same synthetic network-space set of
``--images`` images (C×H×W, ``--classes`` classes: the timing does not depend on the pixels)

* **sequential**: :func:`gsdd_cli.distill.experts_batched.train_one` for each expert in turn (what
  ``batch_experts 1`` runs), and
* **batched**: one :func:`~gsdd_cli.distill.experts_batched.train_batched` call for all K,

side by side, after one untimed warm-up epoch of each. It reports experts·epochs per second of each,
the speedup (batched / sequential) and the largest difference between the two sets of trajectories
(they follow the same data order and augmentation, so it is float rounding). Wall-clock time with
``perf_counter`` (CUDA synchronised before reading it); no test-set evaluation is timed.

  python3 bench/experts.py --device cpu                      # K = 4, 512 CIFAR-sized images, 1 epoch
  python3 bench/experts.py --device cuda --k 1,5,10,25 --images 10000 --epochs 2 --out out/bexp_gpu.json
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import emit  # noqa: E402

from gsdd_cli.data.augment import DSA_STRATEGY  # noqa: E402
from gsdd_cli.distill.experts_batched import batch_refusal, train_batched, train_one  # noqa: E402
from gsdd_cli.models import get_model  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device):
    """(fn(), seconds, peak CUDA bytes allocated during the call or None on CPU)."""
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    seconds = time.perf_counter() - t0
    return out, seconds, int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--k", default="4", help="comma-separated numbers of experts trained at once")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--images", type=int, default=512, help="training images per epoch")
    ap.add_argument("--batch", type=int, default=256, help="minibatch (TM's experts: 256)")
    ap.add_argument("--shape", default="3,32,32", help="C,H,W of the images (CIFAR: 3,32,32)")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--model", default="convnet")
    ap.add_argument("--no-dsa", action="store_true", help="train without DSA augmentation")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    c, h, w = (int(v) for v in args.shape.split(","))
    ks = [int(v) for v in args.k.split(",")]

    def make_net():
        return get_model(args.model, c, args.classes, h, w)

    why = batch_refusal(make_net, (c, h, w), device)
    if why is not None:
        print(f"error: {args.model} {why}", file=sys.stderr)
        return 1
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.images, c, h, w, generator=g).to(device)
    y = torch.randint(0, args.classes, (args.images,), generator=g).to(device)
    train = dict(seed=0, batch=args.batch, lr=0.01, momentum=0.0, weight_decay=0.0,
                 dsa_strategy=None if args.no_dsa else DSA_STRATEGY)
    # warm-up (kernel selection, allocator, first-call overheads): one epoch of each path
    warm_x, warm_y = x[: args.batch], y[: args.batch]
    train_one(0, make_net, warm_x, warm_y, None, None, epochs=1, **train)
    train_batched([0, 1], make_net, warm_x, warm_y, None, None, epochs=1, **train)
    report = {
        "benchmark": "experts", "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "cpu_threads": torch.get_num_threads(), "torch": torch.__version__, "model": args.model,
        "params_per_expert": sum(p.numel() for p in make_net().parameters()),
        "images": args.images, "image_shape": [c, h, w], "classes": args.classes, "batch": args.batch,
        "epochs": args.epochs, "dsa": not args.no_dsa, "results": [],
    }
    for k in ks:
        seq, t_seq, m_seq = _timed(lambda: [train_one(i, make_net, x, y, None, None, epochs=args.epochs, **train)
                                     for i in range(k)], device)
        bat, t_bat, m_bat = _timed(lambda: train_batched(list(range(k)), make_net, x, y, None, None,
                                                  epochs=args.epochs, **train), device)
        diff = max(float((a - b).abs().max()) for (a, _), (b, _) in zip(seq, bat))
        rate_seq, rate_bat = k * args.epochs / t_seq, k * args.epochs / t_bat
        row = {"k": k, "sequential_s": round(t_seq, 3), "batched_s": round(t_bat, 3),
               "sequential_expert_epochs_per_s": round(rate_seq, 4), "batched_expert_epochs_per_s": round(rate_bat, 4),
               "speedup": round(rate_bat / rate_seq, 3), "max_abs_trajectory_diff": diff}
        if device.type == "cuda":
            row["sequential_peak_gpu_bytes"], row["batched_peak_gpu_bytes"] = m_seq, m_bat
        report["results"].append(row)
        print("RESULT " + str(row), file=sys.stderr, flush=True)
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
