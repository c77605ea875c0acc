"""bench/render.py's SIREN baseline is memory-bounded in the backward too: chunked gradients are the
whole batch's gradients, and a chunked run keeps one chunk's activations alive at a time."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_render", ROOT / "bench" / "render.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_spans_cover_every_image_once(bench):
    assert bench.image_spans(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert bench.image_spans(7) == [(0, 7)]
    assert bench.image_spans(7, 100) == [(0, 7)]


def test_chunked_gradients_equal_the_whole_batch(bench):
    siren = bench.BatchedSiren(5, 8, 3, 12, 12, torch.device("cpu"))
    v = torch.randn(5, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    leaves = [p.detach().requires_grad_(True) for p in siren.params]
    whole = torch.autograd.grad(siren(*leaves), leaves, v)
    parts = bench.chunked_grads(siren, siren.params, v, bench.image_spans(5, 2))
    for a, b in zip(parts, whole):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


class _Saved:
    """A tensor autograd saved for backward; counts its bytes while the graph holds it."""

    live = peak = 0

    def __init__(self, t):
        self.t, self.nbytes = t, t.numel() * t.element_size()
        _Saved.live += self.nbytes
        _Saved.peak = max(_Saved.peak, _Saved.live)

    def __del__(self):
        _Saved.live -= self.nbytes


def _peak_saved_bytes(fn):
    _Saved.live = _Saved.peak = 0
    with torch.autograd.graph.saved_tensors_hooks(_Saved, lambda s: s.t):
        fn()
    return _Saved.peak


def test_chunked_backward_holds_one_chunk(bench):
    """The bytes autograd holds at once: a chunked run of 4 chunks peaks near a quarter of the whole."""
    siren = bench.BatchedSiren(8, 16, 3, 16, 16, torch.device("cpu"))
    v = torch.randn(8, 3, 16, 16)
    leaves = [p.detach().requires_grad_(True) for p in siren.params]
    whole = _peak_saved_bytes(lambda: torch.autograd.grad(siren(*leaves), leaves, v))
    chunked = _peak_saved_bytes(lambda: bench.chunked_grads(siren, siren.params, v, bench.image_spans(8, 2)))
    assert whole > 0
    assert chunked <= 0.3 * whole, (chunked, whole)
