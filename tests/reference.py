"""Slow, obviously-correct float64 references. Not shipped; shares no code with torchpool.

Window references loop over every output position with Python ``itertools.product`` and
read the window straight from the input, applying PyTorch's rules by hand.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from reference_median import median_pool_reference
from reference_stochastic import stochastic_eval_reference
from torch import Tensor

__all__ = [
    "adaptive_reference",
    "avg_pool_reference",
    "gated_reference",
    "gem_reference",
    "global_reference",
    "max_pool_reference",
    "max_unpool_reference",
    "median_pool_reference",
    "stochastic_eval_reference",
    "window_reference",
]


#: a tensor subscript of integers and slices, built as a tuple (``x[(b, c, *pos)]`` written inline is
#: flagged by mypy as Python 3.11's ``x[*pos]`` syntax under ``python_version = "3.10"``)
Index = tuple[int | slice, ...]


def _tuple(v: int | Sequence[int], n: int) -> tuple[int, ...]:
    return (v,) * n if isinstance(v, int) else tuple(v)


def _out_size(i: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    # written out from PyTorch's Pool.h, independently of torchpool._shape
    if ceil_mode:
        o = -((-(i + 2 * p - k)) // s) + 1
        if (o - 1) * s >= i + p:
            o -= 1
    else:
        o = (i + 2 * p - k) // s + 1
    return o


def window_reference(
    x: Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None,
    padding: int | Sequence[int],
    reduce: Callable[[Tensor, int, int], Tensor],
    ceil_mode: bool = False,
) -> Tensor:
    """Applies ``reduce(cells, padded_count, clipped_count)`` to every window, in float64.

    ``cells`` holds the window's in-bounds values; ``padded_count`` the window size
    clipped to ``input + padding`` (PyTorch's count_include_pad divisor) and
    ``clipped_count`` the in-bounds cell count.
    """
    x = x.double()
    n = x.dim() - 2
    k, p = _tuple(kernel_size, n), _tuple(padding, n)
    s = k if stride is None else _tuple(stride, n)
    sizes = x.shape[2:]
    outs = [_out_size(i, kk, ss, pp, ceil_mode) for i, kk, ss, pp in zip(sizes, k, s, p)]
    y = torch.empty(*x.shape[:2], *outs, dtype=torch.float64)
    for b, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
        for pos in itertools.product(*(range(o) for o in outs)):
            starts = [o * ss - pp for o, ss, pp in zip(pos, s, p)]
            ends = [min(st + kk, i + pp) for st, kk, i, pp in zip(starts, k, sizes, p)]
            padded_count = math.prod(e - st for st, e in zip(starts, ends))
            lo = [max(st, 0) for st in starts]
            hi = [min(e, i) for e, i in zip(ends, sizes)]
            window: Index = (b, c, *(slice(a, z) for a, z in zip(lo, hi)))
            out_at: Index = (b, c, *pos)
            cells = x[window].reshape(-1)
            y[out_at] = reduce(cells, padded_count, cells.numel())
    return y


def max_pool_reference(
    x: Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    ceil_mode: bool = False,
) -> Tensor:
    """Max over the in-bounds cells (padding is -inf)."""
    return window_reference(x, kernel_size, stride, padding, lambda v, _pc, _cc: v.max(), ceil_mode)


def avg_pool_reference(
    x: Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Tensor:
    """Sum of in-bounds cells over PyTorch's divisor."""

    def mean(v: Tensor, padded_count: int, clipped_count: int) -> Tensor:
        return v.sum() / (padded_count if count_include_pad else clipped_count)

    return window_reference(x, kernel_size, stride, padding, mean, ceil_mode)


def adaptive_reference(x: Tensor, output_size: int | Sequence[int], reduce: str) -> Tensor:
    """Adaptive pooling with bins ``[floor(i*a/n), ceil((i+1)*a/n))`` per dimension."""
    x = x.double()
    n = x.dim() - 2
    outs = _tuple(output_size, n)
    y = torch.empty(*x.shape[:2], *outs, dtype=torch.float64)
    for pos in itertools.product(*(range(o) for o in outs)):
        region = tuple(
            slice(math.floor(i * a / o), math.ceil((i + 1) * a / o))
            for i, a, o in zip(pos, x.shape[2:], outs)
        )
        window: Index = (slice(None), slice(None), *region)
        out_at: Index = (slice(None), slice(None), *pos)
        cells = x[window].flatten(2)
        y[out_at] = cells.mean(-1) if reduce == "avg" else cells.amax(-1)
    return y


def global_reference(x: Tensor, reduce: str, channels_last: bool = False) -> Tensor:
    """(N, C) mean or max over every position, by a loop over channels."""
    x = x.double()
    if channels_last:
        x = x.movedim(-1, 1)
    out = torch.empty(x.shape[0], x.shape[1], dtype=torch.float64)
    for b, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
        values = x[b, c].reshape(-1)
        out[b, c] = values.sum() / values.numel() if reduce == "avg" else values.max()
    return out


def gem_reference(x: Tensor, p: float, eps: float) -> Tensor:
    """(N, C) generalized mean with the input clamped to eps."""
    x = x.double()
    out = torch.empty(x.shape[0], x.shape[1], dtype=torch.float64)
    for b, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
        values = [max(float(v), eps) ** p for v in x[b, c].reshape(-1)]
        out[b, c] = (sum(values) / len(values)) ** (1.0 / p)
    return out


def gated_reference(
    x: Tensor, weight: Tensor, kernel_size: int, stride: int, padding: int, ceil_mode: bool = False
) -> Tensor:
    """Gated pooling: sigmoid of the zero-padded window dotted with the mask, mixing max and avg.

    The gate sees zeros past the padded input too (the last windows of ``ceil_mode``).
    """
    x = x.double()
    w = weight.double()
    k, s, p = kernel_size, stride, padding
    padded = torch.nn.functional.pad(x, (p, p + k, p, p + k))
    mx = max_pool_reference(x, k, s, p, ceil_mode)
    avg = avg_pool_reference(x, k, s, p, ceil_mode)
    gate = torch.empty_like(mx)
    for b, c, i, j in itertools.product(*(range(d) for d in mx.shape)):
        window = padded[b, c, i * s : i * s + k, j * s : j * s + k]
        mask = w[c if w.shape[0] > 1 else 0, 0]
        gate[b, c, i, j] = torch.sigmoid((window * mask).sum())
    return gate * mx + (1 - gate) * avg


def max_unpool_reference(x: Tensor, indices: Tensor, output_spatial: Sequence[int], reduce: str) -> Tensor:
    """Loops over every value; duplicates combined by mean or sum."""
    x = x.double()
    plane = math.prod(output_spatial)
    out = torch.zeros(x.shape[0], x.shape[1], plane, dtype=torch.float64)
    for b, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
        buckets: dict[int, list[float]] = {}
        for value, index in zip(x[b, c].reshape(-1).tolist(), indices[b, c].reshape(-1).tolist()):
            buckets.setdefault(index, []).append(value)
        for index, values in buckets.items():
            out[b, c, index] = sum(values) / (len(values) if reduce == "mean" else 1)
    return out.reshape(x.shape[0], x.shape[1], *output_spatial)
