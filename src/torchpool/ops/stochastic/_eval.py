"""Stochastic pooling, part 3: evaluation, the probabilistic weighting ``sum a^2 / sum a``.

The eager path runs as the Function :class:`_ProbabilisticWeighting` (average pools, a chunk at a
time, with a written-out backward); :func:`_eval_traceable` is the same arithmetic in plain
differentiable ops for ``torch.compile``, ``torch.export``, tracing, ``meta`` tensors and dilation.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor

from ..._checks import Window
from ..._deterministic import avg_pool3d as deterministic_avg_pool3d
from ..._deterministic import is_deterministic
from .._windows import band_span
from ._chunks import _band, _compute_dtype, _offset_views, _padded, _parts, _rows

# --------------------------------------------------------------------------- eager


def _pool_layout(x: Tensor, ndim: int, dtype: torch.dtype) -> Tensor:
    """``x`` in the layout the eval pooling runs in (:func:`_layout_of`; 1d runs as 2d)."""
    if ndim == 3:
        return x.to(dtype=dtype, memory_format=torch.contiguous_format)
    a = x.unsqueeze(2) if ndim == 1 else x
    return a.to(dtype=dtype, memory_format=_layout_of(a))


_PoolWindow = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], bool]
"""``(kernel, stride, padding, ceil_mode)`` of the eval path's average pools (dilation 1)."""


def _pool_window(win: Window, ndim: int, ceil_mode: bool) -> _PoolWindow:
    k, s, p = win.kernel_size, win.stride, win.padding
    return ((1, *k), (1, *s), (0, *p), ceil_mode) if ndim == 1 else (k, s, p, ceil_mode)


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
    return cast(Tensor, backward(grad, a, list(kernel), list(stride), list(padding), ceil_mode, True, None))


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
        ndim: int,
        ceil_mode: bool,
        out_size: tuple[int, ...],
        fmt: torch.memory_format,
        save: bool,
    ) -> Tensor:
        dtype = _compute_dtype(x.dtype)
        window = _pool_window(win, ndim, ceil_mode)
        chunks = _parts(tuple(x.shape), win, out_size, "eval")
        ctx.meta = (win, ndim, ceil_mode, out_size, len(chunks), x.dtype)  # type: ignore[attr-defined]
        if len(chunks) == 1:
            a = _pool_layout(x, ndim, dtype)
            pooled, safe = _weighting(a, window)
            out = (pooled.squeeze(2) if ndim == 1 else pooled).contiguous(memory_format=fmt)
            if save:
                ctx.save_for_backward(a, pooled, safe)
            return out
        shape = (*x.shape[:2], *out_size)
        pooled_shape = (*x.shape[:2], 1, *out_size) if ndim == 1 else shape
        band = 3 if ndim == 1 else 2  # the dimension of the bands' first axis in the pooling layout
        out = safe = torch.empty(0)
        for i, (planes, rows, axis) in enumerate(chunks):
            if rows is None:
                pooled, safe_c = _weighting(_pool_layout(x[planes], ndim, dtype), window)
            else:
                part, part_win = _band(x[planes], rows, win, clip=True, axis=axis)
                pooled, safe_c = _weighting(
                    _pool_layout(part, ndim, dtype), _pool_window(part_win, ndim, ceil_mode)
                )
            if i == 0:
                # allocated after the first chunk's temporaries, as the allocator reuses them best
                out = torch.empty(shape, dtype=dtype, device=x.device, memory_format=fmt)
                if save:
                    layout = _layout_of(safe_c)
                    safe = torch.empty(pooled_shape, dtype=dtype, device=x.device, memory_format=layout)
            _rows(out[planes], rows, 2 + axis).copy_(pooled.squeeze(2) if ndim == 1 else pooled)
            if save:
                _rows(safe[planes], rows, band + axis).copy_(safe_c)
        if save:
            ctx.save_for_backward(x, out, safe)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor, None, None, None, None, None, None]:
        saved, out, safe = ctx.saved_tensors  # type: ignore[attr-defined]
        win, ndim, ceil_mode, out_size, chunks, x_dtype = ctx.meta  # type: ignore[attr-defined]
        window = _pool_window(win, ndim, ceil_mode)
        if ndim == 1:
            grad = grad.unsqueeze(2)
        if chunks == 1:
            result = _weighting_grad(grad, saved, out, safe, window).to(x_dtype)
            return result.squeeze(2) if ndim == 1 else result, None, None, None, None, None, None
        x = saved
        dtype = _compute_dtype(x.dtype)
        # bands of input rows; their windows (:func:`_windows_reading`) are recomputed where bands
        # share windows, so that every cell adds its windows' terms in the unchunked order
        parts = _parts(tuple(x.shape), win, tuple(x.shape[2:]), "eval_backward", band_reach=1)
        grad_x = torch.empty_like(x) if parts[0].rows is None else torch.zeros_like(x)
        o = out.unsqueeze(2) if ndim == 1 else out
        band = 3 if ndim == 1 else 2
        for planes, rows, axis in parts:
            if rows is None:
                grad_c = _weighting_grad(
                    grad[planes], _pool_layout(x[planes], ndim, dtype), o[planes], safe[planes], window
                )
                grad_x[planes] = grad_c.squeeze(2) if ndim == 1 else grad_c
                continue
            dim = 2 + axis
            windows = _windows_reading(rows, win, out_size[axis], x.shape[dim], axis)
            if windows is None:
                continue  # rows no window reads: zero gradient
            part, part_win = _band(x[planes], windows, win, clip=True, axis=axis)
            grad_c = _weighting_grad(
                _rows(grad[planes], windows, band + axis),
                _pool_layout(part, ndim, dtype),
                _rows(o[planes], windows, band + axis),
                _rows(safe[planes], windows, band + axis),
                _pool_window(part_win, ndim, ceil_mode),
            )
            grad_c = grad_c.squeeze(2) if ndim == 1 else grad_c
            # the input row of grad_c's first row
            first = windows.start * win.stride[axis] - win.padding[axis]
            lo, hi = max(rows.start, first), min(rows.stop, first + grad_c.shape[dim])
            if hi > lo:
                grad_x[planes].narrow(dim, lo, hi - lo).copy_(grad_c.narrow(dim, lo - first, hi - lo))
        return grad_x, None, None, None, None, None, None


def _windows_reading(rows: slice, win: Window, count: int, size: int, axis: int = 0) -> slice | None:
    """The windows (output rows of ``axis``, of ``count``) that read its input rows ``rows`` (of ``size``), or
    ``None`` when none does; extended to earlier windows where the band they read would be
    shorter than one window (a ceil-mode window past the padding), so that its average pools
    take the same path as the unchunked ones."""
    k, s, p, d = win.kernel_size[axis], win.stride[axis], win.padding[axis], win.dilation[axis]
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
    x: Tensor, win: Window, ndim: int, ceil_mode: bool, out: tuple[int, ...], fmt: torch.memory_format
) -> Tensor:
    """Probabilistic weighting in float32 (float64 for float64 input), returned in ``x.dtype``."""
    save = torch.is_grad_enabled() and x.requires_grad
    y = _ProbabilisticWeighting.apply(x, win, ndim, ceil_mode, out, fmt, save)  # type: ignore[no-untyped-call]
    return cast(Tensor, y).to(x.dtype)


# --------------------------------------------------------------------------- traceable


def _eval_traceable(x: Tensor, win: Window, ndim: int, ceil_mode: bool, out: tuple[int, ...]) -> Tensor:
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
        window = _pool_window(win, ndim, ceil_mode)
        a = _pool_layout(x, ndim, dtype)
        total = _avg_pool(a, *window)
        square = _avg_pool(a * a, *window)
    else:
        views = _offset_views(_padded(x, win, out, dtype), win, out)
        total, square = views[0], views[0] * views[0]
        for v in views[1:]:
            total = total + v
            square = square + v * v
    y = square / torch.where(total > 0, total, torch.ones((), dtype=dtype, device=x.device))
    if ndim == 1 and pooled:
        y = y.squeeze(2)
    return y.to(x.dtype)
