"""Window helpers shared by the pools that slide a window over strided views in chunks.

Median and stochastic pooling both iterate over the ``prod(kernel_size)`` window offsets on
strided views of a (padded) input instead of an ``unfold`` copy, and both bound their extra
memory by working on one chunk of the input at a time. This module holds what they share:

* the window offsets and their strided views (:func:`offset_slices`, :func:`offset_views`);
* chunk sizing (:data:`MAX_CHUNK_ELEMENTS`, :func:`chunk_elements`) and chunking: chunks of whole
  ``(n, c)`` planes (:func:`plane_chunks`, :func:`plane_ranges`) and, when one plane is more than a
  chunk, bands of output rows along one spatial dimension, the first one unless its bands cannot
  be small enough (:func:`band_axis`, :func:`row_bands`, :func:`band_rows`, :func:`band_span`);
* the input's memory format (:func:`channels_last_format`).

Everything here is plain arithmetic on shapes or views: no copies, no data-dependent branches,
so it is safe under tracing as well.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Final

import torch
from torch import Tensor

__all__ = [
    "MAX_CHUNK_ELEMENTS",
    "band_axis",
    "band_rows",
    "band_span",
    "channels_last_format",
    "chunk_elements",
    "offset_slices",
    "offset_views",
    "plane_chunks",
    "plane_ranges",
    "row_bands",
]

MAX_CHUNK_ELEMENTS: Final[int] = 1 << 23
"""The largest chunk, in (padded) input elements, of every chunked pool: past it the per-chunk
overhead is negligible and a larger chunk only costs memory."""


# --------------------------------------------------------------------------- window offsets


def offset_slices(
    kernel_size: Sequence[int], stride: Sequence[int], dilation: Sequence[int], out: Sequence[int]
) -> list[tuple[slice, ...]]:
    """The spatial index of each window offset's strided view, in row-major offset order.

    For the offset ``o`` (one int per spatial dimension) the view holds, at output position
    ``j``, the padded input cell ``o * dilation + j * stride``: indexing the padded input's
    spatial dimensions with the returned slices gives an ``out``-sized view.

    Example:
        >>> offset_slices((2,), (2,), (1,), (3,))
        [(slice(0, 5, 2),), (slice(1, 6, 2),)]
    """
    dims = list(zip(stride, dilation, out, strict=True))
    result = []
    for offset in itertools.product(*(range(k) for k in kernel_size)):
        result.append(
            tuple(slice(i * d, i * d + s * (o - 1) + 1, s) for i, (s, d, o) in zip(offset, dims, strict=True))
        )
    return result


def offset_views(
    a: Tensor, kernel_size: Sequence[int], stride: Sequence[int], dilation: Sequence[int], out: Sequence[int]
) -> list[Tensor]:
    """One strided view ``(*leading, *out)`` of the padded ``a`` per window offset (row-major).

    ``a``'s last ``len(kernel_size)`` dimensions are the spatial ones; any leading dimensions
    (batch, channels, or flattened planes) are kept.

    Example:
        >>> a = torch.arange(6.0).view(1, 6)
        >>> [v.tolist() for v in offset_views(a, (2,), (2,), (1,), (3,))]
        [[[0.0, 2.0, 4.0]], [[1.0, 3.0, 5.0]]]
    """
    views = []
    for index in offset_slices(kernel_size, stride, dilation, out):
        key: tuple[object, ...] = (Ellipsis, *index)
        views.append(a[key])  # type: ignore[index]
    return views


# --------------------------------------------------------------------------- chunk sizing


def chunk_elements(
    padded_elements: int, *, fraction: int, minimum: int, limit: int, maximum: int = MAX_CHUNK_ELEMENTS
) -> int:
    """Input elements per chunk for an input of ``padded_elements`` (padded) elements.

    A chunk is ``1 / fraction`` of the input, so that the working set of one chunk (several
    chunk-sized temporaries) is a small fraction of the input at every shape; smaller inputs take
    chunks of at least ``minimum`` elements (with smaller chunks the per-chunk overhead shows),
    but never more than ``1 / limit`` of the input: ``limit`` is the smallest fraction whose
    working set keeps the pool's memory bound, so the floor can never break that bound. At most
    ``maximum`` elements, at least 1.

    Args:
        padded_elements: the input's element count, padding included.
        fraction: the usual share of the input, ``1 / fraction``.
        minimum: the floor for small inputs, in elements.
        limit: the largest share a chunk may take, ``1 / limit`` (``limit <= fraction``).
        maximum: the cap, in elements.

    Example:
        >>> chunk_elements(1 << 24, fraction=8, minimum=1 << 18, limit=4)  # 1/8
        2097152
        >>> chunk_elements(1 << 20, fraction=8, minimum=1 << 18, limit=4)  # the floor
        262144
        >>> chunk_elements(1 << 16, fraction=8, minimum=1 << 18, limit=4)  # the floor, held to 1/4
        16384
    """
    floor = min(minimum, padded_elements // max(1, limit))
    return max(1, min(maximum, max(padded_elements // max(1, fraction), floor)))


# --------------------------------------------------------------------------- chunks


def plane_ranges(planes: int, per_chunk: int) -> list[slice]:
    """Consecutive slices of ``per_chunk`` (at least 1) of ``planes`` flattened planes.

    Example:
        >>> plane_ranges(5, 2)
        [slice(0, 2, None), slice(2, 4, None), slice(4, 6, None)]
    """
    step = max(1, per_chunk)
    return [slice(start, start + step) for start in range(0, planes, step)]


def plane_chunks(batch: int, channels: int, per_chunk: int) -> list[tuple[slice, slice]]:
    """``(batch, channel)`` slices covering ``batch * channels`` planes, ``per_chunk`` at most.

    Whole batch items where one fits (so a chunk of a contiguous input is contiguous), else
    channel ranges of one item; at least one plane per chunk.

    Example:
        >>> plane_chunks(2, 3, 6)
        [(slice(None, None, None), slice(None, None, None))]
        >>> plane_chunks(3, 2, 4)  # two batch items per chunk
        [(slice(0, 2, None), slice(None, None, None)), (slice(2, 4, None), slice(None, None, None))]
        >>> plane_chunks(1, 3, 2)  # channel ranges
        [(slice(0, 1, None), slice(0, 2, None)), (slice(0, 1, None), slice(2, 4, None))]
    """
    per_chunk = max(1, per_chunk)
    if batch * channels == 0 or per_chunk >= batch * channels:
        return [(slice(None), slice(None))]
    if per_chunk >= channels:
        return [(items, slice(None)) for items in plane_ranges(batch, per_chunk // channels)]
    return [(slice(i, i + 1), part) for i in range(batch) for part in plane_ranges(channels, per_chunk)]


def row_bands(rows: int, per_band: int) -> list[slice]:
    """Bands of ``per_band`` (at least 1) consecutive rows covering ``rows``, the last shorter.

    Unlike :func:`plane_ranges`, the last slice stops at ``rows`` (bands are used in arithmetic).

    Example:
        >>> row_bands(5, 2)
        [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    step = max(1, per_band)
    return [slice(start, min(rows, start + step)) for start in range(0, rows, step)]


def band_axis(budget: int, padded: Sequence[int], out: Sequence[int], reach: Sequence[int]) -> int:
    """The spatial dimension to cut a plane into bands along: the first one whose band of one
    output row fits ``budget``, else the one whose band of one output row is smallest.

    A band of one output row along dimension ``d`` reads ``reach[d]`` (the window's span) of the
    ``padded[d]`` rows, each of ``prod(padded) / padded[d]`` elements. Dimensions with a single
    output row cannot be cut. The first dimension wins ties, so planes whose rows are enough keep
    the bands they always had.

    Example:
        >>> band_axis(1000, (10, 50), (8, 48), (3, 3))  # 3 rows of 50 fit
        0
        >>> band_axis(100, (6, 4096), (4, 4094), (3, 3))  # 3 rows of 4096 do not; 3 columns of 6 do
        1
    """
    plane = math.prod(padded)
    sizes = [
        (plane // max(1, p) * r, d)
        for d, (p, o, r) in enumerate(zip(padded, out, reach, strict=True))
        if o > 1
    ]
    if not sizes:
        return 0
    fitting = [d for size, d in sizes if size <= budget]
    return fitting[0] if fitting else min(sizes)[1]


def band_rows(budget: int, row_elements: int, kernel_size: int, stride: int, dilation: int) -> int:
    """Output rows per band such that the input rows a band reads hold at most ``budget``
    elements (at least one output row).

    ``r`` output rows read ``(r - 1) * stride + (kernel_size - 1) * dilation + 1`` input rows of
    ``row_elements`` elements each (the first spatial dimension being the rows).

    Example:
        >>> band_rows(100, 10, 3, 2, 1)  # 4 output rows read 9 rows of 10
        4
        >>> band_rows(5, 10, 3, 2, 1)
        1
    """
    reach = (kernel_size - 1) * dilation + 1
    rows = budget // max(1, row_elements)
    return max(1, (rows - reach) // stride + 1)


def band_span(
    rows: slice, kernel_size: int, stride: int, dilation: int, limit: int | None = None
) -> tuple[int, int]:
    """``[start, stop)`` of the padded input rows the output rows ``rows`` read.

    ``rows`` has explicit ``start`` and ``stop``. ``limit`` (the padded size, ``size + 2 *
    padding``) cuts the span where a ceil-mode window overhangs the padding.

    Example:
        >>> band_span(slice(2, 4), 3, 2, 1)  # windows 2 and 3 read rows 4 to 8
        (4, 9)
        >>> band_span(slice(2, 4), 3, 2, 1, limit=8)
        (4, 8)
    """
    start = rows.start * stride
    stop = (rows.stop - 1) * stride + (kernel_size - 1) * dilation + 1
    return start, stop if limit is None else min(stop, limit)


# --------------------------------------------------------------------------- layout


def channels_last_format(x: Tensor) -> torch.memory_format:
    """``torch.channels_last`` (4-d) or ``torch.channels_last_3d`` (5-d) when ``x`` is laid out
    so and not also contiguous, else ``torch.contiguous_format``: the layout to give the output.

    Example:
        >>> channels_last_format(torch.zeros(1, 3, 4, 4).contiguous(memory_format=torch.channels_last))
        torch.channels_last
        >>> channels_last_format(torch.zeros(1, 1, 4, 4))  # both layouts at once: contiguous
        torch.contiguous_format
    """
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous():
        return torch.channels_last_3d
    return torch.contiguous_format
