"""Stochastic pooling, part 2: the training sampler (one cell drawn per window) and its gradient.

The eager sampler draws a chunk at a time (:func:`._chunks._parts`) and, with autograd, runs as
the Function :class:`_StochasticDraw`; :func:`_draw_traceable` is the same arithmetic in plain
differentiable ops for ``torch.compile``, ``torch.export``, tracing and ``meta`` tensors.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import Tensor

from ..._checks import Window
from .._windows import band_span
from ._chunks import (
    _band,
    _compute_dtype,
    _offset_views,
    _padded,
    _Part,
    _parts,
    _rows,
    _window_tables,
)

# --------------------------------------------------------------------------- eager


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


def _leading(win: Window, rows: slice | None, axis: int = 0) -> tuple[int, ...]:
    """How many windows at the start of each dimension start in the padding (``ceil(p / s)``), within
    the output rows ``rows`` of a band along ``axis`` (``None``: whole planes)."""
    leading = [-(-p // s) for p, s in zip(win.padding, win.stride, strict=True)]
    if rows is not None:
        leading[axis] = min(max(0, leading[axis] - rows.start), rows.stop - rows.start)
    return tuple(leading)


def _chunk_tables(
    tables: tuple[Tensor, Tensor, Tensor],
    rows: slice | None,
    shape: tuple[int, ...],
    out: tuple[int, ...],
    win: Window,
    axis: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """``tables`` (those of all windows) for whole planes, else those of the band's windows (along
    ``axis``), made for it (the tables of one plane are as large as its output, four times over)."""
    return (
        tables
        if rows is None
        else _window_tables(tuple(shape[2:]), out, win, tables[0].device, rows, compact=True, axis=axis)
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
    chunks = _parts(tuple(x.shape), win, out, "train")
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
        for planes, rows, axis in chunks:
            dim = 2 + axis
            xc, yc = x[planes], _rows(y[planes], rows, dim)
            uc = _rows(u[planes], rows, dim)
            if rows is None:
                position, idx, pos = _draw_chunk(xc, uc, win, out, tables, _leading(win, None))
            else:
                band, band_win = _band(xc, rows, win, clip=False, axis=axis)
                band_out = (*out[:axis], rows.stop - rows.start, *out[axis + 1 :])
                band_tables = _chunk_tables(tables, rows, tuple(x.shape), out, win, axis)
                position, idx, pos = _draw_chunk(
                    band, uc, band_win, band_out, band_tables, _leading(win, rows, axis)
                )
            _gather(xc, yc, idx, win, rows, axis)
            if pos is not None:
                # zero windows: the value is 0 already (+0.0 for a -0.0 cell); their gradient stops too
                yc.masked_fill_(pos.logical_not(), 0)
                if positive is None:
                    positive = pos if one else torch.ones(shape, dtype=torch.bool, device=device)
                if not one:
                    _rows(positive[planes], rows, dim).copy_(pos)
            if one:
                index = idx if (return_indices or keep) else None
            else:
                if positions is not None:
                    _rows(positions[planes], rows, dim).copy_(position)
                if index is not None:
                    _rows(index[planes], rows, dim).copy_(idx)
    saved = (index if one else positions) if keep else None
    return y, saved, positive, index if return_indices else None


def _gather(xc: Tensor, yc: Tensor, idx: Tensor, win: Window, rows: slice | None, axis: int) -> None:
    """Writes the cells of ``xc`` (a chunk) at the flat indices ``idx`` into ``yc``, its output.

    A band along the first dimension gathers from the input rows it reads only (no copy of a
    channels-last plane) straight into ``y``; a band along another one through a temporary (its
    output is no flat view of ``y``).
    """
    source, shift = xc, 0
    if rows is not None and axis == 0:
        lo, hi = band_span(rows, win.kernel_size[0], win.stride[0], win.dilation[0])
        lo, hi = max(lo - win.padding[0], 0), min(hi - win.padding[0], xc.shape[2])
        source, shift = xc.narrow(2, lo, hi - lo), lo * math.prod(xc.shape[3:])
    local = idx if shift == 0 else idx - shift
    if rows is None or axis == 0:
        values = yc.view(*yc.shape[:2], -1)  # a view of y: chunks are whole planes or rows of one
        torch.gather(source.flatten(2), 2, local.flatten(2), out=values)
    else:
        yc.copy_(torch.gather(source.flatten(2), 2, local.flatten(2)).view(yc.shape))


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
        # saved int64 indices: one chunk; else chunks of the forward's size (and their tables)
        chunks = [_Part((slice(None), slice(None)), None)]
        tables = None
        if saved.dtype != torch.int64:
            # bands along the first dimension, or along one where windows do not overlap: a cell
            # that windows of two bands (of columns, say) draw would add their gradients in
            # another order than the unchunked pass (row-major)
            chunks = _parts(shape, win, out, "train", disjoint=True)
            whole = None if chunks[0].rows is None else slice(0, 0)
            tables = _window_tables(tuple(shape[2:]), out, win, device, whole, compact=True)
        for planes, rows, axis in chunks:
            dim = 2 + axis
            mask = None if positive is None else _rows(positive[planes], rows, dim)
            # saved int64 indices are valid everywhere (zero windows: their first in-bounds cell)
            drawn = _rows(saved[planes], rows, dim)
            index = (
                drawn
                if tables is None
                else _index_of(drawn, mask, _chunk_tables(tables, rows, shape, out, win, axis))
            )
            g = _rows(grad[planes], rows, dim)
            g = g if mask is None else torch.where(mask, g, zero)
            # the whole plane: a band's windows scatter into it in the order of the unchunked pass
            target = grad_x[planes]
            target.view(*target.shape[:2], math.prod(shape[2:])).scatter_add_(
                2, index.flatten(2), g.flatten(2)
            )
        return grad_x.to(dtype), None, None, None, None


def _draw_with_grad(
    x: Tensor, win: Window, out: tuple[int, ...], generator: torch.Generator | None, return_indices: bool
) -> tuple[Tensor, Tensor | None]:
    """:class:`_StochasticDraw` applied to ``x``: the output, and the indices when ``return_indices``."""
    result = cast(
        "Tensor | tuple[Tensor, Tensor]",
        _StochasticDraw.apply(x, win, out, generator, return_indices),  # type: ignore[no-untyped-call]
    )
    return result if isinstance(result, tuple) else (result, None)


# --------------------------------------------------------------------------- traceable


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
