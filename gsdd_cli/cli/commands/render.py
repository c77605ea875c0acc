"""`gsdd render`: decode a .gsd file to PNG images and/or a class-by-image grid."""

from __future__ import annotations

import typer
from pydantic import BaseModel

from gsdd_cli.cli.common import out
from gsdd_cli.cli.console import make_progress
from gsdd_cli.cli.options import command
from gsdd_cli.core.options import quiet_option
from gsdd_cli.distill.checkpoint_view import is_checkpoint, render_checkpoint
from gsdd_cli.sets.render_files import RenderConfig, render_files


class RenderFlags(BaseModel):
    model_config = {"extra": "forbid", "frozen": True}

    quiet: bool = quiet_option()


@command(RenderConfig, RenderFlags)
def render(cfg: RenderConfig, flags: RenderFlags) -> None:
    """Decode a .gsd file to images (pixel space, clipped to [0, 1] for PNG).

    A distillation checkpoint (OUT.ckpt, from --save-every) shows the run's current set,
    read-only, and the iteration it has reached.

    Examples:
      gsdd render c10.gsd --png out/
      gsdd render c10.gsd --grid grid.png --scale 4 --images 0-9
      gsdd render c10.gsd.ckpt --grid now.png
    """
    seen = None
    with make_progress(flags.quiet) as progress:
        task = progress.add_task("rendering", total=None, info="")
        step = lambda done, total: progress.update(task, completed=done, total=total)  # noqa: E731
        if is_checkpoint(cfg.file):
            seen = render_checkpoint(cfg, step)
            rep = seen.report
        else:
            rep = render_files(cfg, step)
    if seen is not None:
        out.print(f"checkpoint {cfg.file}: the {seen.algo} run's set after iteration {seen.iteration} of "
                  f"{seen.iterations}", highlight=False, soft_wrap=True)
    what = []
    if cfg.png is not None:
        what.append(f"{rep.written} PNG(s) in {cfg.png}")
    if cfg.grid is not None:
        what.append(f"grid {cfg.grid}")
    out.print(f"wrote {' and '.join(what)} ({rep.dataset}, {rep.height}×{rep.width} × {cfg.scale:g} = "
              f"{rep.out_height}×{rep.out_width})")


def register(app: typer.Typer) -> None:
    app.command("render")(render)
