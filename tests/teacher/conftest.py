import numpy as np
import pytest
import torch
from PIL import Image

COLORS = {"blue": 2, "green": 1, "red": 0}  # class name -> the channel that is bright


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    """Its own empty data dir and torch hub dir: no writes to ~/.cache, no cached weights found."""
    d = tmp_path / "gsdd-data"
    d.mkdir()
    monkeypatch.setenv("GSDD_DATA_DIR", str(d))
    hub = tmp_path / "torch-hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return d


def write_color_folder(root, classes=("blue", "green", "red"), train=10, test=4, size=16, seed=0):
    """An image-folder dataset whose classes differ by their bright channel (linearly separable)."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("test", test)):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 90, (size, size, 3))
                a[..., COLORS[c]] += 150
                Image.fromarray(a.astype(np.uint8)).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def color_teacher(tmp_path_factory):
    """(dataset folder, teacher file): resnet18bn trained 4 epochs by `gsdd teacher` on 3 colour classes."""
    from typer.testing import CliRunner

    from gsdd_cli.cli import app

    base = tmp_path_factory.mktemp("color")
    root = write_color_folder(base / "colors")
    out = base / "t.pt"
    res = CliRunner().invoke(app, ["teacher", str(root), "--epochs", "4", "--batch", "16", "--lr", "0.05",
                                   "--device", "cpu", "--data-dir", str(base / "data"), "--out", str(out),
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    return root, out, res.output


@pytest.fixture(scope="session")
def resnet18_weights(tmp_path_factory):
    """A torchvision resnet18 state dict (random init, saved as torchvision publishes: a .pth)."""
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tv") / "resnet18-local.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path
