"""`gsdd eval`: train fresh networks on a distilled .gsd set (or a real-image baseline) and test them."""

from __future__ import annotations

import statistics
from typing import Literal, Optional

import typer
from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from rich.table import Table

from gsdd_cli.cli.common import out, print_json
from gsdd_cli.cli.console import make_progress
from gsdd_cli.cli.options import command
from gsdd_cli.core.options import OutputFlags, backend_option, data_dir_option, finite, option
from gsdd_cli.data.transforms import TRANSFORM_KINDS
from gsdd_cli.evaluate import evaluate_baseline, evaluate_gsd
from gsdd_cli.evaluate.config import BASELINES, EvalConfig
from gsdd_cuda import BACKENDS


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


def _print_comparison(res) -> None:
    """The fair-metrics table: accuracies of the distilled set and its baselines, IOR, HLR, LRS."""
    m = res.metrics
    table = Table(title="fair comparison (DD-Ranking metrics; final accuracy, same protocol)")
    table.add_column("what")
    table.add_column("mean ± std %", justify="right")
    table.add_column("per run %", justify="right")

    def row(name: str, values: list[float], bold: bool = False, scale: float = 100.0, fmt: str = ".2f") -> None:
        # accuracies are fractions (scale 100); IOR and HLR already points, LRS a plain score (scale 1)
        mean, std = scale * statistics.fmean(values), scale * statistics.pstdev(values)
        cell = f"{mean:{fmt}} ± {std:{fmt}}"
        table.add_row(name, f"[bold]{cell}[/]" if bold else cell, " ".join(f"{scale * v:{fmt}}" for v in values))

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
    lam = f"λ = {m.get('lrs_lambda', 0.5):g}"
    labels = {"ior": "IOR = distilled − random (points)", "hlr": "HLR = full − distilled (points)",
              "lrs": f"LRS (DD-Ranking's, from points; {lam}; not %)",
              "lrs_paper": f"LRS from fractions (lrs_paper; {lam}; not %)"}
    for key in ("ior", "hlr", "lrs", "lrs_paper"):
        if key in m:
            score = key.startswith("lrs")
            row(labels[key], m[key]["per_run"], bold=key in ("ior", "lrs"), scale=1.0,
                fmt=".4g" if score else ".2f")
    out.print(table)
    if "lrs" not in m:
        need = "--full-acc X or --full" if "ior" in m else "--vs-random"
        out.print(f"LRS needs both IOR and HLR: add {need}.", highlight=False)


class EvalOptions(BaseModel):
    """What `gsdd eval` evaluates (a file or a real-image baseline) and how it compares; the training
    protocol's own settings are :class:`~gsdd_cli.evaluate.config.EvalConfig`."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    file: Optional[str] = option(None, "The distilled .gsd file to evaluate.", argument=True)
    data_dir: Optional[str] = data_dir_option()
    backend: Literal[BACKENDS] = backend_option()  # type: ignore[valid-type]
    vs_random: bool = option(False, "Also train the same protocol on IPC random real images per class (IPC and "
                             "transform from the file, a fresh subset per run) and report IOR = acc(distilled) − "
                             "acc(random).")
    full_acc: Optional[float] = option(None, "Accuracy (percent) of the same network trained on the full training "
                                       "set; reports HLR = full − distilled, and LRS with --vs-random.")
    full: bool = option(False, "Train on the full training set under the same protocol to get the HLR reference "
                        "(slow; or give --full-acc).")
    baseline: Optional[Literal[BASELINES]] = option(  # type: ignore[valid-type]
        None, "Evaluate real images instead of a file: random-real (needs --ipc or --like) or full.")
    like: Optional[str] = option(None, "With --baseline: take dataset, IPC and transform from this .gsd file "
                                 "(a like-for-like baseline).")
    ipc: Optional[int] = option(None, "Images per class for --baseline random-real.", gt=0)
    dataset: Optional[str] = option(None, "Dataset name or path (required with --baseline unless --like; "
                                    "overrides the file's).")
    transform: Optional[Literal[TRANSFORM_KINDS]] = option(  # type: ignore[valid-type]
        None, "Baseline transform: zca, normalize or none (default: the dataset's; --like: the file's).")

    _finite = field_validator("full_acc")(finite)

    @model_validator(mode="after")
    def _combinations(self) -> "EvalOptions":
        if self.file is not None and self.baseline is not None:
            raise ValueError("give either a .gsd FILE or --baseline, not both")
        if self.file is None and self.baseline is None:
            raise ValueError("nothing to evaluate: give a .gsd FILE or --baseline random-real|full --dataset NAME")
        if self.baseline is not None:
            if self.vs_random or self.full or self.full_acc is not None:
                raise ValueError("--vs-random, --full and --full-acc compare a .gsd FILE with baselines; "
                                 "they do not apply to --baseline")
            if self.like is not None and (self.ipc is not None or self.transform is not None):
                raise ValueError("--like takes IPC and transform from the file; drop --ipc/--transform")
            if self.like is None and self.dataset is None:
                raise ValueError(f"--baseline {self.baseline} needs --dataset NAME (or a path to a .npz / image "
                                 "folder), or --like FILE.gsd")
            if self.like is None and self.baseline == "random-real" and self.ipc is None:
                raise ValueError("--baseline random-real needs --ipc K (or --like FILE.gsd)")
            return self
        for name, why in (("ipc", "--ipc only applies to --baseline random-real (a .gsd file has its own)"),
                          ("transform", "--transform only applies to --baseline (a .gsd file names its transform)"),
                          ("like", "--like only applies to --baseline (it takes the settings of a .gsd file)")):
            if getattr(self, name) is not None:
                raise ValueError(why)
        if self.full and self.full_acc is not None:
            raise ValueError("give either --full (train on the full set) or --full-acc X, not both")
        if self.full_acc is not None and not 1.0 < self.full_acc <= 100.0:
            raise ValueError(f"--full-acc is a percentage in (1, 100], got {self.full_acc:g} (e.g. --full-acc 97.5 "
                             "for 97.5 %)")
        return self


@command(EvalConfig, EvalOptions, OutputFlags)
def eval_cmd(cfg: EvalConfig, opts: EvalOptions, flags: OutputFlags) -> None:
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
    with make_progress(flags.quiet) as progress:
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

        if opts.baseline is not None:
            res = evaluate_baseline(opts.dataset, opts.baseline, opts.ipc, cfg, data_dir=opts.data_dir,
                                    transform=opts.transform, like=opts.like, on_step=on_step)
            shown_ipc = res.extra.get("ipc")
            title = (f"baseline {opts.baseline}" + (f" (ipc {shown_ipc})" if opts.baseline == "random-real" else "")
                     + f" on {res.dataset}" + (f", like {opts.like}" if opts.like is not None else ""))
        else:
            res = evaluate_gsd(opts.file, cfg, data_dir=opts.data_dir, backend=opts.backend, on_step=on_step,
                               dataset=opts.dataset, vs_random=opts.vs_random, full=opts.full,
                               full_accuracy=None if opts.full_acc is None else opts.full_acc / 100.0)
            title = f"{opts.file}"
    if flags.as_json:
        print_json(res.model_dump())
    else:
        _print_result(res, title)
        if res.metrics:
            _print_comparison(res)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
