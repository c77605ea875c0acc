"""`gsdd init`: fit Gaussian images to real images (the start point of every distillation)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

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
from gsdd_cli.core.errors import ConfigError, DivergenceError


@handles_errors
def init(
    dataset: str = typer.Argument(..., help="Dataset name (digits, cifar10, cifar100, imagenette, ...) or path."),
    ipc: int = typer.Option(..., "--ipc", help="Budget: the bytes of IPC real fp32 images per class."),
    out_path: Path = typer.Option(..., "--out", "-o", help="Output .gsd file."),
    gpc: Optional[int] = typer.Option(None, "--gpc", help="Gaussian images per class (default: the paper's / budget recommendation)."),
    points: Optional[int] = typer.Option(None, "--points", help="Gaussians per image (GPC then follows from the budget)."),
    algo: str = typer.Option("tm", "--algo", help="Algorithm the init is for: picks the recommended GPC and the recorded transform."),
    steps: int = typer.Option(50_000, "--steps", help="Adam steps (paper code: 50 000; on a CPU a few hundred are plenty to start)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Adam lr of every attribute group (default 0.1 at ≤32 px, 0.01 above)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the image choice and of the random start point."),
    first: bool = typer.Option(False, "--first", help="Fit the first GPC images of each class (reference-code parity) instead of a seeded random choice."),
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    backend: BackendOpt = "auto",
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Fit GPC Gaussian images per class to real training images (docs/method.md §4) and save them.

    All images are fitted jointly (MSE, Adam per attribute group, StepLR on positions).

    Examples:
      gsdd init digits --ipc 1 --steps 300 --out digits-init.gsd
      gsdd init cifar10 --ipc 10 --out c10-init.gsd            # GPC 160, 42 points, 50 000 steps
    """
    from gsdd_cli.data import dataset_path, default_transform_kind, load_dataset, make_transform
    from gsdd_cli.core.devices import resolve_device
    from gsdd_cli.sets.fit import FitConfig, init_from_dataset
    from gsdd_cli.sets.gsdfile import make_header, save_gsd
    from gsdd_cli.core.outputs import check_output_file
    from gsdd_cuda import resolve_backend

    if gpc is not None and points is not None:
        raise ConfigError("give at most one of --gpc and --points")
    algo = algo.lower()
    if algo not in ("tm", "dm", "dc"):
        raise ConfigError(f"unknown algorithm {algo!r}; valid: dc, dm, tm")
    if steps < 0:
        raise ConfigError(f"--steps must be ≥ 0, got {steps}")
    if lr is not None and not lr > 0:
        raise ConfigError(f"--lr must be positive, got {lr}")
    dev = resolve_device(device)
    resolve_backend(backend, dev)  # an unknown --backend fails before any work
    check_output_file(out_path, "--out", {"DATASET": dataset_path(dataset)})
    ds = load_dataset(dataset, data_dir)
    cfg = FitConfig(steps=steps, lr=lr, seed=seed, backend=backend)
    with make_progress(quiet) as progress:
        task = progress.add_task("fitting", total=max(steps, 1), info="")

        def on_step(s) -> None:
            progress.update(task, completed=s.step, info=f"PSNR {s.psnr:.2f} dB")

        r = init_from_dataset(ds, ipc, gpc=gpc, points=points, cfg=cfg, seed=seed, first=first,
                              device=dev, on_step=on_step, algorithm=algo)
    if r.images.first_nonfinite() is not None:
        raise DivergenceError(f"the fit diverged (NaN or Inf parameters) with lr {r.config['init']['lr']:g}; "
                              f"nothing was written", hint="run again with a lower --lr")
    kind = default_transform_kind(ds.name, algo)
    tf = make_transform(ds, kind)
    header = make_header(
        r.images, dataset=dataset, class_names=list(ds.class_names), ipc=ipc, transform=kind,
        transform_params=tf.describe(), algorithm="init",
        config={**r.config, "seconds": round(r.seconds, 3), "for_algorithm": algo},
    )
    save_gsd(out_path, r.images, header)
    summary = {
        "out": str(out_path), "dataset": ds.name, "ipc": ipc, "gpc": r.plan.gpc, "points": r.plan.points,
        "images": r.plan.num_images, "steps": steps, "seconds": round(r.seconds, 3),
        "psnr_mean": round(float(r.psnr.mean()), 3),
        "psnr_per_class": {name: round(p, 3) for name, p in zip(ds.class_names, r.psnr_per_class)},
        "indices": r.indices.tolist(),
    }
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"init PSNR per class ({r.plan.gpc} images × {r.plan.points} Gaussians, {steps} steps)")
    table.add_column("class", justify="right")
    table.add_column("name")
    table.add_column("PSNR (dB)", justify="right")
    for c, (name, p) in enumerate(zip(ds.class_names, r.psnr_per_class)):
        table.add_row(str(c), name, f"{p:.2f}")
    table.add_row("", "[bold]mean[/]", f"[bold]{float(r.psnr.mean()):.2f}[/]")
    out.print(table)
    out.print(f"wrote {out_path} ({r.plan.num_images} images, {r.images.payload_bytes():,} bytes) in {r.seconds:.1f} s")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
