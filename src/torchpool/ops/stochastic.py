"""Stochastic pooling (Zeiler & Fergus, "Stochastic Pooling for Regularization of Deep
Convolutional Neural Networks", arXiv 1301.3557).

Training: each window ``R`` draws one cell ``l`` with probability ``p_i = a_i / sum_{j in R} a_j``
and outputs ``a_l``; the gradient flows only to the drawn cell, as in max pooling.
Evaluation ("probabilistic weighting"): each window outputs the expectation of the training
output, ``sum_i p_i a_i = sum a^2 / sum a``.

Sampler (training). Windows are sampled independently: every window draws exactly one
uniform ``r ~ U[0, 1)`` of its own, also where windows overlap (``stride < kernel_size``) and
share cells, so the draws of two windows are independent even when they share cells. The
draw is an inverse-CDF pass over the window's cells in row-major order: with ``S`` the
window sum and ``u = r * S`` (clamped strictly below ``S``), the drawn cell is the first
whose running sum exceeds ``u``. Both passes iterate over the ``prod(kernel_size)`` window
offsets on strided views of the (padded) input, so no ``unfold`` copy is made; the running
sums are accumulated in float32 (float64 for float64 input). The output is gathered from the
input at the drawn flat indices, so autograd gives the exact one-hot gradient (overlapping
windows that draw the same cell add their gradients).

Special values:

* Negative, NaN or infinite input raises ``ValueError``: the probabilities ``a_i / sum a``
  are only defined for finite ``a >= 0`` (apply ReLU first). This check reads the input once;
  it is data-dependent, so it is skipped under ``torch.compile``, ``torch.export`` and tracing
  and for ``meta``/fake tensors.
* A window whose cells are all zero (including padding) outputs 0 with zero gradient, in
  training and in evaluation. In training its index is its first in-bounds cell (row-major).
  Caffe's forward picks that cell too, but Caffe's backward sends the window's gradient to
  it; here the gradient is 0 (the probabilities are undefined and the output is 0 whatever
  is drawn). In evaluation the denominator is made safe before dividing, so neither the
  forward nor the backward pass produces NaN.
* Zero padding cells have probability 0 and are never drawn; so are the cells a ceil-mode
  window reaches beyond the padding.
* ``N = 0`` or ``C = 0`` gives the empty result, as PyTorch's pools do.

Dilation and ceil mode follow max pooling (same output size as ``F.max_pool{n}d``).

Memory. The eager paths work a chunk at a time, so that the extra memory stays under 2x the
input's size (stride 2; measured in ``tests/test_stochastic_memory.py`` and
``tests/test_memory.py``): chunks of whole ``(n, c)`` planes, a share of the input (1/2 in
training, 1/8 in evaluation, at least 2^18 elements but never more than 1/2, 1/3 or, with a
backward, 1/6 of the input), and where one plane is more than a chunk, bands of output rows of
one plane along the first spatial dimension, each with the input rows its windows read and its
padding made explicit. Chunks and bands give the same bits as one chunk: the uniforms are drawn
for the whole output at once, and the gradients add up in the unchunked order.

Traceable path. Under ``torch.compile``, ``torch.export``, ONNX export and tracing, and for
``meta``/fake tensors, the pool runs in plain differentiable ops with the same arithmetic
(no chunks, no custom autograd Function, no data-dependent branch), so
``torch.compile(fullgraph=True)`` works and matches eager under the same seed. A
``torch.Generator`` cannot enter a dynamo graph: seed with ``torch.manual_seed`` there.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal, NamedTuple, overload

import torch
import torch.nn.functional as F
from torch import Tensor
from torch._subclasses.fake_tensor import FakeTensor

from .._checks import (
    Window,
    check_bool,
    check_generator,
    check_input,
    check_window,
    is_traced,
    restore_batch,
)
from .._deterministic import avg_pool3d as deterministic_avg_pool3d
from .._deterministic import is_deterministic
from .._shape import IntOrTuple, pool_output_size
from ..registry import register_pool
from ._base import WindowPool
from ._windows import (
    MAX_CHUNK_ELEMENTS,
    band_rows,
    band_span,
    channels_last_format,
    chunk_elements,
    offset_views,
    plane_chunks,
    row_bands,
)

__all__ = [
    "StochasticPool1d",
    "StochasticPool2d",
    "StochasticPool3d",
    "stochastic_pool1d",
    "stochastic_pool1d_with_indices",
    "stochastic_pool2d",
    "stochastic_pool2d_with_indices",
    "stochastic_pool3d",
    "stochastic_pool3d_with_indices",
]


# --------------------------------------------------------------------------- helpers


def _symbolic(x: Tensor) -> bool:
    """Whether ``x`` has no values to read: a ``meta`` or fake tensor, or a trace is running.

    Such calls take the traceable path (no data-dependent Python branch, no ``.item()``)."""
    return is_traced() or x.device.type == "meta" or isinstance(x, FakeTensor)


def _check_values(x: Tensor) -> None:
    """Raises ``ValueError`` unless every element is finite and non-negative (one pass).

    Skipped where there are no values to read (:func:`_symbolic`): under ``torch.compile``,
    ``torch.export``, ONNX export and tracing the check would be a data-dependent graph break."""
    if x.numel() == 0 or _symbolic(x):
        return
    lo, hi = torch.aminmax(x.detach())
    if bool(torch.isnan(lo)):
        raise ValueError("input must not contain NaN: stochastic pooling needs finite, non-negative input")
    if not bool(lo >= 0):
        raise ValueError(
            "input must be non-negative for stochastic pooling (cells are drawn with probability "
            f"a / sum(a); apply ReLU first), got a minimum of {lo.item()}"
        )
    if bool(torch.isinf(hi)):
        raise ValueError("input must be finite for stochastic pooling, got inf")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _flat_strides(spatial: tuple[int, ...]) -> list[int]:
    strides = [1] * len(spatial)
    for d in range(len(spatial) - 2, -1, -1):
        strides[d] = strides[d + 1] * spatial[d + 1]
    return strides


def _window_tables(
    spatial: tuple[int, ...],
    out: tuple[int, ...],
    win: Window,
    device: torch.device,
    rows: slice | None = None,
    compact: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Flat-index tables in the unpadded plane, for the windows in the output rows ``rows`` along
    the first spatial dimension (``None``: all).

    ``compact``: ``base`` and ``first`` in int32 where the plane allows it (half the memory: with
    few planes the tables are a good part of the working set); they only ever add to or replace
    int64 indices, so the indices are the same.

    Returns ``offsets`` (``prod(k)``,): the flat offset of each window cell from the window's
    first cell, row-major; ``base`` (``*out``, or the band's rows): the flat index of each window's
    first cell (negative or wrapped where that cell is padding, never used there); ``first``
    (same shape): the flat index of each window's first in-bounds cell.
    """
    if rows is not None:
        out = (rows.stop - rows.start, *out[1:])
    strides = _flat_strides(spatial)
    k, s, p, dil = win.kernel_size, win.stride, win.padding, win.dilation
    offsets = torch.tensor(
        [
            sum(o * dd * st for o, dd, st in zip(off, dil, strides, strict=True))
            for off in itertools.product(*(range(kk) for kk in k))
        ],
        dtype=torch.int64,
        device=device,
    )
    dtype = torch.int32 if compact and math.prod(spatial) < 2**31 else torch.int64
    base = torch.zeros(out, dtype=dtype, device=device)
    first = torch.zeros(out, dtype=dtype, device=device)
    n = len(spatial)
    for d in range(n):
        skip = rows.start if rows is not None and d == 0 else 0
        start = torch.arange(skip, skip + out[d], device=device, dtype=torch.int64) * s[d] - p[d]
        shape = [1] * n
        shape[d] = out[d]
        base = base + (start * strides[d]).to(dtype).view(shape)
        # the first cell start + j * dilation >= 0 (clamped into the plane: with a large dilation a
        # window can hold padding only, and then any in-bounds index will do, its value is unused)
        inside = start + (-start).clamp(min=0).add(dil[d] - 1).div(dil[d], rounding_mode="floor") * dil[d]
        first = first + (inside.clamp(0, spatial[d] - 1) * strides[d]).to(dtype).view(shape)
    return offsets, base, first


def _pads(spatial: tuple[int, ...], win: Window, out: tuple[int, ...]) -> list[tuple[int, int]]:
    """``(left, right)`` zero padding per dimension: ``padding`` on the left; on the right as much as
    the last window reaches (more than ``padding`` in ceil mode, where it may overhang)."""
    pads = []
    for size, k, s, p, d, o in zip(spatial, *win, out, strict=True):
        reach = (o - 1) * s + d * (k - 1) + 1  # padded cells the windows span
        pads.append((p, max(0, reach - size - p)))
    return pads


def _padded(x: Tensor, win: Window, out: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """``x`` (N, C, *spatial) zero-padded (:func:`_pads`) and in ``dtype``; ``x`` itself when nothing
    changes."""
    pads = _pads(tuple(x.shape[2:]), win, out)
    if not any(left or right for left, right in pads):
        return x if x.dtype == dtype else x.to(dtype)
    return F.pad(x.to(dtype), [q for pair in reversed(pads) for q in pair])


def _offset_views(a: Tensor, win: Window, out: tuple[int, ...]) -> list[Tensor]:
    """One strided view (N, C, *out) of ``a`` per window offset, in row-major offset order."""
    return offset_views(a, win.kernel_size, win.stride, win.dilation, out)


# --------------------------------------------------------------------------- chunks

_CHUNK_ELEMENTS = MAX_CHUNK_ELEMENTS
"""The most (padded) input elements per chunk. Every full-size temporary (padded or converted copies,
window sums, running sums, int64 indices, ``a * a``) exists for one chunk at a time; the full-size
tensors are the output, and for the backward what it needs (the training draws as a byte per
window, the eval denominators). :func:`_chunk_elements` sizes the chunks of one input. Read at
call time, so tests lower it with ``monkeypatch`` to force many chunks and bands."""

_CHUNK_FRACTION = 8
"""An eval chunk holds ``1 / _CHUNK_FRACTION`` of the padded input, so that the working set of one
chunk (several chunk-sized temporaries) is a small fraction of the input at every shape."""

_CHUNK_MIN_ELEMENTS = 1 << 18
"""... and at least this many elements (with smaller chunks the per-chunk overhead shows: 2^16 made
a (8, 64, 56, 56) training call ~1.4x slower), but never more than ``1 / _CHUNK_LIMIT`` of the
input (``1 / _TRAIN_CHUNK_LIMIT`` in training), so the floor cannot break the 2x bound."""

_CHUNK_LIMIT = 6
"""The largest share of the input an eval chunk may take: the eval forward + backward holds about
5 chunks and two output-sized tensors (0.5x the input at stride 2), so a sixth stays near 1.4x
(a quarter gave 1.84x at (1, 1, 512, 512))."""

_EVAL_FORWARD_CHUNK_LIMIT = 3
"""... and without a backward (inference), a third of the input: the forward alone holds about 3
chunks and the output (at (4, 16, 32, 32): 2.44x with one chunk, 1.66x with a half, 0.64x with a
sixth)."""

_TRAIN_CHUNK_FRACTION = 2
"""Training keeps less per chunk (a byte per window, the draws) than evaluation, so half the input
stays under the 2x bound (about 1.4x) and saves the per-chunk overhead on small inputs."""

_TRAIN_CHUNK_LIMIT = 2
"""The largest share of the input a training chunk may take (its working set is about 2.4 chunks
and the output)."""

_TRAIN_BAND_SHARE = 2
"""A training band takes ``1 / _TRAIN_BAND_SHARE`` of the chunk budget: it also builds the index
tables of its windows (16 bytes per window) and shifted indices, about 3.5 chunks in all (a whole
budget gave 1.82x at (1, 1, 512, 512))."""


def _chunk_elements(padded_elements: int, fraction: int = _CHUNK_FRACTION, limit: int = _CHUNK_LIMIT) -> int:
    """Padded elements per chunk for an input of ``padded_elements`` padded elements: ``1 /
    fraction`` of it, at least ``_CHUNK_MIN_ELEMENTS`` but at most ``1 / limit`` of it, at most
    ``_CHUNK_ELEMENTS`` (:func:`chunk_elements`)."""
    return chunk_elements(
        padded_elements,
        fraction=fraction,
        minimum=_CHUNK_MIN_ELEMENTS,
        limit=limit,
        maximum=_CHUNK_ELEMENTS,
    )


class _Part(NamedTuple):
    """One chunk: ``(batch, channel)`` slices of planes and, for a band of one plane, a slice of
    rows along the first spatial dimension (output rows in the forward and the training backward,
    input rows in the eval backward); ``rows is None`` for whole planes."""

    planes: tuple[slice, slice]
    rows: slice | None


_Mode = Literal["train", "eval", "eval_grad"]
"""What a chunk is sized for: training; evaluation without backward; evaluation with backward."""


def _shares(mode: _Mode) -> tuple[int, int]:
    """``(fraction, limit)`` of :func:`_chunk_elements` for ``mode``."""
    if mode == "train":
        return _TRAIN_CHUNK_FRACTION, _TRAIN_CHUNK_LIMIT
    return _CHUNK_FRACTION, _CHUNK_LIMIT if mode == "eval_grad" else _EVAL_FORWARD_CHUNK_LIMIT


def _parts(
    shape: tuple[int, ...],
    win: Window,
    rows: int,
    mode: _Mode,
    band_reach: int | None = None,
) -> list[_Part]:
    """The chunks of an input of ``shape`` (N, C, *spatial) for ``mode``: whole planes while one
    plane fits the budget (:func:`_chunk_elements`), else bands of one plane along the first
    spatial dimension.

    ``rows`` is the number of rows that bands split: the output's first size (forward, training
    backward) or the input's (eval backward). ``band_reach`` is the number of input rows one such
    row reads (``None``: the window's, for output rows; 1 for input rows).
    """
    training = mode == "train"
    n, c = shape[:2]
    padded = [size + 2 * p for size, p in zip(shape[2:], win.padding, strict=True)]
    plane = math.prod(padded)
    budget = _chunk_elements(n * c * plane, *_shares(mode))
    if n * c == 0 or plane <= budget or rows <= 1:
        return [_Part(planes, None) for planes in plane_chunks(n, c, budget // max(1, plane))]
    row = plane // max(1, padded[0])
    if training:
        budget //= _TRAIN_BAND_SHARE
    if band_reach is None:
        per_band = band_rows(budget, row, win.kernel_size[0], win.stride[0], win.dilation[0])
    else:
        per_band = max(1, budget // max(1, row * band_reach))
    bands = row_bands(rows, per_band)
    if not training and band_reach is None:
        # the average pools need a band at least one window long (a ceil-mode window past the
        # padding can make the last one shorter): merge it into the previous one
        k, s, d = win.kernel_size[0], win.stride[0], win.dilation[0]
        while len(bands) > 1:
            start, stop = band_span(bands[-1], k, s, d, padded[0])
            if stop - start >= (k - 1) * d + 1:
                break
            bands[-2:] = [slice(bands[-2].start, bands[-1].stop)]
    if len(bands) == 1:
        return [_Part(planes, None) for planes in plane_chunks(n, c, 1)]
    planes = [(slice(i, i + 1), slice(j, j + 1)) for i in range(n) for j in range(c)]
    return [_Part(p, band) for p in planes for band in bands]


def _band(x: Tensor, rows: slice, win: Window, clip: bool) -> tuple[Tensor, Window]:
    """The input rows that the output rows ``rows`` read, with their padding along the first spatial
    dimension made explicit (zero rows), and the window for them (no padding on that dimension).

    ``clip``: stop at the padded input's end even where a ceil-mode window overhangs it (for the
    average pools, whose divisor counts the cells up to there); otherwise the band reaches as far
    as the window does and :func:`_padded` adds the zero rows beyond.
    """
    k, s, p, d = win.kernel_size[0], win.stride[0], win.padding[0], win.dilation[0]
    size = x.shape[2]
    start, stop = band_span(rows, k, s, d, size + 2 * p if clip else None)
    lo, hi = max(start - p, 0), min(stop - p, size)
    band = x.narrow(2, lo, max(0, hi - lo))
    top, bottom = lo - (start - p), (stop - p) - hi
    if top or bottom:
        band = F.pad(band, [0, 0] * (x.dim() - 3) + [top, bottom])
    return band, Window(win.kernel_size, win.stride, (0, *win.padding[1:]), win.dilation)


def _rows(t: Tensor, rows: slice | None, dim: int = 2) -> Tensor:
    """``t`` restricted to ``rows`` along ``dim`` (all of it for ``None``)."""
    return t if rows is None else t.narrow(dim, rows.start, rows.stop - rows.start)


# --------------------------------------------------------------------------- training


def _draw_chunk(
    x: Tensor,
    u: Tensor,
    win: Window,
    out: tuple[int, ...],
    tables: tuple[Tensor, Tensor, Tensor],
    leading: tuple[int, ...],
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Draws one cell per window of a chunk ``x`` (n, c, *spatial), given its uniforms ``u`` (n, c, *out).

    ``x`` is a chunk of planes, or a band of one (:func:`_band`, with ``win`` the band's window);
    ``tables`` (:func:`_window_tables`) and ``leading`` (:func:`_leading`) are those of its windows.
    ``u`` is overwritten. Returns the drawn cells' row-major positions in their windows, their flat
    indices into the unpadded plane, and a mask of the windows with a positive sum (``None`` when
    all are positive).
    """
    a = _padded(x, win, out, u.dtype)
    views = _offset_views(a, win, out)
    kk = len(views)
    # pass 1: window sums, accumulated in the same order as the running sums of pass 2
    total = views[0].clone() if kk == 1 else torch.add(views[0], views[1])
    for v in views[2:]:
        total.add_(v)
    # u < S strictly. For S == 0, u = -tiny so the first cell wins.
    u.mul_(total)
    torch.minimum(u, torch.nextafter(total, total.new_tensor(-math.inf)), out=u)
    # pass 2: the drawn cell is the first whose running sum c_t exceeds u; c_t is non-decreasing,
    # so (c_t <= u) holds exactly for the t before it, and counting those t gives the drawn
    # cell's row-major position in its window. The last running sum equals S > u, so the last
    # cell needs no test. Counting in uint8 on a uint8 view of the bool mask avoids any
    # conversion pass.
    position = torch.zeros(total.shape, dtype=_position_dtype(kk), device=total.device)
    if kk > 1:
        below = torch.empty(total.shape, dtype=torch.bool, device=total.device)
        running = views[0]
        for t in range(kk - 1):
            if t == 1:
                running = torch.add(views[0], views[1])
            elif t > 1:
                running.add_(views[t])
            torch.le(running, u, out=below)
            position.add_(below.view(torch.uint8) if position.dtype == torch.uint8 else below)
    offsets, base, first = tables
    index = offsets[position.to(torch.int64)].add_(base)
    # a zero window drew its first cell, which is padding in windows starting before the input:
    # give those windows (the first ceil(p / s) along each padded dimension) their first
    # in-bounds cell instead
    for d, m in enumerate(leading):
        if m:
            part = [slice(None)] * index.dim()
            part[2 + d] = slice(0, m)
            fix = torch.where(total[tuple(part)] > 0, index[tuple(part)], first[tuple(part[2:])])
            index[tuple(part)] = fix
    positive = total > 0
    return position, index, None if bool(positive.all()) else positive


def _leading(win: Window, rows: slice | None) -> tuple[int, ...]:
    """How many windows at the start of each dimension start in the padding (``ceil(p / s)``), within
    the output rows ``rows`` of a band (``None``: whole planes)."""
    leading = [-(-p // s) for p, s in zip(win.padding, win.stride, strict=True)]
    if rows is not None:
        leading[0] = min(max(0, leading[0] - rows.start), rows.stop - rows.start)
    return tuple(leading)


def _chunk_tables(
    tables: tuple[Tensor, Tensor, Tensor],
    rows: slice | None,
    shape: tuple[int, ...],
    out: tuple[int, ...],
    win: Window,
) -> tuple[Tensor, Tensor, Tensor]:
    """``tables`` (those of all windows) for whole planes, else those of the band's windows, made
    for it (the tables of one plane are as large as its output, four times over)."""
    return (
        tables
        if rows is None
        else _window_tables(tuple(shape[2:]), out, win, tables[0].device, rows, compact=True)
    )


def _position_dtype(cells: int) -> torch.dtype:
    return torch.uint8 if cells <= 256 else torch.int32


def _index_of(position: Tensor, positive: Tensor | None, tables: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """Flat indices of drawn cells from their positions (zero windows: their first in-bounds cell)."""
    offsets, base, first = tables
    index = offsets[position.to(torch.int64)].add_(base)
    return index if positive is None else torch.where(positive, index, first)


def _draw(
    x: Tensor,
    win: Window,
    out: tuple[int, ...],
    generator: torch.Generator | None,
    keep: bool,
    return_indices: bool,
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """Draws one cell per window and gathers the output, a chunk of planes at a time.

    Returns the output (N, C, *out) in ``x.dtype``; when ``keep``, what the backward needs to find
    the drawn cells (with one chunk the int64 flat indices, as fast as it gets; with several the
    cells' positions in their windows, a byte per window, so that nothing as large as 2x the output
    is kept); the mask of windows with a positive sum (``None`` when all are); the flat indices
    (when ``return_indices``).
    """
    dtype = _compute_dtype(x.dtype)
    shape = (*x.shape[:2], *out)
    device = x.device
    chunks = _parts(tuple(x.shape), win, out[0], "train")
    one = len(chunks) == 1
    # the tables of all windows, for whole planes (bands make their own: a plane's are 4x its output)
    whole = None if chunks[0].rows is None else slice(0, 0)
    tables = _window_tables(tuple(x.shape[2:]), out, win, device, whole, compact=True)
    with torch.no_grad():
        x = x.detach()
        # one uniform per window, drawn at once so that the stream does not depend on the chunks;
        # the output is written over the uniforms where the dtypes agree
        u = torch.rand(shape, generator=generator, dtype=dtype, device=device)
        y = u if x.dtype == dtype else torch.empty(shape, dtype=x.dtype, device=device)
        kk = math.prod(win.kernel_size)
        positions = torch.empty(shape, dtype=_position_dtype(kk), device=device) if keep and not one else None
        index = torch.empty(shape, dtype=torch.int64, device=device) if return_indices and not one else None
        positive: Tensor | None = None
        for planes, rows in chunks:
            xc, yc = x[planes], _rows(y[planes], rows)
            uc = _rows(u[planes], rows)
            if rows is None:
                position, idx, pos = _draw_chunk(xc, uc, win, out, tables, _leading(win, None))
                source, shift = xc, 0
            else:
                band, band_win = _band(xc, rows, win, clip=False)
                band_out = (rows.stop - rows.start, *out[1:])
                band_tables = _chunk_tables(tables, rows, tuple(x.shape), out, win)
                position, idx, pos = _draw_chunk(
                    band, uc, band_win, band_out, band_tables, _leading(win, rows)
                )
                # gather from the input rows of the band only (no copy of a channels-last plane)
                lo, hi = band_span(rows, win.kernel_size[0], win.stride[0], win.dilation[0])
                lo, hi = max(lo - win.padding[0], 0), min(hi - win.padding[0], x.shape[2])
                source, shift = xc.narrow(2, lo, hi - lo), lo * math.prod(x.shape[3:])
            values = yc.view(*yc.shape[:2], -1)  # a view of y: chunks are whole planes or rows of one
            local = idx if shift == 0 else idx - shift
            torch.gather(source.flatten(2), 2, local.flatten(2), out=values)
            if pos is not None:
                # zero windows: the value is 0 already (+0.0 for a -0.0 cell); their gradient stops too
                yc.masked_fill_(pos.logical_not(), 0)
                if positive is None:
                    positive = pos if one else torch.ones(shape, dtype=torch.bool, device=device)
                if not one:
                    _rows(positive[planes], rows).copy_(pos)
            if one:
                index = idx if (return_indices or keep) else None
            else:
                if positions is not None:
                    _rows(positions[planes], rows).copy_(position)
                if index is not None:
                    _rows(index[planes], rows).copy_(idx)
    saved = (index if one else positions) if keep else None
    return y, saved, positive, index if return_indices else None


class _StochasticDraw(torch.autograd.Function):
    """Training-mode stochastic pooling with a one-hot gradient to the drawn cells.

    For inputs that take several chunks it saves the drawn cells as a byte per window (their
    positions in their windows) rather than int64 indices; the backward rebuilds the indices a chunk
    at a time and scatters the gradient (the backward of ``gather``).
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        x: Tensor,
        win: Window,
        out: tuple[int, ...],
        generator: torch.Generator | None,
        return_indices: bool,
    ) -> Tensor | tuple[Tensor, Tensor]:
        y, saved, positive, index = _draw(x, win, out, generator, True, return_indices)
        assert saved is not None
        ctx.save_for_backward(saved, positive)  # type: ignore[arg-type]  # positive may be None
        ctx.meta = (x.shape, x.dtype, x.device, win, out)  # type: ignore[attr-defined]
        if index is None:
            return y
        ctx.mark_non_differentiable(index)
        return y, index

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor, *_: Tensor | None
    ) -> tuple[Tensor, None, None, None, None]:
        saved, positive = ctx.saved_tensors  # type: ignore[attr-defined]
        shape, dtype, device, win, out = ctx.meta  # type: ignore[attr-defined]
        grad_x = torch.zeros(shape, dtype=grad.dtype, device=device)
        zero = torch.zeros((), dtype=grad.dtype, device=device)
        # saved int64 indices: one chunk; else the chunks of the forward (and their tables)
        chunks = [_Part((slice(None), slice(None)), None)]
        tables = None
        if saved.dtype != torch.int64:
            chunks = _parts(shape, win, out[0], "train")
            whole = None if chunks[0].rows is None else slice(0, 0)
            tables = _window_tables(tuple(shape[2:]), out, win, device, whole, compact=True)
        for planes, rows in chunks:
            mask = None if positive is None else _rows(positive[planes], rows)
            # saved int64 indices are valid everywhere (zero windows: their first in-bounds cell)
            drawn = _rows(saved[planes], rows)
            index = (
                drawn
                if tables is None
                else _index_of(drawn, mask, _chunk_tables(tables, rows, shape, out, win))
            )
            g = _rows(grad[planes], rows)
            g = g if mask is None else torch.where(mask, g, zero)
            # the whole plane: a band's windows scatter into it in the order of the unchunked pass
            target = grad_x[planes]
            target.view(*target.shape[:2], math.prod(shape[2:])).scatter_add_(
                2, index.flatten(2), g.flatten(2)
            )
        return grad_x.to(dtype), None, None, None, None


# --------------------------------------------------------------------------- evaluation


def _pool_layout(x: Tensor, n: int, dtype: torch.dtype) -> Tensor:
    """``x`` in the layout the eval pooling runs in (:func:`_layout_of`; 1d runs as 2d)."""
    if n == 3:
        return x.to(dtype=dtype, memory_format=torch.contiguous_format)
    a = x.unsqueeze(2) if n == 1 else x
    return a.to(dtype=dtype, memory_format=_layout_of(a))


_PoolWindow = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], bool]
"""``(kernel, stride, padding, ceil_mode)`` of the eval path's average pools (dilation 1)."""


def _pool_window(win: Window, n: int, ceil_mode: bool) -> _PoolWindow:
    k, s, p = win.kernel_size, win.stride, win.padding
    return ((1, *k), (1, *s), (0, *p), ceil_mode) if n == 1 else (k, s, p, ceil_mode)


def _avg_pool(
    a: Tensor, kernel: tuple[int, ...], stride: tuple[int, ...], padding: tuple[int, ...], ceil_mode: bool
) -> Tensor:
    """``count_include_pad=True`` average pool. In ceil mode a window that overhangs the right padding
    averages over fewer cells; the divisor cancels in ``avg(a^2) / avg(a)`` (same window, same divisor)."""
    if a.dim() == 5:
        # F.avg_pool3d, or its separable form where autograd would differentiate it in deterministic
        # mode (never on the eager path: the forward of _ProbabilisticWeighting runs without autograd,
        # and its backward goes through _avg_pool_backward)
        return deterministic_avg_pool3d(a, kernel, stride, padding, ceil_mode)
    return F.avg_pool2d(a, kernel, stride, padding, ceil_mode)


def _avg_pool_backward(
    grad: Tensor,
    a: Tensor,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    ceil_mode: bool,
) -> Tensor:
    """The backward of :func:`_avg_pool` (``count_include_pad=True``).

    ``avg_pool3d_backward`` raises on CUDA under ``torch.use_deterministic_algorithms(True)``; in
    deterministic mode the 3d backward is the vector-Jacobian product of the separable
    ``avg_pool2d`` + ``avg_pool1d`` form instead (both have deterministic backward kernels).
    """
    if a.dim() == 5 and is_deterministic(a):
        with torch.enable_grad():
            leaf = a.detach().requires_grad_(True)
            pooled = deterministic_avg_pool3d(leaf, kernel, stride, padding, ceil_mode)
            return torch.autograd.grad(pooled, leaf, grad)[0]
    backward = torch.ops.aten.avg_pool3d_backward if a.dim() == 5 else torch.ops.aten.avg_pool2d_backward
    return backward(grad, a, list(kernel), list(stride), list(padding), ceil_mode, True, None)


def _weighting(a: Tensor, window: _PoolWindow) -> tuple[Tensor, Tensor]:
    """``sum a^2 / sum a`` per window of ``a`` (pooling layout) and the safe denominator."""
    mean = _avg_pool(a, *window)
    mean_sq = _avg_pool(a * a, *window)
    safe = torch.where(mean > 0, mean, torch.ones((), dtype=mean.dtype, device=mean.device))
    return mean_sq.div_(safe), safe


def _weighting_grad(grad: Tensor, a: Tensor, out: Tensor, safe: Tensor, window: _PoolWindow) -> Tensor:
    """Input gradient of :func:`_weighting` (all in the pooling layout but ``grad`` and ``out``)."""
    ratio = grad.contiguous(memory_format=_layout_of(a)) / safe
    weight = _avg_pool_backward(ratio, a, *window)
    shift = _avg_pool_backward(ratio.mul_(out), a, *window)
    return shift.neg_().addcmul_(a, weight, value=2)  # in place: one region-sized tensor less


class _ProbabilisticWeighting(torch.autograd.Function):
    """``sum a^2 / sum a`` per window, as ``avg_pool(a*a) / avg_pool(a)`` (the padding cancels),
    in float32 (float64 for float64 input), a chunk of planes at a time.

    The backward is written out, ``d out_w / d a_i = (2 a_i - out_w) / (k m_w)`` with ``m_w`` the
    window mean and ``k`` the window size, and computed with two ``avg_pool_backward`` calls in the
    pooling layout (autograd through the forward mixes layouts and is several times slower).
    A zero window (``m_w == 0``) divides by 1 instead: its output is 0, and so is its gradient,
    because all its cells are 0 and ``out_w == 0``.

    Saved for the backward: with one chunk, the input converted to the pooling layout and the
    output in that layout (as fast as it gets); with several, the input itself and the output (the
    backward converts each chunk again), so that nothing input-sized is kept. The denominators in
    both cases.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        x: Tensor,
        win: Window,
        n: int,
        ceil_mode: bool,
        out_size: tuple[int, ...],
        fmt: torch.memory_format,
        save: bool,
    ) -> Tensor:
        dtype = _compute_dtype(x.dtype)
        window = _pool_window(win, n, ceil_mode)
        chunks = _parts(tuple(x.shape), win, out_size[0], "eval_grad" if save else "eval")
        ctx.meta = (win, n, ceil_mode, out_size, len(chunks), x.dtype)  # type: ignore[attr-defined]
        if len(chunks) == 1:
            a = _pool_layout(x, n, dtype)
            pooled, safe = _weighting(a, window)
            out = (pooled.squeeze(2) if n == 1 else pooled).contiguous(memory_format=fmt)
            if save:
                ctx.save_for_backward(a, pooled, safe)
            return out
        shape = (*x.shape[:2], *out_size)
        pooled_shape = (*x.shape[:2], 1, *out_size) if n == 1 else shape
        band = 3 if n == 1 else 2  # the dimension of the bands' rows in the pooling layout
        out = safe = torch.empty(0)
        for i, (planes, rows) in enumerate(chunks):
            if rows is None:
                pooled, safe_c = _weighting(_pool_layout(x[planes], n, dtype), window)
            else:
                part, part_win = _band(x[planes], rows, win, clip=True)
                pooled, safe_c = _weighting(
                    _pool_layout(part, n, dtype), _pool_window(part_win, n, ceil_mode)
                )
            if i == 0:
                # allocated after the first chunk's temporaries, as the allocator reuses them best
                out = torch.empty(shape, dtype=dtype, device=x.device, memory_format=fmt)
                if save:
                    layout = _layout_of(safe_c)
                    safe = torch.empty(pooled_shape, dtype=dtype, device=x.device, memory_format=layout)
            _rows(out[planes], rows).copy_(pooled.squeeze(2) if n == 1 else pooled)
            if save:
                _rows(safe[planes], rows, band).copy_(safe_c)
        if save:
            ctx.save_for_backward(x, out, safe)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor, None, None, None, None, None, None]:
        saved, out, safe = ctx.saved_tensors  # type: ignore[attr-defined]
        win, n, ceil_mode, out_size, chunks, x_dtype = ctx.meta  # type: ignore[attr-defined]
        window = _pool_window(win, n, ceil_mode)
        if n == 1:
            grad = grad.unsqueeze(2)
        if chunks == 1:
            result = _weighting_grad(grad, saved, out, safe, window).to(x_dtype)
            return result.squeeze(2) if n == 1 else result, None, None, None, None, None, None
        x = saved
        dtype = _compute_dtype(x.dtype)
        # bands of input rows; their windows (:func:`_windows_reading`) are recomputed where bands
        # share windows, so that every cell adds its windows' terms in the unchunked order
        parts = _parts(tuple(x.shape), win, x.shape[2], "eval_grad", band_reach=1)
        grad_x = torch.empty_like(x) if parts[0].rows is None else torch.zeros_like(x)
        o = out.unsqueeze(2) if n == 1 else out
        band = 3 if n == 1 else 2
        for planes, rows in parts:
            if rows is None:
                grad_c = _weighting_grad(
                    grad[planes], _pool_layout(x[planes], n, dtype), o[planes], safe[planes], window
                )
                grad_x[planes] = grad_c.squeeze(2) if n == 1 else grad_c
                continue
            windows = _windows_reading(rows, win, out_size[0], x.shape[2])
            if windows is None:
                continue  # rows no window reads: zero gradient
            part, part_win = _band(x[planes], windows, win, clip=True)
            grad_c = _weighting_grad(
                _rows(grad[planes], windows, band),
                _pool_layout(part, n, dtype),
                _rows(o[planes], windows, band),
                _rows(safe[planes], windows, band),
                _pool_window(part_win, n, ceil_mode),
            )
            grad_c = grad_c.squeeze(2) if n == 1 else grad_c
            first = windows.start * win.stride[0] - win.padding[0]  # the input row of grad_c's first row
            lo, hi = max(rows.start, first), min(rows.stop, first + grad_c.shape[2])
            if hi > lo:
                grad_x[planes].narrow(2, lo, hi - lo).copy_(grad_c.narrow(2, lo - first, hi - lo))
        return grad_x, None, None, None, None, None, None


def _windows_reading(rows: slice, win: Window, count: int, size: int) -> slice | None:
    """The windows (output rows, of ``count``) that read the input rows ``rows`` (of ``size``), or
    ``None`` when none does; extended to earlier windows where the band they read would be
    shorter than one window (a ceil-mode window past the padding), so that its average pools
    take the same path as the unchunked ones."""
    k, s, p, d = win.kernel_size[0], win.stride[0], win.padding[0], win.dilation[0]
    reach = (k - 1) * d + 1
    lo = max(0, (rows.start + p - reach) // s + 1)
    hi = min(count, -(-(rows.stop + p) // s))
    if lo >= hi:
        return None
    while lo > 0:
        start, stop = band_span(slice(lo, hi), k, s, d, size + 2 * p)
        if stop - start >= reach:
            break
        lo -= 1
    return slice(lo, hi)


def _layout_of(a: Tensor) -> torch.memory_format:
    """The eval pooling's layout for ``a``: channels_last for 2d on the CPU, where PyTorch's
    ``avg_pool2d`` is several times faster in it; contiguous otherwise (3d, and CUDA, where
    the channels_last ``avg_pool2d`` backward gave wrong gradients with torch 2.11)."""
    return torch.channels_last if a.dim() == 4 and a.device.type == "cpu" else torch.contiguous_format


def _eval(
    x: Tensor, win: Window, n: int, ceil_mode: bool, out: tuple[int, ...], fmt: torch.memory_format
) -> Tensor:
    """Probabilistic weighting in float32 (float64 for float64 input), returned in ``x.dtype``."""
    save = torch.is_grad_enabled() and x.requires_grad
    return _ProbabilisticWeighting.apply(x, win, n, ceil_mode, out, fmt, save).to(x.dtype)


# --------------------------------------------------------------------------- traceable path


def _eval_traceable(x: Tensor, win: Window, n: int, ceil_mode: bool, out: tuple[int, ...]) -> Tensor:
    """Probabilistic weighting in plain differentiable ops (no chunks, no custom Function).

    The path under ``torch.compile`` / ``torch.export`` / tracing and for ``meta`` tensors, and in
    eager mode for ``dilation > 1`` (average pooling has no dilation; the window sums are then
    accumulated over strided views). The zero-window rule and the values are those of the eager
    path; autograd gives the same gradient as its written-out backward. In ceil mode the window
    sums are accumulated over strided views too: inductor (torch 2.13, CPU) differentiates
    ``avg_pool3d(ceil_mode=True)`` wrongly (gradient off by O(1)), and with torch 2.11 on CUDA the
    compiled 2d ceil-mode average pools did not match eager either.
    """
    dtype = _compute_dtype(x.dtype)
    pooled = all(d == 1 for d in win.dilation) and not ceil_mode
    if pooled:
        window = _pool_window(win, n, ceil_mode)
        a = _pool_layout(x, n, dtype)
        total = _avg_pool(a, *window)
        square = _avg_pool(a * a, *window)
    else:
        views = _offset_views(_padded(x, win, out, dtype), win, out)
        total, square = views[0], views[0] * views[0]
        for v in views[1:]:
            total = total + v
            square = square + v * v
    y = square / torch.where(total > 0, total, torch.ones((), dtype=dtype, device=x.device))
    if n == 1 and pooled:
        y = y.squeeze(2)
    return y.to(x.dtype)


def _draw_traceable(
    x: Tensor, win: Window, out: tuple[int, ...], generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """Training draws in plain ops, with the arithmetic of :func:`_draw_chunk` (so the same uniforms
    draw the same cells) and autograd through ``gather`` for the one-hot gradient.

    Returns the output and the flat indices. Used under ``torch.compile`` / ``torch.export`` /
    tracing and for ``meta`` tensors: no chunks, no data-dependent branch, no in-place writes.
    """
    dtype = _compute_dtype(x.dtype)
    shape = (*x.shape[:2], *out)
    offsets, base, first = _window_tables(tuple(x.shape[2:]), out, win, x.device)
    u = torch.rand(shape, generator=generator, dtype=dtype, device=x.device)
    with torch.no_grad():
        views = _offset_views(_padded(x.detach(), win, out, dtype), win, out)
        kk = len(views)
        total = views[0] if kk == 1 else views[0] + views[1]
        for v in views[2:]:
            total = total + v
        u = torch.minimum(u * total, torch.nextafter(total, total.new_tensor(-math.inf)))
        position = torch.zeros(shape, dtype=torch.int64, device=x.device)
        running = views[0]
        for t in range(kk - 1):
            if t == 1:
                running = views[0] + views[1]
            elif t > 1:
                running = running + views[t]
            position = position + (running <= u).to(torch.int64)
        positive = total > 0
        # zero windows: their first in-bounds cell, as on the eager path
        index = torch.where(positive, offsets[position] + base, first)
    values = torch.gather(x.flatten(2), 2, index.flatten(2)).view(shape)
    y = torch.where(positive, values, torch.zeros((), dtype=x.dtype, device=x.device))
    return y, index


# --------------------------------------------------------------------------- entry point


def _stochastic_pool(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    n: int,
    training: bool,
    generator: torch.Generator | None,
    return_indices: bool,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    win = check_window(kernel_size, stride, padding, n, dilation)
    check_bool(ceil_mode, "ceil_mode")
    x4, unbatched = check_input(x, n, "input", window=win, ceil_mode=ceil_mode)
    check_bool(training, "training")
    check_bool(return_indices, "return_indices")
    gen = check_generator(generator, x4)
    if return_indices and not training:
        raise ValueError(
            "return_indices=True is only defined in training mode: the evaluation output "
            "sum(a^2)/sum(a) is a weighted average, not one cell"
        )
    _check_values(x4)
    out = tuple(pool_output_size(tuple(x4.shape[2:]), *win, ceil_mode))
    fmt = channels_last_format(x4)
    index: Tensor | None
    if x4.numel() == 0:
        # N = 0 or C = 0: the empty result, as PyTorch's pools give (connected to x for autograd)
        y = x4.flatten(2)[:, :, :1].reshape(*x4.shape[:2], *[1] * n).expand(*x4.shape[:2], *out)
        index = torch.zeros(y.shape, dtype=torch.int64, device=x4.device) if return_indices else None
    elif not training:
        if _symbolic(x4) or any(d > 1 for d in win.dilation):
            y = _eval_traceable(x4, win, n, ceil_mode, out)
        else:
            y = _eval(x4, win, n, ceil_mode, out, fmt)
        index = None
    elif _symbolic(x4):
        y, index = _draw_traceable(x4, win, out, gen)
        index = index if return_indices else None
    elif torch.is_grad_enabled() and x4.requires_grad:
        result = _StochasticDraw.apply(x4, win, out, gen, return_indices)
        y, index = result if return_indices else (result, None)
    else:
        y, _, _, index = _draw(x4, win, out, gen, False, return_indices)
    y = y.contiguous(memory_format=fmt)
    if index is not None:
        return restore_batch(y, unbatched), restore_batch(index.contiguous(memory_format=fmt), unbatched)
    return restore_batch(y, unbatched)


_SHAPE_DOC = """
    Args:
        x: non-negative input of shape ``(N, C, {dims})`` or ``(C, {dims})``, floating point.
            float16/bfloat16 are summed in float32; the output keeps the input dtype.
        kernel_size: window size, an int or {n} ints.
        stride: step between windows; ``None`` means ``kernel_size``. ``stride < kernel_size``
            (overlapping windows) is supported; each window draws independently.
        padding: implicit zero padding on both sides, at most half the window. Padding cells
            have value 0 and are never drawn.
        dilation: spacing between the window's cells, an int or {n} ints, as in max pooling.
        ceil_mode: round the output size up (PyTorch's max-pooling rule); cells beyond the
            padding count as padding.
        training: draw one cell per window (``True``) or return the probabilistic weighting
            ``sum a^2 / sum a`` (``False``).
        generator: optional ``torch.Generator`` for the draws (one uniform per window, in
            output order); ignored when ``training=False``.
        return_indices: also return the flat index of each drawn cell into the unpadded
            spatial volume of its ``(n, c)`` plane, in the format of
            ``F.max_pool{n}d(..., return_indices=True)`` (accepted by ``F.max_unpool{n}d``).
            Only in training mode.

    Returns:
        The pooled tensor, or ``(values, indices)`` with int64 ``indices`` when
        ``return_indices=True``.

    Shape:
        - Input: ``(N, C, {dims})`` or ``(C, {dims})``.
        - Output: ``(N, C, {outdims})`` or ``(C, {outdims})``, where
          ``out = floor((in + 2 * padding - dilation * (kernel_size - 1) - 1) / stride) + 1``
          (rounded up in ceil mode), the output size of ``F.max_pool{n}d``.

    Raises:
        ValueError: for negative, NaN or infinite input, bad window arguments, a window
            larger than the padded input, or ``return_indices=True`` with ``training=False``.
        TypeError: for a non-tensor or non-floating input, non-int window arguments, or a
            generator that is not a ``torch.Generator``.
"""


# --------------------------------------------------------------------------- functions


@overload
def stochastic_pool1d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    training: bool = ...,
    generator: torch.Generator | None = ...,
    return_indices: Literal[False] = ...,
) -> Tensor: ...
@overload
def stochastic_pool1d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    training: bool = ...,
    generator: torch.Generator | None = ...,
    return_indices: Literal[True],
) -> tuple[Tensor, Tensor]: ...
@overload
def stochastic_pool1d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    training: bool = ...,
    generator: torch.Generator | None = ...,
    return_indices: bool,
) -> Tensor | tuple[Tensor, Tensor]: ...
def stochastic_pool1d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    training: bool = True,
    generator: torch.Generator | None = None,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """1d stochastic pooling; see the module docstring for the sampler.

    Example:
        >>> x = torch.tensor([[[1.0, 3.0, 0.0, 0.0]]])
        >>> stochastic_pool1d(x, 2, training=False)
        tensor([[[2.5000, 0.0000]]])
        >>> y = stochastic_pool1d(x, 2, generator=torch.Generator().manual_seed(0))
        >>> y[0, 0, 0].item() in (1.0, 3.0), y[0, 0, 1].item()
        (True, 0.0)
    """
    return _stochastic_pool(
        x, kernel_size, stride, padding, 1, training, generator, return_indices, dilation, ceil_mode
    )


@overload
def stochastic_pool2d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    training: bool = ...,
    generator: torch.Generator | None = ...,
    return_indices: Literal[False] = ...,
) -> Tensor: ...
@overload
def stochastic_pool2d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    training: bool = ...,
    generator: torch.Generator | None = ...,
    return_indices: Literal[True],
) -> tuple[Tensor, Tensor]: ...
@overload
def stochastic_pool2d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    training: bool = ...,
    generator: torch.Generator | None = ...,
    return_indices: bool,
) -> Tensor | tuple[Tensor, Tensor]: ...
def stochastic_pool2d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    training: bool = True,
    generator: torch.Generator | None = None,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """2d stochastic pooling; see the module docstring for the sampler.

    Example:
        >>> x = torch.tensor([[[[1.0, 3.0], [0.0, 0.0]]]])
        >>> stochastic_pool2d(x, 2, training=False)
        tensor([[[[2.5000]]]])
        >>> y, idx = stochastic_pool2d(x, 2, generator=torch.Generator().manual_seed(0), return_indices=True)
        >>> y.shape, idx.item() in (0, 1), y.item() == x.flatten()[idx].item()
        (torch.Size([1, 1, 1, 1]), True, True)
    """
    return _stochastic_pool(
        x, kernel_size, stride, padding, 2, training, generator, return_indices, dilation, ceil_mode
    )


@overload
def stochastic_pool3d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    training: bool = ...,
    generator: torch.Generator | None = ...,
    return_indices: Literal[False] = ...,
) -> Tensor: ...
@overload
def stochastic_pool3d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    training: bool = ...,
    generator: torch.Generator | None = ...,
    return_indices: Literal[True],
) -> tuple[Tensor, Tensor]: ...
@overload
def stochastic_pool3d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    training: bool = ...,
    generator: torch.Generator | None = ...,
    return_indices: bool,
) -> Tensor | tuple[Tensor, Tensor]: ...
def stochastic_pool3d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    training: bool = True,
    generator: torch.Generator | None = None,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """3d stochastic pooling; see the module docstring for the sampler.

    Example:
        >>> x = torch.ones(2, 4, 4, 4)
        >>> stochastic_pool3d(x, 2).shape
        torch.Size([2, 2, 2, 2])
        >>> stochastic_pool3d(x, 2, training=False).unique()
        tensor([1.])
    """
    return _stochastic_pool(
        x, kernel_size, stride, padding, 3, training, generator, return_indices, dilation, ceil_mode
    )


def stochastic_pool1d_with_indices(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Training-mode :func:`stochastic_pool1d` returning ``(values, indices)``.

    Example:
        >>> x = torch.tensor([[0.0, 2.0, 5.0, 0.0]])
        >>> stochastic_pool1d_with_indices(x, 2)
        (tensor([[2., 5.]]), tensor([[1, 2]]))
    """
    return stochastic_pool1d(
        x, kernel_size, stride, padding, dilation, ceil_mode, generator=generator, return_indices=True
    )


def stochastic_pool2d_with_indices(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Training-mode :func:`stochastic_pool2d` returning ``(values, indices)``.

    The indices are in ``F.max_pool2d(..., return_indices=True)`` format (``h * W + w``), so
    ``F.max_unpool2d`` accepts them.

    Example:
        >>> x = torch.tensor([[[0.0, 2.0], [0.0, 0.0]]])
        >>> stochastic_pool2d_with_indices(x, 2)
        (tensor([[[2.]]]), tensor([[[1]]]))
    """
    return stochastic_pool2d(
        x, kernel_size, stride, padding, dilation, ceil_mode, generator=generator, return_indices=True
    )


def stochastic_pool3d_with_indices(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Training-mode :func:`stochastic_pool3d` returning ``(values, indices)``.

    Example:
        >>> x = torch.zeros(1, 2, 2, 2)
        >>> x[0, 1, 0, 1] = 4.0
        >>> stochastic_pool3d_with_indices(x, 2)
        (tensor([[[[4.]]]]), tensor([[[[5]]]]))
    """
    return stochastic_pool3d(
        x, kernel_size, stride, padding, dilation, ceil_mode, generator=generator, return_indices=True
    )


for _f, _n, _dims, _out in (
    (stochastic_pool1d, 1, "L", "L_out"),
    (stochastic_pool2d, 2, "H, W", "H_out, W_out"),
    (stochastic_pool3d, 3, "D, H, W", "D_out, H_out, W_out"),
):
    _doc = _f.__doc__ or ""
    _head, _, _example = _doc.partition("\n    Example:")
    _f.__doc__ = (
        _head.rstrip()
        + "\n"
        + _SHAPE_DOC.format(n=_n, dims=_dims, outdims=_out)
        + "\n    Example:"
        + _example
    )


# --------------------------------------------------------------------------- modules


class _StochasticPoolNd(WindowPool):
    _repr_options = ("dilation", "ceil_mode", "return_indices")
    _ndim = 0

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        ceil_mode: bool = False,
        *,
        return_indices: bool = False,
    ) -> None:
        super().__init__(kernel_size, stride, padding)
        check_window(kernel_size, stride, padding, self._ndim, dilation)
        self.dilation = dilation
        self.ceil_mode = check_bool(ceil_mode, "ceil_mode")
        self.return_indices = check_bool(return_indices, "return_indices")

    def forward(
        self, x: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        return _stochastic_pool(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self._ndim,
            self.training,
            generator,
            self.return_indices,
            self.dilation,
            self.ceil_mode,
        )


class StochasticPool1d(_StochasticPoolNd):
    """1d stochastic pooling: draws a cell per window in training mode (``module.train()``),
    returns ``sum a^2 / sum a`` per window in eval mode. See :func:`stochastic_pool1d`.

    Args:
        kernel_size: window size.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: implicit zero padding on both sides.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: round the output size up, as ``nn.MaxPool1d(..., ceil_mode=True)``.
        return_indices: also return the drawn cells' indices (training mode only; raises
            ``ValueError`` in eval mode).

    Shape:
        - Input: ``(N, C, L)`` or ``(C, L)``, non-negative.
        - Output: ``(N, C, L_out)`` or ``(C, L_out)``.

    Example:
        >>> pool = StochasticPool1d(2).eval()
        >>> pool(torch.tensor([[[1.0, 3.0, 2.0, 2.0]]]))
        tensor([[[2.5000, 2.0000]]])
    """

    _ndim = 1


class StochasticPool2d(_StochasticPoolNd):
    """2d stochastic pooling: draws a cell per window in training mode (``module.train()``),
    returns ``sum a^2 / sum a`` per window in eval mode. See :func:`stochastic_pool2d`.

    Args:
        kernel_size: window size, an int or 2 ints.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: implicit zero padding on both sides.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: round the output size up, as ``nn.MaxPool2d(..., ceil_mode=True)``.
        return_indices: also return the drawn cells' indices (training mode only; raises
            ``ValueError`` in eval mode).

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``, non-negative.
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``.

    Example:
        >>> pool = StochasticPool2d(3, stride=2, padding=1)
        >>> pool(torch.rand(2, 8, 16, 16), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 8, 8, 8])
        >>> StochasticPool2d(3, 2, ceil_mode=True)(torch.rand(1, 2, 54, 54)).shape  # SqueezeNet's pool
        torch.Size([1, 2, 27, 27])
    """

    _ndim = 2


class StochasticPool3d(_StochasticPoolNd):
    """3d stochastic pooling: draws a cell per window in training mode (``module.train()``),
    returns ``sum a^2 / sum a`` per window in eval mode. See :func:`stochastic_pool3d`.

    Args:
        kernel_size: window size, an int or 3 ints.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: implicit zero padding on both sides.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: round the output size up, as ``nn.MaxPool3d(..., ceil_mode=True)``.
        return_indices: also return the drawn cells' indices (training mode only; raises
            ``ValueError`` in eval mode).

    Shape:
        - Input: ``(N, C, D, H, W)`` or ``(C, D, H, W)``, non-negative.
        - Output: ``(N, C, D_out, H_out, W_out)`` or ``(C, D_out, H_out, W_out)``.

    Example:
        >>> StochasticPool3d(2)(torch.rand(1, 2, 4, 4, 4)).shape
        torch.Size([1, 2, 2, 2, 2])
    """

    _ndim = 3


for _n, _cls in ((1, StochasticPool1d), (2, StochasticPool2d), (3, StochasticPool3d)):
    register_pool(
        f"stochastic{_n}d",
        _cls,
        family="stochastic",
        dims=(_n,),
        description="sample a cell with p = a / sum a; eval sum a^2 / sum a (Zeiler & Fergus)",
        example_kwargs={"kernel_size": 2},
    )
