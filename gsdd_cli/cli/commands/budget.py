"""`gsdd budget`: how many Gaussian images of how many points fit the IPC-equivalent budget."""

from __future__ import annotations

from typing import Literal, Optional

import typer
from pydantic import BaseModel, ConfigDict
from rich.table import Table

from gsdd_cli.cli.common import out, print_json
from gsdd_cli.cli.options import command
from gsdd_cli.core.options import json_option, option
from gsdd_cli.data import dataset_info
from gsdd_cli.core.algorithms import ALGORITHMS
from gsdd_cli.sets import budget as B


class BudgetOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    ipc: int = option(..., "Real images per class whose fp32 bytes set the budget.", gt=0)
    res: Optional[int] = option(None, "Square resolution H = W (default 32, or the dataset's).", gt=0)
    channels: Optional[int] = option(None, "Colour channels (default 3, or the dataset's).", gt=0)
    classes: Optional[int] = option(None, "Number of classes (default 10, or the dataset's).", ge=2)
    dataset: Optional[str] = option(None, "Take classes, resolution and channels from a known dataset "
                                    "(e.g. cifar100).")
    gpc: Optional[int] = option(None, "Gaussian images per class; points per image follow.", gt=0)
    points: Optional[int] = option(None, "Gaussians per image; the largest GPC that fits follows.", gt=0)
    algo: Literal[ALGORITHMS] = option("tm", "Algorithm whose paper setting to recommend.")  # type: ignore[valid-type]
    as_json: bool = json_option()

    def shape(self) -> tuple[int, int, int, int]:
        """(classes, channels, height, width): from --dataset, overridden by explicit flags."""
        k, c, h, w = dataset_info(self.dataset) if self.dataset is not None else (10, 3, 32, 32)
        if self.res is not None:
            h = w = self.res
        return (self.classes or k), (self.channels or c), h, w


@command(BudgetOptions)
def budget(opts: BudgetOptions) -> None:
    """Show GPC and points per image that fit the storage of IPC real images per class.

    Budget per class = IPC·C·H·W·4 bytes (fp32 pixels); one Gaussian = (6+C)·2 bytes (bf16).

    Examples:
      gsdd budget --ipc 10 --res 32            # paper: GPC 160, 42 points
      gsdd budget --ipc 10 --dataset cifar100  # paper: GPC 80, 85 points
      gsdd budget --ipc 1 --res 128 --points 170
    """
    k, c, h, w = opts.shape()
    chosen, source, plans = B.plans_for(opts.ipc, h, w, c, k, gpc=opts.gpc, points=opts.points, algorithm=opts.algo)
    if opts.as_json:
        print_json({"recommended": chosen.to_dict(), "source": source, "plans": [p.to_dict() for p in plans]})
        return
    table = Table(
        title=f"Budget: IPC {opts.ipc} × {c}×{h}×{w} fp32 = {chosen.budget_per_class:,} bytes per class, {k} classes",
        caption=f"★ = {source} choice; one Gaussian = {B.bytes_per_gaussian(c)} bytes "
        f"({B.params_per_gaussian(c)} bf16 params); budget {chosen.budget_bytes:,} bytes in all",
    )
    for col in ("", "GPC", "points", "images", "bytes used", "used"):
        table.add_column(col, justify="right")
    for p in plans:
        table.add_row("★" if p is chosen else "", str(p.gpc), str(p.points), f"{p.num_images:,}",
                      f"{p.used_bytes:,}", f"{p.utilisation:.1%}")
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("budget")(budget)
