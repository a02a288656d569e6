"""S3Pool beyond the generic walks: the training draw (which rows and columns, how uniform,
reproducible, shared or per sample), its values and gradient against a float64 loop reference,
and the eval rule against the authors' formulation.

The kept rows and columns of a draw are read back from the output itself: on the input
``x[r, c] = -(r W + c)`` the dense 2x2 max at ``(r, c)`` is ``x[r, c]`` (the window's top-left cell
is its largest), so each output names the dense cell it came from. The draw depends only on the
shapes and the generator, so the same generator state gives the same draw on any input of that
shape (asserted on two inputs below).
"""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from records.s3 import dense_max_reference, eval_reference

import torchpool as tp
import torchpool.ops.s3 as S3

#: chi-square critical values at alpha = 0.001, by degrees of freedom.
CHI2_CRIT = {1: 10.828, 2: 13.816, 5: 20.515}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _encoded(n: int, c: int, h: int, w: int) -> torch.Tensor:
    """``x[., ., r, col] = -(r w + col)``: the dense max at ``(r, col)`` is the cell itself."""
    index = torch.arange(h * w, dtype=torch.float64).reshape(h, w)
    return (-index).expand(n, c, h, w).clone()


def draws(
    shape: tuple[int, int, int, int],
    stride: int | tuple[int, int],
    grid: int | tuple[int, int] | None,
    seed: int,
    per_sample: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The kept rows ``(N, H_out)`` and columns ``(N, W_out)`` of the draw made by ``seed``, checked to
    be one row per output row and one column per output column, alike in every channel."""
    n, c, h, w = shape
    y = S3.s3_pool2d(_encoded(n, c, h, w), stride, grid, generator=_gen(seed), per_sample=per_sample)
    cells = (-y).round().long()
    rows, cols = cells // w, cells % w
    assert bool((rows == rows[:, :1, :, :1]).all()), "a kept row differs between columns or channels"
    assert bool((cols == cols[:, :1, :1, :]).all()), "a kept column differs between rows or channels"
    return rows[:, 0, :, 0], cols[:, 0, 0, :]


def _check_one_axis(kept: torch.Tensor, size: int, s: int, g: int) -> None:
    """Sorted, distinct, ``g // s`` per full grid, ``r // s`` in the partial grid, ``size // s`` in all."""
    assert kept.shape[-1] == size // s
    for seq in kept.tolist():
        assert seq == sorted(set(seq)), f"not sorted and distinct: {seq}"
        assert all(0 <= v < size for v in seq)
        full, rest = divmod(size, g)
        per_grid = Counter(v // g for v in seq)
        for q in range(full):
            assert per_grid[q] == g // s, (seq, q)
        assert per_grid.get(full, 0) == rest // s, (seq, "partial grid")


@pytest.mark.parametrize(
    ("h", "w", "stride", "grid"),
    [
        (8, 8, 2, None),
        (8, 12, 2, 4),
        (7, 9, 2, 4),
        (9, 10, 3, 6),
        (8, 7, (2, 3), (8, 3)),
        (11, 6, 1, 3),
        (5, 5, 4, 8),
    ],
)
@pytest.mark.parametrize("per_sample", [False, True])
def test_kept_rows_sorted_distinct_one_set_per_grid(
    h: int, w: int, stride: int | tuple[int, int], grid: int | tuple[int, int] | None, per_sample: bool
) -> None:
    s = (stride, stride) if isinstance(stride, int) else stride
    g = s if grid is None else ((grid, grid) if isinstance(grid, int) else grid)
    for seed in range(5):
        rows, cols = draws((3, 2, h, w), stride, grid, seed, per_sample)
        _check_one_axis(rows, h, s[0], g[0])
        _check_one_axis(cols, w, s[1], g[1])
        if not per_sample:
            assert bool((rows == rows[:1]).all()) and bool((cols == cols[:1]).all()), "draw not shared"


def test_per_sample_draws_differ_between_samples() -> None:
    rows, cols = draws((16, 2, 16, 16), 2, 8, 0, per_sample=True)
    assert len({tuple(r) for r in rows.tolist()}) > 1 and len({tuple(c) for c in cols.tolist()}) > 1
    shared_rows, _ = draws((16, 2, 16, 16), 2, 8, 0, per_sample=False)
    assert len({tuple(r) for r in shared_rows.tolist()}) == 1


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize(("stride", "grid"), [(2, None), (2, 4), (3, 6), ((2, 3), (4, 6))])
def test_train_output_is_the_dense_max_at_the_kept_rows_and_columns(
    stride: int | tuple[int, int], grid: int | tuple[int, int] | None, per_sample: bool
) -> None:
    shape = (3, 2, 9, 13)
    x = torch.randperm(3 * 2 * 9 * 13, generator=_gen(7)).double().reshape(shape) / 100 - 3
    y = S3.s3_pool2d(x, stride, grid, generator=_gen(11), per_sample=per_sample)
    rows, cols = draws(shape, stride, grid, 11, per_sample)
    dense = dense_max_reference(x)
    expected = torch.stack([dense[n][:, rows[n]][:, :, cols[n]] for n in range(shape[0])])
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, expected, rtol=0, atol=0)
    # float32 and batch-less input: the same draw, the same values
    y32 = S3.s3_pool2d(x[0].float(), stride, grid, generator=_gen(11))
    if not per_sample:
        torch.testing.assert_close(y32, expected[0].float(), rtol=0, atol=0)


def test_gradient_reaches_the_argmax_of_each_kept_window() -> None:
    shape = (2, 3, 7, 10)
    x = (torch.randperm(2 * 3 * 7 * 10, generator=_gen(3)).double().reshape(shape) / 50).requires_grad_(True)
    weight = torch.rand(2, 3, 3, 5, generator=_gen(4), dtype=torch.float64) + 0.5
    for per_sample in (False, True):
        x.grad = None
        y = S3.s3_pool2d(x, 2, 4, generator=_gen(5), per_sample=per_sample)
        torch.autograd.backward((y * weight).sum())
        rows, cols = draws(shape, 2, 4, 5, per_sample)
        expected = torch.zeros(shape, dtype=torch.float64)
        for n, c, i, j in itertools.product(range(2), range(3), range(3), range(5)):
            r0, c0 = int(rows[n, i]), int(cols[n, j])
            window = [(r, q) for r in range(r0, min(r0 + 2, 7)) for q in range(c0, min(c0 + 2, 10))]
            best = max(window, key=lambda rc: float(x.detach()[n, c, rc[0], rc[1]]))
            expected[n, c, best[0], best[1]] += weight[n, c, i, j]
        assert x.grad is not None
        torch.testing.assert_close(x.grad, expected, rtol=0, atol=1e-12)


def _chi_square(counts: Counter[tuple[int, ...]], categories: list[tuple[int, ...]]) -> float:
    total = sum(counts.values())
    assert set(counts) <= set(categories), set(counts) - set(categories)
    expected = total / len(categories)
    return sum((counts.get(cat, 0) - expected) ** 2 / expected for cat in categories)


def _subsets(kept: torch.Tensor, lo: int, hi: int) -> list[tuple[int, ...]]:
    """The kept rows in ``[lo, hi)`` of each draw, relative to ``lo``."""
    return [tuple(v - lo for v in seq if lo <= v < hi) for seq in kept.tolist()]


def _biased_sampler(trials: int, g: int, k: int, seed: int) -> list[tuple[int, ...]]:
    """A wrong sampler for the power check: keys tilted slightly towards the first cells of the grid
    (the first subset a few percent more frequent than the last)."""
    keys = torch.rand(trials, g, generator=_gen(seed)) + (0.2 / g) * torch.arange(g)
    return [tuple(sorted(row)) for row in keys.argsort(dim=1)[:, :k].tolist()]


@pytest.mark.parametrize(("size", "g", "lo", "hi"), [(8, 4, 0, 4), (8, 4, 4, 8), (7, 4, 4, 7), (8, 2, 6, 8)])
def test_draw_is_uniform_over_the_subsets_of_a_grid(size: int, g: int, lo: int, hi: int) -> None:
    """Chi-square over the C(n, n // 2) subsets a grid of n = hi - lo rows can keep (stride 2); the
    same statistic rejects a biased sampler at the same number of draws (its power)."""
    n, k = hi - lo, (hi - lo) // 2
    categories = list(itertools.combinations(range(n), k))
    rows, _ = draws((3000, 1, size, 2), 2, g, 21, per_sample=True)
    observed = Counter(_subsets(rows, lo, hi))
    crit = CHI2_CRIT[len(categories) - 1]
    assert _chi_square(observed, categories) < crit, observed
    biased = Counter(_biased_sampler(3000, n, k, 22))
    assert _chi_square(biased, categories) > crit, biased


def test_shared_draw_is_uniform_too() -> None:
    """The default (shared) path, grid = stride = 2: each grid keeps its first or second row."""
    counts: Counter[tuple[int, ...]] = Counter()
    for seed in range(100):
        rows, cols = draws((1, 1, 40, 40), 2, None, 1000 + seed, per_sample=False)
        for kept in (rows[0], cols[0]):
            counts.update((int(v) % 2,) for v in kept)
    assert _chi_square(counts, [(0,), (1,)]) < CHI2_CRIT[1], counts


def test_generator_reproduces_a_draw() -> None:
    x = torch.randn(4, 3, 16, 16, generator=_gen(0))
    for per_sample in (False, True):
        a = S3.s3_pool2d(x, 2, 8, generator=_gen(5), per_sample=per_sample)
        b = S3.s3_pool2d(x, 2, 8, generator=_gen(5), per_sample=per_sample)
        c = S3.s3_pool2d(x, 2, 8, generator=_gen(6), per_sample=per_sample)
        assert torch.equal(a, b) and not torch.equal(a, c)
    module = tp.S3Pool2d(2, 8).train()
    torch.testing.assert_close(module(x, generator=_gen(5)), S3.s3_pool2d(x, 2, 8, generator=_gen(5)))
    torch.manual_seed(3)
    first = module(x)
    torch.manual_seed(3)
    assert torch.equal(first, module(x)), "the global seed does not reproduce the draw"


@pytest.mark.parametrize("size", [4, 5, 7, 8, 9, 16])
@pytest.mark.parametrize("stride", [1, 2, 3, 4])
def test_output_size_is_max_pooling_s(size: int, stride: int) -> None:
    if size < stride:
        return
    x = torch.randn(1, 2, size, size + 1, generator=_gen(0))
    expected = F.max_pool2d(x, stride).shape
    for training in (True, False):
        assert S3.s3_pool2d(x, stride, 2 * stride, training=training).shape == expected


def test_eval_is_the_authors_rule_on_even_sizes() -> None:
    """The authors' Lasagne layer at test time: dense max with window 2, stride 1, no padding (one row
    and column fewer), then average pooling, window and stride 2, one padding cell each side not
    counted. On even sizes it gives the same map as ours."""
    x = torch.randn(2, 3, 8, 12, generator=_gen(1), dtype=torch.float64)
    dense = F.max_pool2d(x, 2, 1)  # (7, 11)
    theirs = F.avg_pool2d(dense, 2, 2, 1, count_include_pad=False)
    assert theirs.shape[-2:] == (4, 6)
    torch.testing.assert_close(S3.s3_pool2d(x, training=False), theirs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(tp.S3Pool2d().eval()(x), eval_reference(x), rtol=1e-12, atol=1e-12)


def test_stride_one_keeps_the_dense_max_in_both_modes() -> None:
    x = torch.randn(2, 2, 5, 6, generator=_gen(2), dtype=torch.float64)
    for training in (True, False):
        torch.testing.assert_close(S3.s3_pool2d(x, 1, 3, training=training), dense_max_reference(x))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"stride": 2, "grid_size": 3}, ValueError, "grid_size must be a positive multiple of stride"),
        ({"stride": 0}, ValueError, "stride must be positive"),
        ({"stride": 2, "per_sample": 1}, TypeError, "per_sample must be a bool"),
        ({"stride": 2, "training": "yes"}, TypeError, "training must be a bool"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        S3.s3_pool2d(torch.zeros(1, 1, 8, 8), **kwargs)  # type: ignore[arg-type]


def test_input_smaller_than_stride_is_refused() -> None:
    with pytest.raises(ValueError, match=r"input of shape \(1, 1, 3, 8\) is smaller than stride \(4, 4\)"):
        S3.s3_pool2d(torch.zeros(1, 1, 3, 8), 4)


def test_eval_paths_with_and_without_autograd_agree() -> None:
    """Eval computes the dense max by separable maxima without autograd and by max pooling with it:
    the same values, ties, infinities and NaN included."""
    x = torch.randint(0, 4, (2, 3, 9, 8), generator=_gen(8)).double()
    x[0, 0, 2, 3], x[0, 1, 5, 5], x[1, 2, 8, 7] = float("-inf"), float("inf"), float("nan")
    with torch.no_grad():
        plain = S3.s3_pool2d(x, 2, training=False)
    tracked = S3.s3_pool2d(x.clone().requires_grad_(True), 2, training=False)
    torch.testing.assert_close(tracked.detach(), plain, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(plain, eval_reference(x), rtol=1e-12, atol=0, equal_nan=True)
