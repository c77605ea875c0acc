#!/usr/bin/env python3
"""ImageNet-1K at 224²: time the steps of teacher-guided distillation on this device, project the hours.

Measured here, on one device, side by side in one run (median of ``--reps`` after ``--warmup``;
CUDA synchronised before each clock read), each on a batch of ``--batch`` images at 3×224×224:

* ``teacher_fwd_bwd``: a ResNet-18 teacher (torchvision's architecture, the default ``--teacher``;
  the time does not depend on the weights) in eval mode, forward and backward to its input, with
  the recovery loss — cross-entropy plus SRe2L's BatchNorm statistic matching (for every BN layer,
  ‖μ_batch − μ_running‖₂ + ‖σ²_batch − σ²_running‖₂, read by forward hooks);
* ``pixel_recover_step``: SRe2L's own recovery step on IPC pixel images (random-resized crop and
  flip, the teacher with the loss above, Adam with betas (0.5, 0.9));
* per IPC 1/10/50, with that budget's GPC and Gaussians per image (``gsdd budget --dataset
  imagenet1k``): ``render_fwd`` and ``render_fwd_bwd`` of the Gaussian images (gsdd's rasterizer,
  the ``auto`` backend), and ``recover_step`` = the whole recovery step: render, random-resized
  crop and flip, teacher forward/backward with the loss above, rasterizer backward, Adam step;
* ``eval_step``: one soft-label evaluation step — teacher forward without gradients, a ResNet-18
  student forward/backward on the KL loss with temperature, AdamW step — on decoded images (the
  per-IPC ``render_fwd`` is added when the set is rendered batch by batch).

Projections (hours) for IPC 1/10/50 on 1, 8 and 64 devices of this kind, for Gaussians (GPC images)
and for pixels (IPC images, SRe2L's own setting): recovery = images × ``--iterations`` (SRe2L: 1 000
per image) × per-image step time; evaluation = ``--epochs`` (300) × images × per-image step time;
``gsdd init`` = images × ``--init-steps`` × per-image fit step (render forward+backward). Devices
scale ideally (recovery and init units are disjoint and never communicate; evaluation's DDP
gradient all-reduce is not included) — the JSON says so. Nothing is extrapolated from another
device: run it where you will train.

  python3 bench/imagenet_scale.py --device cpu --batch 4 --reps 2 --out out/in1k_cpu.json
  python3 bench/imagenet_scale.py --device cuda --batch 64 --out out/in1k_gpu.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import emit  # noqa: E402

from gsdd_cli.distill.sre2l import R_BN, BNMatch, augment, jitter_for  # noqa: E402
from gsdd_cli.sets.budget import make_plan, recommended_gpc  # noqa: E402
from gsdd_cli.sets.fit import DEFAULT_INIT_STEPS, random_start  # noqa: E402

RES, CLASSES = 224, 1000


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn, device, reps, warmup):
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


def resnet18(device):
    import torchvision

    net = torchvision.models.resnet18(weights=None, num_classes=CLASSES).to(device)
    return net.to(memory_format=torch.channels_last) if device.type == "cuda" else net


def bn_match(net):
    """gsdd's SRe2L BN loss (distill/sre2l.py: BNMatch, first layer ×10) on a plain torchvision net."""
    shim = types.SimpleNamespace(identity={"arch": "resnet18"}, bn_layers=lambda: [
        (n, m) for n, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)])
    return BNMatch(shim)


def measure(args, device):
    b = args.batch
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
    labels = torch.arange(b, device=device) % CLASSES
    teacher = resnet18(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    bn = bn_match(teacher)
    gen = torch.Generator().manual_seed(0)
    jitter = jitter_for(RES)
    res = {}

    x = torch.rand(b, 3, RES, RES, device=device, requires_grad=True)

    def teacher_fwd_bwd():
        loss = F.cross_entropy(teacher((x - mean) / std), labels) + R_BN * bn.take()
        torch.autograd.grad(loss, x)

    res["teacher_fwd_bwd_ms"] = time_ms(teacher_fwd_bwd, device, args.reps, args.warmup)

    pix = torch.nn.Parameter(torch.rand(b, 3, RES, RES, device=device))
    pix_opt = torch.optim.Adam([pix], lr=0.25, betas=(0.5, 0.9))  # SRe2L's pixel recovery optimizer

    def pixel_recover_step():
        xa = augment(pix, gen, jitter)
        loss = F.cross_entropy(teacher((xa - mean) / std), labels) + R_BN * bn.take()
        pix_opt.zero_grad(set_to_none=True)
        loss.backward()
        pix_opt.step()

    res["pixel_recover_step_ms"] = time_ms(pixel_recover_step, device, args.reps, args.warmup)

    student = resnet18(device).train()
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3, weight_decay=0.01)
    xe = torch.rand(b, 3, RES, RES, device=device)
    temperature = 4.0

    def eval_step():
        xa = augment(xe, gen, jitter)
        xn = (xa - mean) / std
        with torch.no_grad():
            soft = F.softmax(teacher(xn) / temperature, dim=1)
            bn.losses = []
        logp = F.log_softmax(student(xn) / temperature, dim=1)
        loss = F.kl_div(logp, soft, reduction="batchmean") * temperature**2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    res["eval_step_ms"] = time_ms(eval_step, device, args.reps, args.warmup)

    res["per_ipc"] = {}
    for ipc in args.ipc:
        gpc = recommended_gpc(ipc, RES, RES, 3, CLASSES, "sre2l")
        plan = make_plan(ipc, RES, RES, 3, CLASSES, gpc=gpc)
        imgs = random_start(b, plan.points, 3, RES, RES, torch.arange(b) % CLASSES, seed=0).to(device)
        gaussian_opt = torch.optim.Adam(imgs.param_groups(0.01))
        v = torch.randn(b, 3, RES, RES, device=device)

        def render_fwd():
            with torch.no_grad():
                imgs.render(backend="auto")

        def render_fwd_bwd():
            out = imgs.render(backend="auto")
            torch.autograd.grad((out * v).sum(), [imgs.xy, imgs.cholesky, imgs.rgb, imgs.opacity])

        def recover_step():
            out = imgs.render(backend="auto")
            xa = augment(out, gen, jitter)
            loss = F.cross_entropy(teacher((xa - mean) / std), labels) + R_BN * bn.take()
            gaussian_opt.zero_grad(set_to_none=True)
            loss.backward()
            gaussian_opt.step()

        r = {"gpc": plan.gpc, "points": plan.points, "images": plan.num_images, "bytes": plan.used_bytes}
        r["render_fwd_ms"] = time_ms(render_fwd, device, args.reps, args.warmup)
        r["render_fwd_bwd_ms"] = time_ms(render_fwd_bwd, device, args.reps, args.warmup)
        r["recover_step_ms"] = time_ms(recover_step, device, args.reps, args.warmup)
        res["per_ipc"][str(ipc)] = r
    return res


def project(res, args):
    b = args.batch
    hours = {}
    for ipc, r in res["per_ipc"].items():
        ipc_i = int(ipc)
        g_images, p_images = r["images"], ipc_i * CLASSES
        per = {
            "gaussian_recover_h": g_images * args.iterations * r["recover_step_ms"] / b / 3.6e6,
            "gaussian_eval_rendered_once_h": args.epochs * g_images * res["eval_step_ms"] / b / 3.6e6,
            "gaussian_eval_rendered_per_batch_h": args.epochs * g_images * (res["eval_step_ms"] + r["render_fwd_ms"])
            / b / 3.6e6,
            "gaussian_init_h": g_images * args.init_steps * r["render_fwd_bwd_ms"] / b / 3.6e6,
            "pixel_recover_h": p_images * args.iterations * res["pixel_recover_step_ms"] / b / 3.6e6,
            "pixel_eval_h": args.epochs * p_images * res["eval_step_ms"] / b / 3.6e6,
        }
        hours[ipc] = {f"{n}_devices": {k: round(v / n, 3) for k, v in per.items()} for n in args.devices}
    return hours


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=None, help="images per step (default 64 on cuda, 4 on cpu)")
    ap.add_argument("--ipc", default="1,10,50")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=1000, help="recovery iterations per image (SRe2L: 1 000)")
    ap.add_argument("--epochs", type=int, default=300, help="evaluation epochs (SRe2L/RDED: 300)")
    ap.add_argument("--init-steps", type=int, default=DEFAULT_INIT_STEPS)
    ap.add_argument("--devices", default="1,8,64")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    args.batch = args.batch or (64 if device.type == "cuda" else 4)
    args.ipc = [int(s) for s in args.ipc.split(",") if s.strip()]
    args.devices = [int(s) for s in args.devices.split(",") if s.strip()]
    torch.manual_seed(0)
    t0 = time.perf_counter()
    res = measure(args, device)
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or 'x86_64'})",
        "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "torch": torch.__version__,
        "load_average": os.getloadavg(), "batch": args.batch, "resolution": RES, "classes": CLASSES,
        "reps": args.reps, "measured": res, "assumptions": {
            "recovery_iterations_per_image": args.iterations, "eval_epochs": args.epochs,
            "init_steps": args.init_steps, "scaling": "ideal over devices (no communication time)",
            "per_image_time": "step time / batch (the step is linear in the batch at these sizes)"},
        "projected_hours": project(res, args), "seconds": round(time.perf_counter() - t0, 1),
    }
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
