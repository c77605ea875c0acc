"""`gsdd info`: show the header of a .gsd file."""

from __future__ import annotations

import typer
from pydantic import BaseModel
from rich.table import Table

from gsdd_cli.cli.common import out, print_json
from gsdd_cli.cli.options import command
from gsdd_cli.core.options import json_option, option
from gsdd_cli.sets.gsdfile import file_info

ROWS = ("dataset", "num_classes", "channels", "height", "width", "ipc", "parameterization", "gpc", "points_per_image",
        "num_images", "budget_bytes", "payload_bytes", "utilisation", "algorithm", "syn_lr", "transform", "antialias",
        "dead_gaussians", "gsdd_version", "format_version", "created")
GAUSSIAN_ONLY = {"points_per_image", "antialias", "dead_gaussians"}


class InfoOptions(BaseModel):
    model_config = {"extra": "forbid", "frozen": True}

    file: str = option(..., "The .gsd file to inspect.", argument=True)
    as_json: bool = json_option()


@command(InfoOptions)
def info(opts: InfoOptions) -> None:
    """Validate a .gsd file (Gaussian or pixel set) and print its header (sizes, budget, algorithm, config)."""
    data = file_info(opts.file)
    if opts.as_json:
        print_json(data)
        return
    table = Table(title=str(opts.file), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    pixel = data["parameterization"] == "pixel"
    for key in ROWS:
        if pixel and key in GAUSSIAN_ONLY:
            continue
        table.add_row("images per class" if pixel and key == "gpc" else key, str(data[key]))
    names = ", ".join(data["class_names"])
    table.add_row("class_names", names if len(names) < 120 else names[:117] + "...")
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
