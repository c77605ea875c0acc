"""`gsdd render`: decode a .gsd file to PNG images and/or a class-by-image grid."""

from __future__ import annotations

import typer
from pydantic import BaseModel

from gsdd_cli.cli.common import out
from gsdd_cli.cli.console import make_progress
from gsdd_cli.cli.options import command
from gsdd_cli.core.options import quiet_option
from gsdd_cli.sets.render_files import RenderConfig, render_files


class RenderFlags(BaseModel):
    model_config = {"extra": "forbid", "frozen": True}

    quiet: bool = quiet_option()


@command(RenderConfig, RenderFlags)
def render(cfg: RenderConfig, flags: RenderFlags) -> None:
    """Decode a .gsd file to images (pixel space, clipped to [0, 1] for PNG).

    Examples:
      gsdd render c10.gsd --png out/
      gsdd render c10.gsd --grid grid.png --scale 4 --images 0-9
    """
    with make_progress(flags.quiet) as progress:
        task = progress.add_task("rendering", total=None, info="")
        rep = render_files(cfg, lambda done, total: progress.update(task, completed=done, total=total))
    what = []
    if cfg.png is not None:
        what.append(f"{rep.written} PNG(s) in {cfg.png}")
    if cfg.grid is not None:
        what.append(f"grid {cfg.grid}")
    out.print(f"wrote {' and '.join(what)} ({rep.dataset}, {rep.height}×{rep.width} × {cfg.scale:g} = "
              f"{rep.out_height}×{rep.out_width})")


def register(app: typer.Typer) -> None:
    app.command("render")(render)
