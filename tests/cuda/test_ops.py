"""GPU tests of the CUDA kernels against the PyTorch reference and the CPU kernels.

Skipped (module level, with the reason) without a CUDA device; with a GPU, a missing CUDA library
is a failure (GSDD_REQUIRE_BUILD=1, as scripts/gpu_checks.sh sets) or a skip. The reference runs
in float32 on the same GPU, where its exp is the expf the kernels' accurate path uses, so every
keep/drop decision matches and outputs differ only by summation order: forward <= 1e-5
(scaled by max(1, |ref|)), gradients ~1e-4 relative.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("no CUDA device (torch.cuda.is_available() is False)", allow_module_level=True)

import gsdd_cuda  # noqa: E402
import gsdd_cuda.ops  # noqa: E402  (ops.rasterize: the native op itself, no backend choice)

if not gsdd_cuda.is_available("cuda"):
    _why = f"gsdd CUDA kernels unavailable: {gsdd_cuda.unavailable_reason('cuda')}"
    if os.environ.get("GSDD_REQUIRE_BUILD") == "1":
        pytest.fail(_why, pytrace=False)
    pytest.skip(_why, allow_module_level=True)

from gsdd_cuda.reference import project, rasterize_reference  # noqa: E402
from gsdd_cuda.testing import (  # noqa: E402
    assert_bitwise_equal,
    forward_backward,
    sample_inputs,
)

pytestmark = pytest.mark.cuda
DEV = "cuda"


@pytest.fixture(autouse=True)
def _exact_matmul():
    # the reference sums with bmm: keep TF32 off so it is a float32 sum
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = old


def _reference(inputs, num_images, height, width, antialias=True):
    return rasterize_reference(*inputs, num_images, height, width, antialias=antialias)


def _assert_images_close(got, want, atol=1e-5):
    got, want = got.detach(), want.detach()
    scale = max(1.0, float(want.abs().max()))
    err = (got - want).abs()
    bad = int((err > atol * scale).sum())
    assert bad == 0, (f"{bad} of {err.numel()} values differ by more than {atol * scale:g}; "
                      f"max err {float(err.max()):.3g}")


def _assert_grads_close(got, want, names=("xy", "chol", "rgb", "opacity"), rtol=1e-4, atol_rel=1e-4):
    for name, g, w in zip(names, got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, name
        atol = atol_rel * max(float(w.abs().max()), 1e-12)
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol, msg=lambda m, name=name: f"d{name}: {m}")


FWD_CASES = [
    # B, N, C, H, W, kind
    (1, 1, 3, 32, 32, "mixed"),
    (4, 22, 3, 32, 32, "realistic"),
    (8, 42, 3, 32, 32, "mixed"),
    (3, 17, 1, 20, 37, "mixed"),  # H != W, not multiples of 16, one channel
    (2, 30, 3, 128, 128, "realistic"),
    (2, 30, 3, 128, 128, "mixed"),
    (5, 13, 3, 33, 15, "border"),
    (3, 9, 5, 24, 40, "mixed"),  # C > 4: two channel groups
    (2, 300, 3, 48, 48, "mixed"),  # N > 256: several shared-memory chunks
    (3, 11, 3, 32, 32, "offimage"),
    (2, 8, 2, 1, 1, "mixed"),  # 1x1 image
]


def _case_id(c):
    return "B{}N{}C{}_{}x{}_{}".format(*c)


@pytest.mark.parametrize("antialias", [True, False], ids=["aa", "noaa"])
@pytest.mark.parametrize("case", FWD_CASES, ids=_case_id)
def test_forward_matches_reference(case, antialias):
    b, n, c, h, w, kind = case
    inputs = sample_inputs(DEV, b, n, c, h, w, kind=kind, seed=sum(case[:5]))
    got = gsdd_cuda.ops.rasterize(*inputs, b, h, w, antialias=antialias)
    want = _reference(inputs, b, h, w, antialias)
    assert got.shape == (b, c, h, w) and got.dtype == torch.float32
    _assert_images_close(got, want)
    if kind == "offimage":
        assert torch.all(got == 0)


@pytest.mark.parametrize("antialias", [True, False], ids=["aa", "noaa"])
@pytest.mark.parametrize("case", [c for c in FWD_CASES if c[5] != "offimage"], ids=_case_id)
def test_gradients_match_reference(case, antialias):
    b, n, c, h, w, kind = case
    inputs = sample_inputs(DEV, b, n, c, h, w, kind=kind, seed=1 + sum(case[:5]))
    p_cuda = [t.clone().requires_grad_(True) for t in inputs]
    p_ref = [t.clone().requires_grad_(True) for t in inputs]
    out = gsdd_cuda.ops.rasterize(*p_cuda, b, h, w, antialias=antialias)
    ref = _reference(p_ref, b, h, w, antialias)
    v_out = torch.randn(ref.shape, device=DEV, generator=torch.Generator(DEV).manual_seed(5))
    _assert_grads_close(torch.autograd.grad(out, p_cuda, v_out), torch.autograd.grad(ref, p_ref, v_out))


@pytest.mark.parametrize("kind", ["realistic", "mixed"])
def test_multi_chunk_128px(kind):
    """B = 64 images of N = 600 Gaussians at 128²: three shared-memory chunks per tile and 64 tiles
    per image, forward and backward against the reference."""
    b, n, c, h, w = 64, 600, 3, 128, 128
    inputs = sample_inputs(DEV, b, n, c, h, w, kind=kind, seed=64)
    p_cuda = [t.clone().requires_grad_(True) for t in inputs]
    p_ref = [t.clone().requires_grad_(True) for t in inputs]
    out = gsdd_cuda.ops.rasterize(*p_cuda, b, h, w)
    ref = _reference(p_ref, b, h, w)
    _assert_images_close(out, ref)
    v_out = torch.randn(ref.shape, device=DEV, generator=torch.Generator(DEV).manual_seed(6)) / 100
    _assert_grads_close(torch.autograd.grad(out, p_cuda, v_out), torch.autograd.grad(ref, p_ref, v_out))


def test_cifar10_ipc50_scale_forward_and_backward():
    """2500 images × 136 Gaussians at 32×32 (CIFAR-10 IPC50), against the chunked reference."""
    b, n, c, h, w = 2500, 136, 3, 32, 32
    inputs = sample_inputs(DEV, b, n, c, h, w, kind="realistic", seed=50)
    p_cuda = [t.clone().requires_grad_(True) for t in inputs]
    p_ref = [t.clone().requires_grad_(True) for t in inputs]
    out = gsdd_cuda.ops.rasterize(*p_cuda, b, h, w)
    ref = _reference(p_ref, b, h, w)
    _assert_images_close(out, ref.detach())
    v_out = torch.randn(ref.shape, device=DEV, generator=torch.Generator(DEV).manual_seed(9)) / 100
    _assert_grads_close(torch.autograd.grad(out, p_cuda, v_out), torch.autograd.grad(ref, p_ref, v_out))


@pytest.mark.parametrize("antialias", [True, False], ids=["aa", "noaa"])
def test_tile_boxes_on_the_gpu(antialias):
    """The CUDA projection (gsdd_math.h with the _rn intrinsics) equals the reference's on the GPU
    and the CPU kernels' (the same code with plain IEEE operators) bit for bit."""
    gen = torch.Generator().manual_seed(11)
    for height, width in ((32, 32), (128, 128), (20, 37)):
        total = 100_000
        xy = torch.rand(total, 2, generator=gen) * 2.4 - 1.2
        chol = torch.randn(total, 3, generator=gen) * torch.rand(total, 1, generator=gen).pow(3) * 40
        p, conic, box = gsdd_cuda.project(xy.to(DEV), chol.to(DEV), height, width, antialias)
        p_ref, conic_ref, box_ref = project(xy.to(DEV), chol.to(DEV), height, width, antialias)
        finite = torch.isfinite(torch.cat([p_ref, conic_ref], -1)).all(-1)
        assert finite.float().mean() > 0.99
        assert torch.equal(p[finite], p_ref[finite]) and torch.equal(conic[finite], conic_ref[finite])
        assert torch.equal(box[finite].long(), box_ref[finite])
        p_cpu, conic_cpu, box_cpu = gsdd_cuda.project(xy, chol, height, width, antialias)
        assert torch.equal(p.cpu(), p_cpu) and torch.equal(box.cpu(), box_cpu)
        f = finite.cpu()
        assert torch.equal(conic.cpu()[f], conic_cpu[f])


def test_cpu_and_cuda_kernels_agree():
    b, n, c, h, w = 16, 40, 3, 32, 32
    inputs = sample_inputs("cpu", b, n, c, h, w, kind="mixed", seed=13)
    v = torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(1))
    results = []
    for dev in ("cpu", DEV):
        params = [t.to(dev).requires_grad_(True) for t in inputs]
        out = gsdd_cuda.ops.rasterize(*params, b, h, w)
        results.append([out.detach().cpu()] + [g.cpu() for g in torch.autograd.grad(out, params, v.to(dev))])
    _assert_images_close(results[1][0], results[0][0])
    _assert_grads_close(results[1][1:], results[0][1:])


def test_backward_is_bitwise_deterministic():
    b, n, c, h, w = 64, 300, 3, 64, 64
    inputs = sample_inputs(DEV, b, n, c, h, w, kind="mixed", seed=21)
    v = torch.randn(b, c, h, w, device=DEV, generator=torch.Generator(DEV).manual_seed(2))
    assert_bitwise_equal([forward_backward(inputs, v, b, h, w) for _ in range(3)])


def test_large_batch_2e7_gaussians():
    """B*N = 2·10^7 in one call; spot-check images against the reference."""
    b, n, c, h, w = 200_000, 100, 3, 16, 16
    inputs = sample_inputs(DEV, b, n, c, h, w, kind="realistic", seed=3)
    out = gsdd_cuda.ops.rasterize(*inputs, b, h, w)
    torch.cuda.synchronize()
    for img in (0, 12345, b - 1):
        sl = slice(img * n, (img + 1) * n)
        want = _reference([t[sl] for t in inputs], 1, h, w)
        _assert_images_close(out[img : img + 1], want)


def test_zero_gaussians_per_image():
    b, h, w = 3, 20, 24
    inputs = [torch.zeros(0, k, device=DEV, requires_grad=True) for k in (2, 3, 3, 1)]
    out = gsdd_cuda.ops.rasterize(*inputs, b, h, w)
    assert out.shape == (b, 3, h, w) and torch.all(out == 0)
    grads = torch.autograd.grad(out.sum(), inputs)
    assert [g.shape for g in grads] == [t.shape for t in inputs]


def test_opacity_edge_cases_and_shapes():
    """Zero, negative, > 1 and huge opacity; opacity given as [B*N]; bf16 inputs keep their dtype's grads."""
    xy = torch.tensor([[0.0, 0.0], [0.3, -0.2], [-0.5, 0.5], [0.1, 0.1]], device=DEV)
    chol = torch.tensor([[3.0, 0.5, 2.0], [1.0, 0.0, 1.0], [2.0, -1.0, 2.5], [0.5, 0.0, 0.5]], device=DEV)
    rgb = torch.rand(4, 3, device=DEV)
    for opacity in ([0.0, -1.0, 5.0, 1.0], [1e-3, 2.0, 0.5, 300.0], [1e35, 0.5, 1.0, 0.9]):
        o = torch.tensor(opacity, device=DEV)
        pc = [t.clone().requires_grad_(True) for t in (xy, chol, rgb, o)]
        pr = [t.clone().requires_grad_(True) for t in (xy, chol, rgb, o)]
        out = gsdd_cuda.ops.rasterize(*pc, 1, 32, 32)
        ref = _reference(pr, 1, 32, 32)
        _assert_images_close(out, ref)
        v = torch.randn_like(ref)
        _assert_grads_close(torch.autograd.grad(out, pc, v), torch.autograd.grad(ref, pr, v))
    params = [t.to(torch.bfloat16).requires_grad_(True) for t in (xy, chol, rgb, o)]
    out = gsdd_cuda.ops.rasterize(*params, 1, 32, 32)
    assert out.dtype == torch.float32
    grads = torch.autograd.grad(out.sum(), params)
    assert all(g.dtype == torch.bfloat16 and g.shape == p.shape for g, p in zip(grads, params))


def test_renderer_entry_point_uses_native():
    from gsdd_cuda import rasterize, resolve_backend

    assert resolve_backend("auto", torch.device(DEV)) == "native"
    assert resolve_backend("cuda", torch.device(DEV)) == "native"
    inputs = sample_inputs(DEV, 2, 10, 3, 32, 32, seed=4)
    out = rasterize(*inputs, 2, 32, 32, backend="cuda")
    _assert_images_close(out, _reference(inputs, 2, 32, 32))


def test_deterministic_forward():
    inputs = sample_inputs(DEV, 16, 40, 3, 32, 32, seed=8)
    a = gsdd_cuda.ops.rasterize(*inputs, 16, 32, 32)
    b = gsdd_cuda.ops.rasterize(*inputs, 16, 32, 32)
    assert torch.equal(a, b)


def test_errors_are_reported():
    xy, chol, rgb, opacity = sample_inputs(DEV, 2, 4, 3, 16, 16)
    with pytest.raises(RuntimeError, match="cannot be split"):
        gsdd_cuda.ops.rasterize(xy, chol, rgb, opacity, 3, 16, 16)
    with pytest.raises(RuntimeError, match="chol must be"):
        gsdd_cuda.ops.rasterize(xy, chol[:, :2], rgb, opacity, 2, 16, 16)
    with pytest.raises(RuntimeError, match="one device"):
        torch.ops.gsdd.rasterize_fwd(xy, chol.cpu(), rgb, opacity, 2, 16, 16, True)


@pytest.mark.parametrize("antialias", [True, False], ids=["aa", "noaa"])
@pytest.mark.parametrize("shape", [(2, 5, 3, 16, 16), (1, 3, 1, 20, 12)], ids=["c3", "c1"])
def test_opcheck(shape, antialias):
    b, n, c, h, w = shape
    xy, chol, rgb, opacity = sample_inputs(DEV, b, n, c, h, w, kind="realistic", seed=6, requires_grad=True)
    args = (xy, chol, rgb, opacity, b, h, w, antialias)
    torch.library.opcheck(torch.ops.gsdd.rasterize_fwd.default, args)
    v_out = torch.randn(b, c, h, w, device=DEV)
    bwd_args = (v_out,) + tuple(t.detach() for t in (xy, chol, rgb, opacity)) + (b, h, w, antialias)
    torch.library.opcheck(torch.ops.gsdd.rasterize_bwd.default, bwd_args,
                          test_utils=("test_schema", "test_faketensor"))


def test_torch_compile_fullgraph():
    b, n, c, h, w = 4, 20, 3, 32, 32
    inputs = sample_inputs(DEV, b, n, c, h, w, kind="realistic", seed=12)
    target = torch.rand(b, c, h, w, device=DEV)

    def loss_fn(xy, chol, rgb, opacity):
        img = gsdd_cuda.ops.rasterize(xy, chol, rgb, opacity, b, h, w)
        return (img - target).square().mean()

    compiled = torch.compile(loss_fn, fullgraph=True)
    p_eager = [t.clone().requires_grad_(True) for t in inputs]
    p_comp = [t.clone().requires_grad_(True) for t in inputs]
    l_eager = loss_fn(*p_eager)
    l_comp = compiled(*p_comp)
    torch.testing.assert_close(l_comp, l_eager)
    _assert_grads_close(torch.autograd.grad(l_comp, p_comp), torch.autograd.grad(l_eager, p_eager))
