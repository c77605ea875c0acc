"""`gsdd eval`: train fresh networks on a distilled .gsd set (or a real-image baseline) and test them."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from gsdd_cli.cli.common import (
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
from gsdd_cli.cli.console import make_progress
from gsdd_cli.core.errors import ConfigError


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


def _pm(stats: dict) -> str:
    return f"{_pct(stats['mean'])} ± {_pct(stats['std'])}"


def _print_comparison(res) -> None:
    """The fair-metrics table: accuracies of the distilled set and its baselines, IOR, HLR, LRS."""
    m = res.metrics
    table = Table(title="fair comparison (DD-Ranking metrics; final accuracy, same protocol)")
    table.add_column("what")
    table.add_column("mean ± std %", justify="right")
    table.add_column("per run %", justify="right")

    def row(name: str, values: list[float], bold: bool = False) -> None:
        cell = _pm({"mean": statistics.fmean(values), "std": statistics.pstdev(values)})
        table.add_row(name, f"[bold]{cell}[/]" if bold else cell, " ".join(_pct(v) for v in values))

    row(f"distilled ({res.num_train_images} images)", res.final_accuracy)
    rnd = res.baselines.get("random-real")
    if rnd is not None:
        row(f"random real (IPC {rnd.extra.get('ipc')}, fresh subset per run)", rnd.final_accuracy)
    full = res.baselines.get("full")
    if full is not None:
        row(f"full training set ({full.num_train_images} images)", full.final_accuracy)
    elif m.get("full_accuracy_source") == "given":
        table.add_row("full training set (given)", _pct(m["full_accuracy"]), "")
    table.add_section()
    labels = {"ior": "IOR = distilled − random", "hlr": "HLR = full − distilled",
              "lrs": f"LRS (λ = {m.get('lrs_lambda', 0.5):g})"}
    for key in ("ior", "hlr", "lrs"):
        if key in m:
            row(labels[key], m[key]["per_run"], bold=key in ("ior", "lrs"))
    out.print(table)
    if "lrs" not in m:
        need = "--full-acc X or --full" if "ior" in m else "--vs-random"
        out.print(f"LRS needs both IOR and HLR: add {need}.", highlight=False)


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
    vs_random: Annotated[bool, typer.Option("--vs-random", help="Also train the same protocol on IPC random real images per class (IPC and transform from the file, a fresh subset per run) and report IOR = acc(distilled) − acc(random).")] = False,
    full_acc: Annotated[Optional[float], typer.Option("--full-acc", help="Accuracy (percent) of the same network trained on the full training set; reports HLR = full − distilled, and LRS with --vs-random.")] = None,
    full: Annotated[bool, typer.Option("--full", help="Train on the full training set under the same protocol to get the HLR reference (slow; or give --full-acc).")] = False,
    baseline: Annotated[Optional[str], typer.Option("--baseline", help="Evaluate real images instead of a file: random-real (needs --ipc or --like) or full.")] = None,
    like: Annotated[Optional[Path], typer.Option("--like", help="With --baseline: take dataset, IPC and transform from this .gsd file (a like-for-like baseline).")] = None,
    ipc: Annotated[Optional[int], typer.Option("--ipc", help="Images per class for --baseline random-real.")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Dataset name or path (required with --baseline unless --like; overrides the file's).")] = None,
    transform: Annotated[Optional[str], typer.Option("--transform", help="Baseline transform: zca, normalize or none (default: the dataset's; --like: the file's).")] = None,
    dsa_on: Annotated[bool, typer.Option("--dsa/--no-dsa", help="DSA augmentation on every training batch.")] = True,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Evaluate a distilled set: train fresh networks on it, test on the real test set.

    \b
    Fair metrics (DD-Ranking; docs/evaluation.md):
      --vs-random            IOR = acc(distilled) − acc(random real)
                             (IPC random real images per class)
      --full-acc X | --full  HLR = acc(full training set) − acc(distilled)
      both                   LRS, DD-Ranking's label-robust score
    A random-real baseline draws a fresh subset in every run (seeded
    from --seed and the run) and records the indices in --json.

    \b
    Examples:
      gsdd eval digits.gsd --vs-random --full-acc 97.5
      gsdd eval --baseline random-real --like digits.gsd
      gsdd eval --baseline random-real --dataset cifar10 --ipc 10
    """
    from gsdd_cli.evaluate import BASELINES, evaluate_baseline, evaluate_gsd, make_eval_config

    if file is not None and baseline is not None:
        raise ConfigError("give either a .gsd FILE or --baseline, not both")
    if file is None and baseline is None:
        raise ConfigError("nothing to evaluate: give a .gsd FILE or --baseline random-real|full --dataset NAME")
    if baseline is not None:
        if baseline not in BASELINES:
            raise ConfigError(f"unknown baseline {baseline!r}; valid: {', '.join(BASELINES)}")
        if vs_random or full or full_acc is not None:
            raise ConfigError("--vs-random, --full and --full-acc compare a .gsd FILE with baselines; "
                              "they do not apply to --baseline")
        if like is not None:
            if ipc is not None or transform is not None:
                raise ConfigError("--like takes IPC and transform from the file; drop --ipc/--transform")
        else:
            if dataset is None:
                raise ConfigError(f"--baseline {baseline} needs --dataset NAME (or a path to a .npz / image "
                                  "folder), or --like FILE.gsd")
            if baseline == "random-real" and ipc is None:
                raise ConfigError("--baseline random-real needs --ipc K (or --like FILE.gsd)")
        if ipc is not None and ipc < 1:
            raise ConfigError(f"--ipc must be at least 1, got {ipc}")
    else:
        if ipc is not None:
            raise ConfigError("--ipc only applies to --baseline random-real (a .gsd file has its own)")
        if transform is not None:
            raise ConfigError("--transform only applies to --baseline (a .gsd file names its transform)")
        if like is not None:
            raise ConfigError("--like only applies to --baseline (it takes the settings of a .gsd file)")
        if full and full_acc is not None:
            raise ConfigError("give either --full (train on the full set) or --full-acc X, not both")
        if full_acc is not None and not 1.0 < full_acc <= 100.0:
            raise ConfigError(f"--full-acc is a percentage in (1, 100], got {full_acc:g}",
                              hint="e.g. --full-acc 97.5 for 97.5 %")
    cfg = make_eval_config(arch=arch, runs=runs, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                           device=device, dsa=dsa_on)

    with make_progress(quiet) as progress:
        tasks: dict[tuple[str, int], int] = {}
        names = {"": "run", "distilled": "distilled", "random-real": "random real", "full": "full set"}

        def on_step(step) -> None:
            key = (step.phase, step.run)
            if key not in tasks:
                for t in tasks.values():
                    progress.update(t, visible=False)
                label = f"{names.get(step.phase, step.phase)} {step.run + 1}/{step.runs}"
                tasks[key] = progress.add_task(label, total=step.total, info="")
            info = f"loss {step.loss:.3f} train {100 * step.train_acc:.1f}%"
            if step.test_acc is not None:
                info += f" test {100 * step.test_acc:.1f}%"
            progress.update(tasks[key], completed=step.epoch, info=info)

        if baseline is not None:
            res = evaluate_baseline(dataset, baseline, ipc, cfg, data_dir=data_dir, transform=transform, like=like,
                                    on_step=on_step)
            shown_ipc = res.extra.get("ipc")
            title = (f"baseline {baseline}" + (f" (ipc {shown_ipc})" if baseline == "random-real" else "")
                     + f" on {res.dataset}" + (f", like {like}" if like is not None else ""))
        else:
            res = evaluate_gsd(file, cfg, data_dir=data_dir, backend=backend, on_step=on_step, dataset=dataset,
                               vs_random=vs_random, full=full,
                               full_accuracy=None if full_acc is None else full_acc / 100.0)
            title = f"{file}"
    if as_json:
        print_json(res.model_dump())
    else:
        _print_result(res, title)
        if res.metrics:
            _print_comparison(res)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
