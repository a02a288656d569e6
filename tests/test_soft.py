"""SoftPool beyond the generic walks: numerics at any magnitude, both paths, padding, limits."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from records.soft import soft_reference

import torchpool as tp
import torchpool.ops.soft as S

WINDOWS = [
    {"kernel_size": 2},
    {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    {"kernel_size": (2, 3), "stride": 1, "padding": (1, 0)},
]


def _windows_path(x: torch.Tensor, kernel_size: int | tuple[int, ...], **kw: object) -> torch.Tensor:
    """The per-window-max path, forced (what traced code and the fallback run)."""
    ndim = x.dim() - 2
    k = (kernel_size,) * ndim if isinstance(kernel_size, int) else kernel_size
    stride = kw.get("stride")
    s = k if stride is None else ((stride,) * ndim if isinstance(stride, int) else stride)
    padding = kw.get("padding", 0)
    p = (padding,) * ndim if isinstance(padding, int) else padding
    return S._soft_windows(x, ndim, tuple(k), tuple(s), tuple(p), bool(kw.get("ceil_mode", False)))  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", WINDOWS)
@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4, -1e4])
def test_both_paths_match_the_reference_at_any_magnitude(kwargs: dict[str, object], scale: float) -> None:
    x = torch.randn(2, 3, 7, 8, generator=torch.Generator().manual_seed(0)) * scale
    expected = soft_reference(x.double(), **kwargs)  # type: ignore[arg-type]
    for y in (tp.soft_pool2d(x, **kwargs), _windows_path(x, **kwargs)):  # type: ignore[arg-type]
        assert bool(y.isfinite().all())
        torch.testing.assert_close(y.double(), expected, rtol=1e-5, atol=1e-5 * abs(scale))


def test_no_overflow_at_1e4_float32_and_80_float16() -> None:
    g = torch.Generator().manual_seed(1)
    x32 = torch.rand(2, 4, 8, 8, generator=g) * 1e4
    y32 = tp.soft_pool2d(x32, 3, 2, 1)
    assert bool(y32.isfinite().all())
    torch.testing.assert_close(y32.double(), soft_reference(x32.double(), 3, 2, 1), rtol=1e-6, atol=0.0)
    x16 = (torch.rand(2, 4, 8, 8, generator=g) * 160 - 80).half()
    y16 = tp.soft_pool2d(x16, 2)
    assert y16.dtype == torch.float16 and bool(y16.isfinite().all())
    torch.testing.assert_close(y16.double(), soft_reference(x16.double(), 2), rtol=1e-3, atol=1e-2)
    # the unstabilised formula overflows there
    assert not bool(torch.exp(x16.float() * 2).isfinite().all()) or not bool(torch.exp(x32).isfinite().all())


def test_fallback_planes_only() -> None:
    """A plane whose windows would underflow on the fast path is recomputed; the others are not."""
    x = torch.randn(1, 2, 6, 6, generator=torch.Generator().manual_seed(2))
    x[0, 0, 0, 0] = 500.0  # plane 0: every other window lies ~500 below the plane's max
    y = tp.soft_pool2d(x, 2)
    torch.testing.assert_close(y.double(), soft_reference(x.double(), 2), rtol=1e-6, atol=1e-6)
    fast = tp.soft_pool2d(x[:, 1:], 2)
    assert torch.equal(y[:, 1:], fast)


@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_gradcheck_float64(scale: float) -> None:
    x = (
        torch.randn(1, 2, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * scale
    ).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: tp.soft_pool2d(t, 3, 2, 1, True), (x,))
    assert torch.autograd.gradcheck(lambda t: tp.soft_pool2d(t, 2), (x,))
    assert torch.autograd.gradcheck(lambda t: _windows_path(t, 3, stride=2, padding=1), (x,))


def test_gradient_formula() -> None:
    """d y / d a_i = w_i (1 + a_i - y), w the window's softmax weights."""
    a = torch.tensor([[[0.5, -1.0, 2.0]]], dtype=torch.float64, requires_grad=True)
    y = tp.soft_pool1d(a, 3)
    (grad,) = torch.autograd.grad(y.sum(), a)
    w = torch.softmax(a.detach(), -1)
    torch.testing.assert_close(grad, w * (1 + a.detach() - y.detach()))


def test_padding_cells_do_not_count() -> None:
    """A padded border is not pulled towards 0: the output is the weighted mean of the cells inside."""
    x = torch.full((1, 1, 4), -5.0)
    y = tp.soft_pool1d(x, 3, 1, 1)
    torch.testing.assert_close(y, torch.full_like(y, -5.0))  # zero padding: pulled up to ~-0.03
    x = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    y = tp.soft_pool1d(x, 3, 2, 1)
    first = (torch.softmax(torch.tensor([1.0, 2.0]), 0) * torch.tensor([1.0, 2.0])).sum()
    torch.testing.assert_close(y[0, 0, 0], first)


def test_limits_mean_and_max() -> None:
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(tp.soft_pool2d(x * 1e-6, 2), F.avg_pool2d(x * 1e-6, 2), rtol=1e-5, atol=0.0)
    assert torch.equal(tp.soft_pool2d(x * 1e6, 2), F.max_pool2d(x * 1e6, 2))
    y = tp.soft_pool2d(x, 2)
    assert bool((y >= F.avg_pool2d(x, 2) - 1e-6).all() and (y <= F.max_pool2d(x, 2) + 1e-6).all())


def test_shift_equivariant() -> None:
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(tp.soft_pool2d(x + 7.0, 3, 2, 1), tp.soft_pool2d(x, 3, 2, 1) + 7.0)


def test_equals_unfold_softmax_formulation() -> None:
    """The peer formulation (``F.unfold`` + softmax over each window), without padding."""
    x = torch.randn(2, 3, 9, 9, generator=torch.Generator().manual_seed(6))
    u = F.unfold(x, 3, stride=2).view(2, 3, 9, -1)
    peer = (torch.softmax(u, 2) * u).sum(2).view(2, 3, 4, 4)
    torch.testing.assert_close(tp.soft_pool2d(x, 3, 2), peer, rtol=1e-5, atol=1e-6)


def test_compiled_takes_the_window_path() -> None:
    x = torch.randn(1, 2, 6, 6, generator=torch.Generator().manual_seed(7)) * 1e4
    compiled = torch.compile(lambda t: tp.soft_pool2d(t, 3, 2, 1), backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x).double(), soft_reference(x.double(), 3, 2, 1), rtol=1e-6, atol=0.0)


def test_positional_arguments_follow_avg_pool() -> None:
    x = torch.randn(1, 2, 7, 7)
    assert torch.equal(
        tp.soft_pool2d(x, 3, 2, 1, True),
        tp.soft_pool2d(x, kernel_size=3, stride=2, padding=1, ceil_mode=True),
    )
    assert (
        repr(tp.SoftPool2d(3, 2, 1, True)) == "SoftPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)"
    )


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_spread_plan_writes_each_cell_first_then_adds(ceil_mode: bool) -> None:
    """The backward's plan against counting: each (output, cell) pair of the windows once, a cell's
    first value written and later ones added, and exactly the cells no window holds zeroed."""
    for size, k, s in itertools.product(range(1, 10), range(1, 6), range(1, 6)):
        for p in range(k // 2 + 1):
            span = size + 2 * p - k
            if span < 0:
                continue
            o = (-(-span // s) if ceil_mode else span // s) + 1
            if ceil_mode and (o - 1) * s >= size + p:
                o -= 1
            expected = {(j, j * s - p + t) for j in range(o) for t in range(k) if 0 <= j * s - p + t < size}
            parts, zeros = S._spread_plan(size, k, s, p, o)
            seen: set[int] = set()
            pairs = set()
            for add, lo, n, start in parts:
                for j in range(n):
                    cell = start + j * s
                    assert (cell in seen) == add, (size, k, s, p, o)
                    seen.add(cell)
                    pairs.add((lo + j, cell))
            assert pairs == expected and len(pairs) == sum(n for _, _, n, _ in parts)
            zeroed = {start + i * step for start, n, step in zeros for i in range(n)}
            assert zeroed == set(range(size)) - seen, (size, k, s, p, o)


def _soft_unfold64(x: torch.Tensor, k: int, s: int, p: int) -> torch.Tensor:
    """Differentiable float64 SoftPool: padded with -inf (no weight), unfolded, softmax per window."""
    xp = F.pad(x.double(), (p, p, p, p), value=-math.inf)
    cells = xp.unfold(2, k, s).unfold(3, k, s).flatten(-2)
    weights = torch.softmax(cells, -1)
    return (weights * cells.masked_fill(cells.isinf(), 0.0)).sum(-1)


@pytest.mark.parametrize("window", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_chunks_match_one_chunk_and_float64(monkeypatch: pytest.MonkeyPatch, window: tuple[int, ...]) -> None:
    """Several chunks (one batch item each) give the values and gradients of one chunk, and both
    match a float64 unfold + softmax reference."""
    g = torch.Generator().manual_seed(8)
    x = (torch.randn(3, 2, 9, 8, generator=g) * 3).requires_grad_()
    upstream = torch.randn(_soft_unfold64(x.detach(), *window).shape, generator=g)
    k, s, p = window
    results = []
    for chunk in (S._CHUNK, 1):
        monkeypatch.setattr(S, "_CHUNK", chunk)
        y = tp.soft_pool2d(x, k, s, p)
        (grad,) = torch.autograd.grad(y, x, upstream)
        results.append((y, grad))
    for one, many in zip(results[0], results[1]):  # equal to rounding (fused multiply-adds may differ)
        torch.testing.assert_close(many, one, rtol=1e-6, atol=1e-7)
    x64 = x.detach().double().requires_grad_()
    expected = _soft_unfold64(x64, k, s, p)
    (grad64,) = torch.autograd.grad(expected, x64, upstream.double())
    torch.testing.assert_close(results[1][0].double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(results[1][1].double(), grad64, rtol=1e-5, atol=1e-5)


def test_backward_recomputes_the_weights_when_not_kept() -> None:
    """The node's backward with the weights recomputed (not kept) gives the kept weights' bits."""
    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 3, 7, 6, generator=g).requires_grad_()
    upstream = torch.randn(2, 3, 4, 3, generator=g)
    grads = []
    for keep in (True, False):
        y, _ = S._ExpWeightedMean.apply(x, None, (3, 3), (2, 2), (1, 1), (4, 3), keep)  # type: ignore[no-untyped-call]
        grads.append(torch.autograd.grad(y, x, upstream)[0])
    assert torch.equal(grads[0], grads[1])
