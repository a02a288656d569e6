"""Max unpooling: PyTorch parity without duplicates, one rule for duplicates in both passes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import torchpool as tp


@pytest.mark.parametrize("n", [1, 2, 3])
def test_matches_pytorch_for_non_overlapping_windows(n: int) -> None:
    x = torch.randn(2, 3, *[6] * n)
    pool = getattr(F, f"max_pool{n}d")
    y, idx = pool(x, 2, return_indices=True)
    ours = getattr(tp, f"max_unpool{n}d")(y, idx, 2)
    theirs = getattr(F, f"max_unpool{n}d")(y, idx, 2)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_output_size_chooses_between_sizes_that_pool_alike() -> None:
    x = torch.randn(1, 2, 7, 7)  # pools to 3x3 like a 6x6 input
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    out = tp.max_unpool2d(y, idx, 2, output_size=(7, 7))
    assert out.shape == (1, 2, 7, 7)
    torch.testing.assert_close(out, F.max_unpool2d(y, idx, (2, 2), output_size=(7, 7)))
    assert tp.max_unpool2d(y, idx, 2, output_size=x.shape).shape == x.shape


def test_duplicates_reproduce_the_pooled_value_and_gradcheck_passes() -> None:
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    y, idx = F.max_pool2d(x, 3, 1, 1, return_indices=True)
    counts = torch.zeros(1, 2, 36, dtype=torch.long).scatter_add_(
        2, idx.flatten(2), torch.ones_like(idx.flatten(2))
    )
    assert counts.max() > 1, "the case must contain duplicate indices"
    out = tp.max_unpool2d(y, idx, 3, 1, 1)
    recorded = counts.reshape(1, 2, 6, 6) > 0
    torch.testing.assert_close(out[recorded], x[recorded])
    assert torch.all(out[~recorded] == 0)
    values = torch.randn_like(y).requires_grad_(True)
    for reduce in ("mean", "sum"):
        assert torch.autograd.gradcheck(
            lambda v, r=reduce: tp.max_unpool2d(v, idx, 3, 1, 1, reduce=r), (values,)
        )


def test_pytorch_forward_and_backward_disagree_on_duplicates() -> None:
    """Documents pytorch #80204: why torchpool does not delegate to F.max_unpool2d here."""
    x = torch.randn(1, 1, 6, 6, dtype=torch.float64)
    y, idx = F.max_pool2d(x, 3, 1, 1, return_indices=True)
    values = torch.randn_like(y).requires_grad_(True)
    ok = torch.autograd.gradcheck(
        lambda v: F.max_unpool2d(v, idx, (3, 3), (1, 1), (1, 1)), (values,), raise_exception=False
    )
    assert not ok


@pytest.mark.parametrize("source", ["median", "stochastic"])
def test_accepts_indices_from_torchpool_pools(source: str) -> None:
    x = torch.rand(2, 3, 8, 8)
    if source == "median":
        y, idx = tp.median_pool2d_with_indices(x, 2)
    else:
        y, idx = tp.stochastic_pool2d_with_indices(x, 2, generator=torch.Generator().manual_seed(0))
    out = tp.max_unpool2d(y, idx, 2)
    torch.testing.assert_close(out.flatten(2).gather(2, idx.flatten(2)), y.flatten(2))
    assert (out != 0).sum() <= y.numel()


def test_batchless_and_module() -> None:
    y, idx = F.max_pool2d(torch.randn(3, 6, 6), 2, return_indices=True)
    out = tp.MaxUnpool2d(2, reduce="sum")(y, idx)
    assert out.shape == (3, 6, 6)
    assert "reduce='sum'" in repr(tp.MaxUnpool2d(2, reduce="sum"))
