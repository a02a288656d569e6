"""Anti-aliased (blur) pooling: BlurPool and MaxBlurPool (Zhang 2019, "Making Convolutional Networks
Shift-Invariant Again", ICML, arXiv 1904.11486).

* ``blur_pool``: blur every channel with the normalised binomial filter of ``kernel_size`` taps per
  axis (``[1, 2, 1] / 4`` for 3), then keep every ``stride``-th sample; the input is padded
  ``(k - 1) // 2`` before and ``k // 2`` after each axis, as in the paper's ``antialiased-cnns``
  (``Downsample``), so the output has ``ceil(L / stride)`` samples per axis.
* ``max_blur_pool``: dense max pooling (``max_pool_size`` window, stride 1, no padding), then
  ``blur_pool``: the paper's ``MaxBlurPool``.

How it runs. In eager mode on the CPU in float32 both pools run the C kernel ``csrc/blur.c``
(:mod:`._blur_native`, built on first use): the separable blur (the window's rows summed into a
padded row buffer, then the horizontal taps with the stride, in vector registers), every padding
mode, kernel and stride, and for ``max_blur_pool`` the dense max pool fused in front of it (a
plane at a time; the gradient goes to the cell PyTorch's max pool picks: the first largest, or the
last NaN). Its input gradient is the transposed blur, accumulated a plane at a time; the results
do not depend on the thread count. It sums in another order than a convolution: within float32
rounding (about 1e-7 relative) of kornia's, no longer bit for bit. Where the kernel cannot be
built (no C compiler), and in float64, these run in PyTorch: ``padding_mode="zeros"`` is one
depthwise convolution with the outer product of the 1-d binomial filters, padded by the
convolution itself: kornia's result bit for bit. In eager mode on the CPU in float32 / float64
with odd kernels it runs on a few samples at a time (PyTorch's CPU depthwise convolution, and much
more its input gradient, is faster on small batches: ``benchmarks/bench_blur.py``), one autograd
node. The other modes there run that same zero-padded convolution and add a correction to the
border outputs only (per axis the padded filter is the zero-padded one plus ``D``, the padded
cells' weights moved onto the input cells they copy: a few rows and columns; in 2-d two thin
GEMMs), whose backward is the convolution's input gradient plus the transposed correction (double
backward works). Even kernels there are separable: one axis after the other, each output a sum of
weighted strided slices of the input, the padded cells read directly from the reflected /
replicated / wrapped input cells (no padded copy). Both measured faster than ``F.pad`` and the
convolution (``benchmarks/bench_blur.py``). Elsewhere (half precision, other devices, traced code)
the input is padded and convolved. The filter's taps are dyadic rationals, exact in every
floating dtype. The convolution's filter is built for the input's channel count and cached by
kernel, channels, dtype and device: the Modules hold no parameter and no buffer, so their
``state_dict`` is empty.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_bool, check_choice, check_input, is_traced, restore_batch
from .._compat import cpu_kernel_missing
from .._deterministic import max_pool3d as _max_pool3d
from .._deterministic import needs_deterministic_backward
from .._shape import IntOrTuple, ntuple
from ..registry import register_pool
from . import _blur_native
from ._blur_border import _BorderFixedBlur
from ._blur_filter import _CONV, MAX_KERNEL, _weight, binomial_filter
from ._blur_separable import _axis_plan, _SeparableBlur
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

_MAX: dict[int, Callable[..., Tensor]] = {1: F.max_pool1d, 2: F.max_pool2d, 3: _max_pool3d}


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


def _separable_ok(x: Tensor) -> bool:
    """Where the eager CPU paths run: the batch-chunked convolution with its border correction (odd
    kernels; none for zeros, which stays kornia's convolution bit for bit) or, for padding other
    than zeros, the separable blur (even), on CPU float32 / float64, measured faster there than
    one convolution of the (padded) input (``benchmarks/bench_blur.py``); half precision keeps the
    padded convolution's wider accumulation."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and not is_traced()


def _check_room(spatial: tuple[int, ...], k: tuple[int, ...], padding_mode: str) -> None:
    """The sizes reflection and circular padding need (the blur's input: MaxBlurPool's dense map)."""
    if padding_mode == "reflect" and any(kk // 2 >= size for kk, size in zip(k, spatial)):
        raise ValueError(
            f"input of spatial size {spatial} is too small for padding_mode='reflect' with "
            f"kernel_size={k}: every size must exceed kernel_size // 2 (use 'replicate' or 'zeros')"
        )
    if padding_mode == "circular" and any(kk // 2 > size for kk, size in zip(k, spatial)):
        raise ValueError(
            f"input of spatial size {spatial} is too small for padding_mode='circular' with "
            f"kernel_size={k}: every size must be at least kernel_size // 2"
        )


def _blur(x: Tensor, ndim: int, k: tuple[int, ...], s: tuple[int, ...], padding_mode: str) -> Tensor:
    """Blur and subsample a batched input whose arguments are checked."""
    spatial = x.shape[-ndim:]
    _check_room(tuple(spatial), k, padding_mode)
    channels = x.shape[1]
    out = tuple(-(-size // ss) for size, ss in zip(spatial, s))
    if x.numel() == 0:  # no samples or no channels: the empty result, still on the autograd graph
        return x.reshape(*x.shape[:2], *out)
    if _blur_native.available(x):  # eager, CPU, float32: the C kernel, every mode and kernel
        return _blur_native.blur(x, k, s, padding_mode)
    odd = all(kk % 2 == 1 for kk in k)
    if odd and _separable_ok(x):
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
    if x.numel() and _blur_native.available(x):  # eager, CPU, float32: the max and the blur in C
        _check_room(tuple(size - mm + 1 for size, mm in zip(spatial, m)), k, padding_mode)
        return restore_batch(_blur_native.max_blur(x, m, k, s, padding_mode), unbatched)
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
    #: ``kernel_size`` is the blur filter, not a pooling window: ``swap_pooling`` does not carry a
    #: replaced pool's window (or its padding) over.
    pooling_window: ClassVar[str | None] = None

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
    #: the pooling window is the dense max pool's ``max_pool_size`` (``kernel_size`` is the blur):
    #: ``swap_pooling`` carries a replaced pool's window there.
    pooling_window: ClassVar[str | None] = "max_pool_size"

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
