"""`gsdd export`: write a distilled set in a format other tools read (pt, npz, imagefolder, ddranking)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gsdd_cli.cli.common import (
    BackendOpt,
    DataDirOpt,
    DeviceOpt,
    JsonOpt,
    QuietOpt,
    handles_errors,
    out,
    print_json,
)
from gsdd_cli.cli.console import make_progress
from gsdd_cli.core.devices import resolve_device
from gsdd_cli.core.errors import ConfigError


@handles_errors
def export_cmd(
    file: Annotated[Path, typer.Argument(help="The .gsd file to export.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="pt | npz | imagefolder | ddranking (see below).")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Output file (pt, npz) or folder (imagefolder, ddranking).")],
    space: Annotated[Optional[str], typer.Option("--space", help="pt only: network (default; what networks train on) or pixel (the raw render).")] = None,
    uint8: Annotated[bool, typer.Option("--uint8", help="npz only: store x_train as uint8 (clipped, rounded) instead of float32.")] = False,
    with_test: Annotated[bool, typer.Option("--with-test", help="npz, imagefolder: copy the source dataset's test split, making the export a dataset gsdd can train and test on.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty output folder.")] = False,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    backend: BackendOpt = "auto",
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
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
    from gsdd_cli.export import FORMATS, export_set

    if fmt not in FORMATS:
        raise ConfigError(f"unknown --format {fmt!r}; valid: {', '.join(FORMATS)}")
    dev = resolve_device(device)
    with make_progress(quiet) as progress:
        tasks: dict[str, int] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total, info="")
            progress.update(tasks[stage], completed=done)

        res = export_set(file, fmt, out_path, space=space, uint8=uint8, with_test=with_test, force=force,
                         device=dev, backend=backend, data_dir=data_dir, on_progress=on_progress)
    if as_json:
        print_json(res.to_dict())
        return
    out.print(f"wrote {res.format} export of {res.num_images} images ({res.space} space) to {res.path}",
              highlight=False, soft_wrap=True)
    for note in res.notes:
        out.print(f"note: {note}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
