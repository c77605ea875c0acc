"""`gsdd distill`: distil a dataset into Gaussian images with TM, DM or DC."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from gsdd_cli.cli.common import BackendOpt, DataDirOpt, JsonOpt, QuietOpt, err, handles_errors, out, print_json
from gsdd_cli.cli.console import make_progress

HELP_DEFAULT = "default: the spec's value for the dataset/IPC"


@handles_errors
def distill(
    dataset: str = typer.Argument(..., help="Dataset name (digits, cifar10, cifar100, imagenette, ...) or path."),
    algo: Optional[str] = typer.Option(None, "--algo", help="tm (trajectory), dm (distribution) or dc (gradient matching)."),
    ipc: Optional[int] = typer.Option(None, "--ipc", help="Budget: the bytes of IPC real fp32 images per class (10)."),
    param: Optional[str] = typer.Option(None, "--param", help="gaussian (GSDD: GPC Gaussian images per class) or pixel (IPC plain images per class, the pixel baseline)."),
    lr_img: Optional[float] = typer.Option(None, "--lr-img", help="Pixel sets: SGD lr of the images in network space (default: the published one, TM 100-1000, DM 1, DC 0.1)."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="Output .gsd file (config, log and checkpoint go next to it)."),
    gpc: Optional[int] = typer.Option(None, "--gpc", help=f"Gaussian images per class ({HELP_DEFAULT})."),
    points: Optional[int] = typer.Option(None, "--points", help="Gaussians per image (GPC follows from the budget)."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from this .gsd (from `gsdd init`) instead of fitting."),
    init_steps: Optional[int] = typer.Option(None, "--init-steps", help="Fitting steps when no --init is given (50 000; digits 200)."),
    init_lr: Optional[float] = typer.Option(None, "--init-lr", help="Fitting lr (0.1 at ≤32 px, 0.01 above)."),
    init_first: Optional[bool] = typer.Option(None, "--init-first", help="Fit the first GPC images per class instead of a random choice."),
    iterations: Optional[int] = typer.Option(None, "--iterations", "-n", help=f"Distillation iterations ({HELP_DEFAULT})."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Adam lr of the Gaussian parameters (1e-3)."),
    boundary_lambda: Optional[float] = typer.Option(None, "--boundary-lambda", help="Weight of the boundary loss (0.1)."),
    model: Optional[str] = typer.Option(None, "--model", help="Distillation network (convnet: depth by resolution)."),
    transform: Optional[str] = typer.Option(None, "--transform", help="zca, normalize or none (default: zca for CIFAR TM, else normalize)."),
    batch_real: Optional[int] = typer.Option(None, "--batch-real", help=f"DM/DC real images per class and step ({HELP_DEFAULT})."),
    batch_syn: Optional[int] = typer.Option(None, "--batch-syn", help=f"Synthetic batch (TM: per student step; DM/DC: per class, 0 = all) ({HELP_DEFAULT})."),
    dsa: Optional[bool] = typer.Option(None, "--dsa/--no-dsa", help="DSA augmentation (on)."),
    outer_loop: Optional[int] = typer.Option(None, "--outer-loop", help="DC outer steps per iteration (by IPC: 1→1, 10→10, 50→50)."),
    inner_loop: Optional[int] = typer.Option(None, "--inner-loop", help="DC network epochs between outer steps (1→1, 10→50, 50→10)."),
    lr_net: Optional[float] = typer.Option(None, "--lr-net", help="DC inner network lr (0.01)."),
    buffers: Optional[Path] = typer.Option(None, "--buffers", help="TM: folder of expert trajectories from `gsdd experts`."),
    syn_steps: Optional[int] = typer.Option(None, "--syn-steps", help=f"TM student steps per iteration ({HELP_DEFAULT})."),
    expert_epochs: Optional[int] = typer.Option(None, "--expert-epochs", help="TM target = start + this many expert epochs (2)."),
    max_start_epoch: Optional[int] = typer.Option(None, "--max-start-epoch", help=f"TM start epoch drawn from [0, this) ({HELP_DEFAULT})."),
    lr_lr: Optional[float] = typer.Option(None, "--lr-lr", help=f"TM lr of the learned student lr α ({HELP_DEFAULT})."),
    lr_init: Optional[float] = typer.Option(None, "--lr-init", help="TM initial α (1e-2)."),
    tm_memory: Optional[str] = typer.Option(None, "--tm-memory", help="TM unroll memory: auto (full if it fits, else checkpoint), full, checkpoint (exact, constant in syn-steps) or tesla (approximate, constant)."),
    num_experts: Optional[int] = typer.Option(None, "--num-experts", help="TM without --buffers: experts to train into the cache (100; digits 5)."),
    experts_epochs: Optional[int] = typer.Option(None, "--experts-epochs", help="TM without --buffers: epochs per cached expert (50; digits 10)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed (runs are reproducible; 0)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1 ..."),
    backend: BackendOpt = None,  # type: ignore[assignment]
    data_dir: DataDirOpt = None,
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Evaluate every N iterations (0 = never)."),
    eval_epochs: Optional[int] = typer.Option(None, "--eval-epochs", help="Epochs of those evaluations (300; digits 100)."),
    eval_runs: Optional[int] = typer.Option(None, "--eval-runs", help="Networks per evaluation (1)."),
    save_every: Optional[int] = typer.Option(None, "--save-every", help="Write a checkpoint every N iterations (0 = only on Ctrl-C)."),
    log_every: Optional[int] = typer.Option(None, "--log-every", help="Write an iteration record to the log every N iterations (1)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML/JSON file of options (flags override it)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT.ckpt (bit-for-bit the same result)."),
    stop_after: Optional[int] = typer.Option(None, "--stop-after", hidden=True, help="Stop (with a checkpoint) after N iterations."),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Distil DATASET into Gaussian (or pixel) images by trajectory (tm), distribution (dm) or gradient (dc) matching.

    Writes OUT, OUT.config.json (resolved settings) and OUT.log.jsonl (losses, timings, evals);
    --save-every and Ctrl-C write OUT.ckpt for --resume. TM without --buffers trains (or reuses)
    expert trajectories in a cache folder first.

    Examples:
      gsdd distill digits --algo dm --ipc 1 --out digits.gsd
      gsdd distill digits --algo dm --ipc 1 --param pixel --out digits-pixel.gsd
      gsdd distill cifar10 --algo tm --out c10.gsd
      gsdd experts cifar10 --out buffers/ && gsdd distill cifar10 --algo tm --ipc 10 --buffers buffers/ --out c10.gsd
      gsdd distill imagenette --algo dc --ipc 1 --init nette-init.gsd --out nette-dc.gsd --save-every 500
    """
    from gsdd_cli.distill import DistillInterrupted, build_config
    from gsdd_cli.distill import distill as run_distill
    from gsdd_cli.distill.loop import check_run_outputs

    flags = {
        "algo": algo, "ipc": ipc, "param": param, "lr_img": lr_img, "tm_memory": tm_memory,
        "num_experts": num_experts, "experts_epochs": experts_epochs,
        "out": str(out_path) if out_path else None, "gpc": gpc, "points": points,
        "init": str(init) if init else None, "init_steps": init_steps, "init_lr": init_lr, "init_first": init_first,
        "iterations": iterations, "lr": lr, "boundary_lambda": boundary_lambda, "model": model,
        "transform": transform, "batch_real": batch_real, "batch_syn": batch_syn, "dsa": dsa,
        "outer_loop": outer_loop, "inner_loop": inner_loop, "lr_net": lr_net,
        "buffers": str(buffers) if buffers else None, "syn_steps": syn_steps, "expert_epochs": expert_epochs,
        "max_start_epoch": max_start_epoch, "lr_lr": lr_lr, "lr_init": lr_init, "seed": seed, "device": device,
        "backend": backend, "data_dir": str(data_dir) if data_dir else None, "eval_every": eval_every,
        "eval_epochs": eval_epochs, "eval_runs": eval_runs, "save_every": save_every, "log_every": log_every,
    }
    silent = int(os.environ.get("RANK", "0") or 0) != 0  # under torchrun only rank 0 reports
    quiet = quiet or silent
    cfg = build_config(dataset, config_file=config, flags=flags)
    if cfg.out is None:
        from gsdd_cli.core.errors import ConfigError

        raise ConfigError("no output file: give --out FILE.gsd (or `out:` in --config)")
    if stop_after is not None and stop_after < 1:
        from gsdd_cli.core.errors import ConfigError

        raise ConfigError(f"--stop-after must be positive, got {stop_after}")
    check_run_outputs(cfg, {"--config": config})  # before any work (distill() checks the rest again)

    def notify(msg: str) -> None:
        if not silent:
            err.print(f"[yellow]{msg}[/]", highlight=False, soft_wrap=True)

    if cfg.algo == "tm" and not cfg.buffers:
        cfg = cfg.model_copy(update={"buffers": str(_cached_experts(cfg, quiet, notify))})

    with make_progress(quiet) as progress:
        init_task = None
        main_task = progress.add_task(f"{cfg.algo} distill", total=cfg.iterations, info="", start=False)

        def on_init(s) -> None:
            nonlocal init_task
            if init_task is None:
                init_task = progress.add_task("init fit", total=s.total, info="")
            progress.update(init_task, completed=s.step, info=f"PSNR {s.psnr:.2f} dB")

        last_eval = ""

        def on_step(s) -> None:
            nonlocal last_eval
            if not progress.tasks[main_task].started:
                progress.start_task(main_task)
                progress.update(main_task, completed=s.iteration - 1)
            if s.eval_mean is not None:
                last_eval = f" · acc {100 * s.eval_mean:.1f}%"
            extra = f" · α {s.metrics['syn_lr']:.4f}" if "syn_lr" in s.metrics else ""
            progress.update(main_task, completed=s.iteration,
                            info=f"loss {s.loss:.4f}{extra} · render {100 * s.render_share:.0f}%{last_eval}")

        try:
            result = run_distill(cfg, on_step, on_init_step=on_init, resume=resume, stop_after=stop_after,
                                 notify=notify)
        except DistillInterrupted as e:
            progress.stop()
            if e.checkpoint is not None:
                err.print(f"interrupted after iteration {e.iteration}; checkpoint saved to {e.checkpoint}")
                err.print("resume with the same command plus --resume")
            else:
                err.print(f"interrupted after iteration {e.iteration}; no checkpoint could be saved")
            raise typer.Exit(130) from None

    cfg = result.config
    summary = {
        "out": str(result.out), "algorithm": cfg.algo, "dataset": cfg.dataset, "ipc": cfg.ipc, "param": cfg.param,
        "gpc": cfg.gpc, "points": cfg.points, "tm_memory": cfg.tm_memory if cfg.algo == "tm" else None,
        "buffers": cfg.buffers, "iterations": result.iterations, "seconds": round(result.seconds, 3),
        "final_loss": result.final_loss, "syn_lr": result.syn_lr, "evals": result.evals,
        "interrupted": result.interrupted, "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "log": str(result.log), "init": {k: v for k, v in result.init.items() if k != "indices"},
    }
    if silent:
        return
    if as_json:
        print_json(summary)
        return
    if result.interrupted:
        out.print(f"stopped after iteration {result.iterations}; checkpoint {result.checkpoint} (continue with --resume)")
        return
    table = Table(title=f"{cfg.algo.upper()} distillation of {cfg.dataset}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("output", str(result.out))
    table.add_row("IPC", f"{cfg.ipc} (budget: the bytes of {cfg.ipc} real fp32 image(s) per class)")
    if cfg.param == "pixel":
        table.add_row("images", f"{cfg.gpc} pixel image(s) per class (fp32)")
    else:
        table.add_row("images", f"{cfg.gpc} per class × {cfg.points} Gaussians")
    if cfg.algo == "tm":
        est = result.memory.get("estimate_bytes", {}).get(cfg.tm_memory)
        table.add_row("TM memory", cfg.tm_memory + (f" (estimated peak {_fmt_bytes(est)})" if est else ""))
        table.add_row("experts", str(cfg.buffers))
    if "psnr_mean" in result.init:
        table.add_row("init PSNR", f"{result.init['psnr_mean']:.2f} dB ({result.init.get('steps')} steps)")
    table.add_row("iterations", f"{result.iterations} in {result.seconds:.1f} s")
    table.add_row("final loss", f"{result.final_loss:.5f}" if result.final_loss is not None else "unknown")
    if result.syn_lr is not None:
        table.add_row("learned lr α", f"{result.syn_lr:.5f}")
    if result.evals:
        ev = result.evals[-1]
        table.add_row("last eval", f"{100 * ev['mean']:.2f} ± {100 * ev['std']:.2f} % ({ev['epochs']} epochs, {ev['runs']} run(s))")
    table.add_row("log", str(result.log))
    out.print(table)


def _fmt_bytes(n: int) -> str:
    from gsdd_cli.distill.memory import fmt_bytes

    return fmt_bytes(n)


def _cached_experts(cfg, quiet: bool, notify) -> Path:
    """TM without --buffers: train (or reuse) the cached experts, with a progress bar."""
    from gsdd_cli.data import load_dataset
    from gsdd_cli.distill.experts import ensure_experts

    from gsdd_cli.cli.commands.experts import expert_progress

    ds = load_dataset(cfg.dataset, cfg.data_dir)
    with make_progress(quiet) as progress:
        return ensure_experts(cfg, ds, notify=notify, on_step=expert_progress(progress))


def register(app: typer.Typer) -> None:
    app.command("distill")(distill)
