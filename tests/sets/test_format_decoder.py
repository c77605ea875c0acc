"""An independent decoder written only from docs/format.md ("Decoding an image") agrees with `gsdd render`.

It reads the file with safetensors (torch only widens bf16 to float32), then follows the documented
steps in numpy float32. Agreement is up to float rounding (numpy's exp and summation order differ from
torch's), so the 8-bit PNG levels match except, rarely, by one level at a rounding boundary.
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from typer.testing import CliRunner

from gsdd_cli.cli import app
from gsdd_cli.sets.gaussians import GaussianImages
from gsdd_cli.sets.gsdfile import make_header, save_gsd

F = np.float32


def doc_decode(path, scale=1.0, raw_scaling=False):
    """[G, C, H', W'] float32 pixels, step by step as docs/format.md describes."""
    with safe_open(str(path), framework="pt") as f:
        md = f.metadata()
        t = {k: f.get_tensor(k).float().numpy() for k in ("xy", "cholesky", "rgb", "opacity")}
    h, w = json.loads(md["height"]), json.loads(md["width"])
    aa = json.loads(md["antialias"])
    off = np.array(json.loads(md["cholesky_offset"]), dtype=F)
    chol = t["cholesky"]
    if not raw_scaling:
        chol = chol + off  # step 2: decode
    ho, wo = round(h * scale), round(w * scale)  # step 3: scale the decoded factor
    if scale != 1.0:
        chol = chol * np.array([wo / w, ho / h, ho / h], dtype=F)
    if raw_scaling:  # the wrong reading: scale the raw entries, then add the offset
        chol = chol + off
    x, y = t["xy"][..., 0], t["xy"][..., 1]  # [G, N]
    l11, l21, l22 = chol[..., 0], chol[..., 1], chol[..., 2]
    px, py = F(wo / 2.0) * (x + F(1)), F(ho / 2.0) * (y + F(1))  # step 4
    s = F(1 / 12) if aa else F(0)
    a = np.maximum(l11 * l11 + s, F(1 / 16))
    b = l11 * l21
    c = np.maximum(l21 * l21 + l22 * l22 + s, F(1 / 16))
    det = a * c - b * b
    inv = F(1) / det
    q11, q12, q22 = c * inv, -b * inv, a * inv
    m = F(0.5) * (a + c)  # step 5: tile box
    lam = m + np.sqrt(np.maximum(m * m - det, F(0.1)))
    r = np.ceil(F(3) * np.sqrt(lam))
    tx_n, ty_n = -(-wo // 16), -(-ho // 16)
    tx0 = np.clip(np.trunc((px - r) / F(16)), 0, tx_n)
    tx1 = np.clip(np.trunc((px + r) / F(16) + F(1)), 0, tx_n)
    ty0 = np.clip(np.trunc((py - r) / F(16)), 0, ty_n)
    ty1 = np.clip(np.trunc((py + r) / F(16) + F(1)), 0, ty_n)
    offs = [0.25, 0.75] if aa else [0.5]
    rgb, op = t["rgb"], t["opacity"][..., 0]
    g, n, ch = rgb.shape
    out = np.zeros((g, ch, ho, wo), dtype=np.float64)
    for i in range(ho):
        for j in range(wo):
            inside = (tx0 <= j // 16) & (j // 16 < tx1) & (ty0 <= i // 16) & (i // 16 < ty1)  # [G, N]
            acc = np.zeros((g, ch), dtype=F)
            for v in offs:
                for u in offs:  # step 6: one sub-sample
                    dx, dy = px - F(j + u), py - F(i + v)
                    sig = F(0.5) * (q11 * dx * dx + q22 * dy * dy) + q12 * dx * dy
                    wt = np.minimum(op * np.exp(-sig), F(1))
                    keep = (sig >= 0) & (wt >= F(1 / 255)) & inside
                    acc += np.einsum("gn,gnc->gc", np.where(keep, wt, F(0)), rgb)  # step 7: sum
            out[:, :, i, j] = acc / F(len(offs) ** 2)
    return out.astype(F)


def to_levels(x):
    return np.round(np.clip(x, 0, 1).astype(F) * F(255)).astype(np.uint8)


@pytest.fixture(scope="module")
def gsd_file(tmp_path_factory):
    gen = torch.Generator().manual_seed(3)
    imgs = GaussianImages.random(num_classes=2, gpc=2, points=30, channels=3, height=12, width=20, generator=gen)
    with torch.no_grad():  # wider spread of sizes and opacities than the random start
        imgs.cholesky.mul_(torch.rand(imgs.cholesky.shape, generator=gen) * 6)
        imgs.opacity.uniform_(0.0, 1.5, generator=gen)
    path = tmp_path_factory.mktemp("dec") / "d.gsd"
    save_gsd(path, imgs, make_header(imgs, dataset="toy", class_names=["a", "b"], ipc=1))
    return path


@pytest.mark.parametrize("scale", [1.0, 1.7, 0.55])
def test_doc_decoder_matches_render(gsd_file, tmp_path, scale):
    res = CliRunner().invoke(app, ["render", str(gsd_file), "--png", str(tmp_path / "png"), "--scale", str(scale),
                                   "--backend", "reference", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    mine = doc_decode(gsd_file, scale)
    g, ch, ho, wo = mine.shape
    assert (ho, wo) == (round(12 * scale), round(20 * scale))
    files = sorted((tmp_path / "png").glob("*.png"))
    assert len(files) == g
    theirs = np.stack([np.asarray(Image.open(f)).transpose(2, 0, 1) for f in files])
    diff = np.abs(to_levels(mine).astype(int) - theirs.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())
    # float agreement with the library's render (same steps, different exp/summation order)
    from gsdd_cli.sets.gsdfile import load_gsd

    lib = load_gsd(gsd_file).images.render(scale=scale, backend="reference").detach().numpy()
    print("max float diff", np.abs(lib - mine).max(), "levels differing", (diff > 0).sum(), "of", diff.size)
    assert np.abs(lib - mine).max() < 2e-5


def test_scaling_raw_entries_is_wrong(gsd_file):
    right = to_levels(doc_decode(gsd_file, 2.5)).astype(int)
    wrong = to_levels(doc_decode(gsd_file, 2.5, raw_scaling=True)).astype(int)
    print("raw-entry scaling max level error", np.abs(right - wrong).max())
    assert np.abs(right - wrong).max() > 10  # the offset must be scaled too (docs/format.md step 3)
