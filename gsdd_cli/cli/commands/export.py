"""`gsdd export`: write a distilled set in a format other tools read (pt, npz, imagefolder, ddranking)."""

from __future__ import annotations

from typing import Literal, Optional

import typer
from pydantic import BaseModel, ConfigDict

from gsdd_cli.api import SPACES
from gsdd_cli.cli.common import out, print_json
from gsdd_cli.cli.console import make_progress
from gsdd_cli.cli.options import command
from gsdd_cli.core.devices import resolve_device
from gsdd_cli.core.options import OutputFlags, backend_option, data_dir_option, device_option, option, out_option
from gsdd_cli.export import FORMATS, export_set
from gsdd_cuda import BACKENDS


class ExportOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = option(..., "The .gsd file to export.", argument=True)
    format: Literal[FORMATS] = option(..., "Output format (see below).", flags=("--format", "-f"))  # type: ignore[valid-type]
    out: str = out_option("Output file (pt, npz) or folder (imagefolder, ddranking).")
    space: Optional[Literal[SPACES]] = option(  # type: ignore[valid-type]
        None, "pt only: network (default; what networks train on) or pixel (the raw render).")
    uint8: bool = option(False, "npz only: store x_train as uint8 (clipped, rounded) instead of float32.")
    with_test: bool = option(False, "npz, imagefolder: copy the source dataset's test split, making the export a "
                             "dataset gsdd can train and test on.")
    force: bool = option(False, "Replace a non-empty output folder.")
    epochs: Optional[int] = option(None, "ddranking only: training epochs its num_epochs/step_size follow "
                                   "(default gsdd eval's 1000).", gt=0)
    data_dir: Optional[str] = data_dir_option()
    device: str = device_option()
    backend: Literal[BACKENDS] = backend_option()  # type: ignore[valid-type]


@command(ExportOptions, OutputFlags)
def export_cmd(opts: ExportOptions, flags: OutputFlags) -> None:
    """Export a distilled set to a format other tools read.

    \b
    Formats:
      pt           one torch.save dict: images [G,C,H,W] float32
                   (unclamped), labels, class names, ipc, gpc, syn_lr,
                   transform and its parameters (ZCA: mean, matrix)
      npz          gsdd's dataset .npz: x_train [G,H,W,C] pixel space,
                   y_train, class_names (--with-test: + test split)
      imagefolder  OUT/train/<class>/<k>.png + gsdd_export.json
                   (PNG clips to [0, 1] and quantizes to 8 bits)
      ddranking    OUT/images.pt (network space), labels.pt,
                   syn_lr.pt, ddranking.yaml for DD-Ranking
    Network space needs the recorded transform; ZCA is refitted on the
    real training set (--data-dir). Details: docs/export.md.

    \b
    Examples:
      gsdd export c10.gsd --format pt --out c10.pt
      gsdd export digits.gsd -f npz --with-test -o distilled.npz
      gsdd export c10.gsd --format ddranking --out c10-ddranking/
    """
    with make_progress(flags.quiet) as progress:
        tasks: dict[str, int] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total, info="")
            progress.update(tasks[stage], completed=done)

        res = export_set(opts.file, opts.format, opts.out, space=opts.space, uint8=opts.uint8,
                         with_test=opts.with_test, force=opts.force, device=resolve_device(opts.device),
                         backend=opts.backend, data_dir=opts.data_dir, on_progress=on_progress, epochs=opts.epochs)
    if flags.as_json:
        print_json(res.to_dict())
        return
    out.print(f"wrote {res.format} export of {res.num_images} images ({res.space} space) to {res.path}",
              highlight=False, soft_wrap=True)
    for note in res.notes:
        out.print(f"note: {note}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
