"""`gsdd render --grid` writes the class names left of the rows (and --no-grid-labels does not)."""

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner

from gsdd_cli.cli import app
from gsdd_cli.sets.gaussians import GaussianImages
from gsdd_cli.sets.gsdfile import make_header, save_gsd
from gsdd_cli.sets.imageio import label_rows, make_grid, to_uint8

runner = CliRunner()


def test_grid_rows_carry_class_names(tmp_path):
    imgs = GaussianImages.random(3, 2, 20, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    header = make_header(imgs, dataset="toy", class_names=["cat", "dog", "a long class name"], ipc=2)
    path = save_gsd(tmp_path / "toy.gsd", imgs, header)
    for scale in (1, 3):
        res = runner.invoke(app, ["render", str(path), "--grid", str(tmp_path / "g.png"), "--scale", str(scale), "-q"])
        assert res.exit_code == 0, res.output
        plain = runner.invoke(app, ["render", str(path), "--grid", str(tmp_path / "p.png"), "--scale", str(scale),
                                    "--no-grid-labels", "-q"])
        assert plain.exit_code == 0, plain.output
        labelled, bare = np.asarray(Image.open(tmp_path / "g.png")), np.asarray(Image.open(tmp_path / "p.png"))
        cell = 16 * scale
        assert bare.shape == (3 * (cell + 1) + 1, 2 * (cell + 1) + 1, 3)
        margin = labelled.shape[1] - bare.shape[1]
        assert labelled.shape[0] == bare.shape[0] and margin > 20
        assert np.array_equal(labelled[:, margin:], bare)  # the images themselves are unchanged
        for row in range(3):  # every row has dark text pixels in the margin, at its own height
            band = labelled[1 + row * (cell + 1): 1 + row * (cell + 1) + cell, :margin]
            assert (band < 128).any(), (scale, row)


def test_label_rows_grayscale():
    rows = [[torch.zeros(1, 8, 8)], [torch.ones(1, 8, 8)]]
    img = label_rows(make_grid(rows), ["zero", "one"], row_height=8)
    assert img.mode == "L" and img.height == 2 * 9 + 1
    assert np.array_equal(np.asarray(img)[:, img.width - 10:], to_uint8(make_grid(rows)))
