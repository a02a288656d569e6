"""SoftPool (Stergiou, Poppe & Kalliatakis 2021): the softmax-weighted mean of each window.

``y = sum_i e^{a_i} a_i / sum_j e^{a_j}`` over the cells ``i`` of a window. Padding cells are not
part of any window (they carry no weight); the output lies between the window's mean and max.

How it is computed (both exact in real arithmetic, since any constant subtracted from every
exponent of a window cancels between numerator and denominator):

* **fast path** (eager mode): one stabiliser per plane, ``c = max`` over the plane (detached:
  its gradient cancels), then ``sum(e * a) / sum(e)`` over each window with ``e = exp(a - c)``
  (the window sums: separable in-place sums of strided slices); no overflow (every exponent is
  ``<= 0``). Its only failure is underflow, when a whole window lies far below its plane's max.
  The path checks its own result (every window's ``sum(e)`` must reach ``exp(-limit)``: then
  the window's largest weight is a normal number and the result is exact to rounding) and
  recomputes the planes where it does not (or that hold a NaN or an infinity) by
* **the window path**: each window's own max ``m`` (over strided views of the padded input, one
  per window cell), then ``sum e_i a_i / sum e_i`` with ``e_i = exp(a_i - m)``: safe for any
  magnitude and sign. Traced code (``torch.compile``, ``torch.export``, ONNX) always takes it,
  since the check is data-dependent.

Half-precision input is computed in float32 and rounded once.
"""

from __future__ import annotations

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
from ._base import WindowPool
from ._doc import rank_doc

__all__ = [
    "SoftPool1d",
    "SoftPool2d",
    "SoftPool3d",
    "soft_pool1d",
    "soft_pool2d",
    "soft_pool3d",
]

#: how far (in the exponent) a window's max may lie below its plane's max on the fast path.
_LIMIT = {torch.float32: 60.0, torch.float64: 600.0}


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
    with torch.no_grad():
        c = a.amax(dim=dims, keepdim=True)
    e = (a - c).exp_()  # in place on the fresh difference: one buffer less
    out = pool_output_size(tuple(a.shape[-ndim:]), k, s, p, 1, ceil_mode)
    num = _window_sums(e * a, k, s, p, out)
    den = _window_sums(e, k, s, p, out)
    tiny = math.exp(-_LIMIT[a.dtype])  # the window max's weight is at least this
    with torch.no_grad():
        redo = ~(den >= tiny).all(dim=dims[-1])  # also catches NaN (a NaN or +inf in the plane)
        for _ in dims[:-1]:
            redo = redo.any(dim=-1)
        any_redo = bool(redo.any())
    if not any_redo:
        return num / den
    redo = redo.reshape(*redo.shape, *(1,) * ndim)
    # den = 1 in the planes redone: no 0 / 0 there, not even in the (unused) gradient
    return torch.where(redo, _soft_windows(a, ndim, k, s, p, ceil_mode), num / den.masked_fill(redo, 1.0))


def _window_sums(
    t: Tensor, k: tuple[int, ...], s: tuple[int, ...], p: tuple[int, ...], out: tuple[int, ...]
) -> Tensor:
    """The sum over each (zero-padded) window of ``t``'s last ``len(k)`` dims; ``out``: the output size.

    Separable sums of ``k`` strided slices per dimension, added in place into one buffer (the
    zero padding skipped, not materialised), with the transposed backward pass: on the CPU
    several times faster than ``avg_pool`` and its backward (the callers' ratios cancel the
    divisor anyway).
    """
    result: Tensor = _WindowSums.apply(t, k, s, p, out)  # type: ignore[no-untyped-call]
    return result


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


class _WindowSums(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, t: Tensor, k: tuple[int, ...], s: tuple[int, ...], p: tuple[int, ...], out: tuple[int, ...]
    ) -> Tensor:
        ndim = len(k)
        ctx.steps = []
        for axis in range(ndim):
            dim = t.dim() - ndim + axis
            shape = list(t.shape)
            ranges = _tap_ranges(shape[dim], k[axis], s[axis], p[axis], out[axis])
            ctx.steps.append((tuple(shape), dim, s[axis], ranges))
            shape[dim] = out[axis]
            total = t.new_zeros(shape)
            step = (slice(None),) * dim + (slice(None, None, s[axis]),)
            for lo, n, start in ranges:
                total.narrow(dim, lo, n).add_(t.narrow(dim, start, (n - 1) * s[axis] + 1)[step])
            t = total
        return t

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        for shape, dim, stride, ranges in reversed(ctx.steps):
            full = grad.new_zeros(shape)
            step = (slice(None),) * dim + (slice(None, None, stride),)
            for lo, n, start in ranges:
                full.narrow(dim, start, (n - 1) * stride + 1)[step].add_(grad.narrow(dim, lo, n))
            grad = full
        return grad, None, None, None, None


def _soft_windows(
    a: Tensor, ndim: int, k: tuple[int, ...], s: tuple[int, ...], p: tuple[int, ...], ceil_mode: bool
) -> Tensor:
    """Each window's own max as stabiliser, over one strided view of the padded input per window cell."""
    spatial = a.shape[-ndim:]
    out = pool_output_size(tuple(spatial), k, s, p, 1, ceil_mode)
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
        >>> soft_pool{n}d(x, {example_kernel}).flatten().tolist()
        {example}
    """


@rank_doc(_SOFT_DOC, 1, example_shape="4", example_kernel="2", example="[0.7310585975646973, 1.0]")
def soft_pool1d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
) -> Tensor:
    return _soft(x, 1, kernel_size, stride, padding, ceil_mode)


@rank_doc(_SOFT_DOC, 2, example_shape="2, 2", example_kernel="2", example="[0.8907682299613953]")
def soft_pool2d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
) -> Tensor:
    return _soft(x, 2, kernel_size, stride, padding, ceil_mode)


@rank_doc(_SOFT_DOC, 3, example_shape="1, 2, 2", example_kernel="(1, 2, 2)", example="[0.8907682299613953]")
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
