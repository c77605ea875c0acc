#!/usr/bin/env python
"""Trajectory-matching memory benchmark: peak memory and time per iteration of each --tm-memory mode.

For every mode (full, checkpoint, tesla) and every syn_steps in --steps (default 10, 20, 40, 80) one
fresh worker process sets up a TM run (dataset, transform, initial images, experts), then runs
--iterations iterations and reports

* ``peak_extra_bytes``: the peak memory of the iterations above what the process held before the
  first one. CUDA: ``torch.cuda.max_memory_allocated`` after a reset, minus the allocated bytes
  before. CPU: the process's peak resident set (VmHWM) after resetting it (``/proc/self/clear_refs``)
  and trimming malloc's free lists, minus the resident set before — torch's CPU allocations are not
  visible to tracemalloc, RSS sees them;
* ``seconds_per_iteration`` (median over the iterations);
* ``estimate_bytes``: what the pre-flight (gsdd_cli.distill.memory) predicted for that mode, and
  ``estimate_ratio`` = estimate / measured.

The JSON also gives, per mode, ``growth`` = peak(largest syn_steps) / peak(smallest) (target from
10 to 80 steps: < 1.5 for checkpoint and tesla; full grows linearly). checkpoint and tesla keep the
N + 1 parameter vectors (4P bytes each), so they stay flat only while one step's graph
(∝ --batch-syn) outweighs them: with digits' 16-px images and 10 images per step it does not.

  python bench/tm_memory.py                                   # digits, IPC 10, 100 images per step (CPU)
  python bench/tm_memory.py --dataset cifar10 --data-dir DIR --ipc 1 --batch-syn 300   # paper setting, GPU
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import emit  # noqa: E402

MODES = ("full", "checkpoint", "tesla")


def _status_kb(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+)", text, re.M).group(1)) * 1024


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def worker(args) -> dict:
    """One (mode, syn_steps) measurement in this process."""
    import torch

    from gsdd_cli.distill import build_config
    from gsdd_cli.distill.memory import USABLE_FRACTION, available_memory
    from gsdd_cli.distill.params import fresh_context
    from gsdd_cli.distill.tm import TrajectoryMatching

    torch.set_num_threads(args.threads) if args.threads else None
    flags = dict(algo="tm", ipc=args.ipc, param=args.param, buffers=args.buffers, syn_steps=args.syn_steps,
                 batch_syn=args.batch_syn, expert_epochs=1, max_start_epoch=1, init_steps=args.init_steps,
                 device=args.device, tm_memory=args.mode, data_dir=args.data_dir, out="unused.gsd")
    cfg = build_config(args.dataset, flags=flags)
    ctx = fresh_context(cfg)
    method = TrajectoryMatching(ctx)
    est = method.estimate()
    dev = ctx.device
    cuda = dev.type == "cuda"
    avail, source = available_memory(dev)
    if est[args.mode] > USABLE_FRACTION * avail:  # what the pre-flight would refuse: do not get killed
        return {"mode": args.mode, "syn_steps": args.syn_steps, "estimate_bytes": int(est[args.mode]),
                "skipped": f"estimate exceeds {USABLE_FRACTION:.0%} of {avail} bytes available ({source})"}
    for it in range(args.warmup):  # first-use costs (kernel code pages, allocator pools) are not the unroll's
        torch.manual_seed(10_000 + it)
        method.step(it)
    _trim()
    if cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
    else:
        Path("/proc/self/clear_refs").write_text("5")
        before = _status_kb("VmRSS")
    seconds = []
    for it in range(args.iterations):
        torch.manual_seed(it)
        t0 = time.perf_counter()
        method.step(it)
        if cuda:
            torch.cuda.synchronize(dev)
        seconds.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated(dev) if cuda else _status_kb("VmHWM")) - before
    batch, subset = method._sizes()
    return {"mode": args.mode, "syn_steps": args.syn_steps, "batch": batch, "subset": subset,
            "peak_extra_bytes": int(peak), "estimate_bytes": int(est[args.mode]),
            "estimate_ratio": round(est[args.mode] / max(1, peak), 3),
            "seconds_per_iteration": round(statistics.median(seconds), 4), "seconds": [round(s, 4) for s in seconds],
            "device": str(dev), "measure": "cuda max_memory_allocated" if cuda else "peak RSS (VmHWM) delta"}


def make_buffers(args, folder: Path) -> None:
    from gsdd_cli.distill import make_experts_config, train_experts

    cfg = make_experts_config(dataset=args.dataset, out=str(folder), num=1, epochs=2, device=args.device,
                              data_dir=args.data_dir)
    train_experts(cfg)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--param", default="gaussian", choices=["gaussian", "pixel"])
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--batch-syn", type=int, default=100, help="images per student step")
    ap.add_argument("--steps", default="10,20,40,80", help="comma-separated syn_steps")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1, help="iterations before the measurement starts")
    ap.add_argument("--init-steps", type=int, default=10, help="Gaussian init fit steps (quality is irrelevant)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--buffers", default=None, help="expert folder (default: train 1 expert × 2 epochs)")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="full", help=argparse.SUPPRESS)
    ap.add_argument("--syn-steps", type=int, default=10, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    tmp = tempfile.TemporaryDirectory(prefix="tm-memory-")
    if args.buffers is None:
        args.buffers = str(Path(tmp.name) / "buffers")
        make_buffers(args, Path(args.buffers))
    rows = []
    t_start = time.perf_counter()
    for mode in args.modes.split(","):
        for steps in [int(s) for s in args.steps.split(",")]:
            cmd = [sys.executable, __file__, "--worker", "--mode", mode, "--syn-steps", str(steps),
                   "--dataset", args.dataset, "--param", args.param, "--ipc", str(args.ipc),
                   "--batch-syn", str(args.batch_syn), "--iterations", str(args.iterations), "--warmup", str(args.warmup),
                   "--init-steps", str(args.init_steps), "--device", args.device, "--buffers", args.buffers,
                   "--threads", str(args.threads)]
            if args.data_dir:
                cmd += ["--data-dir", args.data_dir]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                rows.append({"mode": mode, "syn_steps": steps, "error": (r.stderr.strip().splitlines() or ["?"])[-1]})
            else:
                rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), file=sys.stderr)
    growth = {}
    for mode in args.modes.split(","):
        peaks = {r["syn_steps"]: r["peak_extra_bytes"] for r in rows if r["mode"] == mode and "peak_extra_bytes" in r}
        lo, hi = min(peaks, default=None), max(peaks, default=None)
        if lo is not None and hi != lo and peaks[lo] > 0:
            growth[mode] = {"from_steps": lo, "to_steps": hi, "peak_ratio": round(peaks[hi] / peaks[lo], 3)}
    ratios = [r["estimate_ratio"] for r in rows if "estimate_ratio" in r]
    report = {
        "benchmark": "tm_memory", "dataset": args.dataset, "param": args.param, "ipc": args.ipc,
        "batch_syn": args.batch_syn, "iterations": args.iterations, "rows": rows, "growth": growth,
        "estimate_ratio_range": [min(ratios), max(ratios)] if ratios else None,
        "targets": {"checkpoint_and_tesla_growth_below": 1.5},
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    emit(report, args.out)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
