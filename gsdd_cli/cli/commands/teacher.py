"""`gsdd teacher`: train a classifier on a dataset and write it as a teacher file for `--teacher`."""

from __future__ import annotations

import typer

from gsdd_cli.cli.common import out, print_json
from gsdd_cli.cli.console import make_progress
from gsdd_cli.cli.options import command
from gsdd_cli.core.options import OutputFlags
from gsdd_cli.evaluate.teacher_train import TeacherConfig, train_teacher


@command(TeacherConfig, OutputFlags)
def teacher(cfg: TeacherConfig, flags: OutputFlags) -> None:
    """Train a classifier (default resnet18bn, with BatchNorm) on DATASET and write it to --out.

    The file holds safetensors weights and JSON metadata (architecture, dataset, class names in
    logit order, transform, resolution, test accuracy, weights sha256); pass it to commands as
    --teacher FILE. Nothing is written if the run is interrupted.

    Examples:
      gsdd teacher digits --epochs 20 --out digits-teacher.pt
      gsdd teacher imagenette --arch resnet18bn --epochs 100 --out nette-r18.pt
    """
    with make_progress(flags.quiet) as progress:
        task = progress.add_task("teacher", total=cfg.epochs, info="")

        def on_step(s) -> None:
            progress.update(task, advance=1, info=f"epoch {s.epoch}/{s.epochs} · loss {s.loss:.3f} · "
                                                  f"train {100 * s.train_acc:.1f}% · lr {s.lr:.4f}")

        res = train_teacher(cfg, on_step)
    summary = {"out": str(res.out), "arch": res.arch, "dataset": res.dataset, "num_classes": res.num_classes,
               "epochs": res.epochs, "test_accuracy": res.test_accuracy, "train_accuracy": res.train_accuracy,
               "weights_sha256": res.weights_sha256, "seconds": round(res.seconds, 3)}
    if flags.as_json:
        print_json(summary)
        return
    acc = f"{100 * res.test_accuracy:.2f} %" if res.test_accuracy is not None else "n/a (no test split)"
    out.print(f"{res.arch} on {res.dataset} ({res.num_classes} classes, {res.epochs} epochs, {res.seconds:.1f} s): "
              f"test accuracy {acc}", highlight=False)
    out.print(f"wrote {res.out} (weights sha256 {res.weights_sha256[:16]}…)", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("teacher")(teacher)
