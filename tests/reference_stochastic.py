"""Slow, obviously-correct float64 references for stochastic pooling (tests and benchmarks only).

Nothing here is shared with ``torchpool.ops.stochastic``: the windows are enumerated with
explicit Python loops (probabilities, eval) or ``F.unfold`` (the naive sampler).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

IntOrTuple = int | tuple[int, ...]


def _tuple(v: IntOrTuple, n: int) -> tuple[int, ...]:
    return (v,) * n if isinstance(v, int) else tuple(v)


def _out_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's max-pooling output size (``pooling_output_shape``), written out."""
    span = d * (k - 1) + 1
    numerator = size + 2 * p - span + (s - 1 if ceil_mode else 0)
    out = numerator // s + 1
    if ceil_mode and (out - 1) * s >= size + p:  # the last window must start inside the input
        out -= 1
    return out


def _windows(
    spatial: Sequence[int],
    k: Sequence[int],
    s: Sequence[int],
    p: Sequence[int],
    dil: Sequence[int],
    ceil_mode: bool,
) -> Iterator[tuple[tuple[int, ...], list[int]]]:
    """Yields (output position, [flat index of each window cell or -1 for padding])."""
    n = len(spatial)
    out = [_out_size(spatial[d], k[d], s[d], p[d], dil[d], ceil_mode) for d in range(n)]
    for pos in itertools.product(*(range(o) for o in out)):
        cells = []
        for off in itertools.product(*(range(kk) for kk in k)):
            coords = [pos[d] * s[d] - p[d] + off[d] * dil[d] for d in range(n)]
            if all(0 <= coords[d] < spatial[d] for d in range(n)):
                flat = 0
                for d in range(n):
                    flat = flat * spatial[d] + coords[d]
                cells.append(flat)
            else:
                cells.append(-1)
        yield pos, cells


def window_cells_reference(
    spatial: Sequence[int],
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
) -> tuple[tuple[int, ...], Tensor]:
    """Output size and (``*out``, ``prod(k)``) flat cell indices in the unpadded plane (-1 = padding,
    including the cells a ceil-mode window reaches beyond the right padding)."""
    n = len(spatial)
    k = _tuple(kernel_size, n)
    s = k if stride is None else _tuple(stride, n)
    p = _tuple(padding, n)
    d = _tuple(dilation, n)
    out = tuple(_out_size(spatial[i], k[i], s[i], p[i], d[i], ceil_mode) for i in range(n))
    table = torch.full((*out, len(list(itertools.product(*(range(kk) for kk in k))))), -1, dtype=torch.long)
    for pos, cells in _windows(spatial, k, s, p, d, ceil_mode):
        table[pos] = torch.tensor(cells)
    return out, table


def stochastic_probabilities_reference(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
) -> Tensor:
    """Per-window probabilities over the window's cells, row-major: (N, C, *out, prod(k)), float64.

    ``p_i = a_i / sum a`` (padding cells have a = 0); a window summing to 0 puts probability 1
    on its first in-bounds cell (the cell Caffe's forward picks too; torchpool outputs 0 there and
    passes no gradient, where Caffe's backward passes the gradient to that cell).
    """
    x = x.detach().double()
    n_batch, channels = x.shape[:2]
    spatial = tuple(x.shape[2:])
    out, table = window_cells_reference(spatial, kernel_size, stride, padding, dilation, ceil_mode)
    plane = x.reshape(n_batch, channels, -1)
    probs = torch.zeros(n_batch, channels, *out, table.shape[-1], dtype=torch.float64)
    for pos in itertools.product(*(range(o) for o in out)):
        cells = table[pos]
        for b in range(n_batch):
            for c in range(channels):
                values = torch.tensor([plane[b, c, i].item() if i >= 0 else 0.0 for i in cells.tolist()])
                total = values.sum()
                key = (b, c, *pos)
                if total > 0:
                    probs[key] = values / total
                else:
                    first = next(j for j, i in enumerate(cells.tolist()) if i >= 0)
                    probs[key][first] = 1.0
    return probs


def stochastic_eval_reference(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
) -> Tensor:
    """Probabilistic weighting ``sum a^2 / sum a`` per window (0 for a zero window), float64."""
    x = x.detach().double()
    n_batch, channels = x.shape[:2]
    spatial = tuple(x.shape[2:])
    out, table = window_cells_reference(spatial, kernel_size, stride, padding, dilation, ceil_mode)
    plane = x.reshape(n_batch, channels, -1)
    y = torch.zeros(n_batch, channels, *out, dtype=torch.float64)
    for pos in itertools.product(*(range(o) for o in out)):
        cells = [i for i in table[pos].tolist() if i >= 0]
        values = plane[:, :, cells]
        total = values.sum(-1)
        square = (values * values).sum(-1)
        key: tuple[slice | int, ...] = (slice(None), slice(None), *pos)
        y[key] = torch.where(total > 0, square / total.clamp_min(1e-300), 0.0)
    return y


def naive_stochastic_pool2d(
    x: Tensor,
    kernel_size: int,
    stride: int | None = None,
    padding: int = 0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Naive sampler: ``F.unfold`` + ``torch.multinomial``; returns (values, flat indices).

    Differentiable in ``x`` (the gradient flows through ``unfold``). Zero windows take their
    first in-bounds cell. Used as the benchmark's naive baseline.
    """
    stride = kernel_size if stride is None else stride
    n_batch, channels, height, width = x.shape
    kk = kernel_size * kernel_size
    cols = F.unfold(x, kernel_size, padding=padding, stride=stride)  # (N, C*kk, L)
    length = cols.shape[-1]
    cols = cols.view(n_batch, channels, kk, length).permute(0, 1, 3, 2).reshape(-1, kk)
    ones = torch.ones(1, 1, height, width, dtype=x.dtype, device=x.device)
    inside = F.unfold(ones, kernel_size, padding=padding, stride=stride)[0].t()  # (L, kk)
    flat = torch.arange(height * width, dtype=x.dtype, device=x.device).view(1, 1, height, width)
    flat_cols = F.unfold(flat + 1, kernel_size, padding=padding, stride=stride)[0].t() - 1  # -1 = padding
    with torch.no_grad():
        weights = cols.detach().clone()
        zero = weights.sum(1) <= 0
        first = inside.argmax(1).repeat(n_batch * channels)  # first in-bounds cell per window
        weights[zero] = 1.0
        choice = torch.multinomial(weights, 1, generator=generator).squeeze(1)
        choice = torch.where(zero, first, choice)
    values = cols.gather(1, choice[:, None]).view(n_batch, channels, -1)
    index = flat_cols.repeat(n_batch * channels, 1).gather(1, choice[:, None]).long()
    out_h = (height + 2 * padding - kernel_size) // stride + 1
    out_w = (width + 2 * padding - kernel_size) // stride + 1
    return values.view(n_batch, channels, out_h, out_w), index.view(n_batch, channels, out_h, out_w)


def naive_stochastic_eval2d(
    x: Tensor, kernel_size: int, stride: int | None = None, padding: int = 0
) -> Tensor:
    """Naive eval: ``F.unfold``, then ``sum a^2 / sum a`` per column (0 for zero windows)."""
    stride = kernel_size if stride is None else stride
    n_batch, channels, height, _ = x.shape
    kk = kernel_size * kernel_size
    cols = F.unfold(x, kernel_size, padding=padding, stride=stride).view(n_batch, channels, kk, -1)
    total = cols.sum(2)
    square = (cols * cols).sum(2)
    y = square / torch.where(total > 0, total, torch.ones_like(total))
    out_h = (height + 2 * padding - kernel_size) // stride + 1
    return y.view(n_batch, channels, out_h, -1)
