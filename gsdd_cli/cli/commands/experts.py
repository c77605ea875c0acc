"""`gsdd experts`: train the expert trajectories that trajectory matching (`--algo tm`) follows."""

from __future__ import annotations

import os

import typer
from rich.table import Table

from gsdd_cli.cli.common import out, print_json
from gsdd_cli.cli.console import make_progress
from gsdd_cli.cli.options import command
from gsdd_cli.core.options import OutputFlags
from gsdd_cli.distill.experts import train_experts
from gsdd_cli.distill.experts_config import ExpertsConfig


@command(ExpertsConfig, OutputFlags)
def experts(cfg: ExpertsConfig, flags: OutputFlags) -> None:
    """Train E networks on the real training set and record their parameters after every epoch.

    Re-running the command completes a folder (finished experts are skipped). Under
    `torchrun --nproc-per-node W gsdd experts ...` rank r trains experts r, r+W, ...

    Examples:
      gsdd experts digits --out buffers/digits
      gsdd experts cifar10 --num 100 --epochs 50 --out buffers/cifar10
    """
    silent = int(os.environ.get("RANK", "0") or 0) != 0  # under torchrun only rank 0 reports
    quiet = flags.quiet or silent
    with make_progress(quiet) as progress:
        def notify(msg: str) -> None:
            progress.console.print(f"[yellow]{msg}[/]", highlight=False, soft_wrap=True)

        result = train_experts(cfg, expert_progress(progress), notify=None if quiet else notify)
    summary = {
        "out": str(result.out), "trained": result.trained, "skipped": result.skipped,
        "test_acc": {str(k): round(v, 4) for k, v in sorted(result.test_acc.items())},
        "seconds": round(result.seconds, 3), "epochs": cfg.epochs, "num": cfg.num,
    }
    if silent:
        return
    if flags.as_json:
        print_json(summary)
        return
    table = Table(title=f"experts of {cfg.dataset} in {cfg.out} ({cfg.epochs} epochs each)")
    table.add_column("expert", justify="right")
    table.add_column("status")
    table.add_column("test acc", justify="right")
    for i in sorted(set(result.trained) | set(result.skipped)):
        acc = result.test_acc.get(i)
        table.add_row(str(i), "trained" if i in result.trained else "already complete",
                      f"{100 * acc:.2f} %" if acc is not None else "")
    out.print(table)
    out.print(f"{len(result.trained)} trained, {len(result.skipped)} already complete, {result.seconds:.1f} s")


def expert_progress(progress):
    """An ``on_step`` callback for train_experts that drives one bar (epochs of all experts)."""
    task = progress.add_task("experts", total=None, info="")

    def on_step(s) -> None:
        if progress.tasks[task].total is None:
            progress.update(task, total=s.total * s.epochs)
        acc = f" · test {100 * s.test_acc:.1f}%" if s.test_acc is not None else ""
        state = "already complete" if s.epoch == 0 else f"epoch {s.epoch}/{s.epochs} · loss {s.loss:.3f}"
        progress.update(task, advance=s.epochs if s.epoch == 0 else 1, info=f"expert {s.expert}: {state}{acc}")

    return on_step


def register(app: typer.Typer) -> None:
    app.command("experts")(experts)
