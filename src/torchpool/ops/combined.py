"""Combined pooling: average and max together (section 4 of the survey).

* ``avgmax`` (add): ``0.5 * (avg + max)``; ``catavgmax``: ``cat([avg, max], dim=channels)``,
  both windowed and adaptive. The adaptive forms equal the survey's ``add_avgmax_pool2d`` and
  ``cat_avgmax_pool2d`` snippets (timm's ``adaptive_avgmax_pool2d``).
* Mixed, learned mixed and gated pooling, which weigh max against average, are in
  :mod:`torchpool.ops.mixed`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_bool, check_input, check_window
from .._deterministic import avg_pool3d
from .._deterministic import max_pool3d as _max_pool3d
from .._shape import IntOrTuple, pool_output_size
from ..registry import register_pool
from ._base import WindowPool
from ._doc import rank_doc
from .adaptive import _adaptive_pool

__all__ = [
    "AdaptiveAvgMaxPool1d",
    "AdaptiveAvgMaxPool2d",
    "AdaptiveAvgMaxPool3d",
    "AdaptiveCatAvgMaxPool1d",
    "AdaptiveCatAvgMaxPool2d",
    "AdaptiveCatAvgMaxPool3d",
    "AvgMaxPool1d",
    "AvgMaxPool2d",
    "AvgMaxPool3d",
    "CatAvgMaxPool1d",
    "CatAvgMaxPool2d",
    "CatAvgMaxPool3d",
    "adaptive_avgmax_pool1d",
    "adaptive_avgmax_pool2d",
    "adaptive_avgmax_pool3d",
    "adaptive_catavgmax_pool1d",
    "adaptive_catavgmax_pool2d",
    "adaptive_catavgmax_pool3d",
    "avgmax_pool1d",
    "avgmax_pool2d",
    "avgmax_pool3d",
    "catavgmax_pool1d",
    "catavgmax_pool2d",
    "catavgmax_pool3d",
]


_AVG: dict[int, Callable[..., Tensor]] = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: avg_pool3d}
_MAX: dict[int, Callable[..., Tensor]] = {1: F.max_pool1d, 2: F.max_pool2d, 3: _max_pool3d}


def _avg_and_max(
    x: Tensor,
    ndim: int,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    ceil_mode: bool,
    count_include_pad: bool,
    dilation: IntOrTuple = 1,
) -> tuple[Tensor, Tensor]:
    window = check_window(kernel_size, stride, padding, ndim, dilation)
    check_bool(ceil_mode, "ceil_mode")
    check_bool(count_include_pad, "count_include_pad")
    check_input(x, ndim, window=window, ceil_mode=ceil_mode)
    k, s, p, d = window.kernel_size, window.stride, window.padding, window.dilation
    out = pool_output_size(tuple(x.shape[-ndim:]), k, s, p, d, ceil_mode)
    if x.shape[-ndim - 1] == 0:  # no channels: the empty result (PyTorch's window pools refuse C = 0)
        empty = x.reshape(*x.shape[:-ndim], *out)
        return empty, empty
    mx = _MAX[ndim](x, k, s, p, d, ceil_mode=ceil_mode)
    if all(v == 1 for v in d):
        avg = _AVG[ndim](x, k, s, p, ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    else:
        avg = _dilated_avg(x, ndim, k, s, p, d, out, count_include_pad)
    return avg, mx


def _dilated_avg(
    x: Tensor,
    ndim: int,
    k: tuple[int, ...],
    s: tuple[int, ...],
    p: tuple[int, ...],
    d: tuple[int, ...],
    out: tuple[int, ...],
    count_include_pad: bool,
) -> Tensor:
    """Average over dilated windows (PyTorch's average pooling has none): a sum of strided views.

    The window's cells are ``start + a * d`` for ``a`` in ``[0, k)``; the divisor follows
    ``avg_pool``'s rule cell by cell: with ``count_include_pad`` the cells inside the padded input
    ``[-p, size + p)`` (so ceil-mode cells past it do not count), otherwise those inside the input.
    """
    compute = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    spatial = x.shape[-ndim:]
    # zeros on the far side too, so that every cell of every (ceil-mode) window can be read
    right = [
        max(pp, (o - 1) * ss + dd * (kk - 1) + 1 - pp - i)
        for o, ss, dd, kk, pp, i in zip(out, s, d, k, p, spatial)
    ]
    pads: list[int] = []
    for dim in reversed(range(ndim)):
        pads += [p[dim], right[dim]]
    padded = F.pad(compute, pads)
    lead = (slice(None),) * (padded.dim() - ndim)
    views = [
        padded[
            lead
            + tuple(slice(a * dd, a * dd + (o - 1) * ss + 1, ss) for a, dd, o, ss in zip(taps, d, out, s))
        ]
        for taps in itertools.product(*(range(kk) for kk in k))
    ]
    total = views[0]
    for view in views[1:]:
        total = total + view
    divisor = torch.ones((), dtype=compute.dtype, device=x.device)
    for dim in range(ndim):
        low, high = (-p[dim], spatial[dim] + p[dim]) if count_include_pad else (0, spatial[dim])
        counts = [
            sum(low <= o * s[dim] - p[dim] + a * d[dim] < high for a in range(k[dim]))
            for o in range(out[dim])
        ]
        shape = [1] * ndim
        shape[dim] = out[dim]
        divisor = divisor * torch.tensor(counts, dtype=compute.dtype, device=x.device).reshape(shape)
    return (total / divisor).to(x.dtype)


def _avgmax(
    x: Tensor,
    ndim: int,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    ceil_mode: bool,
    count_include_pad: bool,
    dilation: IntOrTuple,
) -> Tensor:
    avg, mx = _avg_and_max(x, ndim, kernel_size, stride, padding, ceil_mode, count_include_pad, dilation)
    return 0.5 * avg + 0.5 * mx  # equals 0.5 * (avg + mx) bit for bit, without overflowing


def _catavgmax(
    x: Tensor,
    ndim: int,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    ceil_mode: bool,
    count_include_pad: bool,
    dilation: IntOrTuple,
) -> Tensor:
    avg, mx = _avg_and_max(x, ndim, kernel_size, stride, padding, ceil_mode, count_include_pad, dilation)
    return torch.cat([avg, mx], dim=-(ndim + 1))


def _adaptive_avgmax(x: Tensor, ndim: int, output_size: IntOrTuple) -> Tensor:
    avg, mx = _adaptive_pool(x, ndim, output_size, "avg"), _adaptive_pool(x, ndim, output_size, "max")
    return 0.5 * avg + 0.5 * mx  # equals 0.5 * (avg + mx) bit for bit, without overflowing


def _adaptive_catavgmax(x: Tensor, ndim: int, output_size: IntOrTuple) -> Tensor:
    avg, mx = _adaptive_pool(x, ndim, output_size, "avg"), _adaptive_pool(x, ndim, output_size, "max")
    return torch.cat([avg, mx], dim=-(ndim + 1))


_WINDOW_ARGS_DOC = """x: input, batched or batch-less.
        kernel_size: window size.
        stride: window step; ``None`` means ``kernel_size``.
        padding: implicit padding on both sides.
        ceil_mode: use ceil instead of floor for the output size.
        count_include_pad: include the zero padding in the average's divisor.
        dilation: spacing of the window's cells, as in max pooling; the average of a dilated window
            divides by the cells inside the padded input (``count_include_pad``) or the input."""

_AVGMAX_DOC = """Half the sum of average and max over each window: ``0.5 * (avg + max)``.

    Arguments are those of ``torch.nn.functional.avg_pool{n}d``; the max uses ``-inf`` padding.

    Args:
        {args}

    Returns:
        The pooled tensor.

    Shape:
        - Input: ``(N, C, *S_in)`` or ``(C, *S_in)`` with {n} spatial dims.
        - Output: ``(N, C, *S_out)`` or ``(C, *S_out)``, ``S_out`` as for ``max_pool{n}d``.

    Example:
        >>> x = torch.arange(8.0).reshape(1, 1, {example_shape})
        >>> avgmax_pool{n}d(x, 2).flatten().tolist()
        {example}
    """

_CATAVGMAX_DOC = """Average and max over each window, concatenated on the channel dimension.

    Arguments are those of ``torch.nn.functional.avg_pool{n}d``; channels ``[0, C)`` hold
    the average and ``[C, 2C)`` the max.

    Args:
        {args}

    Returns:
        The pooled tensor with twice the channels.

    Shape:
        - Input: ``(N, C, *S_in)`` or ``(C, *S_in)`` with {n} spatial dims.
        - Output: ``(N, 2C, *S_out)`` or ``(2C, *S_out)``.

    Example:
        >>> x = torch.ones(2, 3, *[4] * {n})
        >>> catavgmax_pool{n}d(x, 2).shape
        torch.Size([2, 6, {out}])
    """

_ADAPTIVE_AVGMAX_DOC = """The survey's ``add_avgmax_pool2d``: half the adaptive average plus max.

    Args:
        x: input, batched or batch-less.
        output_size: the target output size (1 for global pooling).

    Returns:
        The pooled tensor.

    Shape:
        - Input: ``(N, C, *S_in)`` or ``(C, *S_in)`` with {n} spatial dims.
        - Output: ``(N, C, *output_size)`` or ``(C, *output_size)``.

    Example:
        >>> x = torch.arange(8.0).reshape(1, 1, {example_shape})
        >>> adaptive_avgmax_pool{n}d(x).flatten().tolist()
        [5.25]
    """

_ADAPTIVE_CATAVGMAX_DOC = """Adaptive average and max, concatenated on channels.

    Args:
        x: input, batched or batch-less.
        output_size: the target output size (1 for global pooling).

    Returns:
        The pooled tensor with twice the channels.

    Shape:
        - Input: ``(N, C, *S_in)`` or ``(C, *S_in)`` with {n} spatial dims.
        - Output: ``(N, 2C, *output_size)`` or ``(2C, *output_size)``.

    Example:
        >>> x = torch.arange(8.0).reshape(1, 1, {example_shape})
        >>> adaptive_catavgmax_pool{n}d(x).flatten().tolist()
        [3.5, 7.0]
    """


@rank_doc(_AVGMAX_DOC, 1, args=_WINDOW_ARGS_DOC, example_shape="8", example="[0.75, 2.75, 4.75, 6.75]")
def avgmax_pool1d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    *,
    dilation: IntOrTuple = 1,
) -> Tensor:
    return _avgmax(x, 1, kernel_size, stride, padding, ceil_mode, count_include_pad, dilation)


@rank_doc(_AVGMAX_DOC, 2, args=_WINDOW_ARGS_DOC, example_shape="2, 4", example="[3.75, 5.75]")
def avgmax_pool2d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    *,
    dilation: IntOrTuple = 1,
) -> Tensor:
    return _avgmax(x, 2, kernel_size, stride, padding, ceil_mode, count_include_pad, dilation)


@rank_doc(_AVGMAX_DOC, 3, args=_WINDOW_ARGS_DOC, example_shape="2, 2, 2", example="[5.25]")
def avgmax_pool3d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    *,
    dilation: IntOrTuple = 1,
) -> Tensor:
    return _avgmax(x, 3, kernel_size, stride, padding, ceil_mode, count_include_pad, dilation)


@rank_doc(_CATAVGMAX_DOC, 1, args=_WINDOW_ARGS_DOC, out="2")
def catavgmax_pool1d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    *,
    dilation: IntOrTuple = 1,
) -> Tensor:
    return _catavgmax(x, 1, kernel_size, stride, padding, ceil_mode, count_include_pad, dilation)


@rank_doc(_CATAVGMAX_DOC, 2, args=_WINDOW_ARGS_DOC, out="2, 2")
def catavgmax_pool2d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    *,
    dilation: IntOrTuple = 1,
) -> Tensor:
    return _catavgmax(x, 2, kernel_size, stride, padding, ceil_mode, count_include_pad, dilation)


@rank_doc(_CATAVGMAX_DOC, 3, args=_WINDOW_ARGS_DOC, out="2, 2, 2")
def catavgmax_pool3d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    *,
    dilation: IntOrTuple = 1,
) -> Tensor:
    return _catavgmax(x, 3, kernel_size, stride, padding, ceil_mode, count_include_pad, dilation)


@rank_doc(_ADAPTIVE_AVGMAX_DOC, 1, example_shape="8")
def adaptive_avgmax_pool1d(x: Tensor, output_size: IntOrTuple = 1) -> Tensor:
    return _adaptive_avgmax(x, 1, output_size)


@rank_doc(_ADAPTIVE_AVGMAX_DOC, 2, example_shape="2, 4")
def adaptive_avgmax_pool2d(x: Tensor, output_size: IntOrTuple = 1) -> Tensor:
    return _adaptive_avgmax(x, 2, output_size)


@rank_doc(_ADAPTIVE_AVGMAX_DOC, 3, example_shape="2, 2, 2")
def adaptive_avgmax_pool3d(x: Tensor, output_size: IntOrTuple = 1) -> Tensor:
    return _adaptive_avgmax(x, 3, output_size)


@rank_doc(_ADAPTIVE_CATAVGMAX_DOC, 1, example_shape="8")
def adaptive_catavgmax_pool1d(x: Tensor, output_size: IntOrTuple = 1) -> Tensor:
    return _adaptive_catavgmax(x, 1, output_size)


@rank_doc(_ADAPTIVE_CATAVGMAX_DOC, 2, example_shape="2, 4")
def adaptive_catavgmax_pool2d(x: Tensor, output_size: IntOrTuple = 1) -> Tensor:
    return _adaptive_catavgmax(x, 2, output_size)


@rank_doc(_ADAPTIVE_CATAVGMAX_DOC, 3, example_shape="2, 2, 2")
def adaptive_catavgmax_pool3d(x: Tensor, output_size: IntOrTuple = 1) -> Tensor:
    return _adaptive_catavgmax(x, 3, output_size)


def _init_dilation(pool: WindowPool, ndim: int, dilation: IntOrTuple) -> IntOrTuple:
    """Checks ``dilation`` at construction (shared with :mod:`torchpool.ops.mixed`)."""
    check_window(pool.kernel_size, pool.stride, pool.padding, ndim, dilation)
    return dilation


class _AvgMaxNd(WindowPool):
    """Stores the arguments of :func:`avgmax_pool2d`; ``forward`` runs it for rank ``_ndim``."""

    _ndim: int
    _repr_options = ("ceil_mode", "count_include_pad")

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        *,
        dilation: IntOrTuple = 1,
    ) -> None:
        super().__init__(kernel_size, stride, padding)
        self.ceil_mode = check_bool(ceil_mode, "ceil_mode")
        self.count_include_pad = count_include_pad
        self.dilation = _init_dilation(self, self._ndim, dilation)

    def forward(self, x: Tensor) -> Tensor:
        return _avgmax(
            x,
            self._ndim,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.dilation,
        )


class _CatAvgMaxNd(_AvgMaxNd):
    """:class:`_AvgMaxNd` running :func:`catavgmax_pool2d` (same arguments)."""

    def forward(self, x: Tensor) -> Tensor:
        return _catavgmax(
            x,
            self._ndim,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.dilation,
        )


class _AdaptiveAvgMaxNd(nn.Module):
    """Stores ``output_size``; ``forward`` runs :func:`adaptive_avgmax_pool2d` for rank ``_ndim``."""

    _ndim: int

    def __init__(self, output_size: IntOrTuple = 1) -> None:
        super().__init__()
        self.output_size = output_size

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

    def forward(self, x: Tensor) -> Tensor:
        return _adaptive_avgmax(x, self._ndim, self.output_size)


class _AdaptiveCatAvgMaxNd(_AdaptiveAvgMaxNd):
    """:class:`_AdaptiveAvgMaxNd` running :func:`adaptive_catavgmax_pool2d`."""

    def forward(self, x: Tensor) -> Tensor:
        return _adaptive_catavgmax(x, self._ndim, self.output_size)


_MODULE_DOC = """Module form of :func:`{fn}{n}d`; arguments as for the function.

    Shape:
        - Input: ``(N, C, *S_in)`` or ``(C, *S_in)``.
        - Output: ``(N, {c}C, *S_out)`` or ``({c}C, *S_out)``.

    Example:
        >>> {cls}{n}d({arg})(torch.ones(1, 3, {sizes})).shape
        torch.Size([1, {channels}, {out}])
    """


_AVGMAX = dict(fn="avgmax_pool", cls="AvgMaxPool", c="", arg=2, channels=3)
_CATAVGMAX = dict(fn="catavgmax_pool", cls="CatAvgMaxPool", c=2, arg=2, channels=6)


@rank_doc(_MODULE_DOC, 1, sizes="4", out="2", **_AVGMAX)
class AvgMaxPool1d(_AvgMaxNd):
    _ndim = 1


@rank_doc(_MODULE_DOC, 2, sizes="4, 4", out="2, 2", **_AVGMAX)
class AvgMaxPool2d(_AvgMaxNd):
    _ndim = 2


@rank_doc(_MODULE_DOC, 3, sizes="4, 4, 4", out="2, 2, 2", **_AVGMAX)
class AvgMaxPool3d(_AvgMaxNd):
    _ndim = 3


@rank_doc(_MODULE_DOC, 1, sizes="4", out="2", **_CATAVGMAX)
class CatAvgMaxPool1d(_CatAvgMaxNd):
    _ndim = 1


@rank_doc(_MODULE_DOC, 2, sizes="4, 4", out="2, 2", **_CATAVGMAX)
class CatAvgMaxPool2d(_CatAvgMaxNd):
    _ndim = 2


@rank_doc(_MODULE_DOC, 3, sizes="4, 4, 4", out="2, 2, 2", **_CATAVGMAX)
class CatAvgMaxPool3d(_CatAvgMaxNd):
    _ndim = 3


_ADAPTIVE_AVGMAX = dict(fn="adaptive_avgmax_pool", cls="AdaptiveAvgMaxPool", c="", arg=1, channels=3)
_ADAPTIVE_CATAVGMAX = dict(fn="adaptive_catavgmax_pool", cls="AdaptiveCatAvgMaxPool", c=2, arg=1, channels=6)


@rank_doc(_MODULE_DOC, 1, sizes="4", out="1", **_ADAPTIVE_AVGMAX)
class AdaptiveAvgMaxPool1d(_AdaptiveAvgMaxNd):
    _ndim = 1


@rank_doc(_MODULE_DOC, 2, sizes="4, 4", out="1, 1", **_ADAPTIVE_AVGMAX)
class AdaptiveAvgMaxPool2d(_AdaptiveAvgMaxNd):
    _ndim = 2


@rank_doc(_MODULE_DOC, 3, sizes="4, 4, 4", out="1, 1, 1", **_ADAPTIVE_AVGMAX)
class AdaptiveAvgMaxPool3d(_AdaptiveAvgMaxNd):
    _ndim = 3


@rank_doc(_MODULE_DOC, 1, sizes="4", out="1", **_ADAPTIVE_CATAVGMAX)
class AdaptiveCatAvgMaxPool1d(_AdaptiveCatAvgMaxNd):
    _ndim = 1


@rank_doc(_MODULE_DOC, 2, sizes="4, 4", out="1, 1", **_ADAPTIVE_CATAVGMAX)
class AdaptiveCatAvgMaxPool2d(_AdaptiveCatAvgMaxNd):
    _ndim = 2


@rank_doc(_MODULE_DOC, 3, sizes="4, 4, 4", out="1, 1, 1", **_ADAPTIVE_CATAVGMAX)
class AdaptiveCatAvgMaxPool3d(_AdaptiveCatAvgMaxNd):
    _ndim = 3


for _ndim, _avgmax_cls, _catavgmax_cls, _adaptive_avgmax_cls, _adaptive_catavgmax_cls in (
    (1, AvgMaxPool1d, CatAvgMaxPool1d, AdaptiveAvgMaxPool1d, AdaptiveCatAvgMaxPool1d),
    (2, AvgMaxPool2d, CatAvgMaxPool2d, AdaptiveAvgMaxPool2d, AdaptiveCatAvgMaxPool2d),
    (3, AvgMaxPool3d, CatAvgMaxPool3d, AdaptiveAvgMaxPool3d, AdaptiveCatAvgMaxPool3d),
):
    register_pool(
        f"avgmax{_ndim}d",
        _avgmax_cls,
        family="combined",
        dims=(_ndim,),
        description="0.5 * (avg + max) per window",
        example_kwargs={"kernel_size": 2},
    )
    register_pool(
        f"catavgmax{_ndim}d",
        _catavgmax_cls,
        family="combined",
        dims=(_ndim,),
        channel_multiplier=2,
        description="[avg, max] per window, on channels",
        example_kwargs={"kernel_size": 2},
    )
    register_pool(
        f"adaptive_avgmax{_ndim}d",
        _adaptive_avgmax_cls,
        family="combined",
        dims=(_ndim,),
        description="0.5 * (adaptive avg + adaptive max) (the survey's add_avgmax_pool2d)",
    )
    register_pool(
        f"adaptive_catavgmax{_ndim}d",
        _adaptive_catavgmax_cls,
        family="combined",
        dims=(_ndim,),
        channel_multiplier=2,
        description="[adaptive avg, adaptive max] on channels (the survey's cat_avgmax_pool2d)",
    )
