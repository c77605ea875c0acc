"""DSA (docs/method.md §5.5): each op, differentiability, Siamese determinism, global-RNG hygiene."""

import pytest
import torch

from gsdd_cli.data import DSAParams, dsa
from gsdd_cli.data.augment import OPS, parse_strategy
from gsdd_cli.core.errors import ConfigError

SINGLE_OPS = ["brightness", "saturation", "contrast", "crop", "cutout", "flip", "scale", "rotate"]


def _img(b=4, c=3, s=32, seed=0, dtype=torch.float32):
    return torch.rand(b, c, s, s, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("op", SINGLE_OPS)
def test_each_op_changes_images_and_keeps_shape(op):
    x = _img()
    outs = [dsa(x, op, seed=s) for s in range(6)]
    assert all(o.shape == x.shape for o in outs)
    assert any(not torch.allclose(o, x) for o in outs)


@pytest.mark.parametrize("op", SINGLE_OPS + ["color"])
def test_each_op_is_differentiable(op):
    x = _img(b=2, c=3, s=8, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: dsa(t, op, seed=5), (x,), eps=1e-6, atol=1e-4)
    y = dsa(x, op, seed=-1)
    y.sum().backward()
    assert x.grad is not None


def test_full_strategy_gradient_nonzero():
    x = _img().requires_grad_(True)
    for s in range(8):
        x.grad = None
        (dsa(x, seed=s) ** 2).sum().backward()
        assert x.grad.abs().sum() > 0


def test_siamese_same_seed_same_output_and_shared_params():
    a, b = _img(seed=1), _img(b=3, seed=2)
    for s in range(20):
        assert torch.equal(dsa(a, seed=s), dsa(a, seed=s))
        # one parameter set for the whole batch: augmenting the concatenation = augmenting each part
        both = dsa(torch.cat([a, b]), seed=s)
        assert torch.allclose(both, torch.cat([dsa(a, seed=s), dsa(b, seed=s)]), atol=1e-6)


def test_different_seeds_differ():
    x = _img()
    outs = [dsa(x, seed=s) for s in range(10)]
    assert len({o.sum().item() for o in outs}) > 5


def test_non_siamese_is_per_sample():
    x = _img(b=1).expand(16, -1, -1, -1).contiguous()
    y = dsa(x, "brightness", seed=-1)
    offsets = (y - x).mean(dim=(1, 2, 3))
    assert offsets.unique().numel() > 8 and offsets.abs().max() <= 0.5 + 1e-6


def test_seeded_calls_leave_global_rng_alone():
    state = torch.get_rng_state()
    dsa(_img(), seed=3)
    assert torch.equal(state, torch.get_rng_state())


def test_crop_is_integer_translation_with_zero_border():
    x = torch.arange(32 * 32, dtype=torch.float32).reshape(1, 1, 32, 32) + 1
    for s in range(10):
        y = dsa(x, "crop", seed=s)[0, 0]
        nz = y[y > 0]
        # every non-zero output pixel is an input pixel, and the shift is at most 4 px
        assert torch.isin(nz, x.flatten()).all()
        shift = (y[16, 16] - x[0, 0, 16, 16]).item()
        dy, dx = divmod(int(shift) + 4 * 32 + 4, 32)
        assert abs(dy - 4) <= 4 and abs(dx - 4) <= 4


def test_cutout_zeroes_a_square_of_half_size():
    x = torch.ones(1, 1, 32, 32)
    for s in range(10):
        y = dsa(x, "cutout", seed=s)[0, 0]
        zeros = (y == 0).nonzero()
        rows, cols = zeros[:, 0], zeros[:, 1]
        assert rows.max() - rows.min() + 1 <= 16 and cols.max() - cols.min() + 1 <= 16
        assert zeros.shape[0] == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)


def test_flip_and_color_formulas():
    x = _img()
    flips = [dsa(x, "flip", seed=s) for s in range(10)]
    assert all(torch.equal(f, x) or torch.equal(f, x.flip(3)) for f in flips)
    assert any(torch.equal(f, x.flip(3)) for f in flips)
    y = dsa(x, "brightness", seed=0)
    d = y - x
    assert torch.allclose(d, d.flatten()[0].expand_as(d)) and d.abs().max() <= 0.5
    gray = x.mean(dim=1, keepdim=True).expand_as(x)
    assert torch.allclose(dsa(gray, "saturation", seed=0), gray, atol=1e-6)  # no colour, no change


def test_scale_and_rotate_keep_centre():
    x = torch.zeros(1, 1, 33, 33)
    x[0, 0, 16, 16] = 1.0
    for op in ("scale", "rotate"):
        for s in range(5):
            y = dsa(x, op, seed=s)
            assert y[0, 0, 16, 16] > 0.5


def test_strategy_parsing():
    assert parse_strategy("none") == [] and torch.equal(dsa(_img(), "none"), _img())
    assert parse_strategy("color_crop_cutout_flip_scale_rotate") == ["color", "crop", "cutout", "flip",
                                                                     "scale", "rotate"]
    with pytest.raises(ConfigError, match="blur"):
        dsa(_img(), "color_blur")
    assert set(SINGLE_OPS) <= set(OPS)


def test_params_are_used():
    x = _img()
    weak = dsa(x, "brightness", seed=0, param=DSAParams(brightness=0.0))
    assert torch.equal(weak, x)
