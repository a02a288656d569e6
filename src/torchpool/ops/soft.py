"""SoftPool (Stergiou, Poppe & Kalliatakis 2021): the softmax-weighted mean of each window.

``y = sum_i e^{a_i} a_i / sum_j e^{a_j}`` over the cells ``i`` of a window. Padding cells are not
part of any window (they carry no weight); the output lies between the window's mean and max.

How it is computed (all exact in real arithmetic, since any constant subtracted from every
exponent of a window cancels between numerator and denominator):

* **the C kernel** (eager mode, CPU, float32; :mod:`torchpool.ops._soft_native`): each window
  stabilised by its own max, in one pass, exact to rounding for any magnitude and sign; built on
  first use with the system's C compiler. Where it is not available (float64, no compiler,
  ``TORCHPOOL_NATIVE=0``):
* **fast path** (eager mode): one stabiliser ``c`` per plane, ``sum(e * a) / sum(e)`` over each
  window with ``e = exp(a - c)``: first ``c = 0`` (no max to take, one pass less); the planes where
  that leaves some window's ``sum(e)`` outside ``[exp(-limit), exp(limit)]`` are computed again
  with ``c`` = the plane's max (detached: its gradient cancels; every exponent ``<= 0``, no
  overflow). A plane's result does not depend on the other planes. One autograd node
  (:func:`_exp_weighted_mean`, shared with LIP) with the analytic gradient: ``exp`` as ``exp2``
  (on the CPU several times faster than PyTorch's ``exp``), the window sums as separable sums of
  strided slices (no padded copy; ``e * a`` one chunk at a time), all in cache-sized chunks of the leading
  dims (``e`` kept for the backward pass when a gradient is wanted, as the naive formula keeps its
  ``exp``; the backward pass writes each cell's first value instead of zero-filling and adding).
  Non-overlapping windows (``kernel_size == stride``, no padding, sizes multiples of the window)
  take :mod:`torchpool.ops._soft_tiles` instead (the window sums over a reshaped view: contiguous
  slices but on the last axis; the same stabiliser rule). The path's only failure is underflow,
  when a whole window lies far below its plane's max. It checks its own result (every window's
  ``sum(e)`` must reach ``exp(-limit)``: then the window's largest weight is a normal number and
  the result is exact to rounding) and recomputes the planes where it does not (or that hold a
  NaN or an infinity) by
* **the window path**: each window's own max ``m`` (over strided views of the padded input, one
  per window cell), then ``sum e_i a_i / sum e_i`` with ``e_i = exp(a_i - m)``: safe for any
  magnitude and sign. Traced code (``torch.compile``, ``torch.export``, ONNX) always takes it,
  since the check is data-dependent.

Half-precision input is computed in float32 and rounded once.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch._subclasses.fake_tensor import FakeTensor

from .._checks import check_bool, check_input, check_window, is_traced
from .._shape import IntOrTuple, pool_output_size
from ..registry import register_pool
from . import _soft_native, _soft_tiles
from ._base import WindowPool
from ._doc import rank_doc
from ._soft_range import LIMIT, LOG2E, unsafe_planes

__all__ = [
    "SoftPool1d",
    "SoftPool2d",
    "SoftPool3d",
    "soft_pool1d",
    "soft_pool2d",
    "soft_pool3d",
]


def _soft(
    x: Tensor,
    ndim: int,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    ceil_mode: bool,
) -> Tensor:
    window = check_window(kernel_size, stride, padding, ndim)
    check_bool(ceil_mode, "ceil_mode")
    check_input(x, ndim, window=window, ceil_mode=ceil_mode)
    k, s, p = window.kernel_size, window.stride, window.padding
    compute = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    if _no_values(compute) or compute.numel() == 0:
        return _soft_windows(compute, ndim, k, s, p, ceil_mode).to(x.dtype)
    if _soft_native.available(compute):
        out = pool_output_size(tuple(compute.shape[-ndim:]), k, s, p, 1, ceil_mode)
        return _soft_native.exp_weighted_mean(compute, None, k, s, p, out).to(x.dtype)
    return _soft_plane(compute, ndim, k, s, p, ceil_mode).to(x.dtype)


def _no_values(t: Tensor) -> bool:
    """Whether ``t``'s values cannot be read (``meta``, fake) or a trace is running."""
    return is_traced() or t.device.type == "meta" or isinstance(t, FakeTensor)


def _soft_plane(
    a: Tensor, ndim: int, k: tuple[int, ...], s: tuple[int, ...], p: tuple[int, ...], ceil_mode: bool
) -> Tensor:
    """One stabiliser per plane; the planes where some window's weights would underflow (or that
    hold a NaN or an infinity) are computed again by :func:`_soft_windows`."""
    dims = tuple(range(-ndim, 0))
    size = tuple(a.shape[-ndim:])
    out = pool_output_size(size, k, s, p, 1, ceil_mode)
    if _soft_tiles.fits(size, k, s, p):
        keep = torch.is_grad_enabled() and a.requires_grad
        y, den, clean = _soft_tiles.soft_tiles(a, k, keep)
        if clean:  # every window's weight sum lies in [exp(-limit), exp(limit)]
            return y
    else:
        y, den = _exp_weighted_mean(a, None, k, s, p, out)
    tiny = math.exp(-LIMIT[a.dtype])  # the window max's weight is at least this
    with torch.no_grad():
        if den.numel() == 0 or bool(den.amin() >= tiny):  # NaN fails (a NaN or +inf in a plane)
            return y
        redo = ~(den >= tiny).all(dim=dims[-1])
        for _ in dims[:-1]:
            redo = redo.any(dim=-1)
    redo = redo.reshape(*redo.shape, *(1,) * ndim)
    return torch.where(redo, _soft_windows(a, ndim, k, s, p, ceil_mode), y)


def _exp_weighted_mean(
    v: Tensor,
    logit: Tensor | None,
    k: tuple[int, ...],
    s: tuple[int, ...],
    p: tuple[int, ...],
    out: tuple[int, ...],
) -> tuple[Tensor, Tensor]:
    """``(y, den)``: ``y = sum(e * v) / sum(e)`` over each (zero-padded) window of the last ``len(k)``
    dims, ``e = exp(logit - shift)`` (``logit=None``: SoftPool, ``logit = v``), ``den = sum(e)``.

    ``logit`` has ``v``'s shape (an expanded view is fine). ``shift`` (no gradient: it cancels) is
    first 0 (one pass less, no max to take); the planes where that leaves some window's ``sum(e)``
    outside ``[exp(-limit), exp(limit)]`` (or, for LIP, ``sum(e * v)`` non-finite) are computed
    again with the plane's max of the logit as ``shift``: for LIP a non-finite max is replaced by 0
    (an infinite or NaN logit propagates as in the formula), for SoftPool it is kept (the plane
    fails the caller's check and is recomputed). A plane's result does not depend on the other
    planes. Padding cells carry no weight. ``den`` has no gradient (it is for the caller's
    underflow check).

    One autograd node with the analytic gradient: ``d y / d v_i = e_i / den`` and
    ``d y / d logit_i = e_i (v_i - y) / den`` summed over the windows holding ``i``. ``exp`` is
    ``exp2`` of the shifted logit times ``log2(e)`` (on the CPU PyTorch's ``exp`` goes through a
    vector library several times slower than its ``exp2``; the extra rounding is that of the
    product, relative to an exponent of at most ``limit``). The windows' sums are separable sums
    of strided slices, no padded copy.
    """
    inputs = (v,) if logit is None else (v, logit)
    keep = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
    result: tuple[Tensor, Tensor] = _ExpWeightedMean.apply(v, logit, k, s, p, out, keep)  # type: ignore[no-untyped-call]
    return result


def _exp_shifted(logit: Tensor, shift: Tensor, out: Tensor | None = None) -> Tensor:
    """``exp(logit - shift)`` in a new tensor (or in ``out``), as ``exp2((logit - shift) * log2(e))``."""
    if out is None:
        out = torch.empty(logit.shape, dtype=logit.dtype, device=logit.device)
    return torch.sub(logit, shift, out=out).mul_(LOG2E).exp2_()


def _tap_views(t: Tensor, dim: int, k: int, s: int, p: int, o: int) -> list[tuple[int, int, Tensor]]:
    """Per window cell along ``dim``: ``(first output, outputs, strided view of t)`` (cells inside t)."""
    step = (slice(None),) * dim + (slice(None, None, s),)
    return [
        (lo, n, t.narrow(dim, start, (n - 1) * s + 1)[step])
        for lo, n, start in _tap_ranges(t.shape[dim], k, s, p, o)
    ]


def _sum_axes(
    t: Tensor,
    k: tuple[int, ...],
    s: tuple[int, ...],
    p: tuple[int, ...],
    out: tuple[int, ...],
    first: int,
    dest: Tensor,
) -> Tensor:
    """The window sums of ``t`` along window axes ``first..`` (no autograd): strided slices added in
    place, the last axis' into ``dest`` (returned)."""
    ndim = len(k)
    for axis in range(first, ndim):
        dim = t.dim() - ndim + axis
        taps = _tap_views(t, dim, k[axis], s[axis], p[axis], out[axis])
        full = [i for i, (lo, n, _) in enumerate(taps) if lo == 0 and n == out[axis]]
        shape = list(t.shape)
        shape[dim] = out[axis]
        total = dest if axis == ndim - 1 else t.new_empty(shape)
        if len(full) >= 2:  # two cells every window has: their sum starts the total (no zero fill)
            torch.add(taps[full[0]][2], taps[full[1]][2], out=total)
            taps = [tap for i, tap in enumerate(taps) if i not in full[:2]]
        else:
            total.zero_()
        for lo, n, view in taps:
            total.narrow(dim, lo, n).add_(view)
        t = total
    return t


def _spread_axes(
    g: Tensor,
    size: tuple[int, ...],
    k: tuple[int, ...],
    s: tuple[int, ...],
    p: tuple[int, ...],
    out: tuple[int, ...],
    first: int,
) -> Tensor:
    """The transpose of :func:`_sum_axes`: each window's value added back to its cells (axes ``first..``).

    Each cell's first value is written and the next ones added (:func:`_spread_plan`): no zero fill
    but of the cells no window holds."""
    ndim = len(k)
    for axis in reversed(range(first, ndim)):
        dim = g.dim() - ndim + axis
        shape = list(g.shape)
        shape[dim] = size[axis]
        full = g.new_empty(shape)
        parts, zeros = _spread_plan(size[axis], k[axis], s[axis], p[axis], out[axis])
        for start, count, step in zeros:
            _strided(full, dim, start, count, step).zero_()
        for add, lo, n, start in parts:
            view = _strided(full, dim, start, n, s[axis])
            if add:
                view.add_(g.narrow(dim, lo, n))
            else:
                view.copy_(g.narrow(dim, lo, n))
        g = full
    return g


def _strided(t: Tensor, dim: int, start: int, count: int, step: int) -> Tensor:
    """The view of ``count`` cells of ``t`` along ``dim``: ``start, start + step, ...``."""
    view = t.narrow(dim, start, (count - 1) * step + 1)
    return view if step == 1 else view[(slice(None),) * dim + (slice(None, None, step),)]


_Plan = tuple[tuple[tuple[bool, int, int, int], ...], tuple[tuple[int, int, int], ...]]


@functools.lru_cache(maxsize=256)
def _spread_plan(size: int, k: int, s: int, p: int, o: int) -> _Plan:
    """How the transposed window sum along one axis fills its ``size`` cells: ``(parts, zeros)``.

    ``parts``, in order: ``(add, first output, outputs, first cell)``, the cells ``first cell +
    s * j`` for the outputs ``first output + j``; ``add=False`` where these cells get their first
    value (written), ``True`` where they already have one (added). ``zeros``: ``(first cell,
    cells, step)`` of the cells no window holds. The cells that window cell ``t + s`` reaches are
    those of window cell ``t`` one output further (the same residue modulo ``s``): within a residue,
    the cells covered so far are the input's cells of one interval of outputs, so each window cell
    adds to an interval and writes the cells on either side of it.

    Example:
        >>> _spread_plan(6, 3, 2, 1, 3)  # 3x3 stride 2 padding 1 on 6 cells
        (((False, 1, 2, 1), (False, 0, 3, 0), (True, 0, 2, 1), (False, 2, 1, 5)), ())
    """
    ranges = _tap_ranges(size, k, s, p, o)
    parts: list[tuple[bool, int, int, int]] = []
    covered: dict[int, tuple[int, int]] = {}
    for lo, n, start in ranges:
        r, j0 = start % s, start // s
        j1 = j0 + n
        c0, c1 = covered.get(r, (j0, j0))
        pieces = ((False, j0, min(j1, c0)), (True, max(j0, c0), min(j1, c1)), (False, max(j0, c1), j1))
        parts += [(add, lo + a - j0, b - a, r + a * s) for add, a, b in pieces if b > a]
        covered[r] = (min(c0, j0), max(c1, j1))
    zeros: list[tuple[int, int, int]] = []
    for r in range(min(s, size)):
        cells = (size - r + s - 1) // s
        c0, c1 = covered.get(r, (cells, cells))
        zeros += [(r + a * s, b - a, s) for a, b in ((0, c0), (c1, cells)) if b > a]
    return tuple(parts), tuple(zeros)


#: elements of the input per chunk and thread: the temporaries of one chunk stay in the caches and
#: are reused by the allocator (no fresh pages per call), where whole-tensor temporaries are not
#: (measured: 2**20 beats 2**18 and 2**22 on one thread; each op of a chunk splits it over threads).
_CHUNK = 1 << 20


def _chunks(t: Tensor, ndim: int) -> list[tuple[slice, ...]]:
    """Index tuples that split ``t``'s leading dims (the first one longer than 1) into chunks."""
    lead = t.dim() - ndim
    dim = next((d for d in range(lead) if t.shape[d] > 1), 0)
    per_index = max(1, t.numel() // max(1, t.shape[dim]))
    size = max(1, t.shape[dim])
    step = max(1, _CHUNK * torch.get_num_threads() // per_index)  # the same share per thread
    count = -(-size // step)
    bounds = [size * i // count for i in range(count + 1)]  # as many chunks, of even sizes
    head = (slice(None),) * dim
    return [(*head, slice(a, b)) for a, b in itertools.pairwise(bounds)]


def _mean_chunk(
    v: Tensor,
    e: Tensor,
    k: tuple[int, ...],
    s: tuple[int, ...],
    p: tuple[int, ...],
    out: tuple[int, ...],
    dest: Tensor,
    work: Tensor | None = None,
) -> None:
    """``dest = (sum(e), sum(e * v))`` per window (no autograd). ``e`` has ``v``'s shape, or is a
    stacked ``(2, *v.shape)`` buffer with ``e`` in front (``e * v`` is then written behind it and
    both are summed at once); the first axis' sums go into one buffer (the front of the flat
    ``work`` when given, ``e * v`` behind them when ``e`` is not stacked), the other axes sum both
    at once (the last one into ``dest``)."""
    ndim = len(k)
    dim = v.dim() - ndim
    shape = list(v.shape)
    shape[dim] = out[0]
    pair = dest if ndim == 1 else _buffer(work, v, (2, *shape))
    geometry = (k[0], s[0], p[0], out[0])
    if e.dim() == v.dim() + 1:  # stacked
        torch.mul(e[0], v, out=e[1])
        _axis_sum(e, dim + 1, geometry, pair)
    else:
        rest = work if work is None or ndim == 1 else work[pair.numel() :]
        ev = torch.mul(e, v, out=_buffer(rest, v, tuple(v.shape)))
        _axis_sum(e, dim, geometry, pair[0])
        _axis_sum(ev, dim, geometry, pair[1])
    if ndim > 1:
        _sum_axes(pair, k, s, p, out, 1, dest)


def _axis_sum(t: Tensor, dim: int, geometry: tuple[int, int, int, int], total: Tensor) -> None:
    """``total`` = the window sums of ``t`` along ``dim`` (``geometry = (k, s, p, outputs)``):
    strided slices, the first two that every window has added into ``total`` (no zero fill)."""
    k, s, p, o = geometry
    taps = _tap_views(t, dim, k, s, p, o)
    full = [i for i, (lo, n, _) in enumerate(taps) if lo == 0 and n == o]
    if len(full) >= 2:
        torch.add(taps[full[0]][2], taps[full[1]][2], out=total)
    elif full:
        total.copy_(taps[full[0]][2])
    else:
        total.zero_()
    for i, (lo, n, view) in enumerate(taps):
        if i not in full[:2]:
            total.narrow(dim, lo, n).add_(view)


def _buffer(work: Tensor | None, like: Tensor, shape: tuple[int, ...]) -> Tensor:
    """A tensor of ``shape``: the front of the flat ``work`` (reused across chunks: chunk-sized
    temporaries allocated afresh for every chunk cost page faults), or a new one."""
    numel = math.prod(shape)
    if work is None or work.numel() < numel:
        return like.new_empty(shape)
    return work[:numel].view(shape)


def _spread_rows(
    grad: Tensor, u: Tensor, r: Tensor, v: Tensor, geometry: tuple[tuple[int, ...], ...]
) -> None:
    """``grad = spread(v * u + r)`` along the first window axis, ``grad`` uninitialised: each
    cell's first value written (one ``addcmul``), the next ones added."""
    k, s, p, out = geometry
    dim = grad.dim() - len(k)
    parts, zeros = _spread_plan(grad.shape[dim], k[0], s[0], p[0], out[0])
    for start, count, step in zeros:
        _strided(grad, dim, start, count, step).zero_()
    for add, lo, n, start in parts:
        g_rows, v_rows = _strided(grad, dim, start, n, s[0]), _strided(v, dim, start, n, s[0])
        u_rows, r_rows = u.narrow(dim, lo, n), r.narrow(dim, lo, n)
        if add:
            g_rows.addcmul_(v_rows, u_rows).add_(r_rows)
        else:
            torch.addcmul(r_rows, v_rows, u_rows, out=g_rows)


def _spread_weighted(grad: Tensor, u: Tensor, e: Tensor, geometry: tuple[tuple[int, ...], ...]) -> None:
    """``grad = e * spread(u)`` along the first window axis, ``grad`` uninitialised (LIP's ``x``
    gradient): ``e`` multiplied in as each part is written or added, no pass of its own."""
    k, s, p, out = geometry
    dim = grad.dim() - len(k)
    parts, zeros = _spread_plan(grad.shape[dim], k[0], s[0], p[0], out[0])
    for start, count, step in zeros:
        _strided(grad, dim, start, count, step).zero_()
    for add, lo, n, start in parts:
        g_rows, e_rows = _strided(grad, dim, start, n, s[0]), _strided(e, dim, start, n, s[0])
        if add:
            g_rows.addcmul_(e_rows, u.narrow(dim, lo, n))
        else:
            torch.mul(e_rows, u.narrow(dim, lo, n), out=g_rows)


class _ExpWeightedMean(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        v: Tensor,
        logit: Tensor | None,
        k: tuple[int, ...],
        s: tuple[int, ...],
        p: tuple[int, ...],
        out: tuple[int, ...],
        keep: bool,
    ) -> tuple[Tensor, Tensor]:
        ndim = len(k)
        lead = v.shape[: v.dim() - ndim]
        y, sums = v.new_empty((*lead, *out)), v.new_empty((2, *lead, *out))  # sums: den, num
        den = sums[0]
        shift = v.new_zeros((*lead, *(1,) * ndim))  # 0: the plane's exp needed no shift
        saved = v.new_empty(v.shape) if keep else None  # the weights, kept for the backward pass
        chunks = _chunks(v, ndim)
        largest = max((v[part].numel() for part in chunks), default=0)
        first = 2 * (largest // v.shape[-ndim]) * out[0]  # the first axis' sums of e and e * v
        # then e and e * v of the chunk (only e * v when e is kept)
        work = v.new_empty(first + largest * (2 if saved is None else 1))
        for part in chunks:
            source = v[part] if logit is None else logit[part]
            shape = tuple(source.shape)
            both = (slice(None), *part)  # den and num of the chunk
            if saved is None:
                stacked = _buffer(work[first:], v, (2, *shape))
                torch.mul(source, LOG2E, out=stacked[0]).exp2_()  # unshifted: checked below
                _mean_chunk(v[part], stacked, k, s, p, out, sums[both], work)
            else:
                e = torch.mul(source, LOG2E, out=saved[part]).exp2_()
                _mean_chunk(v[part], e, k, s, p, out, sums[both], work)
            torch.div(sums[1][part], den[part], out=y[part])
        bad = unsafe_planes(sums, logit is not None, ndim)
        if bad is not None:
            _shifted_planes(v, logit, bad, (y, sums, shift, saved), (k, s, p, out))
        ctx.save_for_backward(v, logit, shift, y, den, saved)
        ctx.geometry = (k, s, p, out)
        ctx.mark_non_differentiable(den)
        return y, den

    @staticmethod
    def backward(ctx: Any, grad: Tensor, _grad_den: Tensor | None) -> tuple[Tensor | None, ...]:
        """Per chunk, ``e`` as kept by the forward pass (or recomputed); with ``q = g / den`` per
        window, ``u`` the spread of ``q`` and ``r`` that of ``q (1 - y)`` (SoftPool) or ``-q y``
        (LIP): SoftPool ``grad a = e (a u + r)``, LIP ``grad v = e u``, ``grad logit = e (v u + r)``.
        The last axis' spread writes each cell's first value (no zero fill; ``v u + r`` one
        ``addcmul``), LIP's ``x`` gradient with ``e`` multiplied in."""
        v, logit, shift, y, den, saved = ctx.saved_tensors
        geometry = ctx.geometry
        k, s, p, out = geometry
        ndim = len(k)
        size = tuple(v.shape[v.dim() - ndim :])
        soft = logit is None
        want_v = ctx.needs_input_grad[0]
        want_logit = not soft and ctx.needs_input_grad[1]
        grad_v = v.new_empty(v.shape) if want_v else None
        grad_logit = v.new_empty(v.shape) if want_logit else None
        # a window whose weights all underflowed: y = 0 / 0 there, no gradient (rare: a cheap check first)
        empty = None if den.numel() == 0 or bool(den.amin() > 0) else den == 0
        for part in _chunks(v, ndim):
            if empty is None:
                q = torch.div(grad[part], den[part])
            else:
                q = torch.div(grad[part], den[part].masked_fill(empty[part], 1.0))
            if want_logit or soft:
                pair = torch.stack([q, torch.mul(q, y[part])])
                if empty is not None:
                    pair[1].masked_fill_(empty[part], 0.0)
                pair[1].neg_()
                if soft:
                    pair[1].add_(q)
                u, r = _spread_axes(pair, size, k, s, p, out, 1).unbind(0)
            else:  # LIP, the gradient of x only: r is not needed
                u = r = _spread_axes(q, size, k, s, p, out, 1)
            e = _exp_shifted(v[part] if soft else logit[part], shift[part]) if saved is None else saved[part]
            if grad_v is not None and not soft:
                _spread_weighted(grad_v[part], u, e, geometry)
            target = grad_v if soft else grad_logit
            if target is not None:
                _spread_rows(target[part], u, r, v[part], geometry)
                target[part].mul_(e)
        return grad_v, grad_logit, None, None, None, None, None


def _shifted_planes(
    v: Tensor,
    logit: Tensor | None,
    planes: tuple[Tensor, ...],
    state: tuple[Tensor, Tensor, Tensor, Tensor | None],
    geometry: tuple[tuple[int, ...], ...],
) -> None:
    """The ``planes`` (indices of the leading dims) computed again with the plane's max of the
    logit subtracted (for LIP a non-finite max replaced by 0), in chunks: ``state = (y, sums, shift,
    kept e or None)`` updated for those planes only."""
    y, sums, shift, saved = state
    k, s, p, out = geometry
    ndim = len(k)
    count = planes[0].numel()
    step = max(1, _CHUNK * torch.get_num_threads() // max(1, math.prod(v.shape[v.dim() - ndim :])))
    for first in range(0, count, step):
        index = tuple(t[first : first + step] for t in planes)
        vb = v[index]
        source = vb if logit is None else logit[index]
        shift_b = torch.amax(source, dim=tuple(range(1, ndim + 1)), keepdim=True)
        if logit is not None:
            shift_b.nan_to_num_(0.0, 0.0, 0.0)
        e = _exp_shifted(source, shift_b)
        sums_b = sums.new_empty((2, vb.shape[0], *out))
        _mean_chunk(vb, e, k, s, p, out, sums_b)
        y[index] = sums_b[1] / sums_b[0]
        both: tuple[slice | Tensor, ...] = (slice(None), *index)
        sums[both] = sums_b
        shift[index] = shift_b
        if saved is not None:
            saved[index] = e


def _tap_ranges(size: int, k: int, s: int, p: int, o: int) -> list[tuple[int, int, int]]:
    """For each window cell ``tap`` along one dim: ``(first output, outputs, first input)`` of the
    outputs whose cell ``tap`` lies inside the input (padding cells are zeros: skipped)."""
    ranges = []
    for tap in range(k):
        lo = max(0, -(-(p - tap) // s))
        hi = min(o, (size - 1 - tap + p) // s + 1)
        if hi > lo:
            ranges.append((lo, hi - lo, lo * s - p + tap))
    return ranges


def _soft_windows(
    a: Tensor, ndim: int, k: tuple[int, ...], s: tuple[int, ...], p: tuple[int, ...], ceil_mode: bool
) -> Tensor:
    """Each window's own max as stabiliser, over one strided view of the padded input per window cell."""
    return _soft_windows_out(a, k, s, p, pool_output_size(tuple(a.shape[-ndim:]), k, s, p, 1, ceil_mode))


def _soft_windows_out(
    a: Tensor, k: tuple[int, ...], s: tuple[int, ...], p: tuple[int, ...], out: tuple[int, ...]
) -> Tensor:
    """:func:`_soft_windows` for the output size ``out``."""
    ndim = len(k)
    spatial = a.shape[-ndim:]
    # the far side padded so every cell of every (ceil-mode) window can be read
    right = [max(pp, (o - 1) * ss + kk - pp - i) for o, ss, kk, pp, i in zip(out, s, k, p, spatial)]
    pads: list[int] = []
    for dim in reversed(range(ndim)):
        pads += [p[dim], right[dim]]
    # padding cells: the lowest finite value, so exp(pad - m) = 0 and 0 * pad = 0 (never NaN)
    padded = F.pad(a, pads, value=torch.finfo(a.dtype).min)
    lead = (slice(None),) * (padded.dim() - ndim)
    views = [
        padded[lead + tuple(slice(t, t + (o - 1) * ss + 1, ss) for t, o, ss in zip(taps, out, s))]
        for taps in itertools.product(*(range(kk) for kk in k))
    ]
    with torch.no_grad():  # the stabiliser cancels: no gradient through it
        m = views[0]
        for view in views[1:]:
            m = torch.maximum(m, view)
    num = torch.zeros_like(m)
    den = torch.zeros_like(m)
    for view in views:
        e = torch.exp(view - m)
        num = num + e * view
        den = den + e
    return num / den


_SOFT_DOC = """SoftPool (Stergiou et al. 2021): the softmax-weighted mean of each window.

    ``y = sum_i exp(a_i) a_i / sum_j exp(a_j)`` over the cells of each window; it lies between
    the window's mean and its max. Computed without overflow or underflow for any magnitude and
    sign (each window stabilised by a max that cancels); padding cells are not part of a window
    (no weight). Positional arguments follow ``torch.nn.functional.avg_pool{n}d``.

    Args:
        x: input, batched or batch-less, floating point (float16 / bfloat16 computed in float32).
        kernel_size: window size.
        stride: window step; ``None`` means ``kernel_size``.
        padding: implicit padding on both sides (cells that do not count), at most half the window.
        ceil_mode: use ceil instead of floor for the output size (as ``avg_pool{n}d``).

    Returns:
        The pooled tensor.

    Shape:
        - Input: ``{shape}`` or ``(C, {dims})``.
        - Output: ``{out_shape}`` or ``(C, {out_dims})``, sizes as for ``avg_pool{n}d``.

    Example:
        >>> x = torch.tensor([0.0, 1.0, 1.0, 1.0]).reshape(1, 1, {example_shape})
        >>> [round(v, 6) for v in soft_pool{n}d(x, {example_kernel}).flatten().tolist()]
        {example}
    """


@rank_doc(_SOFT_DOC, 1, example_shape="4", example_kernel="2", example="[0.731059, 1.0]")
def soft_pool1d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
) -> Tensor:
    return _soft(x, 1, kernel_size, stride, padding, ceil_mode)


@rank_doc(_SOFT_DOC, 2, example_shape="2, 2", example_kernel="2", example="[0.890768]")
def soft_pool2d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
) -> Tensor:
    return _soft(x, 2, kernel_size, stride, padding, ceil_mode)


@rank_doc(_SOFT_DOC, 3, example_shape="1, 2, 2", example_kernel="(1, 2, 2)", example="[0.890768]")
def soft_pool3d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
) -> Tensor:
    return _soft(x, 3, kernel_size, stride, padding, ceil_mode)


class _SoftPoolNd(WindowPool):
    """Stores the arguments of :func:`soft_pool2d`; ``forward`` runs it for rank ``_ndim``."""

    _ndim: int
    _repr_options = ("ceil_mode",)

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        ceil_mode: bool = False,
    ) -> None:
        check_window(kernel_size, stride, padding, self._ndim)
        super().__init__(kernel_size, stride, padding)
        self.ceil_mode = check_bool(ceil_mode, "ceil_mode")

    def forward(self, x: Tensor) -> Tensor:
        return _soft(x, self._ndim, self.kernel_size, self.stride, self.padding, self.ceil_mode)


_MODULE_DOC = """Module form of :func:`soft_pool{n}d` (SoftPool); arguments as for the function.

    Shape:
        - Input: ``{shape}`` or ``(C, {dims})``.
        - Output: ``{out_shape}`` or ``(C, {out_dims})``.

    Example:
        >>> SoftPool{n}d(2)(torch.ones(1, 3, {sizes})).shape
        torch.Size([1, 3, {out}])
    """


@rank_doc(_MODULE_DOC, 1, sizes="4", out="2")
class SoftPool1d(_SoftPoolNd):
    _ndim = 1


@rank_doc(_MODULE_DOC, 2, sizes="4, 4", out="2, 2")
class SoftPool2d(_SoftPoolNd):
    _ndim = 2


@rank_doc(_MODULE_DOC, 3, sizes="4, 4, 4", out="2, 2, 2")
class SoftPool3d(_SoftPoolNd):
    _ndim = 3


for _ndim, _cls in ((1, SoftPool1d), (2, SoftPool2d), (3, SoftPool3d)):
    register_pool(
        f"soft{_ndim}d",
        _cls,
        family="soft",
        dims=(_ndim,),
        description="softmax-weighted mean of each window (SoftPool, Stergiou et al. 2021)",
        example_kwargs={"kernel_size": 2},
    )
