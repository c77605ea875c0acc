"""`gsdd distill`: distil a dataset into Gaussian images with TM, DM or DC."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from pydantic import BaseModel, ConfigDict
from rich.table import Table

from gsdd_cli.cli.commands.experts import expert_progress
from gsdd_cli.cli.common import err, out, print_json
from gsdd_cli.cli.console import make_progress
from gsdd_cli.cli.options import command
from gsdd_cli.core.errors import ConfigError
from gsdd_cli.core.options import json_option, option, quiet_option
from gsdd_cli.data import load_dataset
from gsdd_cli.distill import DistillInterrupted, build_config
from gsdd_cli.distill import distill as run_distill
from gsdd_cli.distill.config import DistillConfig
from gsdd_cli.distill.experts import ensure_experts
from gsdd_cli.distill.runlog import check_run_outputs
from gsdd_cli.distill.memory import fmt_bytes


class DistillRun(BaseModel):
    """How this invocation runs (not part of the result, so not in OUT.config.json)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    config: Optional[str] = option(None, "YAML/JSON file of options (flags override it).")
    resume: bool = option(False, "Continue from OUT.ckpt (bit-for-bit the same result).")
    stop_after: Optional[int] = option(None, "Stop (with a checkpoint) after N iterations.", hidden=True, gt=0)
    quiet: bool = quiet_option()
    as_json: bool = json_option()


@command(DistillConfig, DistillRun, layered=(DistillConfig,))
def distill(flags: dict, run: DistillRun) -> None:
    """Distil DATASET into Gaussian (or pixel) images by trajectory (tm), distribution (dm) or gradient (dc) matching.

    Writes OUT, OUT.config.json (resolved settings) and OUT.log.jsonl (losses, timings, evals);
    --save-every and Ctrl-C write OUT.ckpt for --resume. TM without --buffers trains (or reuses)
    expert trajectories in a cache folder first. Every option can also be given in --config
    (keys are the option names); defaults marked "by dataset" follow docs/distill.md.

    Examples:
      gsdd distill digits --algo dm --ipc 1 --out digits.gsd
      gsdd distill digits --algo dm --ipc 1 --param pixel --out digits-pixel.gsd
      gsdd distill cifar10 --algo tm --out c10.gsd
      gsdd experts cifar10 --out buffers/ && gsdd distill cifar10 --algo tm --ipc 10 --buffers buffers/ --out c10.gsd
      gsdd distill imagenette --algo dc --ipc 1 --init nette-init.gsd --out nette-dc.gsd --save-every 500
    """
    dataset = flags.pop("dataset")
    resume, stop_after, config, as_json = run.resume, run.stop_after, run.config, run.as_json
    quiet = run.quiet
    silent = int(os.environ.get("RANK", "0") or 0) != 0  # under torchrun only rank 0 reports
    quiet = quiet or silent
    cfg = build_config(dataset, config_file=config, flags=flags)
    if cfg.out is None:
        raise ConfigError("no output file: give --out FILE.gsd (or `out:` in --config)")
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
            progress.update(main_task, completed=s.iteration, total=s.total,
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

    if result is None:  # a torchrun rank other than 0 (sre2l): rank 0 reports
        return
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
        table.add_row("TM memory", cfg.tm_memory + (f" (estimated peak {fmt_bytes(est)})" if est else ""))
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
    if result.log is not None:
        table.add_row("log", str(result.log))
    out.print(table)


def _cached_experts(cfg, quiet: bool, notify) -> Path:
    """TM without --buffers: train (or reuse) the cached experts, with a progress bar."""
    ds = load_dataset(cfg.dataset, cfg.data_dir)
    with make_progress(quiet) as progress:
        return ensure_experts(cfg, ds, notify=notify, on_step=expert_progress(progress))


def register(app: typer.Typer) -> None:
    app.command("distill")(distill)
