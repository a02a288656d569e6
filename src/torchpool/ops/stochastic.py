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

Traceable path. Under ``torch.compile``, ``torch.export``, ONNX export and tracing, and for
``meta``/fake tensors, the pool runs in plain differentiable ops with the same arithmetic
(no chunks, no custom autograd Function, no data-dependent branch), so
``torch.compile(fullgraph=True)`` works and matches eager under the same seed. A
``torch.Generator`` cannot enter a dynamo graph: seed with ``torch.manual_seed`` there.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal, overload

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
    spatial: tuple[int, ...], out: tuple[int, ...], win: Window, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """Flat-index tables in the unpadded plane.

    Returns ``offsets`` (``prod(k)``,): the flat offset of each window cell from the window's
    first cell, row-major; ``base`` (``*out``): the flat index of each window's first cell
    (negative or wrapped where that cell is padding, never used there); ``first`` (``*out``):
    the flat index of each window's first in-bounds cell.
    """
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
    base = torch.zeros(out, dtype=torch.int64, device=device)
    first = torch.zeros(out, dtype=torch.int64, device=device)
    n = len(spatial)
    for d in range(n):
        start = torch.arange(out[d], device=device, dtype=torch.int64) * s[d] - p[d]
        shape = [1] * n
        shape[d] = out[d]
        base = base + (start * strides[d]).view(shape)
        # the first cell start + j * dilation >= 0 (clamped into the plane: with a large dilation a
        # window can hold padding only, and then any in-bounds index will do, its value is unused)
        inside = start + (-start).clamp(min=0).add(dil[d] - 1).div(dil[d], rounding_mode="floor") * dil[d]
        first = first + (inside.clamp(0, spatial[d] - 1) * strides[d]).view(shape)
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
    views = []
    for off in itertools.product(*(range(kk) for kk in win.kernel_size)):
        index = tuple(
            slice(o * d, o * d + st * (n - 1) + 1, st)
            for o, d, st, n in zip(off, win.dilation, win.stride, out, strict=True)
        )
        key: tuple[object, ...] = (Ellipsis, *index)
        views.append(a[key])  # type: ignore[index]
    return views


# --------------------------------------------------------------------------- chunks of planes

_CHUNK_ELEMENTS = 1 << 23
"""The most (padded) input elements per chunk of ``(n, c)`` planes. Every full-size temporary
(padded or converted copies, window sums, running sums, int64 indices, ``a * a``) exists for one
chunk at a time; the full-size tensors are the output, and for the backward what it needs (the
training draws as a byte per window, the eval denominators). :func:`_chunk_elements` sizes the
chunks of one input."""

_CHUNK_FRACTION = 8
"""A chunk holds at most ``1 / _CHUNK_FRACTION`` of the padded input, so that the working set of one
chunk (several chunk-sized temporaries) is a small fraction of the input at every shape."""

_CHUNK_MIN_ELEMENTS = 1 << 18
"""... but never fewer elements than this: with smaller chunks the per-chunk overhead shows (2^16 made
a (8, 64, 56, 56) training call ~1.4x slower). So inputs under ``_CHUNK_FRACTION`` times this (8M
elements) take chunks that are a larger fraction of them; the extra memory stays under 2x the input
down to about 2^20 elements (4 MB in float32), and below that exceeds it by at most a few MB."""


_TRAIN_CHUNK_FRACTION = 2
"""Training keeps less per chunk (a byte per window, the draws) than evaluation, so half the input
stays well under the 2x bound (about 1.2x) and saves the per-chunk overhead on small inputs."""


def _chunk_elements(padded_elements: int, fraction: int = _CHUNK_FRACTION) -> int:
    """Padded elements per chunk of planes for an input of ``padded_elements`` padded elements:
    ``1 / fraction`` of it, at least ``_CHUNK_MIN_ELEMENTS``, at most ``_CHUNK_ELEMENTS``."""
    share = max(_CHUNK_MIN_ELEMENTS, padded_elements // fraction)
    return max(1, min(_CHUNK_ELEMENTS, share))


_Part = tuple[slice, slice]


def _plane_chunks(x: Tensor, padding: tuple[int, ...], fraction: int = _CHUNK_FRACTION) -> list[_Part]:
    """``(batch, channel)`` slices covering ``x``'s planes, each at most :func:`_chunk_elements` padded
    elements (or one plane): whole batch items where one fits, else channel ranges of one item."""
    n, c = x.shape[:2]
    plane = math.prod([size + 2 * p for size, p in zip(x.shape[2:], padding, strict=True)])
    planes = max(1, _chunk_elements(n * c * plane, fraction) // max(1, plane))
    if n * c == 0 or planes >= n * c:
        return [(slice(None), slice(None))]
    if planes >= c:
        step = planes // c
        return [(slice(i, i + step), slice(None)) for i in range(0, n, step)]
    return [(slice(i, i + 1), slice(j, j + planes)) for i in range(n) for j in range(0, c, planes)]


# --------------------------------------------------------------------------- training


def _draw_chunk(
    x: Tensor, u: Tensor, win: Window, out: tuple[int, ...], tables: tuple[Tensor, Tensor, Tensor]
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Draws one cell per window of a chunk ``x`` (n, c, *spatial), given its uniforms ``u`` (n, c, *out).

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
    for d, (p_d, s_d) in enumerate(zip(win.padding, win.stride, strict=True)):
        m = -(-p_d // s_d)
        if m:
            part = [slice(None)] * index.dim()
            part[2 + d] = slice(0, m)
            fix = torch.where(total[tuple(part)] > 0, index[tuple(part)], first[tuple(part[2:])])
            index[tuple(part)] = fix
    positive = total > 0
    return position, index, None if bool(positive.all()) else positive


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
    tables = _window_tables(tuple(x.shape[2:]), out, win, device)
    chunks = _plane_chunks(x, win.padding, _TRAIN_CHUNK_FRACTION)
    one = len(chunks) == 1
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
        for part in chunks:
            xc, yc = x[part], y[part]
            position, idx, pos = _draw_chunk(xc, u[part], win, out, tables)
            values = yc.view(*yc.shape[:2], math.prod(out))  # a view of y: chunks are whole planes
            torch.gather(xc.flatten(2), 2, idx.flatten(2), out=values)
            if pos is not None:
                # zero windows: the value is 0 already (+0.0 for a -0.0 cell); their gradient stops too
                yc.masked_fill_(pos.logical_not(), 0)
                if positive is None:
                    positive = pos if one else torch.ones(shape, dtype=torch.bool, device=device)
                if not one:
                    positive[part] = pos
            if one:
                index = idx if (return_indices or keep) else None
            else:
                if positions is not None:
                    positions[part] = position
                if index is not None:
                    index[part] = idx
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
        tables = _window_tables(tuple(shape[2:]), out, win, device) if saved.dtype != torch.int64 else None
        grad_x = torch.zeros(shape, dtype=grad.dtype, device=device)
        zero = torch.zeros((), dtype=grad.dtype, device=device)
        for part in _plane_chunks(grad_x, win.padding, _TRAIN_CHUNK_FRACTION):
            mask = None if positive is None else positive[part]
            # saved int64 indices are valid everywhere (zero windows: their first in-bounds cell)
            index = saved[part] if tables is None else _index_of(saved[part], mask, tables)
            g = grad[part] if mask is None else torch.where(mask, grad[part], zero)
            target = grad_x[part]
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
    return torch.addcmul(shift.neg_(), a, weight, value=2)


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
        fmt: torch.memory_format,
        save: bool,
    ) -> Tensor:
        dtype = _compute_dtype(x.dtype)
        window = _pool_window(win, n, ceil_mode)
        chunks = _plane_chunks(x, win.padding)
        ctx.meta = (window, n, win.padding, len(chunks), x.dtype)  # type: ignore[attr-defined]
        if len(chunks) == 1:
            a = _pool_layout(x, n, dtype)
            pooled, safe = _weighting(a, window)
            out = (pooled.squeeze(2) if n == 1 else pooled).contiguous(memory_format=fmt)
            if save:
                ctx.save_for_backward(a, pooled, safe)
            return out
        out = torch.empty(0)
        safe = torch.empty(0)
        for i, part in enumerate(chunks):
            pooled, safe_c = _weighting(_pool_layout(x[part], n, dtype), window)
            if i == 0:
                shape = (*x.shape[:2], *pooled.shape[2:])
                out_shape = (*x.shape[:2], *pooled.shape[3:]) if n == 1 else shape
                out = torch.empty(out_shape, dtype=dtype, device=x.device, memory_format=fmt)
                if save:
                    safe = torch.empty(shape, dtype=dtype, device=x.device, memory_format=_layout_of(safe_c))
            out[part] = pooled.squeeze(2) if n == 1 else pooled
            if save:
                safe[part] = safe_c
        if save:
            ctx.save_for_backward(x, out, safe)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor, None, None, None, None, None]:
        saved, out, safe = ctx.saved_tensors  # type: ignore[attr-defined]
        window, n, padding, chunks, x_dtype = ctx.meta  # type: ignore[attr-defined]
        if n == 1:
            grad = grad.unsqueeze(2)
        if chunks == 1:
            result = _weighting_grad(grad, saved, out, safe, window).to(x_dtype)
            return result.squeeze(2) if n == 1 else result, None, None, None, None, None
        x = saved
        dtype = _compute_dtype(x.dtype)
        grad_x = torch.empty_like(x)
        o = out.unsqueeze(2) if n == 1 else out
        for part in _plane_chunks(x, padding):
            grad_c = _weighting_grad(grad[part], _pool_layout(x[part], n, dtype), o[part], safe[part], window)
            grad_x[part] = grad_c.squeeze(2) if n == 1 else grad_c
        return grad_x, None, None, None, None, None


def _layout_of(a: Tensor) -> torch.memory_format:
    """The eval pooling's layout for ``a``: channels_last for 2d on the CPU, where PyTorch's
    ``avg_pool2d`` is several times faster in it; contiguous otherwise (3d, and CUDA, where
    the channels_last ``avg_pool2d`` backward gave wrong gradients with torch 2.11)."""
    return torch.channels_last if a.dim() == 4 and a.device.type == "cpu" else torch.contiguous_format


def _eval(x: Tensor, win: Window, n: int, ceil_mode: bool, fmt: torch.memory_format) -> Tensor:
    """Probabilistic weighting in float32 (float64 for float64 input), returned in ``x.dtype``."""
    save = torch.is_grad_enabled() and x.requires_grad
    return _ProbabilisticWeighting.apply(x, win, n, ceil_mode, fmt, save).to(x.dtype)


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


def _memory_format(x: Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous():
        return torch.channels_last_3d
    return torch.contiguous_format


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
    fmt = _memory_format(x4)
    index: Tensor | None
    if x4.numel() == 0:
        # N = 0 or C = 0: the empty result, as PyTorch's pools give (connected to x for autograd)
        y = x4.flatten(2)[:, :, :1].reshape(*x4.shape[:2], *[1] * n).expand(*x4.shape[:2], *out)
        index = torch.zeros(y.shape, dtype=torch.int64, device=x4.device) if return_indices else None
    elif not training:
        if _symbolic(x4) or any(d > 1 for d in win.dilation):
            y = _eval_traceable(x4, win, n, ceil_mode, out)
        else:
            y = _eval(x4, win, n, ceil_mode, fmt)
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
