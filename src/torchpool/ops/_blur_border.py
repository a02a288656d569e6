"""BlurPool, the border-fixed path (:mod:`.blur`): odd kernels on the CPU as the zero-padded
depthwise convolution in chunks of the batch, plus, for reflect / replicate / circular padding, a
correction of the border outputs only (per axis ``A_mode = A_zeros + D``, ``D`` a few rows and
columns; in 2-d two thin GEMMs); one autograd node whose backward is the convolution's input
gradient (in the same chunks) plus the transposed correction.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

from ._blur_filter import _CONV, _cached_weight
from ._blur_separable import _axis_plan, _blur_axis, _new, _spread_axis

#: one axis of the border correction (odd kernels): ``(outputs, sources, matrix, scale)``.
#: ``outputs``: the outputs whose window reaches a padded cell (ascending); ``sources``: the input
#: cells those padded cells read (ascending, distinct); ``matrix``: ``D[output][source]``, the
#: reflected / replicated / wrapped filter minus the zero-padded one, or ``None`` when each output
#: reads its own source with the one weight ``scale`` (``D`` is ``scale`` times the identity).
BorderAxis = tuple[tuple[int, ...], tuple[int, ...], tuple[tuple[float, ...], ...] | None, float]


#: input elements per chunk of the batch for the depthwise convolution and its input gradient:
#: PyTorch's CPU (oneDNN) depthwise convolution is faster on a few samples at a time, each chunk's
#: result written into the preallocated output (measured on (32, 64, 56, 56) float32, 2 threads:
#: 1.7-1.9 ms in chunks of 4-8 samples against 2.5-2.8 ms in one call; the input gradient 2.6 ms
#: against several times that; ``benchmarks/bench_blur.py``).
_CONV_CHUNK = 1 << 20


def _conv_chunks(t: Tensor) -> list[slice]:
    """Slices of dim 0 (whole samples) of about :data:`_CONV_CHUNK` elements."""
    step = max(1, _CONV_CHUNK // max(1, t.numel() // max(1, t.shape[0])))
    return [slice(i, i + step) for i in range(0, t.shape[0], step)]


@functools.lru_cache(maxsize=256)
def _border_axis(size: int, k: int, stride: int, padding_mode: str) -> BorderAxis:
    """``D = A_mode - A_zeros`` of one axis, from the padded cells of :func:`_axis_plan`."""
    borders = _axis_plan(size, k, stride, padding_mode)[1]
    outputs = tuple(sorted({o for _, o, _ in borders}))
    sources = tuple(sorted({i for _, _, i in borders}))
    matrix = [[0.0] * len(sources) for _ in outputs]
    for weight, o, i in borders:
        matrix[outputs.index(o)][sources.index(i)] += weight
    weights = {w for w, _, _ in borders}
    in_order = [i for _, _, i in sorted(borders, key=lambda b: b[1])] == list(sources)
    if len(borders) == len(outputs) == len(sources) and len(weights) == 1 and in_order:
        return outputs, sources, None, weights.pop()  # output j reads source j only, with one weight
    return outputs, sources, tuple(tuple(row) for row in matrix), 1.0


@functools.lru_cache(maxsize=256)
def _runs(cells: tuple[int, ...]) -> tuple[tuple[int, int, int], ...]:
    """The maximal runs of consecutive cells of an ascending tuple: ``(position, first cell, length)``."""
    runs: list[tuple[int, int, int]] = []
    for position, cell in enumerate(cells):
        if runs and runs[-1][1] + runs[-1][2] == cell:
            runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((position, cell, 1))
    return tuple(runs)


def _take(t: Tensor, dim: int, cells: tuple[int, ...]) -> Tensor:
    """``t``'s cells along ``dim``: a view for one run, else ``index_select``."""
    if len(_runs(cells)) == 1:
        return t.narrow(dim, cells[0], len(cells))
    return t.index_select(dim, torch.tensor(cells, device=t.device))


def _pieces(
    target: Tensor, values: Tensor, dims: list[int], cells: list[tuple[int, ...]]
) -> list[tuple[Tensor, Tensor]]:
    """Matching views of ``target`` at ``cells`` and of ``values`` (which holds those cells, in order,
    along each of ``dims``): one pair per run of consecutive cells."""
    pieces: list[tuple[Tensor, Tensor]] = [(target, values)]
    for dim, axis_cells in zip(dims, cells):
        pieces = [
            (into.narrow(dim, first, n), part.narrow(dim, position, n))
            for into, part in pieces
            for position, first, n in _runs(axis_cells)
        ]
    return pieces


def _put(target: Tensor, dims: list[int], cells: list[tuple[int, ...]], values: Tensor, alpha: float) -> None:
    """``target[cells] += alpha * values`` (``values`` holds the cells, in order, along each of ``dims``)."""
    for into, part in _pieces(target, values, dims, cells):
        into.add_(part, alpha=alpha)


def _mix(t: Tensor, dim: int, matrix: tuple[tuple[float, ...], ...]) -> Tensor:
    """``matrix @ t`` along ``dim`` (a small matrix: one GEMM over the other dimensions)."""
    m = torch.tensor(matrix, dtype=t.dtype, device=t.device)
    return _mm_last(t.movedim(dim, -1), m.T).movedim(-1, dim)


def _terms(ndim: int) -> list[tuple[int, ...]]:
    """The non-empty subsets of the axes (the correction terms)."""
    return [tuple(a for a in range(ndim) if mask >> a & 1) for mask in range(1, 2**ndim)]


def _add_border_terms(
    y: Tensor, x: Tensor, k: tuple[int, ...], s: tuple[int, ...], axes: tuple[BorderAxis, ...]
) -> None:
    """``y += (A - A0) x``: every term but the zero-padded convolution, onto the border outputs.

    Each term gathers the few input cells ``D`` reads along its axes (views where they are one run),
    then runs the zero-padded filter along the other axes as weighted strided slices, the last
    axis added straight into the border outputs."""
    ndim = len(k)
    for term in _terms(ndim):
        if any(not axes[a][0] for a in term):
            continue
        t, alpha = x, 1.0
        for a in term:
            _, sources, matrix, scale = axes[a]
            t = _take(t, 2 + a, sources)
            if matrix is not None:
                t = _mix(t, 2 + a, matrix)
            alpha *= scale
        others = [b for b in range(ndim) if b not in term]
        for b in others[:-1]:
            t = _blur_axis(t, 2 + b, s[b], _axis_plan(t.shape[2 + b], k[b], s[b], "zeros"))
        if not others:
            _put(y, [2 + a for a in term], [axes[a][0] for a in term], t, alpha)
            continue
        last = 2 + others[-1]
        step = (slice(None),) * last + (slice(None, None, s[others[-1]]),)
        for into, part in _pieces(y, t, [2 + a for a in term], [axes[a][0] for a in term]):
            for weight, lo, n, start in _axis_plan(t.shape[last], k[others[-1]], s[others[-1]], "zeros")[0]:
                view = part.narrow(last, start, (n - 1) * s[others[-1]] + 1)[step]
                into.narrow(last, lo, n).add_(view, alpha=alpha * weight)


def _add_border_grads(
    grad_x: Tensor, grad: Tensor, k: tuple[int, ...], s: tuple[int, ...], axes: tuple[BorderAxis, ...]
) -> None:
    """``grad_x += (A - A0)^T grad``: the transpose of :func:`_add_border_terms`."""
    ndim = len(k)
    for term in _terms(ndim):
        if any(not axes[a][0] for a in term):
            continue
        g, alpha = grad, 1.0
        for a in term:
            g = _take(g, 2 + a, axes[a][0])
            alpha *= axes[a][3]
        others = [b for b in range(ndim) if b not in term]
        dims, sources = [2 + a for a in term], [axes[a][1] for a in term]
        simple = all(axes[a][2] is None for a in term)
        if len(others) == 1 and simple:  # spread straight into the source cells' gradient
            b = others[0]
            plan = _axis_plan(grad_x.shape[2 + b], k[b], s[b], "zeros")
            for into, part in _pieces(grad_x, g, dims, sources):
                _spread_axis(part, 2 + b, grad_x.shape[2 + b], s[b], plan, into, alpha)
            continue
        for b in reversed(others):
            size = grad_x.shape[2 + b]
            g = _spread_axis(g, 2 + b, size, s[b], _axis_plan(size, k[b], s[b], "zeros"))
        for a in term:
            matrix = axes[a][2]
            if matrix is not None:
                g = _mix(g, 2 + a, tuple(zip(*matrix)))
        _put(grad_x, dims, sources, g, alpha)


@functools.lru_cache(maxsize=64)
def _dense_filter(
    size: int, k: int, stride: int, padding_mode: str, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """The strided filter of one axis as a dense ``(size, outputs)`` matrix (transposed: ``x @ A``)."""
    taps, borders, out = _axis_plan(size, k, stride, padding_mode)
    dense = torch.zeros(size, out, dtype=torch.float64)
    for weight, lo, n, start in taps:
        for o in range(lo, lo + n):
            dense[start + (o - lo) * stride, o] += weight
    for weight, o, i in borders:
        dense[i, o] += weight
    with torch.inference_mode(False):
        return dense.to(dtype=dtype, device=device)


#: the largest dense per-axis matrix of the 2-d border terms (``size * outputs`` entries).
_MAX_DENSE = 1 << 20


def _mm_last(t: Tensor, matrix: Tensor) -> Tensor:
    """``t @ matrix`` over the last dimension as one GEMM (``torch.matmul`` would batch a strided view)."""
    return torch.mm(t.reshape(-1, t.shape[-1]), matrix).view(*t.shape[:-1], matrix.shape[1])


def _add_border_terms_2d(y: Tensor, x: Tensor, geometry: tuple[Any, ...]) -> None:
    """``y += (A - A0) x`` in 2-d as ``D_h (x) A_w + A0_h (x) D_w`` (``A_w`` padded, ``A0_h`` zero-padded):
    the few rows ``D_h`` reads times the dense ``A_w`` (one GEMM), the few columns ``D_w`` reads times
    the dense ``A0_h`` (one GEMM), each added onto the border outputs."""
    (rows, cols), (dense_w, dense_h) = geometry
    if rows[0]:
        outputs, sources, matrix, scale = rows
        t = _mm_last(_take(x, 2, sources), dense_w)
        if matrix is not None:
            t = _mix(t, 2, matrix)
        _put(y, [2], [outputs], t, scale)
    if cols[0]:
        outputs, sources, matrix, scale = cols
        t = _mm_last(_take(x, 3, sources).transpose(2, 3), dense_h)
        if matrix is not None:
            t = _mix(t, 2, matrix)
        _put(y, [3], [outputs], t.transpose(2, 3), scale)


def _add_border_grads_2d(grad_x: Tensor, grad: Tensor, geometry: tuple[Any, ...]) -> None:
    """``grad_x += (A - A0)^T grad``: the transpose of :func:`_add_border_terms_2d`."""
    (rows, cols), (dense_w, dense_h) = geometry
    if rows[0]:
        outputs, sources, matrix, scale = rows
        g = _take(grad, 2, outputs)
        if matrix is not None:
            g = _mix(g, 2, tuple(zip(*matrix)))
        _put(grad_x, [2], [sources], _mm_last(g, dense_w.T), scale)
    if cols[0]:
        outputs, sources, matrix, scale = cols
        g = _take(grad, 3, outputs).transpose(2, 3)
        if matrix is not None:
            g = _mix(g, 2, tuple(zip(*matrix)))
        _put(grad_x, [3], [sources], _mm_last(g, dense_h.T).transpose(2, 3), scale)


class _BorderFixedBlur(torch.autograd.Function):
    """Odd kernels as kornia's zero-padded convolution plus, for reflect / replicate / circular
    padding, a correction of the border outputs only (eager CPU float32 / float64).

    Per axis the padded filter is ``A = A0 + D``: ``A0`` the zero-padded strided filter, ``D`` the
    weights of the padded cells moved onto the input cells they copy (non-zero only in the rows of
    the border outputs, reading a few input cells; none for zeros). The blur is the tensor product
    of the axes' ``A``, the zero-padded convolution plus the terms with at least one ``D``: in 2-d
    ``D_h (x) A_w + A0_h (x) D_w``, each a GEMM of the few rows (columns) ``D`` reads with a dense
    ``A_w`` (``A0_h``); in 1-d / 3-d (or past :data:`_MAX_DENSE`) every ``D`` term, gathered and
    run through separable strided sums, once over the whole batch. The backward pass is the
    transpose: the convolution's input gradient plus the terms'. The convolution and its input
    gradient run on a few samples at a time (:func:`_conv_chunks`), each chunk copied into the
    preallocated result.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, k: tuple[int, ...], s: tuple[int, ...], padding_mode: str) -> Tensor:
        ndim, channels = len(k), x.shape[1]
        spatial = tuple(x.shape[2:])
        axes = tuple(_border_axis(size, kk, ss, padding_mode) for size, kk, ss in zip(spatial, k, s))
        weight = _cached_weight(k, channels, x.dtype, x.device)
        y = _new(x, [*x.shape[:2], *(-(-size // ss) for size, ss in zip(spatial, s))], zero=False)
        dense = None
        if ndim == 2 and all(size * -(-size // ss) <= _MAX_DENSE for size, ss in zip(spatial, s)):
            dense = (
                axes,
                (
                    _dense_filter(spatial[1], k[1], s[1], padding_mode, x.dtype, x.device),
                    _dense_filter(spatial[0], k[0], s[0], "zeros", x.dtype, x.device),
                ),
            )
        padding = tuple(kk // 2 for kk in k)
        for part in _conv_chunks(x):
            y[part].copy_(_CONV[ndim](x[part], weight, stride=s, padding=padding, groups=channels))
        if dense is not None:
            _add_border_terms_2d(y, x, dense)
        else:
            _add_border_terms(y, x, k, s, axes)
        ctx.save_for_backward(x)
        ctx.geometry = (k, s, axes, dense)
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None]:
        (x,) = ctx.saved_tensors
        k, s, axes, dense = ctx.geometry
        ndim, channels = len(k), x.shape[1]
        weight = _cached_weight(k, channels, x.dtype, x.device)
        grad_x = _new(x, list(x.shape), zero=False)
        half, ones, zeros = tuple(kk // 2 for kk in k), (1,) * ndim, (0,) * ndim
        for part in _conv_chunks(x):
            part_grad = torch.ops.aten.convolution_backward(
                grad[part], x[part], weight, None, s, half, ones, False, zeros, channels, (True, False, False)
            )[0]
            grad_x[part].copy_(part_grad)
        if dense is not None:
            _add_border_grads_2d(grad_x, grad, dense)
        else:
            _add_border_grads(grad_x, grad, k, s, axes)
        return grad_x, None, None, None
