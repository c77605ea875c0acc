"""`gsdd budget`: how many Gaussian images of how many points fit the IPC-equivalent budget."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from gsdd_cli.sets import budget as B
from gsdd_cli.cli.common import JsonOpt, handles_errors, out, print_json
from gsdd_cli.core.errors import BudgetError


def _resolve_shape(dataset, res, channels, classes):
    """Classes/resolution/channels from --dataset, overridden by explicit flags."""
    if dataset is not None:
        from gsdd_cli.data import dataset_info

        k, c, h, w = dataset_info(dataset)
    else:
        k, c, h, w = 10, 3, 32, 32
    if res is not None:
        h = w = res
    if channels is not None:
        c = channels
    if classes is not None:
        k = classes
    return k, c, h, w


@handles_errors
def budget(
    ipc: int = typer.Option(..., "--ipc", help="Real images per class whose fp32 bytes set the budget."),
    res: Optional[int] = typer.Option(None, "--res", help="Square resolution H = W (default 32, or the dataset's)."),
    channels: Optional[int] = typer.Option(None, "--channels", help="Colour channels (default 3, or the dataset's)."),
    classes: Optional[int] = typer.Option(None, "--classes", help="Number of classes (default 10, or the dataset's)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Take classes, resolution and channels from a known dataset (e.g. cifar100)."),
    gpc: Optional[int] = typer.Option(None, "--gpc", help="Gaussian images per class; points per image follow."),
    points: Optional[int] = typer.Option(None, "--points", help="Gaussians per image; the largest GPC that fits follows."),
    algorithm: str = typer.Option("tm", "--algo", help="Algorithm whose paper setting to recommend (tm, dm, dc)."),
    as_json: JsonOpt = False,
) -> None:
    """Show GPC and points per image that fit the storage of IPC real images per class.

    Budget per class = IPC·C·H·W·4 bytes (fp32 pixels); one Gaussian = (6+C)·2 bytes (bf16).

    Examples:
      gsdd budget --ipc 10 --res 32            # paper: GPC 160, 42 points
      gsdd budget --ipc 10 --dataset cifar100  # paper: GPC 80, 85 points
      gsdd budget --ipc 1 --res 128 --points 170
    """
    if gpc is not None and points is not None:
        raise BudgetError("give at most one of --gpc and --points")
    k, c, h, w = _resolve_shape(dataset, res, channels, classes)
    algorithm = algorithm.lower()
    if gpc is None and points is None:
        rec = B.recommended_gpc(ipc, h, w, c, k, algorithm)
        chosen = B.make_plan(ipc, h, w, c, k, gpc=rec)
        source = "paper" if B.is_paper_setting(ipc, h, w, c, k, algorithm) else "heuristic"
        plans = [chosen] + [p for p in B.options(ipc, h, w, c, k) if p.gpc != chosen.gpc]
    else:
        chosen = B.make_plan(ipc, h, w, c, k, gpc=gpc, points=points)
        source = "requested"
        plans = [chosen]
    if as_json:
        print_json({"recommended": chosen.to_dict(), "source": source, "plans": [p.to_dict() for p in plans]})
        return
    table = Table(
        title=f"Budget: IPC {ipc} × {c}×{h}×{w} fp32 = {chosen.budget_per_class:,} bytes per class, {k} classes",
        caption=f"★ = {source} choice; one Gaussian = {B.bytes_per_gaussian(c)} bytes "
        f"({B.params_per_gaussian(c)} bf16 params); budget {chosen.budget_bytes:,} bytes in all",
    )
    for col in ("", "GPC", "points", "images", "bytes used", "used"):
        table.add_column(col, justify="right")
    for p in plans:
        table.add_row(
            "★" if p is chosen else "", str(p.gpc), str(p.points), f"{p.num_images:,}",
            f"{p.used_bytes:,}", f"{p.utilisation:.1%}",
        )
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("budget")(budget)
