"""Property-based tests: random shapes and window arguments against the float64 references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st
from reference import avg_pool_reference, max_pool_reference, max_unpool_reference
from reference_median import median_pool_reference
from reference_stochastic import stochastic_eval_reference

import torchpool as tp


@st.composite
def windows(
    draw: st.DrawFn, dims: int
) -> tuple[torch.Tensor, tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """A small input with distinct values and a valid window (kernel, stride, padding) per dim."""
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(dims))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    sizes = tuple(draw(st.integers(max(1, k - 2 * p), 7)) for k, p in zip(kernel, padding))
    batch, channels = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**16))
    numel = batch * channels * int(torch.tensor(sizes).prod())
    g = torch.Generator().manual_seed(seed)
    x = (torch.randperm(numel, generator=g).double() / numel).reshape(batch, channels, *sizes)
    return x, kernel, stride, padding


@given(
    st.integers(1, 40),
    st.integers(1, 6),
    st.integers(1, 4),
    st.integers(0, 3),
    st.integers(1, 3),
    st.booleans(),
)
def test_output_size_matches_pytorch(i: int, k: int, s: int, p: int, d: int, ceil: bool) -> None:
    try:
        expected = F.max_pool1d(torch.zeros(1, 1, i), k, s, p, d, ceil_mode=ceil).shape[-1]
    except RuntimeError:
        with pytest.raises(ValueError):
            tp.pool_output_size(i, k, s, p, d, ceil)
        return
    assert tp.pool_output_size(i, k, s, p, d, ceil) == expected


@pytest.mark.parametrize("dims", [1, 2])
@given(data=st.data())
def test_median_matches_reference(dims: int, data: st.DataObject) -> None:
    x, k, s, p = data.draw(windows(dims))
    mode = data.draw(st.sampled_from(["zeros", "replicate", "reflect", "valid"]))
    assume(mode != "reflect" or all(pp < size for pp, size in zip(p, x.shape[2:])))
    fn = tp.median_pool1d if dims == 1 else tp.median_pool2d
    torch.testing.assert_close(fn(x, k, s, p, padding_mode=mode), median_pool_reference(x, k, s, p, mode))


@pytest.mark.parametrize("dims", [1, 2])
@given(data=st.data())
def test_stochastic_eval_matches_reference(dims: int, data: st.DataObject) -> None:
    x, k, s, p = data.draw(windows(dims))
    fn = tp.stochastic_pool1d if dims == 1 else tp.stochastic_pool2d
    torch.testing.assert_close(fn(x, k, s, p, training=False), stochastic_eval_reference(x, k, s, p))


@given(data=st.data())
def test_stochastic_training_draws_a_cell_of_its_window(data: st.DataObject) -> None:
    x, k, s, p = data.draw(windows(2))
    y, idx = tp.stochastic_pool2d_with_indices(x, k, s, p, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x.flatten(2).gather(2, idx.flatten(2)), y.flatten(2))
    rows, cols = idx // x.shape[3], idx % x.shape[3]
    oh = torch.arange(y.shape[2]).view(-1, 1) * s[0] - p[0]
    ow = torch.arange(y.shape[3]).view(1, -1) * s[1] - p[1]
    assert ((rows >= oh) & (rows < oh + k[0]) & (cols >= ow) & (cols < ow + k[1])).all()


@given(data=st.data(), ceil=st.booleans(), include=st.booleans())
def test_avgmax_matches_reference(data: st.DataObject, ceil: bool, include: bool) -> None:
    x, k, s, p = data.draw(windows(2))
    expected = 0.5 * (avg_pool_reference(x, k, s, p, ceil, include) + max_pool_reference(x, k, s, p, ceil))
    torch.testing.assert_close(tp.avgmax_pool2d(x, k, s, p, ceil, include), expected)


@given(data=st.data(), reduce=st.sampled_from(["mean", "sum"]))
def test_unpool_matches_reference(data: st.DataObject, reduce: str) -> None:
    x, k, s, p = data.draw(windows(2))
    y, idx = F.max_pool2d(x, k, s, p, return_indices=True)
    size = x.shape[2:]
    out = tp.max_unpool2d(y, idx, k, s, p, output_size=size, reduce=reduce)
    torch.testing.assert_close(out, max_unpool_reference(y, idx, size, reduce))
