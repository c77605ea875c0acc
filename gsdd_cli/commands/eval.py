"""`gsdd eval`: train fresh networks on a distilled .gsd set (or a real-image baseline) and test them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from gsdd_cli.commands._common import (
    BackendOpt,
    DataDirOpt,
    DeviceOpt,
    JsonOpt,
    QuietOpt,
    SeedOpt,
    handles_errors,
    out,
    print_json,
)
from gsdd_cli.console import make_progress
from gsdd_cli.errors import ConfigError


def _pct(v: float) -> str:
    return f"{100 * v:.2f}"


def _print_result(res, title: str) -> None:
    table = Table(title=title)
    table.add_column("run", justify="right")
    table.add_column("final acc %", justify="right")
    table.add_column("best acc % (test-selected)", justify="right")
    table.add_column("best at pass", justify="right")
    table.add_column("train s", justify="right")
    for i, (f, b, e, s) in enumerate(zip(res.final_accuracy, res.best_accuracy, res.best_epoch, res.train_seconds)):
        table.add_row(str(i + 1), _pct(f), _pct(b), str(e), f"{s:.1f}")
    table.add_section()
    table.add_row("mean ± std", f"[bold]{_pct(res.mean)} ± {_pct(res.std)}[/]",
                  f"{_pct(res.best_mean)} ± {_pct(res.best_std)}", "", f"{res.time_s:.1f}")
    out.print(table)
    out.print(
        f"dataset {res.dataset} | arch {res.arch} | {res.optimizer} lr {res.lr:g} ({res.lr_source}) | "
        f"batch {res.batch_size} | epochs {res.epochs} | runs {res.runs} | seed {res.seed} | "
        f"transform {res.transform} | train images {res.num_train_images} | device {res.device}",
        highlight=False, soft_wrap=True,
    )


@handles_errors
def eval_cmd(
    file: Annotated[Optional[Path], typer.Argument(help="The distilled .gsd file to evaluate.")] = None,
    arch: Annotated[str, typer.Option("--arch", help="Network: convnet (default), convnetd1..d6, alexnet, vgg11, resnet18, resnet18bn, vit.")] = "convnet",
    runs: Annotated[Optional[int], typer.Option("--runs", help="Networks to train (default 5; 3 for cross-architecture).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs per network (MTT protocol: 1000).")] = 1000,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Learning rate (default: the file's learned lr for TM, else 0.01; cross-arch: per architecture).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Batch size (default 256 for TM files, else 128).")] = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    backend: BackendOpt = "auto",
    baseline: Annotated[Optional[str], typer.Option("--baseline", help="Evaluate real images instead of a file: random-real (needs --ipc) or full.")] = None,
    ipc: Annotated[Optional[int], typer.Option("--ipc", help="Images per class for --baseline random-real.")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Dataset name or path (required with --baseline; overrides the file's).")] = None,
    transform: Annotated[Optional[str], typer.Option("--transform", help="Baseline transform: zca, normalize or none (default: the dataset's).")] = None,
    dsa_on: Annotated[bool, typer.Option("--dsa/--no-dsa", help="DSA augmentation on every training batch.")] = True,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Evaluate a distilled set: train fresh networks on it, test on the real test set."""
    from gsdd_cli.evaluate import BASELINES, evaluate_baseline, evaluate_gsd, make_eval_config

    if file is not None and baseline is not None:
        raise ConfigError("give either a .gsd FILE or --baseline, not both")
    if file is None and baseline is None:
        raise ConfigError("nothing to evaluate: give a .gsd FILE or --baseline random-real|full --dataset NAME")
    if baseline is not None:
        if baseline not in BASELINES:
            raise ConfigError(f"unknown baseline {baseline!r}; valid: {', '.join(BASELINES)}")
        if dataset is None:
            raise ConfigError(f"--baseline {baseline} needs --dataset NAME (or a path to a .npz / image folder)")
        if baseline == "random-real" and ipc is None:
            raise ConfigError("--baseline random-real needs --ipc K")
        if ipc is not None and ipc < 1:
            raise ConfigError(f"--ipc must be at least 1, got {ipc}")
    else:
        if ipc is not None:
            raise ConfigError("--ipc only applies to --baseline random-real (a .gsd file has its own)")
        if transform is not None:
            raise ConfigError("--transform only applies to --baseline (a .gsd file names its transform)")
    cfg = make_eval_config(arch=arch, runs=runs, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                           device=device, dsa=dsa_on)

    with make_progress(quiet) as progress:
        tasks: dict[int, int] = {}

        def on_step(step) -> None:
            if step.run not in tasks:
                for t in tasks.values():
                    progress.update(t, visible=False)
                tasks[step.run] = progress.add_task(f"run {step.run + 1}/{step.runs}", total=step.total, info="")
            info = f"loss {step.loss:.3f} train {100 * step.train_acc:.1f}%"
            if step.test_acc is not None:
                info += f" test {100 * step.test_acc:.1f}%"
            progress.update(tasks[step.run], completed=step.epoch, info=info)

        if baseline is not None:
            res = evaluate_baseline(dataset, baseline, ipc, cfg, data_dir=data_dir, transform=transform,
                                    on_step=on_step)
            title = f"baseline {baseline}" + (f" (ipc {ipc})" if ipc else "") + f" on {res.dataset}"
        else:
            res = evaluate_gsd(file, cfg, data_dir=data_dir, backend=backend, on_step=on_step, dataset=dataset)
            title = f"{file}"
    if as_json:
        print_json(res.model_dump())
    else:
        _print_result(res, title)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
