"""Tests for stochastic pooling: references, gradients, sampling statistics, layouts, errors."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from reference_stochastic import (
    naive_stochastic_eval2d,
    naive_stochastic_pool2d,
    stochastic_eval_reference,
    stochastic_probabilities_reference,
    window_cells_reference,
)

from torchpool.ops.stochastic import (
    StochasticPool1d,
    StochasticPool2d,
    StochasticPool3d,
    stochastic_pool1d,
    stochastic_pool1d_with_indices,
    stochastic_pool2d,
    stochastic_pool2d_with_indices,
    stochastic_pool3d,
    stochastic_pool3d_with_indices,
)

FUNCS: dict[int, Callable[..., Any]] = {1: stochastic_pool1d, 2: stochastic_pool2d, 3: stochastic_pool3d}
WITH_INDICES: dict[int, Callable[..., Any]] = {
    1: stochastic_pool1d_with_indices,
    2: stochastic_pool2d_with_indices,
    3: stochastic_pool3d_with_indices,
}
MODULES: dict[int, Callable[..., Any]] = {1: StochasticPool1d, 2: StochasticPool2d, 3: StochasticPool3d}

# (ndim, spatial, kernel_size, stride, padding)
CASES = [
    (1, (11,), 3, 2, 1),
    (1, (8,), 2, None, 0),
    (2, (7, 9), 3, 2, 1),
    (2, (8, 8), 2, 2, 0),
    (2, (6, 7), (3, 2), 1, (1, 0)),
    (2, (5, 5), 3, 1, 0),
    (3, (5, 6, 4), 2, 1, 1),
    (3, (4, 4, 6), (2, 2, 3), (2, 2, 3), 0),
]
CASE_IDS = [f"{c[0]}d-{c[1]}-k{c[2]}-s{c[3]}-p{c[4]}" for c in CASES]


def relu_input(shape: tuple[int, ...], seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).relu().to(dtype)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def chi_square_pvalue(counts: torch.Tensor, expected: torch.Tensor) -> float:
    """Pearson chi-square goodness-of-fit p-value (scipy when importable)."""
    counts, expected = counts.double(), expected.double()
    try:
        from scipy import stats
    except ImportError:  # pragma: no cover - scipy is installed in CI
        statistic = ((counts - expected) ** 2 / expected).sum()
        df = counts.numel() - 1
        return float(torch.special.gammaincc(torch.tensor(df / 2.0), statistic / 2))
    return float(
        stats.chisquare(counts.numpy(), expected.numpy() * counts.sum().item() / expected.sum().item()).pvalue
    )


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(("n", "spatial", "k", "s", "p"), CASES, ids=CASE_IDS)
def test_eval_matches_reference(n: int, spatial: tuple[int, ...], k: Any, s: Any, p: Any) -> None:
    x = relu_input((2, 3, *spatial), seed=1)
    y = FUNCS[n](x, k, s, p, training=False)
    torch.testing.assert_close(y, stochastic_eval_reference(x, k, s, p), rtol=1e-12, atol=1e-12)
    assert y.dtype == x.dtype


@pytest.mark.parametrize(("n", "spatial", "k", "s", "p"), CASES, ids=CASE_IDS)
def test_training_draws_positive_cells_of_the_window(
    n: int, spatial: tuple[int, ...], k: Any, s: Any, p: Any
) -> None:
    x = relu_input((2, 3, *spatial), seed=2)
    x[0, 0] = 0.0  # a whole plane of zero windows
    y, idx = FUNCS[n](x, k, s, p, generator=gen(1), return_indices=True)
    assert idx.dtype == torch.int64 and idx.shape == y.shape
    # the values are the input at the indices
    flat = x.flatten(2)
    torch.testing.assert_close(y.flatten(2), flat.gather(2, idx.flatten(2)), rtol=0, atol=0)
    # each index is a cell of its window, with positive probability
    probs = stochastic_probabilities_reference(x, k, s, p)
    _, table = window_cells_reference(spatial, k, s, p)
    match = idx.unsqueeze(-1) == table  # (N, C, *out, kk)
    assert bool((match.sum(-1) == 1).all()), "index is not a cell of its window"
    assert bool(((probs * match).sum(-1) > 0).all()), "drew a cell with probability 0"
    # zero windows: output 0 at the first in-bounds cell
    first = table.clamp(min=-1).masked_fill(table < 0, 10**9).min(-1).values
    zero_windows = probs.max(-1).values == 1.0
    torch.testing.assert_close(idx[0, 0], first)
    assert bool((y[zero_windows] == flat.gather(2, idx.flatten(2)).view_as(y)[zero_windows]).all())


def test_zero_windows_give_zero_output_and_zero_gradient() -> None:
    x = relu_input((2, 3, 8, 8), seed=3)
    x[:, :, :4, :4] = 0.0
    for training in (True, False):
        leaf = x.clone().requires_grad_(True)
        y = stochastic_pool2d(leaf, 2, training=training, generator=gen())
        assert bool((y[:, :, :2, :2] == 0).all())
        torch.autograd.backward(y, torch.randn(y.shape, dtype=y.dtype))
        assert leaf.grad is not None and bool(torch.isfinite(leaf.grad).all())
        assert bool((leaf.grad[:, :, :4, :4] == 0).all())
    # all-zero input, eval with padding and overlap: no NaN anywhere
    z = torch.zeros(1, 2, 5, 5, requires_grad=True)
    y = stochastic_pool2d(z, 3, 1, 1, training=False)
    torch.autograd.backward(y.sum())
    assert bool((y == 0).all()) and z.grad is not None and bool((z.grad == 0).all())


@pytest.mark.parametrize(("n", "spatial", "k", "s", "p"), CASES, ids=CASE_IDS)
def test_training_gradient_is_one_hot_per_window(
    n: int, spatial: tuple[int, ...], k: Any, s: Any, p: Any
) -> None:
    x = relu_input((2, 3, *spatial), seed=4).requires_grad_(True)
    y, idx = FUNCS[n](x, k, s, p, generator=gen(2), return_indices=True)
    upstream = torch.randn(y.shape, dtype=y.dtype, generator=gen(3))
    torch.autograd.backward(y, upstream)
    # overlapping windows accumulate; zero windows (all cells 0) pass no gradient
    positive = stochastic_eval_reference(x, k, s, p) > 0
    masked = upstream * positive
    expected = torch.zeros_like(x).flatten(2).scatter_add_(2, idx.flatten(2), masked.flatten(2))
    torch.testing.assert_close(x.grad, expected.view_as(x), rtol=0, atol=1e-12)


def test_gradcheck_eval() -> None:
    for n, spatial, k, s, p in [(1, (7,), 3, 2, 1), (2, (5, 6), 3, 1, 1), (3, (4, 4, 3), 2, 1, 1)]:
        x = (torch.rand(1, 2, *spatial, dtype=torch.float64, generator=gen(n)) + 0.1).requires_grad_(True)
        assert torch.autograd.gradcheck(
            lambda t, n=n, k=k, s=s, p=p: FUNCS[n](t, k, s, p, training=False), (x,)
        )
    # channels_last float64 too (the fast layout path)
    x = torch.rand(1, 3, 5, 5, dtype=torch.float64, generator=gen(9)) + 0.1
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: stochastic_pool2d(t, 2, 1, 1, training=False), (x,))


def test_gradcheck_training_with_reseeded_generator() -> None:
    # given fixed noise the op is piecewise linear; eps = 1e-6 does not move the draws here
    for n, spatial, k, s, p in [(1, (9,), 3, 2, 1), (2, (6, 5), 3, 1, 1), (3, (4, 3, 4), 2, 1, 0)]:
        x = (torch.rand(2, 2, *spatial, dtype=torch.float64, generator=gen(n)) + 0.5).requires_grad_(True)

        def fn(t: torch.Tensor, n: int = n, k: int = k, s: int = s, p: int = p) -> torch.Tensor:
            y: torch.Tensor = FUNCS[n](t, k, s, p, generator=gen(11))
            return y

        assert torch.autograd.gradcheck(fn, (x,))


# --------------------------------------------------------------------------- statistics


def _window_counts(idx: torch.Tensor, cells: list[int]) -> torch.Tensor:
    return torch.stack([(idx == c).sum() for c in cells])


def test_chi_square_disjoint_windows_and_power() -> None:
    draws = 20000
    plane = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]], dtype=torch.float32)
    x = plane.expand(draws, 1, 3, 3).contiguous()
    _, idx = stochastic_pool2d(x, 3, generator=gen(1234), return_indices=True)
    idx = idx.flatten()
    assert not bool((idx == 0).any()), "drew the zero cell"
    cells = list(range(1, 9))
    counts = _window_counts(idx, cells)
    expected = plane.flatten()[1:].double() / plane.sum() * draws
    assert chi_square_pvalue(counts, expected) > 1e-3
    # power: a uniform sampler over the window fails the same test
    wrong = torch.randint(1, 9, (draws,), generator=gen(1234))
    assert chi_square_pvalue(_window_counts(wrong, cells), expected) < 1e-6


def test_chi_square_overlapping_padded_windows() -> None:
    draws = 20000
    plane = 1.0 + (torch.arange(16, dtype=torch.float32) % 5).view(4, 4)
    plane[1, 2] = 0.0
    x = plane.expand(draws, 1, 4, 4).contiguous()
    _, idx = stochastic_pool2d(x, 3, 1, 1, generator=gen(7), return_indices=True)
    probs = stochastic_probabilities_reference(plane.view(1, 1, 4, 4), 3, 1, 1)[0, 0]
    _, table = window_cells_reference((4, 4), 3, 1, 1)
    for pos in [(0, 0), (1, 1), (2, 1), (3, 3)]:
        cells = [c for c, q in zip(table[pos].tolist(), probs[pos].tolist(), strict=True) if q > 0]
        expected = torch.tensor([q for q in probs[pos].tolist() if q > 0]) * draws
        got = idx[:, 0, pos[0], pos[1]]
        counts = _window_counts(got, cells)
        assert int(counts.sum()) == draws, f"window {pos} drew a zero-probability cell"
        assert chi_square_pvalue(counts, expected) > 1e-3, pos
        wrong = torch.tensor(cells)[torch.randint(len(cells), (draws,), generator=gen(8))]
        assert chi_square_pvalue(_window_counts(wrong, cells), expected) < 1e-6


def test_overlapping_windows_draw_independently() -> None:
    draws = 40000
    plane = 1.0 + (torch.arange(20, dtype=torch.float32) % 3).view(4, 5)
    x = plane.expand(draws, 1, 4, 5).contiguous()
    _, idx = stochastic_pool2d(x, 3, 1, generator=gen(5), return_indices=True)
    first, second = idx[:, 0, 0, 0], idx[:, 0, 0, 1]  # share 6 of their 9 cells
    probs = stochastic_probabilities_reference(plane.view(1, 1, 4, 5), 3, 1)[0, 0]
    _, table = window_cells_reference((4, 5), 3, 1)
    cells1, cells2 = table[0, 0], table[0, 1]
    joint_expected = (probs[0, 0][:, None] * probs[0, 1][None, :]).flatten() * draws

    def joint_counts(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ia = (a[:, None] == cells1).double().argmax(1)
        ib = (b[:, None] == cells2).double().argmax(1)
        return torch.bincount(ia * 9 + ib, minlength=81)

    assert chi_square_pvalue(joint_counts(first, second), joint_expected) > 1e-3
    # power: one shared uniform for both windows keeps the marginals but correlates the draws
    u = torch.rand(draws, dtype=torch.float64, generator=gen(6))
    shared1 = cells1[torch.searchsorted(probs[0, 0].cumsum(0), u, right=True).clamp(max=8)]
    shared2 = cells2[torch.searchsorted(probs[0, 1].cumsum(0), u, right=True).clamp(max=8)]
    assert chi_square_pvalue(joint_counts(shared1, shared2), joint_expected) < 1e-6


def test_generator_reproducibility() -> None:
    x = relu_input((2, 4, 9, 9), dtype=torch.float32)
    a = stochastic_pool2d(x, 3, 2, 1, generator=gen(1), return_indices=True)[1]
    b = stochastic_pool2d(x, 3, 2, 1, generator=gen(1), return_indices=True)[1]
    c = stochastic_pool2d(x, 3, 2, 1, generator=gen(2), return_indices=True)[1]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    torch.manual_seed(0)
    d = stochastic_pool2d(x, 3, 2, 1, return_indices=True)[1]
    torch.manual_seed(0)
    assert torch.equal(d, stochastic_pool2d(x, 3, 2, 1, return_indices=True)[1])


# --------------------------------------------------------------------------- dtypes and layouts


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision(dtype: torch.dtype) -> None:
    x = relu_input((2, 3, 9, 9), seed=5, dtype=dtype)
    tol = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 1e-5}[dtype]
    y = stochastic_pool2d(x, 3, 2, 1, training=False)
    assert y.dtype == dtype
    torch.testing.assert_close(y.double(), stochastic_eval_reference(x, 3, 2, 1), rtol=tol, atol=tol)
    y, idx = stochastic_pool2d(x, 3, 2, 1, generator=gen(), return_indices=True)
    assert y.dtype == dtype
    assert torch.equal(y.flatten(2), x.flatten(2).gather(2, idx.flatten(2)))
    probs = stochastic_probabilities_reference(x, 3, 2, 1)
    _, table = window_cells_reference((9, 9), 3, 2, 1)
    assert bool(((probs * (idx.unsqueeze(-1) == table)).sum(-1) > 0).all())
    # large half values: window sums overflow float16 but not the float32 accumulator
    big = torch.full((1, 1, 4, 4), 30000.0, dtype=dtype)
    assert bool(torch.isfinite(stochastic_pool2d(big, 2, training=False)).all())
    assert bool((stochastic_pool2d(big, 2, generator=gen()) == 30000.0).all())


@pytest.mark.parametrize(("n", "spatial", "k", "s", "p"), CASES[::2], ids=CASE_IDS[::2])
@pytest.mark.parametrize("training", [True, False])
def test_batchless(n: int, spatial: tuple[int, ...], k: Any, s: Any, p: Any, training: bool) -> None:
    x = relu_input((3, *spatial), seed=6)
    y = FUNCS[n](x, k, s, p, training=training, generator=gen())
    y_batched = FUNCS[n](x.unsqueeze(0), k, s, p, training=training, generator=gen())
    assert torch.equal(y, y_batched.squeeze(0))
    if training:
        _, idx = FUNCS[n](x, k, s, p, generator=gen(), return_indices=True)
        assert idx.shape == y.shape


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced", "expanded"])
def test_layouts_give_the_same_values(layout: str, training: bool) -> None:
    base = relu_input((2, 4, 10, 10), seed=7, dtype=torch.float32)
    if layout == "channels_last":
        x = base.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed":
        x = base.transpose(2, 3).contiguous().transpose(2, 3)
    elif layout == "sliced":
        big = torch.zeros(2, 8, 10, 20)
        big[:, ::2, :, ::2] = base
        x = big[:, ::2, :, ::2]
    else:
        base = base[:1].expand(3, 4, 10, 10).contiguous()
        x = base[:1].expand(3, 4, 10, 10)
    assert torch.equal(x, base) and (layout == "channels_last" or not x.is_contiguous())
    expect = stochastic_pool2d(base, 3, 2, 1, training=training, generator=gen(3))
    got = stochastic_pool2d(x, 3, 2, 1, training=training, generator=gen(3))
    torch.testing.assert_close(got, expect, rtol=1e-6, atol=1e-6)
    if layout == "channels_last":
        assert got.is_contiguous(memory_format=torch.channels_last)
    leaf = (
        x.detach().clone().requires_grad_(True) if layout != "expanded" else base.clone().requires_grad_(True)
    )
    torch.autograd.backward(stochastic_pool2d(leaf, 3, 2, 1, training=training, generator=gen(3)).sum())
    ref_leaf = base.clone().requires_grad_(True)
    torch.autograd.backward(stochastic_pool2d(ref_leaf, 3, 2, 1, training=training, generator=gen(3)).sum())
    torch.testing.assert_close(leaf.grad, ref_leaf.grad, rtol=1e-6, atol=1e-6)


def test_empty_batch() -> None:
    x = torch.zeros(0, 3, 6, 6)
    assert stochastic_pool2d(x, 2).shape == (0, 3, 3, 3)
    assert stochastic_pool2d(x, 2, training=False).shape == (0, 3, 3, 3)


# --------------------------------------------------------------------------- modules and indices


@pytest.mark.parametrize("n", [1, 2, 3])
def test_module_equals_function(n: int) -> None:
    spatial = {1: (9,), 2: (7, 8), 3: (5, 4, 6)}[n]
    x = relu_input((2, 3, *spatial), seed=8)
    module = MODULES[n](3, stride=2, padding=1)
    assert module.training
    y = module(x, generator=gen(4))
    assert torch.equal(y, FUNCS[n](x, 3, 2, 1, generator=gen(4)))
    module.eval()
    assert torch.equal(module(x), FUNCS[n](x, 3, 2, 1, training=False))
    indexed = MODULES[n](3, 2, 1, return_indices=True)
    values, idx = indexed(x, generator=gen(4))
    assert torch.equal(values, y)
    assert torch.equal(idx, FUNCS[n](x, 3, 2, 1, generator=gen(4), return_indices=True)[1])
    with pytest.raises(ValueError, match="return_indices"):
        indexed.eval()(x)
    name = MODULES[n].__name__
    assert repr(module) == (
        f"{name}(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False, return_indices=False)"
    )
    assert repr(MODULES[n](2)) == (
        f"{name}(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False, return_indices=False)"
    )


@pytest.mark.parametrize("n", [1, 2, 3])
def test_with_indices_functions(n: int) -> None:
    spatial = {1: (8,), 2: (6, 6), 3: (4, 4, 4)}[n]
    x = relu_input((2, 3, *spatial), seed=9)
    a = WITH_INDICES[n](x, 2, generator=gen(5))
    b = FUNCS[n](x, 2, generator=gen(5), return_indices=True)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_indices_work_with_max_unpool() -> None:
    x = relu_input((2, 3, 8, 6), seed=10, dtype=torch.float32)
    y, idx = stochastic_pool2d_with_indices(x, 2, generator=gen())
    restored = F.max_unpool2d(y, idx, (2, 2), output_size=x.shape[-2:])
    # every drawn cell is put back in place, everything else is 0
    mask = torch.zeros_like(x).flatten(2).scatter_(2, idx.flatten(2), 1.0).view_as(x).bool()
    assert torch.equal(restored[mask], x[mask]) and bool((restored[~mask] == 0).all())
    # the indices have max_pool2d's format: compare on an input where both must pick the only positive cell
    one_hot = torch.zeros(2, 3, 8, 6)
    one_hot[..., 1::2, ::2] = 1.0
    assert torch.equal(
        stochastic_pool2d_with_indices(one_hot, 2)[1], F.max_pool2d(one_hot, 2, return_indices=True)[1]
    )
    y1, idx1 = stochastic_pool1d_with_indices(x[:, :, 0], 2, generator=gen())
    assert F.max_unpool1d(y1, idx1, (2,)).shape == x[:, :, 0].shape


# --------------------------------------------------------------------------- errors


GOOD = torch.rand(1, 2, 6, 6)
# the bad calls below break the signatures on purpose: call through untyped aliases
untyped_pool1d: Callable[..., Any] = stochastic_pool1d
untyped_pool2d: Callable[..., Any] = stochastic_pool2d
untyped_pool3d: Callable[..., Any] = stochastic_pool3d
UntypedPool2d: Callable[..., Any] = StochasticPool2d


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: untyped_pool2d(GOOD - 0.5, 2), ValueError, "input must be non-negative"),
        (lambda: untyped_pool2d(GOOD - 0.5, 2, training=False), ValueError, "input"),
        (lambda: untyped_pool2d(GOOD, 2, generator=0), TypeError, "generator"),
        (lambda: untyped_pool2d(GOOD.to(torch.int64), 2), TypeError, "input"),
        (lambda: untyped_pool2d([[1.0]], 2), TypeError, "input"),
        (lambda: untyped_pool2d(GOOD[0, 0], 2), ValueError, "input"),
        (lambda: untyped_pool2d(GOOD, 0), ValueError, "kernel_size"),
        (lambda: untyped_pool2d(GOOD, 2, 0), ValueError, "stride"),
        (lambda: untyped_pool2d(GOOD, 2, 2, 2), ValueError, "padding"),
        (lambda: untyped_pool2d(GOOD, 2.0), TypeError, "kernel_size"),
        (lambda: untyped_pool2d(GOOD, (2, 2, 2)), ValueError, "kernel_size"),
        (lambda: untyped_pool2d(GOOD, 7), ValueError, "input"),
        (
            lambda: untyped_pool2d(GOOD, 2, training=False, return_indices=True),
            ValueError,
            "return_indices",
        ),
        (lambda: untyped_pool2d(GOOD, 2, training=1), TypeError, "training"),
        (lambda: untyped_pool2d(GOOD, 2, return_indices="yes"), TypeError, "return_indices"),
        (lambda: untyped_pool1d(GOOD, 2), ValueError, "input"),
        (lambda: untyped_pool3d(GOOD[0], 2), ValueError, "input"),
        (lambda: UntypedPool2d(0), ValueError, "kernel_size"),
        (lambda: UntypedPool2d(2, return_indices=1), TypeError, "return_indices"),
        (lambda: untyped_pool2d(GOOD, 2, dilation=0), ValueError, "dilation"),
        (lambda: untyped_pool2d(GOOD, 2, dilation=1.5), TypeError, "dilation"),
        (lambda: untyped_pool2d(GOOD, 2, ceil_mode=1), TypeError, "ceil_mode"),
        (lambda: untyped_pool2d(GOOD, 3, dilation=3), ValueError, "input"),
        (lambda: UntypedPool2d(2, dilation=(1, 2, 3)), ValueError, "dilation"),
        (lambda: UntypedPool2d(2, ceil_mode="yes"), TypeError, "ceil_mode"),
    ],
)
def test_bad_calls_raise_naming_the_parameter(
    call: Callable[[], object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("training", [True, False])
def test_nan_and_inf_raise(training: bool) -> None:
    # documented: non-finite input raises ValueError rather than propagating or being drawn
    x = GOOD.clone()
    x[0, 0, 1, 1] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        stochastic_pool2d(x, 2, training=training)
    x[0, 0, 1, 1] = math.inf
    with pytest.raises(ValueError, match="finite"):
        stochastic_pool2d(x, 2, training=training)


# --------------------------------------------------------------------------- the benchmark's baselines


def test_naive_baselines_agree() -> None:
    x = relu_input((2, 3, 9, 9), seed=11)
    torch.testing.assert_close(
        naive_stochastic_eval2d(x, 3, 2, 1), stochastic_pool2d(x, 3, 2, 1, training=False)
    )
    values, idx = naive_stochastic_pool2d(x, 3, 2, 1, gen())
    assert torch.equal(values.flatten(2), x.flatten(2).gather(2, idx.flatten(2)))
    probs = stochastic_probabilities_reference(x, 3, 2, 1)
    _, table = window_cells_reference((9, 9), 3, 2, 1)
    assert bool(((probs * (idx.unsqueeze(-1) == table)).sum(-1) > 0).all())


# --------------------------------------------------------------------------- dilation and ceil mode

# (ndim, spatial, kernel_size, stride, padding, dilation, ceil_mode): ceil-mode windows that overhang
# the right padding, dilated windows, windows holding padding only along a dilated dimension
DC_CASES = [
    (1, (10,), 3, 2, 1, 2, True),
    (1, (9,), 2, 2, 0, 1, True),
    (2, (7, 8), 3, 2, 0, 1, True),
    (2, (9, 9), 3, 2, 1, 2, False),
    (2, (8, 7), (3, 2), (2, 1), (1, 0), (2, 3), True),
    (2, (5, 6), 2, 1, 1, 4, True),
    (3, (5, 6, 7), 2, 2, 1, (1, 2, 1), True),
    (3, (4, 5, 4), (3, 2, 2), (2, 3, 1), (1, 1, 0), (1, 1, 2), False),
]
DC_IDS = [f"{c[0]}d-{c[1]}-k{c[2]}-s{c[3]}-p{c[4]}-d{c[5]}-ceil{c[6]}" for c in DC_CASES]
MAX_POOLS = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


@pytest.mark.parametrize(("n", "spatial", "k", "s", "p", "d", "ceil"), DC_CASES, ids=DC_IDS)
def test_dilation_ceil_output_size_is_max_pooling_s(
    n: int, spatial: tuple[int, ...], k: Any, s: Any, p: Any, d: int, ceil: bool
) -> None:
    x = relu_input((2, 3, *spatial), seed=20, dtype=torch.float32)
    expected = MAX_POOLS[n](x, k, s, p, d, ceil).shape
    for training in (True, False):
        assert FUNCS[n](x, k, s, p, d, ceil, training=training, generator=gen()).shape == expected
    module = MODULES[n](k, s, p, d, ceil)
    assert module(x).shape == expected and module.eval()(x).shape == expected
    # the reference enumerates the same windows
    assert window_cells_reference(spatial, k, s, p, d, ceil)[0] == tuple(expected[2:])


@pytest.mark.parametrize(("n", "spatial", "k", "s", "p", "d", "ceil"), DC_CASES, ids=DC_IDS)
def test_dilation_ceil_eval_matches_reference(
    n: int, spatial: tuple[int, ...], k: Any, s: Any, p: Any, d: int, ceil: bool
) -> None:
    x = relu_input((2, 3, *spatial), seed=21)
    y = FUNCS[n](x, k, s, p, d, ceil, training=False)
    torch.testing.assert_close(y, stochastic_eval_reference(x, k, s, p, d, ceil), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("n", "spatial", "k", "s", "p", "d", "ceil"), DC_CASES, ids=DC_IDS)
def test_dilation_ceil_training_draws_and_gradient(
    n: int, spatial: tuple[int, ...], k: Any, s: Any, p: Any, d: int, ceil: bool
) -> None:
    x = relu_input((2, 3, *spatial), seed=22)
    x[0, 0] = 0.0  # a plane of zero windows
    leaf = x.clone().requires_grad_(True)
    y, idx = FUNCS[n](leaf, k, s, p, d, ceil, generator=gen(1), return_indices=True)
    flat = x.flatten(2)
    torch.testing.assert_close(y.detach().flatten(2), flat.gather(2, idx.flatten(2)), rtol=0, atol=0)
    probs = stochastic_probabilities_reference(x, k, s, p, d, ceil)
    _, table = window_cells_reference(spatial, k, s, p, d, ceil)
    match = idx.unsqueeze(-1) == table
    assert bool((match.sum(-1) == 1).all()), "index is not a cell of its window"
    assert bool(((probs * match).sum(-1) > 0).all()), "drew a cell with probability 0"
    first = table.masked_fill(table < 0, 10**9).min(-1).values  # zero windows: first in-bounds cell
    torch.testing.assert_close(idx[0, 0], first)
    # one-hot gradient; zero windows pass none
    upstream = torch.randn(y.shape, dtype=y.dtype, generator=gen(3))
    torch.autograd.backward(y, upstream)
    masked = upstream * (stochastic_eval_reference(x, k, s, p, d, ceil) > 0)
    expected = torch.zeros_like(x).flatten(2).scatter_add_(2, idx.flatten(2), masked.flatten(2))
    torch.testing.assert_close(leaf.grad, expected.view_as(x), rtol=0, atol=1e-12)


def test_dilation_ceil_gradcheck_eval() -> None:
    for n, spatial, k, s, p, d, ceil in [DC_CASES[0], DC_CASES[2], DC_CASES[4], DC_CASES[7]]:
        x = (torch.rand(1, 2, *spatial, dtype=torch.float64, generator=gen(n)) + 0.1).requires_grad_(True)
        assert torch.autograd.gradcheck(
            lambda t, n=n, k=k, s=s, p=p, d=d, c=ceil: FUNCS[n](t, k, s, p, d, c, training=False), (x,)
        )


def test_dilation_ceil_chunked_path_equals_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    from torchpool.ops import stochastic

    x = relu_input((3, 4, 11, 10), seed=23, dtype=torch.float32)
    x[1, 2, :4] = 0.0
    results: dict[tuple[bool, int, bool], list[tuple[torch.Tensor, torch.Tensor | None]]] = {}
    for chunk in (stochastic._CHUNK_ELEMENTS, 150):  # 150: bands of rows (a padded plane is 156)
        monkeypatch.setattr(stochastic, "_CHUNK_ELEMENTS", chunk)
        for training, (d, ceil) in itertools.product((True, False), ((1, True), (2, True), (2, False))):
            leaf = x.clone().requires_grad_(True)
            y = stochastic_pool2d(leaf, 3, 2, 1, d, ceil, training=training, generator=gen(4))
            torch.autograd.backward(y, torch.linspace(0.5, 1.5, y.numel()).view_as(y))
            results.setdefault((training, d, ceil), []).append((y.detach(), leaf.grad))
    for (y1, g1), (y2, g2) in results.values():
        torch.testing.assert_close(y1, y2, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(g1, g2, rtol=1e-6, atol=1e-6)


def test_chi_square_dilated_ceil_window() -> None:
    """A dilated window that overhangs the right padding in ceil mode draws with p = a / sum a over
    its in-bounds cells only."""
    draws = 20000
    plane = 1.0 + (torch.arange(35, dtype=torch.float32) % 4).view(5, 7)
    x = plane.expand(draws, 1, 5, 7).contiguous()
    _, idx = stochastic_pool2d(x, 3, 2, 1, 2, True, generator=gen(9), return_indices=True)
    probs = stochastic_probabilities_reference(plane.view(1, 1, 5, 7), 3, 2, 1, 2, True)[0, 0]
    _, table = window_cells_reference((5, 7), 3, 2, 1, 2, True)
    assert idx.shape[-2:] == table.shape[:2] == (2, 3)
    for pos in [(0, 0), (1, 2), (0, 2)]:
        cells = [c for c, q in zip(table[pos].tolist(), probs[pos].tolist(), strict=True) if q > 0]
        expected = torch.tensor([q for q in probs[pos].tolist() if q > 0]) * draws
        counts = _window_counts(idx[:, 0, pos[0], pos[1]], cells)
        assert int(counts.sum()) == draws, f"window {pos} drew a zero-probability cell"
        assert chi_square_pvalue(counts, expected) > 1e-3, pos
        # power: an undilated window at the same place is a different distribution
        wrong = torch.tensor(cells)[torch.randint(len(cells), (draws,), generator=gen(8))]
        assert chi_square_pvalue(_window_counts(wrong, cells), expected) < 1e-6


def test_squeezenet_max_pool_is_replaceable() -> None:
    """squeezenet1_0's ``MaxPool2d(3, 2, ceil_mode=True)`` at its three feature-map sizes."""
    for size in (109, 54, 27):
        x = torch.rand(1, 2, size, size)
        expected = torch.nn.MaxPool2d(3, 2, ceil_mode=True)(x).shape
        pool = StochasticPool2d(3, 2, ceil_mode=True)
        assert pool(x).shape == expected and pool.eval()(x).shape == expected


# --------------------------------------------------------------------------- zero windows (documented rule)


def test_zero_window_rule_as_documented() -> None:
    """docs/stochastic.md: a zero window outputs 0 and passes NO gradient (Caffe would pass it to the
    window's first cell); in training its index is the first in-bounds cell, padding skipped."""
    # 2x2 windows, stride 2, padding 1: rows [-1, 0], [1, 2], [3, 4]; only row 3 is positive
    x = torch.zeros(1, 1, 4, 6)
    x[0, 0, 3, 3:] = torch.tensor([1.0, 2.0, 3.0])
    for training in (True, False):
        leaf = x.clone().requires_grad_(True)
        idx: torch.Tensor | None = None
        if training:
            y, idx = stochastic_pool2d(leaf, 2, 2, 1, generator=gen(2), return_indices=True)
        else:
            y = stochastic_pool2d(leaf, 2, 2, 1, training=False, generator=gen(2))
        assert bool((y[0, 0, :2] == 0).all()) and bool((y[0, 0, 2, 2:] > 0).all())
        torch.autograd.backward(y, torch.ones_like(y))
        assert leaf.grad is not None and bool(leaf.grad[0, 0, 3, 3:].abs().sum() > 0)
        assert leaf.grad[0, 0, :3].abs().sum() == 0, "a zero window passed gradient (Caffe's rule)"
        if idx is not None:
            assert idx[0, 0, 0, 0] == 0  # corner window (rows -1..0, cols -1..0): cell (0, 0)
            assert idx[0, 0, 0, 1] == 1  # rows -1..0, cols 1..2: cell (0, 1)
            assert idx[0, 0, 1, 0] == 6  # rows 1..2, cols -1..0: cell (1, 0)


# --------------------------------------------------------------------------- empty, meta, compile


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("shape", [(0, 3), (2, 0)], ids=["N0", "C0"])
def test_empty_batch_or_channels_give_the_empty_result(n: int, shape: tuple[int, ...]) -> None:
    spatial = {1: (9,), 2: (7, 8), 3: (5, 4, 6)}[n]
    x = torch.rand(*shape, *spatial, requires_grad=True)
    expected = (*shape, *MAX_POOLS[n](torch.rand(1, 1, *spatial), 3, 2, 1).shape[2:])
    for training in (True, False):
        y = FUNCS[n](x, 3, 2, 1, training=training)
        assert y.shape == expected and y.numel() == 0
        torch.autograd.backward(y.sum())
        assert x.grad is not None and x.grad.shape == x.shape
    y, idx = FUNCS[n](x, 3, 2, 1, return_indices=True)
    assert idx.shape == expected and idx.dtype == torch.int64
    assert MODULES[n](3, 2, 1).eval()(x[0] if shape[0] else x).numel() == 0


@pytest.mark.parametrize("n", [1, 2, 3])
def test_meta_tensors_infer_the_shape(n: int) -> None:
    spatial = {1: (9,), 2: (7, 8), 3: (5, 4, 6)}[n]
    x = torch.empty(2, 3, *spatial, device="meta")
    expected = MAX_POOLS[n](torch.empty(2, 3, *spatial), 3, 2, 1, 1, True).shape
    for training in (True, False):
        y = FUNCS[n](x, 3, 2, 1, ceil_mode=True, training=training)
        assert y.device.type == "meta" and y.shape == expected
    y, idx = FUNCS[n](x, 3, 2, 1, return_indices=True)
    assert idx.device.type == "meta" and idx.dtype == torch.int64
    leaf = torch.empty(2, 3, *spatial, device="meta", requires_grad=True)
    torch.autograd.backward(FUNCS[n](leaf, 2, training=True).sum())
    assert leaf.grad is not None and leaf.grad.shape == leaf.shape


def test_fake_tensors_infer_the_shape() -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(2, 3, 9, 9)
        assert stochastic_pool2d(x, 3, 2, 1, 2, True).shape == (2, 3, 4, 4)
        assert stochastic_pool2d(x, 3, 2, training=False).shape == (2, 3, 4, 4)


@pytest.mark.parametrize("training", [True, False])
def test_fullgraph_compile_matches_eager_with_dilation_and_ceil(training: bool) -> None:
    """fullgraph=True (no graph break), forward and backward, same seed -> same draws."""
    torch._dynamo.reset()
    pool = StochasticPool2d(3, 2, 1, dilation=2, ceil_mode=True).train(training)
    x = relu_input((2, 3, 9, 10), seed=24, dtype=torch.float32)
    x[0, 0, :5] = 0.0

    def run(module: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        leaf = x.clone().requires_grad_(True)
        torch.manual_seed(3)
        y = module(leaf)
        torch.autograd.backward(y, torch.linspace(0.5, 1.5, y.numel()).view_as(y))
        return y.detach(), leaf.grad

    y_c, g_c = run(torch.compile(pool, fullgraph=True, backend="aot_eager"))
    y_e, g_e = run(pool)
    torch.testing.assert_close(y_c, y_e, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g_c, g_e, rtol=1e-6, atol=1e-6)
    torch._dynamo.reset()


@pytest.mark.slow
@pytest.mark.parametrize(
    "make", [lambda: StochasticPool3d(2, ceil_mode=True), lambda: StochasticPool2d(3, 2, 1, ceil_mode=True)]
)
def test_inductor_ceil_mode_eval_matches_eager(make: Callable[[], torch.nn.Module]) -> None:
    """Inductor's own avg_pool3d(ceil_mode=True) gradient is wrong (O(1) off on the CPU): the
    traceable path sums views in ceil mode instead, and matches eager."""
    torch._dynamo.reset()
    pool = make().eval()
    dims = 3 if isinstance(pool, StochasticPool3d) else 2
    x = torch.rand(2, 3, *[7] * dims, generator=gen(5))

    def run(module: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        leaf = x.clone().requires_grad_(True)
        y = module(leaf)
        torch.autograd.backward(y, torch.linspace(0.5, 1.5, y.numel()).view_as(y))
        return y.detach(), leaf.grad

    y_c, g_c = run(torch.compile(pool, fullgraph=True))
    y_e, g_e = run(pool)
    torch.testing.assert_close(y_c, y_e, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_c, g_e, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("training", [False, True])
def test_cuda_gradient_matches_float64_cpu(training: bool) -> None:
    """With torch 2.11 on an H200, PyTorch's CUDA avg_pool2d backward on a channels_last input was
    off by up to 0.5 (k3 s2 p1 on 4x8x13x13, a non-uniform upstream gradient); the eval path pools
    in the contiguous layout on CUDA. Same uniforms on both devices are not available, so training
    compares the one-hot routing of its own draw."""
    x = relu_input((4, 8, 13, 13), seed=30, dtype=torch.float32)
    upstream = torch.linspace(0.5, 1.5, 4 * 8 * 7 * 7).view(4, 8, 7, 7)
    leaf = x.cuda().detach().requires_grad_(True)
    out = stochastic_pool2d(leaf, 3, 2, 1, training=training, return_indices=training)
    y, idx = out if training else (out, None)
    torch.autograd.backward(y, upstream.cuda())
    if idx is None:
        ref_leaf = x.detach().double().requires_grad_(True)
        torch.autograd.backward(stochastic_pool2d(ref_leaf, 3, 2, 1, training=False), upstream.double())
        expected = ref_leaf.grad
    else:
        masked = upstream.double() * (stochastic_eval_reference(x, 3, 2, 1) > 0)
        expected = torch.zeros(4, 8, 169, dtype=torch.float64).scatter_add_(
            2, idx.cpu().flatten(2), masked.flatten(2)
        )
    assert leaf.grad is not None and expected is not None
    torch.testing.assert_close(leaf.grad.cpu().double(), expected.view(x.shape), rtol=1e-5, atol=1e-5)


def test_eager_check_still_refuses_bad_input_and_traced_path_skips_it() -> None:
    bad = GOOD.clone()
    bad[0, 0, 0, 0] = -1.0
    with pytest.raises(ValueError, match="non-negative"):
        stochastic_pool2d(bad, 2)
    with pytest.raises(ValueError, match="non-negative"):
        StochasticPool2d(2, ceil_mode=True).eval()(bad)
    # exported programs carry no data-dependent check (and no .item())
    program = torch.export.export(StochasticPool2d(3, 2, ceil_mode=True).eval(), (GOOD,))
    expected = stochastic_pool2d(GOOD, 3, 2, ceil_mode=True, training=False)
    torch.testing.assert_close(program.module()(GOOD), expected)
