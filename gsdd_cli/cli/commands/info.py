"""`gsdd info`: show the header of a .gsd file (reads no tensor data)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from gsdd_cli.cli.common import JsonOpt, handles_errors, out, print_json
from gsdd_cli.sets.gsdfile import load_gsd


@handles_errors
def info(
    file: Path = typer.Argument(..., help="The .gsd file to inspect."),
    as_json: JsonOpt = False,
) -> None:
    """Validate a .gsd file (Gaussian or pixel set) and print its header (sizes, budget, algorithm, config)."""
    gsd = load_gsd(file)
    h = gsd.header
    data = h.model_dump()
    data["num_images"] = h.num_images
    data["utilisation"] = round(h.payload_bytes / h.budget_bytes, 6)
    dead = gsd.images.dead_fraction()
    data["dead_gaussians"] = None if dead is None else round(dead, 6)
    if as_json:
        print_json(data)
        return
    table = Table(title=str(file), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    pixel = h.parameterization == "pixel"
    gaussian_only = {"points_per_image", "antialias", "dead_gaussians"}
    for key in ("dataset", "num_classes", "channels", "height", "width", "ipc", "parameterization", "gpc",
                "points_per_image", "num_images", "budget_bytes", "payload_bytes", "utilisation", "algorithm",
                "syn_lr", "transform", "antialias", "dead_gaussians", "gsdd_version", "format_version", "created"):
        if pixel and key in gaussian_only:
            continue
        table.add_row("images per class" if pixel and key == "gpc" else key, str(data[key]))
    names = ", ".join(h.class_names)
    table.add_row("class_names", names if len(names) < 120 else names[:117] + "...")
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
