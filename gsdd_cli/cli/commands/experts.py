"""`gsdd experts`: train the expert trajectories that trajectory matching (`--algo tm`) follows."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from gsdd_cli.cli.common import DataDirOpt, DeviceOpt, JsonOpt, QuietOpt, handles_errors, out, print_json
from gsdd_cli.cli.console import make_progress


@handles_errors
def experts(
    dataset: str = typer.Argument(..., help="Dataset name (digits, cifar10, cifar100, imagenette, ...) or path."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for the trajectories (expert_0000.safetensors, manifest.json)."),
    num: Optional[int] = typer.Option(None, "--num", "--num-experts", help="Number of experts (spec: 100; digits: 5). Under torchrun spell it --num-experts (torchrun takes --num for its own --numa-binding)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs per expert (spec: 50; digits: 10)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="SGD lr (0.01)."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Batch size (256)."),
    model: Optional[str] = typer.Option(None, "--model", help="Network (convnet: the distillation network)."),
    transform: Optional[str] = typer.Option(None, "--transform", help="zca, normalize or none (default: zca for CIFAR, else normalize)."),
    dsa: Optional[bool] = typer.Option(None, "--dsa/--no-dsa", help="DSA augmentation on every batch (on)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed (expert i is seeded from (seed, i); 0)."),
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Train E networks on the real training set and record their parameters after every epoch.

    Re-running the command completes a folder (finished experts are skipped). Under
    `torchrun --nproc-per-node W gsdd experts ...` rank r trains experts r, r+W, ...

    Examples:
      gsdd experts digits --out buffers/digits
      gsdd experts cifar10 --num 100 --epochs 50 --out buffers/cifar10
    """
    from gsdd_cli.distill.experts import make_experts_config, train_experts

    cfg = make_experts_config(
        dataset=dataset, out=str(out_dir), num=num, epochs=epochs, lr=lr, batch=batch, model=model,
        transform=transform, dsa=dsa, seed=seed, device=device, data_dir=str(data_dir) if data_dir else None,
    )
    silent = int(os.environ.get("RANK", "0") or 0) != 0  # under torchrun only rank 0 reports
    quiet = quiet or silent
    with make_progress(quiet) as progress:
        result = train_experts(cfg, expert_progress(progress))
    summary = {
        "out": str(result.out), "trained": result.trained, "skipped": result.skipped,
        "test_acc": {str(k): round(v, 4) for k, v in sorted(result.test_acc.items())},
        "seconds": round(result.seconds, 3), "epochs": cfg.epochs, "num": cfg.num,
    }
    if silent:
        return
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"experts of {dataset} in {out_dir} ({cfg.epochs} epochs each)")
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
