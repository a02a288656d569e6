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
