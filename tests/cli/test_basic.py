"""CLI: budget, render and info through typer's CliRunner (exit codes, one-line errors, outputs)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from gsdd_cli.cli import app
from gsdd_cli.sets.gaussians import GaussianImages
from gsdd_cli.sets.gsdfile import make_header, save_gsd

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


COMMANDS = ("budget", "init", "distill", "experts", "render", "eval", "info")


def test_help_lists_commands():
    res = run("--help")
    assert res.exit_code == 0
    for cmd in COMMANDS:
        assert cmd in res.output


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_has_help(cmd):
    """Guards against typer/click API breakage: every command builds its parser and help text."""
    res = run(cmd, "--help")
    assert res.exit_code == 0, res.output
    assert "Usage" in res.output and "--help" in res.output


def test_budget_paper_row():
    res = run("budget", "--ipc", 10, "--res", 32, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert (data["recommended"]["gpc"], data["recommended"]["points"]) == (160, 42)
    assert data["source"] == "paper"
    table = run("budget", "--ipc", 10, "--res", 32)
    assert table.exit_code == 0 and "160" in table.stdout and "42" in table.stdout


def test_budget_options():
    res = run("budget", "--ipc", 1, "--res", 128, "--points", 170, "--json")
    assert json.loads(res.stdout)["recommended"]["gpc"] == 64
    res = run("budget", "--ipc", 10, "--res", 32, "--classes", 100, "--gpc", 80, "--json")
    assert json.loads(res.stdout)["recommended"]["points"] == 85


@pytest.mark.parametrize(
    "args,code",
    [
        (["--ipc", "0", "--res", "32"], 3),  # out-of-range flag values are option errors
        (["--ipc", "-3", "--res", "32"], 3),
        (["--ipc", "1", "--res", "8", "--channels", "1", "--gpc", "100000"], 5),  # the budget cannot hold it
        (["--ipc", "1", "--res", "32", "--points", "100000"], 5),
        (["--ipc", "1", "--res", "32", "--gpc", "2", "--points", "2"], 5),
        (["--ipc", "1", "--res", "0"], 3),
    ],
)
def test_budget_impossible(args, code):
    res = run("budget", *args)
    assert res.exit_code == code
    assert "error:" in res.stderr and "Traceback" not in res.output + res.stderr
    assert len(res.stderr.strip().splitlines()) <= 2


@pytest.fixture
def gsd_file(tmp_path):
    imgs = GaussianImages.random(3, 4, 20, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    header = make_header(imgs, dataset="toy", class_names=["cat", "dog", "big bird"], ipc=2, algorithm="init")
    return save_gsd(tmp_path / "toy.gsd", imgs, header), imgs


def test_render_pngs_and_grid(tmp_path, gsd_file):
    path, imgs = gsd_file
    outdir = tmp_path / "png"
    res = run("render", path, "--png", outdir, "--grid", tmp_path / "grid.png", "--quiet")
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in outdir.iterdir())
    assert len(files) == 12 and files[0] == "000_cat_0000.png" and "002_big-bird_0003.png" in files
    first = np.asarray(Image.open(outdir / files[0]))
    expect = imgs.render()[0].detach().clamp(0, 1).mul(255).round().permute(1, 2, 0).to(torch.uint8).numpy()
    assert first.shape == (16, 16, 3) and np.array_equal(first, expect)
    grid = Image.open(tmp_path / "grid.png")
    assert grid.size[1] == 3 * 17 + 1 and grid.size[0] > 4 * 17 + 1  # + a margin with the class names


def test_render_selection_and_scale(tmp_path, gsd_file):
    path, _ = gsd_file
    res = run("render", path, "--png", tmp_path / "sel", "--classes", "1", "--images", "0-1", "--scale", 2, "-q")
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in (tmp_path / "sel").iterdir())
    assert files == ["001_dog_0000.png", "001_dog_0001.png"]
    assert Image.open(tmp_path / "sel" / files[0]).size == (32, 32)


@pytest.mark.parametrize(
    "extra,code",
    [
        (["--classes", "7"], 3),
        (["--images", "a-b"], 3),
        (["--scale", "0"], 3),
        ([], 3),  # nothing to write
    ],
)
def test_render_bad_options(tmp_path, gsd_file, extra, code):
    path, _ = gsd_file
    args = ["render", path] + (["--png", tmp_path / "o"] if extra else []) + extra
    res = run(*args)
    assert res.exit_code == code and "error:" in res.stderr


def test_render_and_info_bad_file(tmp_path):
    bad = tmp_path / "bad.gsd"
    bad.write_bytes(b"garbage")
    for cmd in (["render", bad, "--png", tmp_path / "o"], ["info", bad], ["render", tmp_path / "nope.gsd", "--grid", tmp_path / "g.png"]):
        res = run(*cmd)
        assert res.exit_code == 4 and "error:" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_info(gsd_file):
    path, _ = gsd_file
    res = run("info", path, "--json")
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    assert data["gpc"] == 4 and data["points_per_image"] == 20 and data["num_images"] == 12
    assert run("info", path).exit_code == 0


def test_module_entry_point_and_exit_code(tmp_path):
    res = subprocess.run([sys.executable, "-m", "gsdd_cli", "budget", "--ipc", "1", "--gpc", "100000"],
                         capture_output=True, text=True)
    assert res.returncode == 5 and res.stderr.startswith("error:") and "Traceback" not in res.stderr
    res = subprocess.run([sys.executable, "-m", "gsdd_cli", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("gsdd ")
