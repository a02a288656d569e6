"""Median pooling, part 3: forward, backward and indices by chunks of planes, and the custom ops.

``torchpool::median_pool`` (with its backward, the backward's backward and the indices) is what eager
mode, ``torch.compile`` and ``torch.export`` call; :class:`_MedianFunction` replaces it before torch 2.4.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

from .._windows import band_axis, band_rows, offset_slices, plane_ranges, row_bands
from . import _kernels
from ._kernels import (
    _axis_slice,
    _call_compiled,
    _Config,
    _fix_borders,
    _grad_compiled,
    _leading,
    _median_unfold,
    _network_eager,
    _network_source,
    _outer,
    _pad,
    _pad_band,
    _phases,
    _uses_phases,
    _windows,
)
from ._network import _choose_plan, _Plan


def _forward(xp: Tensor, cfg: _Config, out: Tensor | None = None, functional: bool = False) -> Tensor:
    """Median of every window of the padded, contiguous ``(B, *padded)`` tensor ``xp`` (into ``out``).

    ``functional`` evaluates the network without ``out=`` buffers (for the ONNX exporters).
    """
    out_sizes = cfg.out_sizes
    xu = xp[_leading(slice(0, u) for u in cfg.used)]
    plan = _choose_plan(cfg.kernel, cfg.stride, cfg.full_out_sizes, cfg.full_used)  # one plan for all bands
    y: Tensor | None = None
    if cfg.mode == "valid" and all(p == 0 for p in cfg.padding):
        cfg = replace(cfg, mode="zeros")
    if functional:
        y = _functional_network(plan, xu, cfg) if plan is not None else _functional_unfold(xu, cfg)
    elif plan is not None and cfg.compiled:
        key = ("fwd", plan.kernel, plan.perm, tuple(xp.shape), cfg.stride, cfg.dilation, xp.dtype, xp.device)
        args = _phases(xu, cfg.stride[-1]) if _uses_phases(plan, cfg.stride) else [xp]
        y = _call_compiled(
            key, lambda: _network_source(plan, out_sizes, cfg.stride, cfg.dilation), "network", *args
        )
    if y is None:
        y = torch.empty((xp.shape[0], *out_sizes), dtype=xp.dtype, device=xp.device) if out is None else out
        if plan is not None:
            _network_eager(plan, xu, y, cfg.stride, cfg.dilation)
        elif cfg.mode != "valid":
            _median_unfold(xu, y, cfg)
    if cfg.restricted:
        _fix_borders(y, xp, cfg, everything=plan is None and cfg.mode == "valid")
    if out is not None and y is not out:
        out.copy_(y)
        return out
    return y


def _offset_views(cfg: _Config, out_sizes: Sequence[int]) -> list[tuple[slice, ...]]:
    """The index of each window offset's strided view of a ``(B, *padded)`` tensor, row-major."""
    return [(slice(None), *index) for index in offset_slices(cfg.kernel, cfg.stride, cfg.dilation, out_sizes)]


def _offset_mask(inbounds: Sequence[Tensor], index: tuple[slice, ...]) -> Tensor:
    return _outer([inb[sl] for inb, sl in zip(inbounds, index[1:])])


# Codes (flat offsets within a window's span) below this are exact in float32, else float64 is used.
_FLOAT32_CODES = 2**24
# Chunks of fewer elements than this are indexed with int32, else int64.
_INT32_INDEX = 2**31


@lru_cache(maxsize=4)
def _walk_starts(
    shape: tuple[int, ...], stride: tuple[int, ...], steps: tuple[int, ...], dtype: torch.dtype
) -> Tensor:
    """Flat index of each window's first cell in a contiguous padded chunk whose dimensions
    ``(b, *padded)`` have the ``steps``, for the output ``(b, *out)`` of ``shape``, flattened and
    walked from the last window to the first."""
    nd = len(shape) - 1
    start = torch.arange(shape[0], dtype=dtype).mul_(steps[0]).reshape([-1] + [1] * nd)
    for axis, (o, s, step) in enumerate(zip(shape[1:], stride, steps[1:])):
        view = [1] * (nd + 1)
        view[axis + 1] = o
        start = start + torch.arange(o, dtype=dtype).mul_(s * step).reshape(view)
    return start.flatten().flip(0)


def _grad_scatter(xp: Tensor, y: Tensor, g: Tensor, cfg: _Config) -> Tensor:
    """:func:`_grad_eager` on the CPU: the flat index of each window's selected cell, then one
    ``index_add_``.

    The code of each window (the flat offset of its selected cell from its first cell) is written
    one window offset at a time, from the last offset to the first, so that the first equal cell
    (row-major) is the last written: ``code.lerp_(offset, match)`` with ``match`` 1.0 or 0.0, exact
    for integer codes (float32 below 2^24, else float64), and vectorised, as the comparison into a
    float tensor is (a bool mask and ``masked_fill_``/``where`` are several times slower).
    ``index_add_`` adds in the order of its index (one after the other on the CPU); the index and
    ``g`` are walked from the last window to the first, so every cell receives its windows'
    gradients in :func:`_grad_eager`'s order (window offset 0 first): the same bits.
    """
    out_sizes = y.shape[1:]
    views = _offset_views(cfg, out_sizes)
    steps = xp.stride()
    deltas = [sum(sl.start * step for sl, step in zip(index[1:], steps[1:])) for index in views]
    code_dtype = torch.float32 if max(deltas) < _FLOAT32_CODES else torch.float64
    index_dtype = torch.int32 if xp.numel() < _INT32_INDEX else torch.int64
    restrict = cfg.restricted
    counted = cfg.counted(xp.device) if restrict else []
    masks = [_offset_mask(counted, index).to(code_dtype) for index in views] if restrict else []
    # a NaN makes the sum NaN (so may +inf and -inf, which only costs the general path)
    has_nan = y.is_floating_point() and bool(torch.isnan(y.sum()))
    # unrestricted and without NaN, a window's median is one of its cells: the last offset is the
    # one left when no earlier one matched; otherwise nothing may match (the gradient is dropped)
    full = restrict or has_nan
    ends = torch.tensor(deltas, dtype=code_dtype)
    grad = torch.zeros_like(xp)
    per_item = max(1, math.prod(xp.shape[1:]))
    chunk = min(xp.shape[0], max(1, _kernels._CHUNK_ELEMENTS // per_item))
    starts = _walk_starts((chunk, *out_sizes), tuple(cfg.stride), tuple(steps), index_dtype)
    match = torch.empty((chunk, *out_sizes), dtype=code_dtype)
    code = torch.empty_like(match)
    for first in range(0, xp.shape[0], chunk):
        part = slice(first, first + chunk)
        xs, ys, gs = xp[part], y[part], g[part]
        n = ys.shape[0]
        m, c = match[:n], code[:n]
        c.fill_(-1.0 if full else deltas[-1])
        ynan = torch.isnan(ys).to(code_dtype) if has_nan else None
        for o in range(len(views) - (1 if full else 2), -1, -1):
            v = xs[views[o]]
            torch.eq(v, ys, out=m)
            if ynan is not None:  # v == ys and a NaN ys exclude each other
                m.add_(torch.isnan(v).to(code_dtype).mul_(ynan))
            if restrict:
                m.mul_(masks[o])
            c.lerp_(ends[o], m)
        if full:
            dropped = c < 0
            gs = gs.masked_fill(dropped, 0)  # adds +0 to the window's first cell: no bit changes
            c.clamp_(min=0)
        index = c.flatten().flip(0).to(index_dtype).add_(starts[starts.numel() - c.numel() :])
        grad[part].view(-1).index_add_(0, index, gs.flatten().flip(0))
    return grad


def _grad_eager(xp: Tensor, y: Tensor, g: Tensor, cfg: _Config) -> Tensor:
    """Scatters ``g`` to the selected cell of each window (first equal cell, row-major)."""
    if xp.device.type == "cpu" and xp.is_contiguous():
        return _grad_scatter(xp, y, g, cfg)
    return _grad_loop(xp, y, g, cfg)


def _grad_loop(xp: Tensor, y: Tensor, g: Tensor, cfg: _Config) -> Tensor:
    """:func:`_grad_eager` on other devices: one masked add per window offset, in offset order."""
    out_sizes = y.shape[1:]
    views = _offset_views(cfg, out_sizes)
    restrict = cfg.restricted
    counted = cfg.counted(xp.device) if restrict else []
    masks = [_offset_mask(counted, index) for index in views] if restrict else []
    has_nan = bool(torch.isnan(y).any())
    grad = torch.zeros_like(xp)
    per_item = max(1, math.prod(xp.shape[1:]))
    chunk = max(1, _kernels._CHUNK_ELEMENTS // per_item)
    for start in range(0, xp.shape[0], chunk):
        part = slice(start, start + chunk)
        xs, ys, gr = xp[part], y[part], grad[part]
        remaining = g[part].clone()
        ynan = torch.isnan(ys) if has_nan else None
        for o, index in enumerate(views):
            v = xs[index]
            match = v == ys
            if ynan is not None:
                match |= torch.isnan(v) & ynan
            if restrict:
                match &= masks[o]
            gr[index].add_(torch.where(match, remaining, 0))
            remaining = remaining.masked_fill(match, 0)
    return grad


def _grad(xp: Tensor, y: Tensor, g: Tensor, cfg: _Config) -> Tensor:
    if (
        cfg.compiled
        and not cfg.restricted
        and all(d == 1 for d in cfg.dilation)
        and math.prod(cfg.kernel) < 32767
        and not torch.is_grad_enabled()
    ):
        grad = _grad_compiled(xp, y, g, cfg)
        if grad is not None:
            return grad
    return _grad_eager(xp, y, g, cfg)


def _selection(xp: Tensor, y: Tensor, cfg: _Config, masks: Sequence[Tensor] | None) -> Tensor:
    """Window offset (row-major, 0..k-1) of the selected cell; ``prod(kernel)`` where none matches.

    ``masks`` (per axis, over the padded axis) restricts the cells that can be selected.
    """
    out_sizes = y.shape[1:]
    views = _offset_views(cfg, out_sizes)
    ynan = torch.isnan(y)
    sel = torch.full(y.shape, len(views), dtype=torch.long, device=y.device)
    for o in range(len(views) - 1, -1, -1):
        v = xp[views[o]]
        match = (v == y) | (torch.isnan(v) & ynan)
        if masks is not None:
            match &= _offset_mask(masks, views[o])
        sel.masked_fill_(match, o)
    return sel


def _indices(xp: Tensor, y: Tensor, cfg: _Config) -> Tensor:
    """Flat indices into the unpadded spatial plane (see the module docstring for the rules)."""
    if cfg.mode in ("zeros", "valid"):
        masks: list[Tensor] | None = cfg.inbounds(xp.device)
    else:
        masks = cfg.counted(xp.device) if cfg.restricted else None
    sel = _selection(xp, y, cfg, masks)
    nomatch = sel == math.prod(cfg.kernel)
    out_sizes = y.shape[1:]
    nd = len(out_sizes)
    index = torch.zeros_like(sel)
    after = math.prod(cfg.kernel)
    plane = math.prod(cfg.sizes)
    for axis, (k, s, p, size, o, d) in enumerate(
        zip(cfg.kernel, cfg.stride, cfg.padding, cfg.sizes, out_sizes, cfg.dilation)
    ):
        after //= k
        plane //= size
        shape = [1] * (nd + 1)
        shape[axis + 1] = o
        row0 = cfg.rows[0] if axis == cfg.axis and cfg.rows is not None else 0  # a band's first output row
        starts = ((torch.arange(o, device=y.device) + row0) * s).reshape(shape)
        offset = (sel // after) % k
        real = offset * d + starts - p
        if cfg.mode == "reflect":
            real = real.abs()
            real = torch.where(real >= size, 2 * (size - 1) - real, real)
        elif cfg.mode == "circular":
            real = real.remainder(size)
        else:  # replicate; zeros/valid cells are in bounds except where nothing matched
            real = real.clamp(0, size - 1)
        # first in-bounds cell of each window along this axis (used where nothing matched)
        first = (starts - p + ((p - starts).clamp(min=0) + d - 1) // d * d).clamp(max=size - 1)
        real = torch.where(nomatch, first, real)
        index += real * plane
    return index


def _unpad_grad(gp: Tensor, cfg: _Config, axes: range | None = None, inplace: bool = False) -> Tensor:
    """The backward of :func:`_pad`: folds the gradient of padded cells onto the cells they copy.

    Only strided slice additions (no atomics), so it is deterministic on every device. Only the
    ``axes`` are folded (all by default), in order: :func:`_grad_bands` folds a band's axis itself,
    after the axes before it and before the axes after it, as here. ``inplace`` folds into ``gp``
    itself (the same additions; its padding cells never overlap the cells they are added to) and
    returns a view of it, made contiguous by the caller's copy.
    """
    for axis, (p, size, extra) in enumerate(zip(cfg.padding, cfg.sizes, cfg.overhang)):
        if axes is not None and axis not in axes:
            continue
        if extra:  # ceil-mode overhang: never selected
            gp = gp.narrow(axis + 1, 0, size + 2 * p)
        if not p:
            continue
        dim = axis + 1
        inner = gp.narrow(dim, p, size)
        if cfg.mode in ("zeros", "valid"):
            gp = inner
            continue
        lo, hi = gp.narrow(dim, 0, p), gp.narrow(dim, p + size, p)
        if not inplace:
            inner = inner.clone()
        if cfg.mode == "reflect":
            # padded cell p - 1 - j copies cell j + 1, padded cell p + size + j copies cell size - 2 - j
            inner.narrow(dim, 1, p).add_(lo.flip(dim))
            inner.narrow(dim, size - 1 - p, p).add_(hi.flip(dim))
        elif cfg.mode == "circular":
            # padded cell j (< p) copies cell size - p + j, padded cell p + size + j copies cell j
            inner.narrow(dim, size - p, p).add_(lo)
            inner.narrow(dim, 0, p).add_(hi)
        else:  # replicate
            inner.narrow(dim, 0, 1).add_(lo.sum(dim, keepdim=True))
            inner.narrow(dim, size - 1, 1).add_(hi.sum(dim, keepdim=True))
        gp = inner
    return gp if inplace or (axes is not None and len(axes) == 0) else gp.contiguous()


def _chunking(cfg: _Config, planes: int) -> tuple[int, int, int]:
    """How the ``planes`` (flattened ``N * C``) are padded a chunk at a time: ``(planes per chunk,
    output rows per band, band axis)``, with 0 rows when a chunk holds whole planes.

    When one padded plane is larger than the chunk budget, a chunk is one plane and it is cut into
    bands along the first spatial axis whose bands of one output row fit the budget
    (:func:`band_axis`). The compiled path takes one chunk: its graphs are specialised to the
    input shape.
    """
    padded = [s + 2 * p + e for s, p, e in zip(cfg.sizes, cfg.padding, cfg.overhang)]
    plane = max(1, math.prod(padded))
    if cfg.compiled:
        return max(1, planes), 0, 0
    budget = _kernels._plane_chunk_elements(planes * plane)
    if plane <= budget:
        return budget // plane, 0, 0
    axis = band_axis(budget, padded, cfg.full_out_sizes, cfg.spans)
    row = plane // max(1, padded[axis])
    return 1, band_rows(budget, row, cfg.kernel[axis], cfg.stride[axis], cfg.dilation[axis]), axis


def _bands(cfg: _Config, per_band: int, axis: int) -> list[_Config]:
    """Band configs of ``per_band`` output rows of ``axis`` covering the output."""
    return [
        replace(cfg, rows=(rows.start, rows.stop), axis=axis)
        for rows in row_bands(cfg.full_out_sizes[axis], per_band)
    ]


def _band_index(part: slice, cfg: _Config) -> tuple[slice, ...]:
    """The output index of the band ``cfg`` of the planes ``part``."""
    assert cfg.rows is not None
    return (part, *[slice(None)] * cfg.axis, slice(*cfg.rows))


def _padded_chunk(x: Tensor, part: slice, cfg: _Config) -> Tensor:
    with torch.no_grad():
        return (_pad(x[part], cfg) if cfg.rows is None else _pad_band(x[part], cfg)).contiguous()


def _chunks(x: Tensor, cfg: _Config) -> Iterator[tuple[tuple[slice, ...], Tensor, _Config]]:
    """``(output index, padded chunk, config)`` of every chunk: whole planes or bands of one plane.

    The results of the kernels on each chunk are the same bits as on the whole input (a band's
    windows are whole windows, and it uses the network of the whole input).
    """
    chunk, rows, axis = _chunking(cfg, x.shape[0])
    if not rows:
        for part in plane_ranges(x.shape[0], chunk):
            yield (part,), _padded_chunk(x, part, cfg), cfg
        return
    bands = _bands(cfg, rows, axis)
    for plane in range(x.shape[0]):
        part = slice(plane, plane + 1)
        for band in bands:
            yield _band_index(part, band), _padded_chunk(x, part, band), band


def _forward_chunked(x: Tensor, cfg: _Config) -> Tensor:
    """Median of every window of the unpadded ``(B, *sizes)`` tensor ``x``, padding a chunk at a time."""
    if cfg.compiled:
        with torch.no_grad():
            keyed = _kernels._forward_keys(x, cfg)
        if keyed is not None:
            return keyed
    chunk, rows, _ = _chunking(cfg, x.shape[0])
    if not rows and chunk >= x.shape[0]:
        return _forward(_padded_chunk(x, slice(None), cfg), cfg)
    y = torch.empty((x.shape[0], *cfg.out_sizes), dtype=x.dtype, device=x.device)
    for index, xp, part_cfg in _chunks(x, cfg):
        _forward(xp, part_cfg, out=y[index])
    return y


def _padded_grad_rows(
    x: Tensor, y: Tensor, g: Tensor, cfg: _Config, axis: int, first: int, last: int
) -> Tensor:
    """Rows ``[first, last)`` of ``axis`` of the gradient with respect to the padded ``x``.

    Computed on the band of every window that reaches those rows, so each cell receives the same
    additions, in the same order, as on the whole input (a band's windows are in the row-major
    order of all windows). The axes before ``axis`` come folded (:func:`_unpad_grad`).
    """
    stride, span, dim = cfg.stride[axis], cfg.spans[axis], axis + 1
    j0, j1 = max(0, (first - span) // stride + 1), min(cfg.full_out_sizes[axis], -(-last // stride))
    shape = [x.shape[0]] + [s + 2 * p + e for s, p, e in zip(cfg.sizes, cfg.padding, cfg.overhang)]
    shape[1:dim] = cfg.sizes[:axis]
    shape[dim] = last - first
    if j0 >= j1:
        return x.new_zeros(shape)
    band = replace(cfg, rows=(j0, j1), axis=axis)
    gp = _grad(
        _padded_chunk(x, slice(None), band), y.narrow(dim, j0, j1 - j0), g.narrow(dim, j0, j1 - j0), band
    )
    gp = _unpad_grad(gp, cfg, range(axis))
    start, count = band.row_offset, gp.shape[dim]
    if start <= first and last <= start + count:
        return gp.narrow(dim, first - start, last - first)
    rows = x.new_zeros(shape)
    lo, hi = max(first, start), min(last, start + count)
    if lo < hi:
        rows.narrow(dim, lo - first, hi - lo).copy_(gp.narrow(dim, lo - start, hi - lo))
    return rows


def _edge_folds(x: Tensor, y: Tensor, g: Tensor, cfg: _Config, axis: int) -> list[tuple[int, Tensor]]:
    """What :func:`_unpad_grad` adds to the input rows from the padding rows of ``axis``:
    ``(first input row, rows to add)``, in its order."""
    p, size, dim = cfg.padding[axis], cfg.sizes[axis], axis + 1
    if not p or cfg.mode in ("zeros", "valid"):
        return []
    lo = _padded_grad_rows(x, y, g, cfg, axis, 0, p)
    hi = _padded_grad_rows(x, y, g, cfg, axis, p + size, 2 * p + size)
    if cfg.mode == "reflect":
        return [(1, lo.flip(dim)), (size - 1 - p, hi.flip(dim))]
    if cfg.mode == "circular":
        return [(size - p, lo), (0, hi)]
    return [(0, lo.sum(dim, keepdim=True)), (size - 1, hi.sum(dim, keepdim=True))]  # replicate


def _grad_bands(
    x: Tensor, y: Tensor, g: Tensor, cfg: _Config, per_band: int, axis: int, grad: Tensor
) -> None:
    """:func:`_grad_chunked` one plane at a time, in bands of input rows of ``axis``, into ``grad``.

    A band owns about as many rows as ``per_band`` output rows read, less the halo on both sides.
    The padding is folded in :func:`_unpad_grad`'s order: the axes before ``axis``, ``axis``, the
    axes after it.
    """
    p, size, span, dim = cfg.padding[axis], cfg.sizes[axis], cfg.spans[axis], axis + 1
    owned = max(1, (per_band - 1) * cfg.stride[axis] + span - 2 * (span - 1))
    after = range(axis + 1, len(cfg.sizes))
    for plane in range(x.shape[0]):
        part = slice(plane, plane + 1)
        xs, ys, gs = x[part], y[part], g[part]
        folds = _edge_folds(xs, ys, gs, cfg, axis)
        for i0 in range(0, size, owned):
            i1 = min(size, i0 + owned)
            inner = _padded_grad_rows(xs, ys, gs, cfg, axis, p + i0, p + i1)
            for dest, src in folds:
                lo, hi = max(dest, i0), min(dest + src.shape[dim], i1)
                if lo < hi:
                    inner.narrow(dim, lo - i0, hi - lo).add_(src.narrow(dim, lo - dest, hi - lo))
            grad[part].narrow(dim, i0, i1 - i0).copy_(_unpad_grad(inner, cfg, after))


def _grad_chunked(x: Tensor, y: Tensor, g: Tensor, cfg: _Config) -> Tensor:
    """Gradient with respect to the unpadded ``x``, computed a chunk of planes (or a band) at a time."""
    chunk, rows, axis = _chunking(cfg, x.shape[0])
    if not rows and chunk >= x.shape[0]:
        gp = _grad(_padded_chunk(x, slice(None), cfg), y, g, cfg)
        return _unpad_grad(gp, cfg, inplace=True).contiguous()
    grad = torch.empty_like(x, memory_format=torch.contiguous_format)
    if rows:
        _grad_bands(x, y, g, cfg, rows, axis, grad)
        return grad
    for part in plane_ranges(x.shape[0], chunk):
        grad[part] = _unpad_grad(_grad(_padded_chunk(x, part, cfg), y[part], g[part], cfg), cfg, inplace=True)
    return grad


def _indices_chunked(x: Tensor, y: Tensor, cfg: _Config) -> Tensor:
    """:func:`_indices` for the unpadded ``x``, a chunk of planes (or a band) at a time."""
    index = torch.empty(y.shape, dtype=torch.long, device=y.device)
    for part, xp, part_cfg in _chunks(x, cfg):
        index[part] = _indices(xp, y[part], part_cfg)
    return index


class _MedianFunction(torch.autograd.Function):
    """Median pooling of the unpadded, contiguous ``(B, *sizes)`` input; pads inside, by chunks."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, cfg: _Config) -> Tensor:
        y = _forward_chunked(x, cfg)
        ctx.save_for_backward(x, y)
        ctx.cfg = cfg
        return y

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None]:
        x, y = ctx.saved_tensors
        return _grad_chunked(x.detach(), y.detach(), g, ctx.cfg), None


def _grad_grad_chunked(x: Tensor, y: Tensor, gg: Tensor, cfg: _Config) -> Tensor:
    """The backward's gradient with respect to its ``grad_output``: ``gg`` at each selected cell.

    The backward is linear in ``grad_output``; its transpose reads, for every window, the value of
    ``gg`` (padded like the input, so a padded cell carries what its copied cell carries, and 0 for
    ``"zeros"``) at the window's selected cell.
    """
    out = torch.empty_like(y)
    for part, xp, part_cfg in _chunks(x, cfg):
        masks = part_cfg.counted(x.device) if part_cfg.restricted else None
        sel = _selection(xp, y[part], part_cfg, masks)
        ggp = _padded_chunk(gg, part[0], part_cfg)
        acc = torch.zeros_like(y[part])
        for o, index in enumerate(_offset_views(part_cfg, sel.shape[1:])):
            acc = torch.where(sel == o, ggp[index], acc)
        out[part] = acc
    return out


# ----------------------------------------------------------------------------------------------
# Custom operators: torch.compile and torch.export see one opaque op per call
# ----------------------------------------------------------------------------------------------

_OP_ARGS = (
    "int[] kernel, int[] stride, int[] padding, str mode, bool compiled, int[] dilation, bool ceil_mode"
)
_HAS_CUSTOM_OP = hasattr(torch.library, "custom_op") and hasattr(torch.library, "register_autograd")


def _op_config(x: Tensor, *args: Any) -> _Config:
    """The config of an op call from its input and its ``_OP_ARGS``."""
    kernel, stride, padding, mode, compiled, dilation, ceil_mode = args
    sizes = tuple(x.shape[1:])
    return _Config(
        tuple(kernel), tuple(stride), tuple(padding), sizes, mode, compiled, tuple(dilation), ceil_mode
    )


def _op_args(cfg: _Config) -> tuple[Any, ...]:
    return (
        list(cfg.kernel),
        list(cfg.stride),
        list(cfg.padding),
        cfg.mode,
        cfg.compiled,
        list(cfg.dilation),
        cfg.ceil_mode,
    )


def _median_impl(x: Tensor, *args: Any) -> Tensor:
    return _forward_chunked(x, _op_config(x, *args))


def _median_fake(x: Tensor, *args: Any) -> Tensor:
    return x.new_empty((x.shape[0], *_op_config(x, *args).out_sizes))


def _backward_impl(x: Tensor, y: Tensor, g: Tensor, *args: Any) -> Tensor:
    with torch.no_grad():
        return _grad_chunked(x, y, g.contiguous(), _op_config(x, *args))


def _backward_fake(x: Tensor, y: Tensor, g: Tensor, *args: Any) -> Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _grad_grad_impl(x: Tensor, y: Tensor, gg: Tensor, *args: Any) -> Tensor:
    with torch.no_grad():
        return _grad_grad_chunked(x, y, gg.contiguous(), _op_config(x, *args))


def _grad_grad_fake(x: Tensor, y: Tensor, gg: Tensor, *args: Any) -> Tensor:
    return torch.empty_like(y, memory_format=torch.contiguous_format)


def _indices_impl(x: Tensor, y: Tensor, *args: Any) -> Tensor:
    return _indices_chunked(x, y, _op_config(x, *args))


def _indices_fake(x: Tensor, y: Tensor, *args: Any) -> Tensor:
    return torch.empty(y.shape, dtype=torch.long, device=y.device)


def _forward_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    ctx.save_for_backward(inputs[0], output)
    ctx.args = inputs[1:]


def _forward_backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
    x, y = ctx.saved_tensors
    return (_OPS["backward"](x, y, g, *ctx.args), *([None] * len(ctx.args)))


def _backward_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    ctx.save_for_backward(inputs[0], inputs[1])
    ctx.args = inputs[3:]


def _backward_backward(ctx: Any, gg: Tensor) -> tuple[Tensor | None, ...]:
    x, y = ctx.saved_tensors
    return (None, None, _OPS["grad_grad"](x, y, gg, *ctx.args), *([None] * len(ctx.args)))


def _define_ops() -> dict[str, Callable[..., Tensor]]:
    """``torchpool::median_pool`` (its backward and the backward's backward) and its indices."""
    if not _HAS_CUSTOM_OP:  # torch < 2.4: _MedianFunction and eager indices
        return {}
    ops: dict[str, Callable[..., Tensor]] = {}
    for name, impl, fake, schema in (
        ("median_pool", _median_impl, _median_fake, f"(Tensor x, {_OP_ARGS}) -> Tensor"),
        (
            "median_pool_backward",
            _backward_impl,
            _backward_fake,
            f"(Tensor x, Tensor y, Tensor grad, {_OP_ARGS}) -> Tensor",
        ),
        (
            "median_pool_grad_grad",
            _grad_grad_impl,
            _grad_grad_fake,
            f"(Tensor x, Tensor y, Tensor grad_grad, {_OP_ARGS}) -> Tensor",
        ),
        ("median_pool_indices", _indices_impl, _indices_fake, f"(Tensor x, Tensor y, {_OP_ARGS}) -> Tensor"),
    ):
        op = torch.library.custom_op(f"torchpool::{name}", impl, mutates_args=(), schema=schema)
        op.register_fake(fake)
        ops[name.removeprefix("median_pool").removeprefix("_") or "forward"] = op
    torch.library.register_autograd("torchpool::median_pool", _forward_backward, setup_context=_forward_setup)
    torch.library.register_autograd(
        "torchpool::median_pool_backward", _backward_backward, setup_context=_backward_setup
    )
    return ops


_OPS = _define_ops()


def _functional_unfold(xu: Tensor, cfg: _Config) -> Tensor:
    """Unfold + sort + the lower-median column, NaN where a window holds NaN (for the ONNX exporters)."""
    ordered = _windows(xu, cfg.kernel, cfg.stride, cfg.dilation).sort(dim=-1).values
    picked = ordered[..., (ordered.shape[-1] - 1) // 2]
    if not xu.is_floating_point():
        return picked
    last = ordered[..., -1]  # NaN sorts last
    return torch.where(torch.isnan(last), last, picked)


def _functional_network(plan: _Plan, xu: Tensor, cfg: _Config) -> Tensor:
    """The plan as plain ``torch.minimum``/``torch.maximum`` on views (for the ONNX exporters)."""
    nd = xu.dim() - 1
    out_sizes, stride = cfg.out_sizes, cfg.stride
    values: dict[int, Tensor] = {}
    for t, (kind, a, b, c) in enumerate(plan.instrs):
        if kind == "view":
            axis = plan.perm[b]
            src = xu if a < 0 else values[a]
            size = out_sizes[axis]
            c *= cfg.dilation[axis]
            values[t] = src[_axis_slice(axis, nd, c, c + stride[axis] * (size - 1) + 1, stride[axis])]
        else:
            values[t] = (torch.minimum if kind == "min" else torch.maximum)(values[a], values[b])
    return values[plan.out].clone()
