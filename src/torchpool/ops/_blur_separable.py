"""BlurPool, the separable path (:mod:`.blur`): reflect / replicate / circular padding with even
kernels on the CPU, one axis after the other, each output a sum of weighted strided slices of the
input, the padded cells read directly from the reflected / replicated / wrapped input cells (no
padded copy), in cache-sized chunks; one autograd node.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

from ._blur_filter import binomial_filter

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
