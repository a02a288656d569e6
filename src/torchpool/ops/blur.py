"""Anti-aliased (blur) pooling: BlurPool and MaxBlurPool (Zhang 2019, "Making Convolutional Networks
Shift-Invariant Again", ICML, arXiv 1904.11486).

* ``blur_pool``: blur every channel with the normalised binomial filter of ``kernel_size`` taps per
  axis (``[1, 2, 1] / 4`` for 3), then keep every ``stride``-th sample; the input is padded
  ``(k - 1) // 2`` before and ``k // 2`` after each axis, as in the paper's ``antialiased-cnns``
  (``Downsample``), so the output has ``ceil(L / stride)`` samples per axis.
* ``max_blur_pool``: dense max pooling (``max_pool_size`` window, stride 1, no padding), then
  ``blur_pool``: the paper's ``MaxBlurPool``.

How it runs. ``padding_mode="zeros"`` (kornia's) is one depthwise convolution with the outer
product of the 1-d binomial filters, padded by the convolution itself: kornia's result bit for
bit. The other modes, in eager mode on the CPU in float32 / float64, with odd kernels, run that
same zero-padded convolution and add a correction to the border outputs only (per axis the padded
filter is the zero-padded one plus ``D``, the padded cells' weights moved onto the input cells
they copy: a few rows and columns; in 2-d two thin GEMMs), in cache-sized chunks of the batch,
one autograd node whose backward is the convolution's input gradient plus the transposed
correction (double backward works). Even kernels there are separable: one axis after the other,
each output a sum of weighted strided slices of the input, the padded cells read directly from
the reflected / replicated / wrapped input cells (no padded copy). Both measured faster than
``F.pad`` and the convolution (``benchmarks/bench_blur.py``). Elsewhere (half precision, other
devices, traced code) the input is padded and convolved. The filter's taps are dyadic rationals,
exact in every floating dtype. The convolution's filter is built for the input's channel count and
cached by kernel, channels, dtype and device: the Modules hold no parameter and no buffer, so
their ``state_dict`` is empty.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_bool, check_choice, check_input, is_traced, restore_batch
from .._compat import cpu_kernel_missing
from .._deterministic import max_pool3d as _max_pool3d
from .._deterministic import needs_deterministic_backward
from .._shape import IntOrTuple, ntuple
from ..registry import register_pool
from ._doc import rank_doc

__all__ = [
    "BlurPool1d",
    "BlurPool2d",
    "BlurPool3d",
    "MaxBlurPool1d",
    "MaxBlurPool2d",
    "MaxBlurPool3d",
    "binomial_filter",
    "blur_pool1d",
    "blur_pool2d",
    "blur_pool3d",
    "max_blur_pool1d",
    "max_blur_pool2d",
    "max_blur_pool3d",
]

#: the padding modes of the blur (``F.pad``'s names, ``"zeros"`` for its ``"constant"``).
PADDING_MODES = ("reflect", "replicate", "zeros", "circular")
#: the largest binomial filter (the paper's sizes 1 to 7).
MAX_KERNEL = 7

_CONV: dict[int, Callable[..., Tensor]] = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_MAX: dict[int, Callable[..., Tensor]] = {1: F.max_pool1d, 2: F.max_pool2d, 3: _max_pool3d}


def binomial_filter(kernel_size: int) -> list[float]:
    """The normalised 1-d binomial filter ``C(k - 1, i) / 2**(k - 1)``.

    Args:
        kernel_size: the number of taps, 1 to 7.

    Returns:
        The taps (they sum to 1 exactly).

    Example:
        >>> binomial_filter(3)
        [0.25, 0.5, 0.25]
    """
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int):
        raise TypeError(f"kernel_size must be an int, got {type(kernel_size).__name__}")
    if not 1 <= kernel_size <= MAX_KERNEL:
        raise ValueError(f"kernel_size must be in [1, {MAX_KERNEL}], got {kernel_size}")
    return [math.comb(kernel_size - 1, i) / 2 ** (kernel_size - 1) for i in range(kernel_size)]


def _build_weight(k: tuple[int, ...], channels: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    taps = [torch.tensor(binomial_filter(size), dtype=torch.float64) for size in k]
    weight = taps[0]
    for axis_taps in taps[1:]:
        weight = weight[..., None] * axis_taps  # outer product: exact (dyadic taps)
    return weight.to(dtype=dtype, device=device).expand(channels, 1, *k).contiguous()


@functools.lru_cache(maxsize=64)
def _cached_weight(k: tuple[int, ...], channels: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    with torch.inference_mode(False):  # a normal tensor even if first built under inference_mode
        return _build_weight(k, channels, dtype, device)


def _weight(k: tuple[int, ...], channels: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The depthwise blur weight ``(C, 1, *k)``: cached in eager mode, built in traced graphs."""
    if is_traced():
        return _build_weight(k, channels, dtype, device)
    return _cached_weight(k, channels, dtype, device)


def _check_blur_args(
    ndim: int, kernel_size: IntOrTuple, stride: IntOrTuple, padding_mode: str
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    k = ntuple(kernel_size, ndim, "kernel_size")
    s = ntuple(stride, ndim, "stride")
    if any(not 1 <= v <= MAX_KERNEL for v in k):
        raise ValueError(f"kernel_size must be in [1, {MAX_KERNEL}] (the binomial filters), got {k}")
    if any(v < 1 for v in s):
        raise ValueError(f"stride must be positive, got {s}")
    check_choice(padding_mode, "padding_mode", PADDING_MODES)
    return k, s


#: a blur along one axis: ``(taps, borders, outputs)``; taps ``(weight, first output, outputs, first
#: input)`` read the input every ``stride`` cells, borders ``(weight, output, input)`` are the padded
#: cells that read a reflected / replicated / wrapped input cell (none for zeros).
AxisPlan = tuple[tuple[tuple[float, int, int, int], ...], tuple[tuple[float, int, int], ...], int]

#: input elements per chunk and thread of the separable blur: its temporaries stay in the caches
#: (measured: 2**20 beats 2**17 to 2**19 and 2**22 on one thread).
_CHUNK = 1 << 20


@functools.lru_cache(maxsize=256)
def _axis_plan(size: int, k: int, stride: int, padding_mode: str) -> AxisPlan:
    """Which input cells each output of one axis reads, with which binomial weight."""
    before, out = (k - 1) // 2, -(-size // stride)
    taps, borders = [], []
    for t, weight in enumerate(binomial_filter(k)):
        lo = max(0, -(-(before - t) // stride))
        hi = min(out, (size - 1 + before - t) // stride + 1)
        if hi > lo:
            taps.append((weight, lo, hi - lo, lo * stride - before + t))
        if padding_mode == "zeros":
            continue
        for o in (*range(min(lo, out)), *range(max(hi, lo), out)):
            i = o * stride - before + t
            if padding_mode == "reflect":
                i = -i if i < 0 else 2 * (size - 1) - i
            elif padding_mode == "replicate":
                i = min(max(i, 0), size - 1)
            else:  # circular
                i %= size
            borders.append((weight, o, i))
    return tuple(taps), tuple(borders), out


def _format(t: Tensor) -> torch.memory_format:
    """``t``'s memory format: channels-last (2-d / 3-d) or contiguous."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    if t.dim() == 5 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format


def _new(t: Tensor, shape: list[int], zero: bool, fmt: torch.memory_format | None = None) -> Tensor:
    """An uninitialised (or zero) tensor of ``shape`` in ``t``'s memory format (channels-last stays)."""
    new = torch.empty(shape, dtype=t.dtype, device=t.device, memory_format=fmt or _format(t))
    return new.zero_() if zero else new


def _blur_axis(t: Tensor, dim: int, stride: int, plan: AxisPlan, out: Tensor | None = None) -> Tensor:
    """One axis of the separable blur (no autograd): weighted strided slices added in place."""
    taps, borders, n_out = plan
    shape = list(t.shape)
    shape[dim] = n_out
    step = (slice(None),) * dim + (slice(None, None, stride),)
    full = next((i for i, tap in enumerate(taps) if tap[1] == 0 and tap[2] == n_out), None)
    if out is None:
        out = _new(t, shape, zero=full is None)
    elif full is None:
        out.zero_()
    order = list(taps) if full is None else [taps[full], *taps[:full], *taps[full + 1 :]]
    for i, (weight, lo, n, start) in enumerate(order):
        view = t.narrow(dim, start, (n - 1) * stride + 1)[step]
        if i == 0 and full is not None:  # the tap every output reads starts the sum
            torch.mul(view, weight, out=out)
        else:
            out.narrow(dim, lo, n).add_(view, alpha=weight)
    for weight, o, i in borders:
        out.narrow(dim, o, 1).add_(t.narrow(dim, i, 1), alpha=weight)
    return out


def _spread_axis(
    g: Tensor, dim: int, size: int, stride: int, plan: AxisPlan, out: Tensor | None = None, scale: float = 1.0
) -> Tensor:
    """The transpose of :func:`_blur_axis`, times ``scale``, added to ``out`` if given (differentiable
    ops only: double backward works)."""
    taps, borders, _ = plan
    if out is None:
        shape = list(g.shape)
        shape[dim] = size
        out = g.new_zeros(shape)
    step = (slice(None),) * dim + (slice(None, None, stride),)
    for weight, lo, n, start in taps:
        out.narrow(dim, start, (n - 1) * stride + 1)[step].add_(g.narrow(dim, lo, n), alpha=weight * scale)
    for weight, o, i in borders:
        out.narrow(dim, i, 1).add_(g.narrow(dim, o, 1), alpha=weight * scale)
    return out


def _chunks(t: Tensor) -> list[slice]:
    """Slices of dim 0 of about :data:`_CHUNK` elements."""
    per = max(1, t.numel() // max(1, t.shape[0]))
    step = max(1, _CHUNK * torch.get_num_threads() // per)  # the same share per thread
    return [slice(i, i + step) for i in range(0, t.shape[0], step)]


class _SeparableBlur(torch.autograd.Function):
    """The blur as one axis after the other, each a sum of weighted strided slices, in chunks of the
    batch; its backward is the transpose (the same slices, added back)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, s: tuple[int, ...], plans: tuple[AxisPlan, ...]) -> Tensor:
        ndim = len(s)
        y = _new(x, [*x.shape[:2], *(plan[2] for plan in plans)], zero=False)
        for part in _chunks(x):
            t = x[part]
            for axis in range(ndim):
                last = axis == ndim - 1
                t = _blur_axis(t, 2 + axis, s[axis], plans[axis], y[part] if last else None)
        ctx.geometry = (tuple(x.shape), s, plans, _format(x))
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None]:
        shape, s, plans, fmt = ctx.geometry
        ndim = len(s)
        grad_x = _new(grad, list(shape), zero=False, fmt=fmt)  # the input's layout
        for part in _chunks(grad_x):
            grad_x[part].zero_()  # chunk by chunk: the sums below find it in the caches
            g = grad[part]
            for axis in reversed(range(ndim)):
                first = axis == 0
                g = _spread_axis(
                    g, 2 + axis, shape[2 + axis], s[axis], plans[axis], grad_x[part] if first else None
                )
        return grad_x, None, None


#: one axis of the border correction (odd kernels): ``(outputs, sources, matrix, scale)``.
#: ``outputs``: the outputs whose window reaches a padded cell (ascending); ``sources``: the input
#: cells those padded cells read (ascending, distinct); ``matrix``: ``D[output][source]``, the
#: reflected / replicated / wrapped filter minus the zero-padded one, or ``None`` when each output
#: reads its own source with the one weight ``scale`` (``D`` is ``scale`` times the identity).
BorderAxis = tuple[tuple[int, ...], tuple[int, ...], tuple[tuple[float, ...], ...] | None, float]


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
    """Reflect / replicate / circular padding as kornia's zero-padded convolution plus a correction
    of the border outputs only (odd kernels, eager CPU float32 / float64).

    Per axis the padded filter is ``A = A0 + D``: ``A0`` the zero-padded strided filter, ``D`` the
    weights of the padded cells moved onto the input cells they copy (non-zero only in the rows of
    the border outputs, reading a few input cells). The blur is the tensor product of the axes'
    ``A``, the zero-padded convolution plus the terms with at least one ``D``: in 2-d
    ``D_h (x) A_w + A0_h (x) D_w``, each a GEMM of the few rows (columns) ``D`` reads with a dense
    ``A_w`` (``A0_h``); in 1-d / 3-d (or past :data:`_MAX_DENSE`) every ``D`` term, gathered and
    run through separable strided sums. The backward pass is the transpose: the convolution's input
    gradient plus the terms'. Both run in cache-sized chunks of the batch (the convolution's layout
    conversions and the terms' row / column reads then stay in the caches: measured faster than one
    call, ``benchmarks/bench_blur.py``), each chunk copied into the preallocated result.
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
        for part in _chunks(x):
            chunk = x[part]
            part_y = _CONV[ndim](chunk, weight, stride=s, padding=padding, groups=channels)
            if dense is not None:
                _add_border_terms_2d(part_y, chunk, dense)
            else:
                _add_border_terms(part_y, chunk, k, s, axes)
            y[part].copy_(part_y)
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
        for part in _chunks(x):
            part_grad = torch.ops.aten.convolution_backward(
                grad[part], x[part], weight, None, s, half, ones, False, zeros, channels, (True, False, False)
            )[0]
            if dense is not None:
                _add_border_grads_2d(part_grad, grad[part], dense)
            else:
                _add_border_grads(part_grad, grad[part], k, s, axes)
            grad_x[part].copy_(part_grad)
        return grad_x, None, None, None


def _separable_ok(x: Tensor) -> bool:
    """Where the eager CPU paths run for padding other than zeros (which stays kornia's convolution,
    bit for bit): the border-fixed convolution (odd kernels) or the separable blur (even), on CPU
    float32 / float64, measured faster there than padding the input and convolving
    (``benchmarks/bench_blur.py``); half precision keeps the padded convolution's wider
    accumulation."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and not is_traced()


def _blur(x: Tensor, ndim: int, k: tuple[int, ...], s: tuple[int, ...], padding_mode: str) -> Tensor:
    """Blur and subsample a batched input whose arguments are checked."""
    spatial = x.shape[-ndim:]
    if padding_mode == "reflect" and any(kk // 2 >= size for kk, size in zip(k, spatial)):
        raise ValueError(
            f"input of spatial size {tuple(spatial)} is too small for padding_mode='reflect' with "
            f"kernel_size={k}: every size must exceed kernel_size // 2 (use 'replicate' or 'zeros')"
        )
    if padding_mode == "circular" and any(kk // 2 > size for kk, size in zip(k, spatial)):
        raise ValueError(
            f"input of spatial size {tuple(spatial)} is too small for padding_mode='circular' with "
            f"kernel_size={k}: every size must be at least kernel_size // 2"
        )
    channels = x.shape[1]
    out = tuple(-(-size // ss) for size, ss in zip(spatial, s))
    if x.numel() == 0:  # no samples or no channels: the empty result, still on the autograd graph
        return x.reshape(*x.shape[:2], *out)
    odd = all(kk % 2 == 1 for kk in k)
    if padding_mode != "zeros" and odd and _separable_ok(x):
        fixed: Tensor = _BorderFixedBlur.apply(x, k, s, padding_mode)  # type: ignore[no-untyped-call]
        return fixed
    if padding_mode != "zeros" and _separable_ok(x):
        plans = tuple(_axis_plan(size, kk, ss, padding_mode) for size, kk, ss in zip(spatial, k, s))
        result: Tensor = _SeparableBlur.apply(x, s, plans)  # type: ignore[no-untyped-call]
        return result
    weight = _weight(k, channels, x.dtype, x.device)
    if padding_mode == "zeros" and odd:  # the convolution pads itself
        return _CONV[ndim](x, weight, stride=s, padding=tuple(kk // 2 for kk in k), groups=channels)
    if padding_mode in ("reflect", "replicate") and odd and not _needs_grad(x) and not is_traced():
        return _blur_fixing_borders(x, ndim, k, s, padding_mode, weight, out)
    pads: list[int] = []
    for kk in reversed(k):
        pads += [(kk - 1) // 2, kk // 2]
    if padding_mode != "zeros" and needs_deterministic_backward(x):
        padded = _pad_by_slices(x, ndim, k, padding_mode)
    else:
        padded = _pad(x, pads, padding_mode, ndim)
    return _CONV[ndim](padded, weight, stride=s, groups=channels)


def _pad(x: Tensor, pads: list[int], padding_mode: str, ndim: int) -> Tensor:
    """``F.pad``; in float32 where this PyTorch has no half-precision CPU kernel for the mode
    (torch 2.4: reflection / replication), converted back exactly (padding copies values)."""
    if padding_mode == "zeros":
        return F.pad(x, pads, mode="constant")
    if cpu_kernel_missing(f"pad_{padding_mode}{ndim}d", x):
        return F.pad(x.float(), pads, mode=padding_mode).to(x.dtype)
    return F.pad(x, pads, mode=padding_mode)


def _pad_by_slices(x: Tensor, ndim: int, k: tuple[int, ...], padding_mode: str) -> Tensor:
    """``F.pad`` (reflect / replicate / circular) from slices, flips and ``cat``: its backward is
    deterministic, where PyTorch's CUDA reflection / replication pad backward is not."""
    for axis in range(ndim):
        dim, size = 2 + axis, x.shape[2 + axis]
        lo, hi = (k[axis] - 1) // 2, k[axis] // 2
        if padding_mode == "reflect":
            before, after = x.narrow(dim, 1, lo).flip(dim), x.narrow(dim, size - 1 - hi, hi).flip(dim)
        elif padding_mode == "replicate":
            shape = list(x.shape)
            before = x.narrow(dim, 0, 1).expand(*shape[:dim], lo, *shape[dim + 1 :])
            after = x.narrow(dim, size - 1, 1).expand(*shape[:dim], hi, *shape[dim + 1 :])
        else:  # circular
            before, after = x.narrow(dim, size - lo, lo), x.narrow(dim, 0, hi)
        x = torch.cat([before, x, after], dim)
    return x


def _needs_grad(x: Tensor) -> bool:
    return torch.is_grad_enabled() and x.requires_grad


def _blur_fixing_borders(
    x: Tensor,
    ndim: int,
    k: tuple[int, ...],
    s: tuple[int, ...],
    padding_mode: str,
    weight: Tensor,
    out: tuple[int, ...],
) -> Tensor:
    """Reflect / replicate padding without padding the whole input (odd ``k``, eager, no autograd).

    The zero-padded convolution is right wherever the window stays inside the input; the outputs
    whose window reaches past a border are recomputed from a thin padded slab of the input and
    written over (corners twice, both times right). A reflected or replicated position's value
    depends only on the position, so a slab padded by fewer cells reads the same values. Not
    under autograd: each slice's backward fills a zero gradient of the whole input, which costs
    more than the padded copy saves (measured: ``benchmarks/bench_blur.py``).
    """
    conv, channels = _CONV[ndim], x.shape[1]
    half = tuple(kk // 2 for kk in k)
    y = conv(x, weight, stride=s, padding=half, groups=channels)
    for axis in range(ndim):
        size, kk, ss, lo = x.shape[2 + axis], k[axis], s[axis], half[axis]
        n_top = min(out[axis], -(-lo // ss))  # outputs with o * s - lo < 0
        first_bottom = max(n_top, (size - kk + lo) // ss + 1)  # outputs with o * s - lo + k > size
        for o0, o1 in ((0, n_top), (first_bottom, out[axis])):
            if o1 <= o0:
                continue
            start, end = o0 * ss - lo, (o1 - 1) * ss - lo + kk
            a0, a1 = max(start, 0), min(end, size)
            pads: list[int] = []
            for other in reversed(range(ndim)):
                pads += [a0 - start, end - a1] if other == axis else [half[other], half[other]]
            slab = _pad(x.narrow(2 + axis, a0, a1 - a0), pads, padding_mode, ndim)
            y.narrow(2 + axis, o0, o1 - o0).copy_(conv(slab, weight, stride=s, groups=channels))
    return y


def _blur_pool(
    x: Tensor, ndim: int, kernel_size: IntOrTuple, stride: IntOrTuple, padding_mode: str
) -> Tensor:
    k, s = _check_blur_args(ndim, kernel_size, stride, padding_mode)
    x, unbatched = check_input(x, ndim)
    if any(size == 0 for size in x.shape[2:]):
        raise ValueError(f"input must have non-zero spatial sizes, got shape {tuple(x.shape)}")
    return restore_batch(_blur(x, ndim, k, s, padding_mode), unbatched)


def _max_blur_pool(
    x: Tensor,
    ndim: int,
    kernel_size: IntOrTuple,
    stride: IntOrTuple,
    max_pool_size: IntOrTuple,
    ceil_mode: bool,
    padding_mode: str,
) -> Tensor:
    k, s = _check_blur_args(ndim, kernel_size, stride, padding_mode)
    m = ntuple(max_pool_size, ndim, "max_pool_size")
    if any(v < 1 for v in m):
        raise ValueError(f"max_pool_size must be positive, got {m}")
    check_bool(ceil_mode, "ceil_mode")
    x, unbatched = check_input(x, ndim)
    spatial = tuple(x.shape[2:])
    if any(size < mm for size, mm in zip(spatial, m)):
        raise ValueError(
            f"input of shape {tuple(x.shape)} is smaller than max_pool_size={m} (the dense max pool "
            "has no padding)"
        )
    if x.numel() == 0:  # the empty result, still on the autograd graph
        dense = x.reshape(*x.shape[:2], *(size - mm + 1 for size, mm in zip(spatial, m)))
    elif _channels_last_is_faster(x, ndim):
        # PyTorch's CPU max_pool2d at stride 1 is several times faster on channels-last input
        # (measured: benchmarks/bench_blur.py); the result comes back in the input's layout
        dense = F.max_pool2d(x.contiguous(memory_format=torch.channels_last), m, 1, 0, 1, ceil_mode)
        return restore_batch(_blur(dense, ndim, k, s, padding_mode).contiguous(), unbatched)
    else:
        dense = _MAX[ndim](x, m, (1,) * ndim, (0,) * ndim, (1,) * ndim, ceil_mode=ceil_mode)
    return restore_batch(_blur(dense, ndim, k, s, padding_mode), unbatched)


def _channels_last_is_faster(x: Tensor, ndim: int) -> bool:
    """A contiguous NCHW CPU input in eager mode (channels-last input is fast as it is)."""
    return ndim == 2 and x.device.type == "cpu" and x.is_contiguous() and x.shape[1] > 1 and not is_traced()


_BLUR_DOC = """Anti-aliased downsampling (Zhang 2019): binomial blur per channel, then stride.

    Every channel is correlated with the normalised binomial filter (``kernel_size`` taps per
    axis, the outer product over the {n} axes: ``[1, 2, 1] / 4`` per axis for 3) and sampled
    every ``stride`` positions from the first. The input is padded ``(k - 1) // 2`` before and
    ``k // 2`` after each axis, as the paper's ``antialiased-cnns`` does, with ``padding_mode``.

    Args:
        x: input, batched or batch-less.
        kernel_size: taps of the binomial filter per axis, 1 to 7 (1: plain subsampling).
        stride: the subsampling step.
        padding_mode: ``"reflect"`` (the paper's and timm's default), ``"replicate"``,
            ``"zeros"`` (kornia's ``blur_pool2d``) or ``"circular"``.

    Returns:
        The blurred, subsampled tensor.

    Raises:
        ValueError: for a kernel size outside 1 to 7, or an input too small for reflection
            (every size must exceed ``kernel_size // 2``).

    Shape:
        - Input: ``{shape}`` or ``(C, {dims})``.
        - Output: ``{out_shape}`` or ``(C, {out_dims})``, each ``ceil(size / stride)``.

    Example:
        >>> x = torch.ones(1, 2, {sizes})
        >>> blur_pool{n}d(x).shape
        torch.Size([1, 2, {out}])
    """

_MAX_BLUR_DOC = """The paper's MaxBlurPool: dense max pooling (stride 1), then :func:`blur_pool{n}d`.

    ``max_pool_size`` is the max pool's window (no padding), so each axis first shrinks to
    ``size - max_pool_size + 1``; the blur then subsamples it by ``stride``.

    Args:
        x: input, batched or batch-less.
        kernel_size: taps of the binomial filter per axis, 1 to 7.
        stride: the subsampling step of the blur.
        max_pool_size: window of the dense (stride 1) max pooling.
        ceil_mode: accepted for compatibility with kornia's signature; it changes nothing, since
            a stride-1 max pool has the same size in floor and ceil mode.
        padding_mode: padding of the blur, as in :func:`blur_pool{n}d` (``"zeros"`` is kornia's).

    Returns:
        The pooled tensor.

    Shape:
        - Input: ``{shape}`` or ``(C, {dims})``.
        - Output: ``{out_shape}`` or ``(C, {out_dims})``, each
          ``ceil((size - max_pool_size + 1) / stride)``.

    Example:
        >>> x = torch.ones(1, 2, {sizes})
        >>> max_blur_pool{n}d(x).shape
        torch.Size([1, 2, {max_out}])
    """


@rank_doc(_BLUR_DOC, 1, sizes="8", out="4")
def blur_pool1d(
    x: Tensor, kernel_size: IntOrTuple = 3, stride: IntOrTuple = 2, *, padding_mode: str = "reflect"
) -> Tensor:
    return _blur_pool(x, 1, kernel_size, stride, padding_mode)


@rank_doc(_BLUR_DOC, 2, sizes="8, 5", out="4, 3")
def blur_pool2d(
    x: Tensor, kernel_size: IntOrTuple = 3, stride: IntOrTuple = 2, *, padding_mode: str = "reflect"
) -> Tensor:
    return _blur_pool(x, 2, kernel_size, stride, padding_mode)


@rank_doc(_BLUR_DOC, 3, sizes="4, 4, 5", out="2, 2, 3")
def blur_pool3d(
    x: Tensor, kernel_size: IntOrTuple = 3, stride: IntOrTuple = 2, *, padding_mode: str = "reflect"
) -> Tensor:
    return _blur_pool(x, 3, kernel_size, stride, padding_mode)


@rank_doc(_MAX_BLUR_DOC, 1, sizes="8", max_out="4")
def max_blur_pool1d(
    x: Tensor,
    kernel_size: IntOrTuple = 3,
    stride: IntOrTuple = 2,
    max_pool_size: IntOrTuple = 2,
    ceil_mode: bool = False,
    *,
    padding_mode: str = "reflect",
) -> Tensor:
    return _max_blur_pool(x, 1, kernel_size, stride, max_pool_size, ceil_mode, padding_mode)


@rank_doc(_MAX_BLUR_DOC, 2, sizes="8, 5", max_out="4, 2")
def max_blur_pool2d(
    x: Tensor,
    kernel_size: IntOrTuple = 3,
    stride: IntOrTuple = 2,
    max_pool_size: IntOrTuple = 2,
    ceil_mode: bool = False,
    *,
    padding_mode: str = "reflect",
) -> Tensor:
    return _max_blur_pool(x, 2, kernel_size, stride, max_pool_size, ceil_mode, padding_mode)


@rank_doc(_MAX_BLUR_DOC, 3, sizes="4, 4, 5", max_out="2, 2, 2")
def max_blur_pool3d(
    x: Tensor,
    kernel_size: IntOrTuple = 3,
    stride: IntOrTuple = 2,
    max_pool_size: IntOrTuple = 2,
    ceil_mode: bool = False,
    *,
    padding_mode: str = "reflect",
) -> Tensor:
    return _max_blur_pool(x, 3, kernel_size, stride, max_pool_size, ceil_mode, padding_mode)


class _BlurPoolNd(nn.Module):
    """Stores the arguments of :func:`blur_pool2d`; ``forward`` runs it for rank ``_ndim``.

    No ``channels`` argument and no buffer: the filter is built for the input (and cached).
    """

    _ndim: int

    def __init__(
        self, kernel_size: IntOrTuple = 3, stride: IntOrTuple = 2, *, padding_mode: str = "reflect"
    ) -> None:
        super().__init__()
        _check_blur_args(self._ndim, kernel_size, stride, padding_mode)
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding_mode = padding_mode

    def forward(self, x: Tensor) -> Tensor:
        return _blur_pool(x, self._ndim, self.kernel_size, self.stride, self.padding_mode)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding_mode={self.padding_mode!r}"


class _MaxBlurPoolNd(nn.Module):
    """Stores the arguments of :func:`max_blur_pool2d`; ``forward`` runs it for rank ``_ndim``."""

    _ndim: int

    def __init__(
        self,
        kernel_size: IntOrTuple = 3,
        stride: IntOrTuple = 2,
        max_pool_size: IntOrTuple = 2,
        ceil_mode: bool = False,
        *,
        padding_mode: str = "reflect",
    ) -> None:
        super().__init__()
        _check_blur_args(self._ndim, kernel_size, stride, padding_mode)
        m = ntuple(max_pool_size, self._ndim, "max_pool_size")
        if any(v < 1 for v in m):
            raise ValueError(f"max_pool_size must be positive, got {m}")
        self.kernel_size = kernel_size
        self.stride = stride
        self.max_pool_size = max_pool_size
        self.ceil_mode = check_bool(ceil_mode, "ceil_mode")
        self.padding_mode = padding_mode

    def forward(self, x: Tensor) -> Tensor:
        return _max_blur_pool(
            x,
            self._ndim,
            self.kernel_size,
            self.stride,
            self.max_pool_size,
            self.ceil_mode,
            self.padding_mode,
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, max_pool_size={self.max_pool_size}, "
            f"ceil_mode={self.ceil_mode}, padding_mode={self.padding_mode!r}"
        )


_MODULE_DOC = """{what}

    See :func:`{fn}{n}d` for the arguments. There is no ``channels`` argument: the binomial filter
    is built for the input's channel count at ``forward`` (cached by dtype and device) and is no
    part of the ``state_dict``.

    Shape:
        - Input: ``{shape}`` or ``(C, {dims})``.
        - Output: ``{out_shape}`` or ``(C, {out_dims})``.

    Example:
        >>> pool = {cls}{n}d()
        >>> pool(torch.ones(1, 2, {sizes})).shape
        torch.Size([1, 2, {out}])
    """

_BLUR = {"what": "Anti-aliased downsampling: binomial blur, then stride (Zhang 2019).", "fn": "blur_pool"}
_BLUR = {**_BLUR, "cls": "BlurPool"}
_MAX_BLUR = {"what": "MaxBlurPool: dense max pooling, then blur pooling (Zhang 2019).", "fn": "max_blur_pool"}
_MAX_BLUR = {**_MAX_BLUR, "cls": "MaxBlurPool"}


@rank_doc(_MODULE_DOC, 1, sizes="8", out="4", **_BLUR)
class BlurPool1d(_BlurPoolNd):
    _ndim = 1


@rank_doc(_MODULE_DOC, 2, sizes="8, 5", out="4, 3", **_BLUR)
class BlurPool2d(_BlurPoolNd):
    _ndim = 2


@rank_doc(_MODULE_DOC, 3, sizes="4, 4, 5", out="2, 2, 3", **_BLUR)
class BlurPool3d(_BlurPoolNd):
    _ndim = 3


@rank_doc(_MODULE_DOC, 1, sizes="8", out="4", **_MAX_BLUR)
class MaxBlurPool1d(_MaxBlurPoolNd):
    _ndim = 1


@rank_doc(_MODULE_DOC, 2, sizes="8, 5", out="4, 2", **_MAX_BLUR)
class MaxBlurPool2d(_MaxBlurPoolNd):
    _ndim = 2


@rank_doc(_MODULE_DOC, 3, sizes="4, 4, 5", out="2, 2, 2", **_MAX_BLUR)
class MaxBlurPool3d(_MaxBlurPoolNd):
    _ndim = 3


for _ndim, _blur_cls, _max_blur_cls in (
    (1, BlurPool1d, MaxBlurPool1d),
    (2, BlurPool2d, MaxBlurPool2d),
    (3, BlurPool3d, MaxBlurPool3d),
):
    register_pool(
        f"blur{_ndim}d",
        _blur_cls,
        family="blur",
        dims=(_ndim,),
        description="anti-aliased: binomial blur, then stride (BlurPool)",
        example_kwargs={},
    )
    register_pool(
        f"maxblur{_ndim}d",
        _max_blur_cls,
        family="blur",
        dims=(_ndim,),
        description="dense max (stride 1), then blur pool (MaxBlurPool)",
        example_kwargs={},
    )
