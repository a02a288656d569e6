"""Stochastic pooling, part 1: input checks, window index tables and padding, and the chunks.

Everything the training sampler (:mod:`._sampling`) and the evaluation path (:mod:`._eval`) share:
the value check, the compute dtype, the flat-index tables of the windows, the zero padding, and
the chunks they work on (:func:`_parts`): groups of whole ``(n, c)`` planes, or bands of output
rows of one plane (:func:`_band`) when one plane is more than a chunk, along the first spatial
dimension unless a plane has too few rows for that (then along another, :func:`band_axis`).
"""

from __future__ import annotations

import itertools
import math
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch._subclasses.fake_tensor import FakeTensor

from ..._checks import Window, is_traced
from .._windows import (
    MAX_CHUNK_ELEMENTS,
    band_axis,
    band_rows,
    band_span,
    chunk_elements,
    offset_views,
    plane_chunks,
    row_bands,
)

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
    axis: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Flat-index tables in the unpadded plane, for the windows in the output rows ``rows`` along
    the spatial dimension ``axis`` (``None``: all).

    ``compact``: ``base`` and ``first`` in int32 where the plane allows it (half the memory: with
    few planes the tables are a good part of the working set); they only ever add to or replace
    int64 indices, so the indices are the same.

    Returns ``offsets`` (``prod(k)``,): the flat offset of each window cell from the window's
    first cell, row-major; ``base`` (``*out``, or the band's rows): the flat index of each window's
    first cell (negative or wrapped where that cell is padding, never used there); ``first``
    (same shape): the flat index of each window's first in-bounds cell.
    """
    if rows is not None:
        out = (*out[:axis], rows.stop - rows.start, *out[axis + 1 :])
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
    ndim = len(spatial)
    for d in range(ndim):
        skip = rows.start if rows is not None and d == axis else 0
        start = torch.arange(skip, skip + out[d], device=device, dtype=torch.int64) * s[d] - p[d]
        shape = [1] * ndim
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
window, the eval denominators). :func:`_chunk_elements` sizes the chunks of one input.

The package re-exports it and :func:`_chunk_elements` reads it from there, at call time, so that
``monkeypatch.setattr(torchpool.ops.stochastic, "_CHUNK_ELEMENTS", n)`` forces many chunks and bands
(the tests do; patching this module's copy does nothing)."""

_CHUNK_FRACTION = 8
"""An eval chunk holds ``1 / _CHUNK_FRACTION`` of the padded input, so that the working set of one
chunk (several chunk-sized temporaries) is a small fraction of the input at every shape."""

_CHUNK_MIN_ELEMENTS = 1 << 18
"""... and at least this many elements (with smaller chunks the per-chunk overhead shows: 2^16 made
a (8, 64, 56, 56) training call ~1.4x slower), but never more than ``1 / _CHUNK_LIMIT`` of the
input (``1 / _TRAIN_CHUNK_LIMIT`` in training), so the floor cannot break the 2x bound."""

_CHUNK_LIMIT = 6
"""The largest share of the input a chunk of the eval backward may take: it holds about 4.5 chunks
besides the saved output and denominators (0.5x the input at stride 2), so a sixth stays under
1.6x (a quarter gave 1.84x at (1, 1, 512, 512))."""

_EVAL_FORWARD_CHUNK_LIMIT = 3
"""... and of the eval forward, a third of the input: it holds about 3 chunks and the output (and
the denominators for a backward): at (4, 16, 32, 32), 2.44x with one chunk, 1.66x with a half,
0.94x with a third (1.16x forward + backward)."""

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
    from .. import stochastic  # the package: its _CHUNK_ELEMENTS is the one tests lower

    return chunk_elements(
        padded_elements,
        fraction=fraction,
        minimum=_CHUNK_MIN_ELEMENTS,
        limit=limit,
        maximum=stochastic._CHUNK_ELEMENTS,
    )


class _Part(NamedTuple):
    """One chunk: ``(batch, channel)`` slices of planes and, for a band of one plane, a slice of
    rows along the spatial dimension ``axis`` (output rows in the forward and the training
    backward, input rows in the eval backward); ``rows is None`` for whole planes."""

    planes: tuple[slice, slice]
    rows: slice | None
    axis: int = 0


_Mode = Literal["train", "eval", "eval_backward"]
"""What a chunk is sized for: training (forward and backward); the eval forward; the eval backward."""


def _shares(mode: _Mode) -> tuple[int, int]:
    """``(fraction, limit)`` of :func:`_chunk_elements` for ``mode``."""
    if mode == "train":
        return _TRAIN_CHUNK_FRACTION, _TRAIN_CHUNK_LIMIT
    return _CHUNK_FRACTION, _CHUNK_LIMIT if mode == "eval_backward" else _EVAL_FORWARD_CHUNK_LIMIT


def _parts(
    shape: tuple[int, ...],
    win: Window,
    sizes: tuple[int, ...],
    mode: _Mode,
    band_reach: int | None = None,
    disjoint: bool = False,
) -> list[_Part]:
    """The chunks of an input of ``shape`` (N, C, *spatial) for ``mode``: whole planes while one
    plane fits the budget (:func:`_chunk_elements`), else bands of one plane along the first
    spatial dimension whose bands can fit the budget (:func:`band_axis`; with ``disjoint``, among
    the first one and those along which windows do not overlap).

    ``sizes`` are the numbers of rows that bands split, per spatial dimension: the output's sizes
    (forward, training backward) or the input's (eval backward). ``band_reach`` is the number of
    input rows one such row reads (``None``: the window's, for output rows; 1 for input rows).
    """
    training = mode == "train"
    n, c = shape[:2]
    padded = [size + 2 * p for size, p in zip(shape[2:], win.padding, strict=True)]
    plane = math.prod(padded)
    budget = _chunk_elements(n * c * plane, *_shares(mode))
    # the axis: bands of input rows (eval backward) recompute the windows that read them, so a band
    # of one row reads a window's rows too
    spans = [(k - 1) * d + 1 for k, d in zip(win.kernel_size, win.dilation, strict=True)]
    share = _TRAIN_BAND_SHARE if training else 1
    cut = [
        o if d == 0 or not disjoint or span <= s else 1
        for d, (o, span, s) in enumerate(zip(sizes, spans, win.stride))
    ]
    axis = band_axis(budget // share, padded, cut, spans)
    if n * c == 0 or plane <= budget or sizes[axis] <= 1:
        return [_Part(planes, None) for planes in plane_chunks(n, c, budget // max(1, plane))]
    row = plane // max(1, padded[axis])
    if training:
        budget //= _TRAIN_BAND_SHARE
    k, s, d = win.kernel_size[axis], win.stride[axis], win.dilation[axis]
    if band_reach is None:
        per_band = band_rows(budget, row, k, s, d)
    else:
        per_band = max(1, budget // max(1, row * band_reach))
    bands = row_bands(sizes[axis], per_band)
    if not training and band_reach is None:
        # the average pools need a band at least one window long (a ceil-mode window past the
        # padding can make the last one shorter): merge it into the previous one
        while len(bands) > 1:
            start, stop = band_span(bands[-1], k, s, d, padded[axis])
            if stop - start >= (k - 1) * d + 1:
                break
            bands[-2:] = [slice(bands[-2].start, bands[-1].stop)]
    if len(bands) == 1:
        return [_Part(planes, None) for planes in plane_chunks(n, c, 1)]
    planes = [(slice(i, i + 1), slice(j, j + 1)) for i in range(n) for j in range(c)]
    return [_Part(p, band, axis) for p in planes for band in bands]


def _band(x: Tensor, rows: slice, win: Window, clip: bool, axis: int = 0) -> tuple[Tensor, Window]:
    """The input rows that the output rows ``rows`` of the spatial dimension ``axis`` read, with
    their padding along it made explicit (zero rows), and the window for them (no padding on it).

    ``clip``: stop at the padded input's end even where a ceil-mode window overhangs it (for the
    average pools, whose divisor counts the cells up to there); otherwise the band reaches as far
    as the window does and :func:`_padded` adds the zero rows beyond.
    """
    k, s, p, d = win.kernel_size[axis], win.stride[axis], win.padding[axis], win.dilation[axis]
    dim = 2 + axis
    size = x.shape[dim]
    start, stop = band_span(rows, k, s, d, size + 2 * p if clip else None)
    lo, hi = max(start - p, 0), min(stop - p, size)
    band = x.narrow(dim, lo, max(0, hi - lo))
    top, bottom = lo - (start - p), (stop - p) - hi
    if top or bottom:
        band = F.pad(band, [0, 0] * (x.dim() - 1 - dim) + [top, bottom])
    padding = tuple(0 if i == axis else q for i, q in enumerate(win.padding))
    return band, Window(win.kernel_size, win.stride, padding, win.dilation)


def _rows(t: Tensor, rows: slice | None, dim: int = 2) -> Tensor:
    """``t`` restricted to ``rows`` along ``dim`` (all of it for ``None``)."""
    return t if rows is None else t.narrow(dim, rows.start, rows.stop - rows.start)
