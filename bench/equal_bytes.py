#!/usr/bin/env python
"""Equal bytes, side by side: Gaussian vs pixel distilled sets vs random real images, one protocol.

For a dataset and an IPC budget (the bytes of IPC real fp32 images per class) this distils, for each
algorithm in --algos (DM by default; DC and TM as time allows), a Gaussian set (GSDD) and a pixel set
(the method's own pixel baseline) with the same seed, iterations, data, transform and DSA, then
evaluates every set and the random-real baseline (IPC real images per class) with the same protocol:
--eval-runs fresh ConvNets, --eval-epochs each, the same evaluation seed. It prints one JSON table:
accuracy mean ± std (final epoch; "best" is the test-selected one), bytes stored, images per class,
distillation and evaluation seconds.

  python bench/equal_bytes.py                                   # digits, IPC 1, DM: a few CPU minutes
  python bench/equal_bytes.py --algos dm,dc,tm                  # all three (TM trains 5 small experts)
  python bench/equal_bytes.py --dataset cifar10 --data-dir DIR --ipc 10 --iterations 2000 \\
      --init-steps 5000 --eval-epochs 1000 --eval-runs 5        # the CIFAR-10 pack on a GPU
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import emit  # noqa: E402


def _pct(v: float) -> float:
    return round(100 * v, 2)


def _row(name: str, algo: str | None, param: str | None, res, *, bytes_stored: int, per_class: int,
         distill_s: float | None, eval_s: float, extra: dict | None = None) -> dict:
    row = {"set": name, "algorithm": algo, "param": param,
           "acc_mean": _pct(res.mean), "acc_std": _pct(res.std), "acc": f"{_pct(res.mean):.2f} ± {_pct(res.std):.2f}",
           "best_mean": _pct(res.best_mean), "runs": res.runs, "bytes_stored": int(bytes_stored),
           "images_per_class": int(per_class), "distill_seconds": None if distill_s is None else round(distill_s, 1),
           "eval_seconds": round(eval_s, 1)}
    row.update(extra or {})
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--ipc", type=int, default=1)
    ap.add_argument("--algos", default="dm", help="comma-separated: dm, dc, tm")
    ap.add_argument("--iterations", type=int, default=None, help="distillation iterations (default: gsdd's)")
    ap.add_argument("--init-steps", type=int, default=None, help="Gaussian init fit steps (default: gsdd's)")
    ap.add_argument("--seed", type=int, default=0, help="distillation seed (both parameterizations)")
    ap.add_argument("--eval-runs", type=int, default=3)
    ap.add_argument("--eval-epochs", type=int, default=300)
    ap.add_argument("--eval-seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--buffers", default=None, help="TM experts (default: the cached ones, trained if missing)")
    ap.add_argument("--num-experts", type=int, default=None)
    ap.add_argument("--experts-epochs", type=int, default=None)
    ap.add_argument("--tm-memory", default="auto")
    ap.add_argument("--keep", default=None, help="folder to keep the distilled .gsd files in")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)

    from gsdd_cli.sets.budget import budget_bytes_per_class
    from gsdd_cli.data import dataset_info
    from gsdd_cli.distill import build_config, distill
    from gsdd_cli.evaluate import evaluate_baseline, evaluate_gsd, make_eval_config
    from gsdd_cli.sets.gsdfile import read_header

    t_start = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="equal-bytes-")
    folder = Path(args.keep or tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    ecfg = make_eval_config(runs=args.eval_runs, epochs=args.eval_epochs, seed=args.eval_seed, device=args.device)
    rows = []
    for algo in [a.strip() for a in args.algos.split(",") if a.strip()]:
        for param in ("gaussian", "pixel"):
            flags = {"algo": algo, "ipc": args.ipc, "param": param, "seed": args.seed, "device": args.device,
                     "data_dir": args.data_dir, "iterations": args.iterations, "out": str(folder / f"{algo}-{param}.gsd")}
            if param == "gaussian":
                flags["init_steps"] = args.init_steps
            if algo == "tm":
                flags.update(buffers=args.buffers, num_experts=args.num_experts, experts_epochs=args.experts_epochs,
                             tm_memory=args.tm_memory)
            cfg = build_config(args.dataset, flags=flags)
            t0 = time.perf_counter()
            result = distill(cfg, notify=lambda m: print(m, file=sys.stderr))
            distill_s = time.perf_counter() - t0
            if algo == "tm" and args.buffers is None:
                args.buffers = result.config.buffers  # the Gaussian run trained them; the pixel run reuses them
            t0 = time.perf_counter()
            res = evaluate_gsd(cfg.out, ecfg, data_dir=args.data_dir)
            h = read_header(cfg.out)
            extra = {"iterations": result.iterations, "final_loss": round(result.final_loss, 5),
                     "lr": cfg.lr if param == "gaussian" else cfg.lr_img, "eval_lr": res.lr}
            if param == "gaussian":
                extra.update(points_per_image=h.points_per_image, init_steps=cfg.init_steps)
            if algo == "tm":
                extra.update(tm_memory=result.config.tm_memory, syn_lr=result.syn_lr)
            rows.append(_row(f"{algo}-{param}", algo, param, res, bytes_stored=h.payload_bytes, per_class=h.gpc,
                             distill_s=distill_s, eval_s=time.perf_counter() - t0, extra=extra))
            print(json.dumps(rows[-1]), file=sys.stderr)
    t0 = time.perf_counter()
    res = evaluate_baseline(args.dataset, "random-real", args.ipc, ecfg, data_dir=args.data_dir)
    k, c, h, w = dataset_info(args.dataset, args.data_dir)
    budget = budget_bytes_per_class(args.ipc, c, h, w) * k  # IPC real fp32 images per class
    rows.append(_row("random-real", None, "pixel", res, bytes_stored=budget, per_class=args.ipc, distill_s=None,
                     eval_s=time.perf_counter() - t0))
    report = {
        "benchmark": "equal_bytes", "dataset": args.dataset, "ipc": args.ipc, "budget_bytes": budget,
        "protocol": {"distill_seed": args.seed, "iterations": args.iterations or "gsdd default",
                     "eval_arch": ecfg.arch, "eval_runs": args.eval_runs, "eval_epochs": args.eval_epochs,
                     "eval_seed": args.eval_seed, "accuracy": "final epoch, mean ± std over eval runs (%)"},
        "rows": rows,
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    emit(report, args.out)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
