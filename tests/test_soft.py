"""SoftPool beyond the generic walks: numerics at any magnitude, both paths, padding, limits."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from records.lip import lip_loops
from records.soft import soft_reference

import torchpool as tp
import torchpool.ops._soft_native as N
import torchpool.ops.soft as S


@pytest.fixture(autouse=True)
def _pytorch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pure-PyTorch paths (float64 and machines without a C compiler take them); the C
    kernel's tests are in test_soft_native.py."""
    monkeypatch.setattr(N, "_library", lambda: None)


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


# --- the non-overlapping path (``kernel_size == stride``, no padding, sizes multiples of the window)

import torchpool.ops._soft_tiles as T  # noqa: E402

TILE_CASES = [  # (rank, size, kernel)
    (1, (12,), (2,)),
    (1, (12,), (3,)),
    (2, (8, 6), (2, 2)),
    (2, (9, 8), (3, 4)),
    (2, (8, 6), (2, 1)),
    (2, (8, 6), (1, 2)),
    (3, (4, 6, 4), (2, 2, 2)),
    (3, (4, 6, 4), (1, 3, 2)),
]


def _pool(rank: int) -> object:
    return {1: tp.soft_pool1d, 2: tp.soft_pool2d, 3: tp.soft_pool3d}[rank]


def _spy_tiles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the calls of the non-overlapping path."""
    calls: list[int] = []
    original = T.soft_tiles

    def spy(*args: object) -> tuple[torch.Tensor, torch.Tensor, bool]:
        calls.append(1)
        return original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(T, "soft_tiles", spy)
    return calls


@pytest.mark.parametrize(("rank", "size", "kernel"), TILE_CASES)
def test_tiles_match_float64_values_and_gradients(
    monkeypatch: pytest.MonkeyPatch, rank: int, size: tuple[int, ...], kernel: tuple[int, ...]
) -> None:
    """The non-overlapping path (taken: spied) against the loop reference (values) and a float64
    unfold + softmax (gradients), several chunks and one."""
    calls = _spy_tiles(monkeypatch)
    g = torch.Generator().manual_seed(10)
    x = (torch.randn(2, 3, *size, generator=g) * 4).requires_grad_()
    pool = _pool(rank)
    expected = soft_reference(x.detach().double(), kernel)
    upstream = torch.randn(expected.shape, generator=g)
    results = []
    for chunk in (T._CHUNK, 1):
        monkeypatch.setattr(T, "_CHUNK", chunk)
        y = pool(x, kernel)  # type: ignore[operator]
        results.append((y, torch.autograd.grad(y, x, upstream)[0]))
    assert len(calls) == 2
    for one, many in zip(*results):
        torch.testing.assert_close(many, one, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(results[1][0].double(), expected, rtol=1e-5, atol=1e-5)
    x64 = x.detach().double().requires_grad_()
    cells = x64
    for axis, kk in enumerate(kernel):
        cells = cells.unfold(2 + axis, kk, kk)
    cells = cells.flatten(-rank)
    y64 = (torch.softmax(cells, -1) * cells).sum(-1)
    (grad64,) = torch.autograd.grad(y64, x64, upstream.double())
    torch.testing.assert_close(results[1][1].double(), grad64, rtol=1e-5, atol=1e-5)


def test_tiles_gradcheck_float64() -> None:
    x = torch.randn(2, 2, 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    for scale in (1.0, 300.0):  # 300: past the unshifted pass's limit (600 in float64 exponent units)
        leaf = (x * scale).requires_grad_()
        assert torch.autograd.gradcheck(lambda t: tp.soft_pool2d(t, 2), (leaf,))
        assert torch.autograd.gradcheck(lambda t: tp.soft_pool2d(t, (1, 3)), (leaf,))


@pytest.mark.parametrize(
    ("size", "kwargs"),
    [
        ((7, 8), {"kernel_size": 2}),  # odd height: the last row belongs to no window
        ((8, 8), {"kernel_size": 2, "stride": 1}),
        ((8, 8), {"kernel_size": 2, "padding": 1}),
        ((7, 7), {"kernel_size": 2, "ceil_mode": True}),
        ((8, 8), {"kernel_size": 1}),
    ],
)
def test_other_windows_do_not_take_the_tiles(
    monkeypatch: pytest.MonkeyPatch, size: tuple[int, int], kwargs: dict[str, object]
) -> None:
    calls = _spy_tiles(monkeypatch)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(12))
    y = tp.soft_pool2d(x, **kwargs)  # type: ignore[arg-type]
    assert not calls
    torch.testing.assert_close(y.double(), soft_reference(x.double(), **kwargs), rtol=1e-5, atol=1e-5)  # type: ignore[arg-type]


@pytest.mark.parametrize("big", [70.0, 500.0, 1e4, -1e4])
def test_tiles_plane_needing_a_shift_leaves_the_others_alone(big: float) -> None:
    """Values past the unshifted pass's limit (overflow, or all windows below it) in one plane:
    that plane is computed with its max subtracted, exact; every other plane has the bits it has
    alone (no dependence on its batch), value and gradient."""
    g = torch.Generator().manual_seed(13)
    x = torch.randn(3, 4, 6, 8, generator=g)
    x[1, 2] = x[1, 2] * 3 + big
    upstream = torch.randn(3, 4, 3, 4, generator=g)
    leaf = x.clone().requires_grad_()
    y = tp.soft_pool2d(leaf, 2)
    (grad,) = torch.autograd.grad(y, leaf, upstream)
    assert bool(y.isfinite().all() and grad.isfinite().all())
    torch.testing.assert_close(y.double(), soft_reference(x.double(), 2), rtol=1e-6, atol=1e-6)
    alone = x[0].clone().requires_grad_()
    y0 = tp.soft_pool2d(alone, 2)
    assert torch.equal(y[0], y0)
    assert torch.equal(grad[0], torch.autograd.grad(y0, alone, upstream[0])[0])
    x64 = x[1, 2].double().requires_grad_()
    cells = x64.unfold(0, 2, 2).unfold(1, 2, 2).flatten(-2)
    (grad64,) = torch.autograd.grad((torch.softmax(cells, -1) * cells).sum(-1), x64, upstream[1, 2].double())
    atol = 1e-6 + 4e-7 * abs(big)  # float32 rounds a - y to eps |a|
    torch.testing.assert_close(grad[1, 2].double(), grad64, rtol=1e-5, atol=atol)


def test_tiles_backward_needs_the_kept_weights() -> None:
    """A forward pass run without keeping ``e`` (no gradient wanted) refuses a backward pass loudly."""
    x = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(14)).requires_grad_()
    y, _ = T._SoftTiles.apply(x, (2, 2), False, [])  # type: ignore[no-untyped-call]
    with pytest.raises(RuntimeError, match="keep=False"):
        y.sum().backward()


def test_tiles_nan_and_inf_stay_in_their_windows() -> None:
    x = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(15))
    x[0, 0, 0, 0] = math.nan
    x[1, 1, 3, 3] = math.inf
    y = tp.soft_pool2d(x, 2)
    bad = torch.zeros_like(y, dtype=torch.bool)
    bad[0, 0, 0, 0] = bad[1, 1, 1, 1] = True
    assert bool(y[0, 0, 0, 0].isnan())
    ref = soft_reference(x.masked_fill(~x.isfinite(), 0.0).double(), 2)
    torch.testing.assert_close(y[~bad].double(), ref[~bad], rtol=1e-6, atol=1e-6)


def test_tiles_channels_last_and_non_contiguous() -> None:
    x = torch.randn(2, 3, 8, 6, generator=torch.Generator().manual_seed(16))
    expected = tp.soft_pool2d(x, 2)
    torch.testing.assert_close(tp.soft_pool2d(x.to(memory_format=torch.channels_last), 2), expected)
    wide = torch.randn(2, 3, 8, 12, generator=torch.Generator().manual_seed(17))
    torch.testing.assert_close(
        tp.soft_pool2d(wide[..., ::2], 2), tp.soft_pool2d(wide[..., ::2].contiguous(), 2)
    )


# --- the general path's unshifted first pass (shared with LIP)


@pytest.mark.parametrize("big", [70.0, 500.0, 1e4, -1e4])
def test_general_path_plane_needing_a_shift_leaves_the_others_alone(big: float) -> None:
    """Overlapping windows (3x3 stride 2 padding 1): a plane past the unshifted pass's limit is
    computed with its max subtracted (exact, value and gradient); the other planes have the bits
    they have alone."""
    g = torch.Generator().manual_seed(18)
    x = torch.randn(3, 4, 7, 8, generator=g)
    x[1, 2] = x[1, 2] * 3 + big
    upstream = torch.randn(3, 4, 4, 4, generator=g)
    leaf = x.clone().requires_grad_()
    y = tp.soft_pool2d(leaf, 3, 2, 1)
    (grad,) = torch.autograd.grad(y, leaf, upstream)
    assert bool(y.isfinite().all() and grad.isfinite().all())
    torch.testing.assert_close(y.double(), soft_reference(x.double(), 3, 2, 1), rtol=1e-6, atol=1e-6)
    alone = x[0].clone().requires_grad_()
    y0 = tp.soft_pool2d(alone, 3, 2, 1)
    assert torch.equal(y[0], y0)
    assert torch.equal(grad[0], torch.autograd.grad(y0, alone, upstream[0])[0])
    x64 = x.double().requires_grad_()
    (grad64,) = torch.autograd.grad(_soft_unfold64(x64, 3, 2, 1), x64, upstream.double())
    torch.testing.assert_close(grad.double(), grad64, rtol=1e-5, atol=1e-6 + 4e-7 * abs(big))


def test_lip_planes_past_the_unshifted_limit() -> None:
    """LIP through the shared node: a plane of large logits (overflowing unshifted) and a plane of
    huge values under moderate logits (``sum(e * v)`` overflowing unshifted, finite shifted) are
    computed again shifted, the others left alone."""
    g = torch.Generator().manual_seed(19)
    x = torch.randn(2, 3, 8, 8, generator=g)
    logit = torch.rand(2, 3, 8, 8, generator=g) * 12
    logit[0, 1] += 200.0
    x[1, 2] *= 1e36
    logit[1, 2] += 40.0  # e up to e^52: e * v past float32's range unshifted
    y = tp.lip_pool2d(x, logit)
    assert bool(y.isfinite().all())
    expected = lip_loops(x, logit.double(), 3, 2, 1)
    torch.testing.assert_close(y.double(), expected, rtol=1e-5, atol=1e-5)
    alone = tp.lip_pool2d(x[:1, :1], logit[:1, :1])
    assert torch.equal(y[:1, :1], alone)


@pytest.mark.parametrize("grad", [False, True])
def test_first_axis_with_more_outputs_than_rows(grad: bool) -> None:
    """Stride 1 with padding on the first window axis (more output rows than input rows): the
    chunk's buffers must not overlap (values against the loop reference, e kept or not)."""
    x = torch.randn(1, 2, 6, 5, generator=torch.Generator().manual_seed(20)) * 3
    kwargs = {"kernel_size": (2, 3), "stride": (1, 2), "padding": (1, 0)}
    y = tp.soft_pool2d(x.clone().requires_grad_(grad), **kwargs)  # type: ignore[arg-type]
    torch.testing.assert_close(y.double(), soft_reference(x.double(), **kwargs), rtol=1e-5, atol=1e-5)  # type: ignore[arg-type]


def test_shared_node_on_an_empty_batch() -> None:
    """The node LIP shares (empty inputs reach it from LIP): an empty result, an empty gradient."""
    x = torch.empty(0, 3, 8, 8, requires_grad=True)
    y, den = S._exp_weighted_mean(x, None, (3, 3), (2, 2), (1, 1), (4, 4))
    assert y.shape == den.shape == (0, 3, 4, 4)
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert grad.shape == x.shape
