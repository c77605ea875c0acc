"""`gsdd init`: fit Gaussian images to real images (the start point of every distillation)."""

from __future__ import annotations

import typer
from rich.table import Table

from gsdd_cli.cli.common import out, print_json
from gsdd_cli.cli.console import make_progress
from gsdd_cli.cli.options import command
from gsdd_cli.core.options import OutputFlags
from gsdd_cli.sets.initialize import InitConfig, init_set


@command(InitConfig, OutputFlags)
def init(cfg: InitConfig, flags: OutputFlags) -> None:
    """Fit GPC Gaussian images per class to real training images (docs/method.md §4) and save them.

    Each image minimises its own MSE (Adam per attribute group, StepLR on positions), in units of
    whole classes of at most --max-images images; under torchrun the units are split across the
    ranks and the file is the same for any number of ranks. Finished units wait in OUT.parts/:
    after a crash or Ctrl-C, the same command with --resume fits only the rest.

    Examples:
      gsdd init digits --ipc 1 --steps 300 --out digits-init.gsd
      gsdd init cifar10 --ipc 10 --out c10-init.gsd            # GPC 160, 42 points, 50 000 steps
      gsdd init imagenette --ipc 10 --select teacher --teacher resnet18 --out nette-rded.gsd
      torchrun --nproc-per-node 8 -m gsdd_cli init imagenet1k --ipc 10 --out in1k-init.gsd
    """
    with make_progress(flags.quiet) as progress:
        task = progress.add_task("fitting", total=max(cfg.steps, 1), info="")
        report = init_set(cfg, lambda s: progress.update(task, completed=s.step, total=s.total,
                                                         info=f"PSNR {s.psnr:.2f} dB" if s.psnr == s.psnr else "resumed"))
    if report is None:  # a torchrun rank other than 0: rank 0 reports
        return
    if flags.as_json:
        print_json(report.summary(cfg))
        return
    r = report.result
    table = Table(title=f"init PSNR per class ({r.plan.gpc} images × {r.plan.points} Gaussians, {cfg.steps} steps)")
    table.add_column("class", justify="right")
    table.add_column("name")
    table.add_column("PSNR (dB)", justify="right")
    for c, (name, p) in enumerate(zip(report.class_names, r.psnr_per_class)):
        table.add_row(str(c), name, f"{p:.2f}")
    table.add_row("", "[bold]mean[/]", f"[bold]{float(r.psnr.mean()):.2f}[/]")
    out.print(table)
    sel = report.selection()
    if sel is not None:
        out.print(f"teacher's mean probability of the class: {sel['prob_kept_mean']:.3f} on the kept crops vs "
                  f"{sel['prob_candidates_mean']:.3f} on all {sel['candidate_crops']:,} candidate crops "
                  f"(selection {sel['seconds']:.1f} s)")
    out.print(f"wrote {cfg.out} ({r.plan.num_images} images, {report.payload_bytes:,} bytes) in {r.seconds:.1f} s")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
