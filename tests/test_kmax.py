"""k-max pooling beyond the generic walks: order, ties, NaN, gradient, errors, the tie-check path."""

from __future__ import annotations

import math

import pytest
import torch
from records.kmax import kmax_reference

import torchpool as tp
import torchpool.ops.kmax as K


@pytest.mark.parametrize("k", [1, 2, 5, 11, 12])
@pytest.mark.parametrize("dim", [-1, 1, 2])
def test_random_rows_against_the_reference(k: int, dim: int) -> None:
    g = torch.Generator().manual_seed(k)
    x = torch.randn(3, 12, 12, generator=g)
    torch.testing.assert_close(
        tp.kmax_pool1d(x, k, dim=dim).double(), kmax_reference(x, k, dim), rtol=0, atol=0
    )


def test_values_keep_their_original_order() -> None:
    x = torch.tensor([[[1.0, 5.0, 2.0, 4.0, 3.0, 0.0]]])
    assert tp.kmax_pool1d(x, 3).tolist() == [[[5.0, 4.0, 3.0]]]
    x = torch.tensor([[[3.0, 1.0, 5.0, 0.0, 4.0]]])
    assert tp.kmax_pool1d(x, 3).tolist() == [[[3.0, 5.0, 4.0]]]  # not sorted by value


def _kept_positions(x: torch.Tensor, k: int) -> list[list[int]]:
    """The positions kmax_pool1d keeps in each row of ``x`` (C, L), read from the gradient."""
    x = x.clone().requires_grad_(True)
    torch.autograd.backward(tp.kmax_pool1d(x, k).sum())
    assert x.grad is not None
    return [row.nonzero().flatten().tolist() for row in x.grad]


def test_ties_keep_the_earliest_positions() -> None:
    assert _kept_positions(torch.zeros(1, 20), 3) == [[0, 1, 2]]  # topk alone picks e.g. 12, 14, 13
    assert _kept_positions(torch.tensor([[3.0, 1.0, 3.0, 3.0]]), 2) == [[0, 2]]
    assert _kept_positions(torch.tensor([[1.0, 2.0, 2.0, 0.0, 2.0, 9.0]]), 3) == [[1, 2, 5]]
    # rows with and without ties in one call: only the tied rows take the stable sort
    x = torch.tensor([[4.0, 2.0, 2.0, 2.0, 1.0], [5.0, 1.0, 4.0, 2.0, 3.0]])
    assert _kept_positions(x, 2) == [[0, 1], [0, 2]]


@pytest.mark.parametrize("length", [40, 128, 256])
@pytest.mark.parametrize("seed", range(3))
def test_many_ties_against_the_reference(seed: int, length: int) -> None:
    """Values from a small set (ReLU-like zeros and repeats): the reference ranks by (-value, position).

    ``k = 2`` on ``L = 128`` takes the count check (``topk(3)`` would leave the CPU's partial sort),
    the others ``topk(k + 1)``; a NaN row checks the redo of kept NaNs.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 4, (4, 6, length), generator=g).float().relu()
    x[1, 2, 5] = math.nan
    x[2, 3, ::7] = math.nan
    for k in (1, 2, 3, 8, length - 1):
        y = tp.kmax_pool1d(x, k)
        torch.testing.assert_close(y.double(), kmax_reference(x, k), rtol=0, atol=0, equal_nan=True)
        got = _kept_positions(x.reshape(-1, length), k)
        for row, kept in zip(x.reshape(-1, length).tolist(), got):
            ranked = sorted(range(length), key=lambda i: (-math.inf if math.isnan(row[i]) else -row[i], i))
            assert kept == sorted(ranked[:k])


def test_traced_path_equals_eager_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sort-free path (what traced code runs) gives the same values and positions."""
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 3, (2, 5, 30), generator=g).float()
    x[0, 1, ::4] = math.nan
    x[1, 2, 3] = math.inf
    eager = tp.kmax_pool1d(x, 6)
    monkeypatch.setattr(K, "_no_values", lambda t: True)
    torch.testing.assert_close(tp.kmax_pool1d(x, 6), eager, rtol=0, atol=0, equal_nan=True)
    assert _kept_positions(x[1], 6) == [
        sorted(sorted(range(30), key=lambda i: (-r[i], i))[:6]) for r in x[1].tolist()
    ]
    assert _kept_positions(x[0, 1:2], 6) == [[0, 4, 8, 12, 16, 20]]  # the first six NaNs


def test_nan_counts_as_largest() -> None:
    nan = math.nan
    y = tp.kmax_pool1d(torch.tensor([[1.0, nan, 3.0, nan, 2.0]]), 3)
    assert y[0, 1].item() == 3.0 and math.isnan(y[0, 0].item()) and math.isnan(y[0, 2].item())
    y = tp.kmax_pool1d(torch.tensor([[nan, 1.0, nan, nan, 2.0]]), 2)  # the first two NaNs
    assert bool(y.isnan().all())
    assert _kept_positions(torch.tensor([[nan, 1.0, nan, nan, 2.0]]), 2) == [[0, 2]]
    y = tp.kmax_pool1d(torch.tensor([[-math.inf, 1.0, math.inf, 0.0]]), 2)
    assert y.tolist() == [[1.0, math.inf]]


def test_tie_behind_a_kept_nan() -> None:
    """k = 2 on L = 128 (the count check): a NaN and two tied 1s; the first 1 is kept."""
    x = torch.zeros(1, 128)
    x[0, 0], x[0, 5], x[0, 9] = math.nan, 1.0, 1.0
    assert _kept_positions(x, 2) == [[0, 5]]
    x = torch.zeros(1, 40)  # topk(k + 1) branch
    x[0, 0], x[0, 5], x[0, 9] = math.nan, 1.0, 1.0
    assert _kept_positions(x, 2) == [[0, 5]]


def test_gradient_reaches_exactly_the_kept_cells() -> None:
    x = torch.randn(
        2, 3, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(4), requires_grad=True
    )
    y = tp.kmax_pool1d(x, 4)
    w = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    (grad,) = torch.autograd.grad(y, x, w)
    kept = torch.zeros_like(x, dtype=torch.bool)
    for n in range(2):
        for c in range(3):
            row = x[n, c].tolist()
            for slot, i in enumerate(sorted(sorted(range(10), key=lambda i: (-row[i], i))[:4])):
                kept[n, c, i] = True
                assert grad[n, c, i].item() == w[n, c, slot].item()
    assert bool((grad[~kept] == 0).all())
    assert torch.autograd.gradcheck(
        lambda t: tp.kmax_pool1d(t, 4, dim=1), (x.detach().transpose(1, 2).requires_grad_(),)
    )


def test_k_equal_to_length_is_the_input_and_dtypes() -> None:
    x = torch.randn(2, 3, 7)
    assert torch.equal(tp.kmax_pool1d(x, 7), x)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        xd = x.to(dtype)
        y = tp.kmax_pool1d(xd, 3)
        assert y.dtype == dtype
        torch.testing.assert_close(y.double(), kmax_reference(xd, 3), rtol=0, atol=0)


def test_errors_name_the_parameter() -> None:
    x = torch.randn(2, 3, 5)
    with pytest.raises(ValueError, match=r"k must be at most the length 5 of dim -1 .* got k=6"):
        tp.kmax_pool1d(x, 6)
    with pytest.raises(ValueError, match="k must be a positive int, got 0"):
        tp.kmax_pool1d(x, 0)
    with pytest.raises(TypeError, match="k must be a positive int"):
        tp.kmax_pool1d(x, 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dim must not be the batch dimension"):
        tp.kmax_pool1d(x, 1, dim=0)
    with pytest.raises(ValueError, match="dim must be in"):
        tp.kmax_pool1d(x, 1, dim=3)
    with pytest.raises(ValueError, match="input must have 2"):
        tp.kmax_pool1d(torch.randn(2, 3, 4, 5), 1)
    with pytest.raises(TypeError, match="input must have a floating-point dtype"):
        tp.kmax_pool1d(torch.ones(2, 3, 5, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="k must be a positive int"):
        tp.KMaxPool1d(-1)
    assert tp.kmax_pool1d(x[0], 2, dim=0).shape == (2, 5)  # batch-less: dim 0 is the channel axis


def test_module_and_registry() -> None:
    pool = tp.create_pool("kmax1d", k=3)
    assert isinstance(pool, tp.KMaxPool1d) and repr(pool) == "KMaxPool1d(k=3, dim=-1)"
    x = torch.randn(2, 4, 9)
    assert torch.equal(pool(x), tp.kmax_pool1d(x, 3))


def _ranked_positions(row: list[float], k: int) -> list[int]:
    """The float64 loop rule: NaN first, then by value, the earliest position first; kept in order."""
    ranked = sorted(range(len(row)), key=lambda i: (not math.isnan(row[i]), -row[i], i))
    return sorted(ranked[:k])


def _two_stage_rows(length: int, seed: int) -> torch.Tensor:
    """Rows that stress the column selection of the two-stage path (columns are cells j, j + m, ...)."""
    m = K._column_count(torch.zeros(1, length), 8, 1)
    g = torch.Generator().manual_seed(seed)
    rows = [torch.randn(length, generator=g) for _ in range(4)]  # distinct values
    rows.append(torch.randint(0, 3, (length,), generator=g).float())  # ties everywhere
    rows.append(torch.zeros(length))  # all equal
    stacked = torch.randn(length, generator=g)
    stacked[3::m] = torch.arange(10.0, 10.0 + length // m)  # the largest cells all in one column
    rows.append(stacked)
    tied = torch.randn(length, generator=g)
    tied[1 : 8 * m : m] = 5.0  # 8 equal cells in column 1 and a 9th in another column, earlier
    tied[0] = 5.0
    rows.append(tied)
    behind = torch.randn(length, generator=g)
    behind[[7, 7 + m]] = 4.0  # a tie at the k-th place inside one column
    behind[[2 + 2 * m, 5, 9 + 3 * m, 11, 12 + m, 30]] = 6.0
    rows.append(behind)
    nans = torch.randn(length, generator=g)
    nans[[4, 4 + m, 20]] = math.nan  # kept NaNs, two in one column
    rows.append(nans)
    many_nans = torch.randn(length, generator=g)
    many_nans[::5] = math.nan  # more NaNs than k: the first 8 are kept
    rows.append(many_nans)
    infs = torch.full((length,), -math.inf)
    infs[[3, 40, 41]] = torch.tensor([1.0, math.inf, -2.0])  # fewer than k cells above -inf
    rows.append(infs)
    zeros = torch.zeros(length)
    zeros[::3] = -0.0  # -0.0 and 0.0 are equal: positions decide
    zeros[[50, 60]] = 1.0
    rows.append(zeros)
    for shift in range(6):  # k + 1 equal maxima, one per column: topk of the maxima drops any one
        spread = torch.randn(length, generator=g)
        spread[[(5 * shift + 7 * j) % m + m * ((j + shift) % (length // m)) for j in range(9)]] = 5.0
        rows.append(spread)
    return torch.stack(rows)


@pytest.mark.parametrize("length", [512, 576, 1024])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("plain", [0, 60])
def test_two_stage_path_against_the_reference(
    length: int, dtype: torch.dtype, plain: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """k = 8 on long rows takes the column maxima path (the benchmark's case): values and positions.

    The special rows alone are mostly not simple (all rows take the second ``topk``, ``_pick``);
    among ``plain`` random rows they are the minority (only they and the few random rows that
    are not simple do).
    """
    calls: list[int] = []
    picks: list[int] = []
    two_stage, pick = K._two_stage, K._pick

    def spy(x: torch.Tensor, k: int, axis: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(m)
        return two_stage(x, k, axis, m)

    def spy_pick(
        c: torch.Tensor, s: torch.Tensor, o: torch.Tensor, m: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        picks.append(c.shape[0])
        return pick(c, s, o, m)

    monkeypatch.setattr(K, "_two_stage", spy)
    monkeypatch.setattr(K, "_pick", spy_pick)
    special = _two_stage_rows(length, length)
    x = torch.cat([torch.randn(plain, length, generator=torch.Generator().manual_seed(1)), special])
    x = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(2))].to(dtype)
    y = tp.kmax_pool1d(x, 8)
    assert calls and 8 < calls[0] < length and length % calls[0] == 0
    if plain == 0:
        assert picks == [x.shape[0]]
    elif dtype != torch.bfloat16:  # bfloat16's 8-bit random values tie often: most rows are not simple
        assert picks and special.shape[0] <= picks[0] < x.shape[0]
    torch.testing.assert_close(y.double(), kmax_reference(x, 8), rtol=0, atol=0, equal_nan=True)
    for row, kept in zip(x.double().tolist(), _kept_positions(x, 8)):
        assert kept == _ranked_positions(row, 8)


def test_two_stage_path_layouts_and_batches() -> None:
    """(N, C, L) with ties in some rows only, and channels-last dim=1 (contiguous along L)."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(3, 5, 512, generator=g)
    x[1, 2, 100:400:37] = 9.0  # 9 equal largest: the first 8 are kept
    x[2, 4] = torch.randint(0, 2, (512,), generator=g).float()
    assert K._column_count(x, 8, 2) == 64
    torch.testing.assert_close(tp.kmax_pool1d(x, 8).double(), kmax_reference(x, 8), rtol=0, atol=0)
    view = x.transpose(1, 2)  # (N, L, C) view of (N, C, L) memory: contiguous along L
    assert K._column_count(view, 8, 1) == 64
    torch.testing.assert_close(tp.kmax_pool1d(view, 8, dim=1), tp.kmax_pool1d(x, 8).transpose(1, 2))
    last = view.contiguous()  # channels-last memory: L is strided, one topk
    assert K._column_count(last, 8, 1) == 0
    torch.testing.assert_close(tp.kmax_pool1d(last, 8, dim=1), tp.kmax_pool1d(x, 8).transpose(1, 2))


def test_two_stage_gradient() -> None:
    x = torch.randn(2, 3, 512, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    x[0, 1, ::64] = 7.0  # ties at the boundary
    x.requires_grad_(True)
    y = tp.kmax_pool1d(x, 8)
    w = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(13))
    (grad,) = torch.autograd.grad(y, x, w)
    for n in range(2):
        for c in range(3):
            kept = _ranked_positions(x[n, c].tolist(), 8)
            expected = torch.zeros(512, dtype=torch.float64)
            expected[kept] = w[n, c]
            assert torch.equal(grad[n, c], expected)
