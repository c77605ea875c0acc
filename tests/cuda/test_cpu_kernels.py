"""The native CPU kernels (gsdd_cuda/csrc/rasterize_cpu.cpp) against the PyTorch reference.

They run the very math the CUDA kernels run (gsdd_math.h), so these tests also check the GPU's
formulas: forward and all four gradients in float64 (to 1e-12 / 1e-9) and float32 (the GPU
tolerances), gradcheck, every keep/drop threshold, the tile boxes bit for bit, and determinism.
The library is built on first use (JIT); CI sets GSDD_REQUIRE_BUILD=1, so a failed build fails
here instead of skipping.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

import gsdd_cuda
import gsdd_cuda.ops  # ops.rasterize: the native op itself, no backend choice

if not gsdd_cuda.is_available("cpu"):
    _why = f"native CPU kernels unavailable: {gsdd_cuda.unavailable_reason('cpu')}"
    if os.environ.get("GSDD_REQUIRE_BUILD") == "1":
        pytest.fail(_why, pytrace=False)
    pytest.skip(_why, allow_module_level=True)

from gsdd_cuda import NativeUnavailableError, rasterize  # noqa: E402
from gsdd_cuda.reference import ALPHA_MIN, TILE, project, rasterize_reference  # noqa: E402
from gsdd_cuda.testing import (  # noqa: E402
    assert_bitwise_equal,
    forward_backward,
    sample_inputs,
)

F64 = torch.float64
F32 = torch.float32


def _run(inputs, b, h, w, aa, fn, v_out=None, seed=7):
    params = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*params, b, h, w, antialias=aa)
    if v_out is None:
        v_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return out.detach(), torch.autograd.grad(out, params, v_out), v_out


def _native(*args, antialias=True):
    return gsdd_cuda.ops.rasterize(*args, antialias=antialias)


def _reference(*args, antialias=True):
    return rasterize_reference(*args, antialias=antialias)


def _compare(inputs, b, h, w, aa, fwd_atol, grad_rtol, grad_atol_rel):
    ref, ref_g, v = _run(inputs, b, h, w, aa, _reference)
    got, got_g, _ = _run(inputs, b, h, w, aa, _native, v_out=v)
    assert got.shape == ref.shape and got.dtype == ref.dtype
    scale = max(1.0, float(ref.abs().max()))
    torch.testing.assert_close(got, ref, rtol=0, atol=fwd_atol * scale)
    for name, g, r in zip(("xy", "chol", "rgb", "opacity"), got_g, ref_g):
        assert g.shape == r.shape and g.dtype == r.dtype, name
        atol = grad_atol_rel * max(float(r.abs().max()), 1e-30)
        torch.testing.assert_close(g, r, rtol=grad_rtol, atol=atol, msg=lambda m, name=name: f"d{name}: {m}")
    return ref, ref_g


CASES = [
    # B, N, C, H, W, kind
    (2, 12, 3, 32, 32, "mixed"),
    (3, 9, 1, 20, 37, "mixed"),  # H != W, not multiples of 16, one channel
    (2, 7, 4, 17, 16, "border"),  # C = 4
    (1, 7, 5, 24, 40, "mixed"),  # C = 5 (more channels than a GPU channel group)
    (4, 22, 3, 32, 32, "realistic"),
    (1, 1, 3, 48, 33, "mixed"),  # N = 1
    (2, 300, 3, 48, 48, "mixed"),  # N > 256 (several GPU chunks)
    (2, 30, 3, 128, 96, "realistic"),
    (2, 8, 2, 1, 1, "mixed"),  # 1×1 image
]


def _case_id(c):
    return "B{}N{}C{}_{}x{}_{}".format(*c)


@pytest.mark.parametrize("antialias", [True, False], ids=["aa", "noaa"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_float64_matches_reference(case, antialias):
    b, n, c, h, w, kind = case
    inputs = sample_inputs("cpu", b, n, c, h, w, kind=kind, seed=sum(case[:5]), dtype=F64)
    ref, grads = _compare(inputs, b, h, w, antialias, fwd_atol=1e-12, grad_rtol=1e-9, grad_atol_rel=1e-12)
    if h > 1:
        assert ref.abs().max() > 0.05, "degenerate case: nothing rendered"
        assert all(g.abs().max() > 0 for g in grads)


@pytest.mark.parametrize("antialias", [True, False], ids=["aa", "noaa"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_float32_matches_reference(case, antialias):
    """The GPU tests' tolerances: forward 1e-5 (scaled by max(1, |ref|)), gradients 1e-4."""
    b, n, c, h, w, kind = case
    inputs = sample_inputs("cpu", b, n, c, h, w, kind=kind, seed=1 + sum(case[:5]), dtype=F32)
    _compare(inputs, b, h, w, antialias, fwd_atol=1e-5, grad_rtol=1e-4, grad_atol_rel=1e-4)


def test_float32_cifar10_ipc1_scale():
    """300 images × 22 Gaussians at 32² (the benchmark's cifar10-ipc1 inputs), float32."""
    b, n, c, h, w = 300, 22, 3, 32, 32
    inputs = sample_inputs("cpu", b, n, c, h, w, kind="realistic", seed=0)
    _compare(inputs, b, h, w, True, fwd_atol=1e-5, grad_rtol=1e-4, grad_atol_rel=1e-4)


@pytest.mark.parametrize("kind", ["offimage", "huge"])
def test_off_image_and_larger_than_image(kind):
    b, n, c, h, w = 3, 6, 3, 24, 20
    if kind == "offimage":
        inputs = sample_inputs("cpu", b, n, c, h, w, kind="offimage", seed=3, dtype=F64)
    else:  # every Gaussian wider than the image: boxes cover it all
        xy, chol, rgb, opacity = sample_inputs("cpu", b, n, c, h, w, kind="realistic", seed=3, dtype=F64)
        inputs = (xy, chol * 12.0, rgb, opacity)
    ref, grads = _compare(inputs, b, h, w, True, fwd_atol=1e-12, grad_rtol=1e-9, grad_atol_rel=1e-12)
    if kind == "offimage":
        assert torch.all(ref == 0) and all(torch.all(g == 0) for g in grads)
    else:
        assert (ref.abs() > 0).float().mean() > 0.9


def test_zero_gaussians_per_image():
    inputs = [torch.zeros(0, k, requires_grad=True) for k in (2, 3, 3, 1)]
    out = gsdd_cuda.ops.rasterize(*inputs, 3, 20, 24)
    assert out.shape == (3, 3, 20, 24) and torch.all(out == 0)
    grads = torch.autograd.grad(out.sum(), inputs)
    assert [g.shape for g in grads] == [t.shape for t in inputs]


def test_gradcheck_float64(gen):
    """Finite differences through the native op (inputs away from the cut-offs and box edges)."""
    total = 2 * 3
    xy = (torch.rand(total, 2, generator=gen, dtype=F64) * 2 - 1) * 0.8
    chol = torch.rand(total, 3, generator=gen, dtype=F64) * 6.0 + 0.3
    chol[:, 1] -= 0.5 * chol[:, 1].mean()
    rgb = torch.rand(total, 2, generator=gen, dtype=F64)
    opacity = torch.rand(total, 1, generator=gen, dtype=F64) * 0.7 + 0.2
    inputs = [t.clone().requires_grad_(True) for t in (xy, chol, rgb, opacity)]
    for aa in (True, False):
        assert torch.autograd.gradcheck(
            lambda a, b, c, d, aa=aa: gsdd_cuda.ops.rasterize(a, b, c, d, 2, 12, 10, antialias=aa),
            inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


# ------------------------------------------------------------------------------- thresholds ---
def _one_gaussian_at_sample(dtype, opacity, antialias=False, size=16):
    """One isotropic Gaussian centred exactly on the centre sample of pixel (7, 7): σ = 0 there."""
    p = 7.5  # pixel centre (antialias off) in pixels; x = p / (W/2) − 1 is exact in binary
    xy = torch.tensor([[p / (size / 2) - 1, p / (size / 2) - 1]], dtype=dtype)
    chol = torch.tensor([[2.0, 0.0, 2.0]], dtype=dtype)
    rgb = torch.tensor([[1.0, 0.5, 0.25]], dtype=dtype)
    return xy, chol, rgb, torch.tensor([[opacity]], dtype=dtype)


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_alpha_cutoff_at_the_threshold(dtype):
    """w = o·e^{-0} = o exactly: o = 1/255 (in the dtype) is kept, the next value below dropped."""
    alpha = torch.tensor(ALPHA_MIN, dtype=dtype)
    below = torch.nextafter(alpha, torch.tensor(0.0, dtype=dtype))
    for o, kept in ((float(alpha), True), (float(below), False)):
        inputs = _one_gaussian_at_sample(dtype, o)
        ref, ref_g, v = _run(inputs, 1, 16, 16, False, _reference)
        got, got_g, _ = _run(inputs, 1, 16, 16, False, _native, v_out=v)
        assert (float(got[0, 0, 7, 7]) == float(alpha)) == kept
        assert float(got[0, 0, 7, 7]) == float(ref[0, 0, 7, 7])
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-6 if dtype == F32 else 1e-15)
        for g, r in zip(got_g, ref_g):
            torch.testing.assert_close(g, r, rtol=1e-5 if dtype == F32 else 1e-12, atol=1e-9)


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_clamp_at_one_at_the_threshold(dtype):
    """At σ = 0 the sample's o·e is o: just below 1 the derivative of min(1, ·) passes, at 1 and
    above it is 0 (the reference's explicit convention: 0 at the boundary)."""
    one = torch.tensor(1.0, dtype=dtype)
    below = torch.nextafter(one, torch.tensor(0.0, dtype=dtype))
    above = torch.nextafter(one, torch.tensor(2.0, dtype=dtype))
    results = []
    for o in (float(below), float(one), float(above)):
        inputs = _one_gaussian_at_sample(dtype, o)
        v = torch.zeros(1, 3, 16, 16, dtype=dtype)
        v[0, :, 7, 7] = 1.0  # only the pixel whose sample sits at σ = 0
        ref, ref_g, _ = _run(inputs, 1, 16, 16, False, _reference, v_out=v)
        got, got_g, _ = _run(inputs, 1, 16, 16, False, _native, v_out=v)
        assert torch.equal(got[0, :, 7, 7], ref[0, :, 7, 7])  # e^{-0} = 1 in both: exact
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-6 if dtype == F32 else 1e-15)
        for g, r in zip(got_g, ref_g):
            torch.testing.assert_close(g, r, rtol=1e-6, atol=0)
        results.append(float(got_g[3]))
    assert results[0] == 1.75 and results[1] == 0.0 and results[2] == 0.0  # ∂o = Σ_c c_c·G_c = 1.75 below 1


def test_negative_sigma_samples_are_dropped():
    """Without the pixel filter a degenerate L (L22 = 0) makes Σ' singular up to rounding: the
    rounded conic is indefinite and some samples have σ < 0. Both renderers drop exactly those."""
    gen = torch.Generator().manual_seed(5)
    total = 400
    l11 = torch.rand(total, generator=gen, dtype=F32) * 3 + 0.3
    chol = torch.stack([l11, torch.rand(total, generator=gen, dtype=F32) * 3 + 0.3, torch.zeros(total)], -1)
    xy = torch.rand(total, 2, generator=gen, dtype=F32) * 1.6 - 0.8
    rgb = torch.rand(total, 3, generator=gen, dtype=F32)
    opacity = torch.full((total, 1), 0.9)
    _, conic, _ = project(xy, chol, 16, 16, antialias=False)
    finite = torch.isfinite(conic).all(-1)
    indefinite = finite & (conic[:, 0] * conic[:, 2] - conic[:, 1] ** 2 < 0)
    assert indefinite.sum() > 10, "the test needs indefinite conics"
    for b in (total,):
        ref = rasterize_reference(xy, chol, rgb, opacity, b, 16, 16, antialias=False)
        got = gsdd_cuda.ops.rasterize(xy, chol, rgb, opacity, b, 16, 16, antialias=False)
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-5 * max(1.0, float(ref.abs().max())))


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_tile_box_edges(dtype):
    """px − r lands exactly on a tile boundary (x0 = 1: tile 0 is cut off, although the Gaussian
    reaches into it) and one ulp to the left of it (x0 = 0). Both renderers agree on every pixel."""
    size = 48
    # isotropic L = 2, no filter: λ = 4 + sqrt(0.1), r = ceil(3·sqrt(λ)) = 7
    chol = torch.tensor([[2.0, 0.0, 2.0]], dtype=dtype)
    rgb = torch.ones(1, 1, dtype=dtype)
    opacity = torch.full((1, 1), 100.0, dtype=dtype)  # the 1/255 cut-off lies 9 px out, past r
    edge = torch.tensor(TILE + 7.0, dtype=dtype)  # px with px − r = 16
    boxes = []
    for px in (edge, torch.nextafter(edge, torch.tensor(0.0, dtype=dtype))):
        x = px / (size / 2) - 1
        xy = torch.stack([x, torch.tensor(0.0, dtype=dtype)]).reshape(1, 2)
        assert float((x + 1) * (size / 2)) == float(px)
        ref = rasterize_reference(xy, chol, rgb, opacity, 1, size, size, antialias=False)
        got = gsdd_cuda.ops.rasterize(xy, chol, rgb, opacity, 1, size, size, antialias=False)
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-6 if dtype == F32 else 1e-15)
        _, _, box = gsdd_cuda.project(xy, chol, size, size, antialias=False)
        boxes.append(int(box[0, 0]))
        assert got[0, 0, 24, 15] == 0 if boxes[-1] == 1 else got[0, 0, 24, 15] > 0
    assert boxes == [1, 0]


@pytest.mark.parametrize("antialias", [True, False], ids=["aa", "noaa"])
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_projection_is_bitwise_the_reference(dtype, antialias):
    """gsdd_math.h's projection (the CPU op runs it; the GPU runs the same code) reproduces
    reference.project bit for bit: centres, conics and tile boxes, 3·40 000 random Gaussians of
    all sizes, many near box edges."""
    gen = torch.Generator().manual_seed(11)
    for height, width in ((32, 32), (128, 128), (20, 37)):
        total = 40000
        xy = (torch.rand(total, 2, generator=gen) * 2.4 - 1.2).to(dtype)
        chol = (torch.randn(total, 3, generator=gen) * torch.rand(total, 1, generator=gen).pow(3) * 40).to(dtype)
        p_ref, conic_ref, box_ref = project(xy, chol, height, width, antialias)
        p, conic, box = gsdd_cuda.project(xy, chol, height, width, antialias)
        finite = torch.isfinite(torch.cat([p_ref, conic_ref], -1)).all(-1)
        assert finite.float().mean() > 0.99
        assert torch.equal(p[finite], p_ref[finite])
        assert torch.equal(conic[finite], conic_ref[finite])
        assert torch.equal(box[finite].long(), box_ref[finite])
        assert torch.all(box[~finite] == 0)  # skipped: the reference renders nothing for them either


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_huge_opacity_uses_the_accurate_exp(dtype):
    """o = 1e35: samples pass up to σ ≈ 86, beyond the fast exp's range; the kernels switch to
    the accurate exp for such a Gaussian (fast_exp_ok)."""
    xy = torch.tensor([[0.0, 0.0], [0.3, -0.2]], dtype=dtype)
    chol = torch.tensor([[1.0, 0.2, 0.8], [0.5, 0.0, 0.5]], dtype=dtype)
    rgb = torch.tensor([[1.0], [0.5]], dtype=dtype)
    opacity = torch.tensor([[1e35], [0.5]], dtype=dtype)
    _compare((xy, chol, rgb, opacity), 1, 32, 32, True, fwd_atol=1e-6, grad_rtol=1e-4, grad_atol_rel=1e-6)


def test_opacity_cull_is_exact():
    """Opacity below 0.999/255 is skipped before projection: it can never pass w >= 1/255."""
    inputs = list(_one_gaussian_at_sample(F32, 0.999 / 255))
    assert torch.all(gsdd_cuda.ops.rasterize(*inputs, 1, 16, 16, antialias=False) == 0)
    assert math.isclose(ALPHA_MIN, 1 / 255)


# ------------------------------------------------------------------------------ determinism ---
def test_backward_is_bitwise_deterministic_across_runs_and_thread_counts():
    b, n, c, h, w = 64, 40, 3, 32, 32
    inputs = sample_inputs("cpu", b, n, c, h, w, kind="mixed", seed=21)
    v = torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(2))
    threads = torch.get_num_threads()
    runs = []
    try:
        for t in (threads, threads, 1):
            torch.set_num_threads(t)
            runs.append(forward_backward(inputs, v, b, h, w))
    finally:
        torch.set_num_threads(threads)
    assert_bitwise_equal(runs)


# ------------------------------------------------------------------------------ integration ---
def test_entry_point_backends():
    xy, chol, rgb, opacity = sample_inputs("cpu", 2, 6, 3, 16, 16, seed=9)
    native = gsdd_cuda.ops.rasterize(xy, chol, rgb, opacity, 2, 16, 16)
    assert torch.equal(rasterize(xy, chol, rgb, opacity, 2, 16, 16), native)  # auto
    assert torch.equal(rasterize(xy, chol, rgb, opacity, 2, 16, 16, backend="native"), native)
    ref = rasterize(xy, chol, rgb, opacity, 2, 16, 16, backend="reference")
    assert torch.equal(ref, rasterize_reference(xy, chol, rgb, opacity, 2, 16, 16))
    with pytest.raises(NativeUnavailableError, match="needs tensors on a GPU"):
        rasterize(xy, chol, rgb, opacity, 2, 16, 16, backend="cuda")


def test_bf16_inputs_run_in_float32_and_keep_their_gradient_dtype():
    params = [t.to(torch.bfloat16).requires_grad_(True) for t in sample_inputs("cpu", 2, 5, 3, 16, 16, seed=6)]
    out = gsdd_cuda.ops.rasterize(*params, 2, 16, 16)
    assert out.dtype == torch.float32
    grads = torch.autograd.grad(out.sum(), params)
    assert all(g.dtype == torch.bfloat16 and g.shape == p.shape for g, p in zip(grads, params))


def test_errors_are_reported():
    xy, chol, rgb, opacity = sample_inputs("cpu", 2, 4, 3, 16, 16)
    with pytest.raises(RuntimeError, match="cannot be split"):
        gsdd_cuda.ops.rasterize(xy, chol, rgb, opacity, 3, 16, 16)
    with pytest.raises(RuntimeError, match="chol must be"):
        gsdd_cuda.ops.rasterize(xy, chol[:, :2], rgb, opacity, 2, 16, 16)
    with pytest.raises(RuntimeError, match="one dtype"):
        torch.ops.gsdd.rasterize_fwd(xy, chol.double(), rgb, opacity, 2, 16, 16, True)
    with pytest.raises(RuntimeError, match="v_out must be"):
        torch.ops.gsdd.rasterize_bwd(torch.zeros(2, 3, 8, 8), xy, chol, rgb, opacity, 2, 16, 16, True)


@pytest.mark.parametrize("antialias", [True, False], ids=["aa", "noaa"])
def test_opcheck(antialias):
    b, n, c, h, w = 2, 5, 3, 16, 16
    xy, chol, rgb, opacity = sample_inputs("cpu", b, n, c, h, w, kind="realistic", seed=6, requires_grad=True)
    torch.library.opcheck(torch.ops.gsdd.rasterize_fwd.default, (xy, chol, rgb, opacity, b, h, w, antialias))
    v_out = torch.randn(b, c, h, w)
    bwd_args = (v_out,) + tuple(t.detach() for t in (xy, chol, rgb, opacity)) + (b, h, w, antialias)
    torch.library.opcheck(torch.ops.gsdd.rasterize_bwd.default, bwd_args,
                          test_utils=("test_schema", "test_faketensor"))
    torch.library.opcheck(torch.ops.gsdd.project.default, (xy.detach(), chol.detach(), h, w, antialias),
                          test_utils=("test_schema", "test_faketensor"))


def test_torch_compile_fullgraph_captures_the_op():
    b, n, c, h, w = 3, 8, 3, 16, 16
    inputs = sample_inputs("cpu", b, n, c, h, w, kind="realistic", seed=12)
    target = torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(3))

    def loss_fn(xy, chol, rgb, opacity):
        return (gsdd_cuda.ops.rasterize(xy, chol, rgb, opacity, b, h, w) - target).square().mean()

    compiled = torch.compile(loss_fn, fullgraph=True, backend="eager")
    p_eager = [t.clone().requires_grad_(True) for t in inputs]
    p_comp = [t.clone().requires_grad_(True) for t in inputs]
    l_eager, l_comp = loss_fn(*p_eager), compiled(*p_comp)
    assert torch.equal(l_comp, l_eager)
    for a, z in zip(torch.autograd.grad(l_comp, p_comp), torch.autograd.grad(l_eager, p_eager)):
        assert torch.equal(a, z)
