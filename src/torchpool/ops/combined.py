"""Combined pooling: average and max together (section 4 of the survey).

* ``avgmax`` (add): ``0.5 * (avg + max)``; ``catavgmax``: ``cat([avg, max], dim=channels)``,
  both windowed and adaptive. The adaptive forms equal the survey's ``add_avgmax_pool2d`` and
  ``cat_avgmax_pool2d`` snippets (timm's ``adaptive_avgmax_pool2d``).
* Mixed pooling (Yu et al. 2014): ``lam * max + (1 - lam) * avg`` with ``lam`` in {0, 1}
  drawn per sample in training, and its expectation at eval.
* Learned mixed and gated pooling (Lee, Gallagher, Tu 2016, arXiv 1509.08985): a learned
  proportion ``a`` in [0, 1] (per layer or per channel), or a gate ``sigmoid(w . x_R)``
  computed from each window by a learned ``k x k`` mask.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_bool, check_float_range, check_generator, check_input, check_window
from .._deterministic import avg_pool3d
from .._deterministic import max_pool3d as _max_pool3d
from .._shape import IntOrTuple, pool_output_size
from ..registry import register_pool
from ._base import WindowPool
from .adaptive import adaptive_pool

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
    "GatedPool2d",
    "LearnedMixedPool2d",
    "MixedPool1d",
    "MixedPool2d",
    "MixedPool3d",
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
    "mixed_pool1d",
    "mixed_pool2d",
    "mixed_pool3d",
]


_AVG: dict[int, Callable[..., Tensor]] = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: avg_pool3d}
_MAX: dict[int, Callable[..., Tensor]] = {1: F.max_pool1d, 2: F.max_pool2d, 3: _max_pool3d}


# avgmax of arange(8) shaped (8,), (2, 4) and (2, 2, 2) with 2-wide windows, for the doctests
_AVGMAX_EXAMPLE = {1: [0.75, 2.75, 4.75, 6.75], 2: [3.75, 5.75], 3: [5.25]}
_EXAMPLE_SHAPE = {1: "8", 2: "2, 4", 3: "2, 2, 2"}


def _avg_and_max(
    x: Tensor,
    n: int,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    ceil_mode: bool,
    count_include_pad: bool,
    dilation: IntOrTuple = 1,
) -> tuple[Tensor, Tensor]:
    window = check_window(kernel_size, stride, padding, n, dilation)
    check_bool(ceil_mode, "ceil_mode")
    check_bool(count_include_pad, "count_include_pad")
    check_input(x, n, window=window, ceil_mode=ceil_mode)
    k, s, p, d = window.kernel_size, window.stride, window.padding, window.dilation
    out = pool_output_size(tuple(x.shape[-n:]), k, s, p, d, ceil_mode)
    if x.shape[-n - 1] == 0:  # no channels: the empty result (PyTorch's window pools refuse C = 0)
        empty = x.reshape(*x.shape[:-n], *out)
        return empty, empty
    mx = _MAX[n](x, k, s, p, d, ceil_mode=ceil_mode)
    if all(v == 1 for v in d):
        avg = _AVG[n](x, k, s, p, ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    else:
        avg = _dilated_avg(x, n, k, s, p, d, out, count_include_pad)
    return avg, mx


def _dilated_avg(
    x: Tensor,
    n: int,
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
    spatial = x.shape[-n:]
    # zeros on the far side too, so that every cell of every (ceil-mode) window can be read
    right = [
        max(pp, (o - 1) * ss + dd * (kk - 1) + 1 - pp - i)
        for o, ss, dd, kk, pp, i in zip(out, s, d, k, p, spatial)
    ]
    pads: list[int] = []
    for dim in reversed(range(n)):
        pads += [p[dim], right[dim]]
    padded = F.pad(compute, pads)
    lead = (slice(None),) * (padded.dim() - n)
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
    for dim in range(n):
        low, high = (-p[dim], spatial[dim] + p[dim]) if count_include_pad else (0, spatial[dim])
        counts = [
            sum(low <= o * s[dim] - p[dim] + a * d[dim] < high for a in range(k[dim]))
            for o in range(out[dim])
        ]
        shape = [1] * n
        shape[dim] = out[dim]
        divisor = divisor * torch.tensor(counts, dtype=compute.dtype, device=x.device).reshape(shape)
    return (total / divisor).to(x.dtype)


def _adaptive_avg_and_max(x: Tensor, n: int, output_size: IntOrTuple) -> tuple[Tensor, Tensor]:
    return adaptive_pool(x, n, output_size, "avg"), adaptive_pool(x, n, output_size, "max")


def _avgmax(n: int) -> Callable[..., Tensor]:
    def avgmax_pool(
        x: Tensor,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        *,
        dilation: IntOrTuple = 1,
    ) -> Tensor:
        avg, mx = _avg_and_max(x, n, kernel_size, stride, padding, ceil_mode, count_include_pad, dilation)
        return 0.5 * avg + 0.5 * mx  # equals 0.5 * (avg + mx) bit for bit, without overflowing

    avgmax_pool.__name__ = avgmax_pool.__qualname__ = f"avgmax_pool{n}d"
    avgmax_pool.__doc__ = f"""Half the sum of average and max over each window: ``0.5 * (avg + max)``.

    Arguments are those of ``torch.nn.functional.avg_pool{n}d``; the max uses ``-inf`` padding.

    Args:
        x: input, batched or batch-less.
        kernel_size: window size.
        stride: window step; ``None`` means ``kernel_size``.
        padding: implicit padding on both sides.
        ceil_mode: use ceil instead of floor for the output size.
        count_include_pad: include the zero padding in the average's divisor.
        dilation: spacing of the window's cells, as in max pooling; the average of a dilated window
            divides by the cells inside the padded input (``count_include_pad``) or the input.

    Returns:
        The pooled tensor.

    Shape:
        - Input: ``(N, C, *S_in)`` or ``(C, *S_in)`` with {n} spatial dims.
        - Output: ``(N, C, *S_out)`` or ``(C, *S_out)``, ``S_out`` as for ``max_pool{n}d``.

    Example:
        >>> x = torch.arange(8.0).reshape(1, 1, {_EXAMPLE_SHAPE[n]})
        >>> avgmax_pool{n}d(x, 2).flatten().tolist()
        {_AVGMAX_EXAMPLE[n]}
    """
    return avgmax_pool


def _catavgmax(n: int) -> Callable[..., Tensor]:
    def catavgmax_pool(
        x: Tensor,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        *,
        dilation: IntOrTuple = 1,
    ) -> Tensor:
        avg, mx = _avg_and_max(x, n, kernel_size, stride, padding, ceil_mode, count_include_pad, dilation)
        return torch.cat([avg, mx], dim=-(n + 1))

    catavgmax_pool.__name__ = catavgmax_pool.__qualname__ = f"catavgmax_pool{n}d"
    catavgmax_pool.__doc__ = f"""Average and max over each window, concatenated on the channel dimension.

    Arguments are those of ``torch.nn.functional.avg_pool{n}d``; channels ``[0, C)`` hold
    the average and ``[C, 2C)`` the max.

    Args:
        x: input, batched or batch-less.
        kernel_size: window size.
        stride: window step; ``None`` means ``kernel_size``.
        padding: implicit padding on both sides.
        ceil_mode: use ceil instead of floor for the output size.
        count_include_pad: include the zero padding in the average's divisor.
        dilation: spacing of the window's cells, as in max pooling; the average of a dilated window
            divides by the cells inside the padded input (``count_include_pad``) or the input.

    Returns:
        The pooled tensor with twice the channels.

    Shape:
        - Input: ``(N, C, *S_in)`` or ``(C, *S_in)`` with {n} spatial dims.
        - Output: ``(N, 2C, *S_out)`` or ``(2C, *S_out)``.

    Example:
        >>> x = torch.ones(2, 3, *[4] * {n})
        >>> catavgmax_pool{n}d(x, 2).shape
        torch.Size([2, 6, {", ".join(["2"] * n)}])
    """
    return catavgmax_pool


def _adaptive_avgmax(n: int) -> Callable[..., Tensor]:
    def adaptive_avgmax_pool(x: Tensor, output_size: IntOrTuple = 1) -> Tensor:
        avg, mx = _adaptive_avg_and_max(x, n, output_size)
        return 0.5 * avg + 0.5 * mx  # equals 0.5 * (avg + mx) bit for bit, without overflowing

    adaptive_avgmax_pool.__name__ = adaptive_avgmax_pool.__qualname__ = f"adaptive_avgmax_pool{n}d"
    adaptive_avgmax_pool.__doc__ = f"""The survey's ``add_avgmax_pool2d``: half the adaptive average plus max.

    Args:
        x: input, batched or batch-less.
        output_size: the target output size (1 for global pooling).

    Returns:
        The pooled tensor.

    Shape:
        - Input: ``(N, C, *S_in)`` or ``(C, *S_in)`` with {n} spatial dims.
        - Output: ``(N, C, *output_size)`` or ``(C, *output_size)``.

    Example:
        >>> x = torch.arange(8.0).reshape(1, 1, {_EXAMPLE_SHAPE[n]})
        >>> adaptive_avgmax_pool{n}d(x).flatten().tolist()
        [5.25]
    """
    return adaptive_avgmax_pool


def _adaptive_catavgmax(n: int) -> Callable[..., Tensor]:
    def adaptive_catavgmax_pool(x: Tensor, output_size: IntOrTuple = 1) -> Tensor:
        avg, mx = _adaptive_avg_and_max(x, n, output_size)
        return torch.cat([avg, mx], dim=-(n + 1))

    adaptive_catavgmax_pool.__name__ = adaptive_catavgmax_pool.__qualname__ = f"adaptive_catavgmax_pool{n}d"
    adaptive_catavgmax_pool.__doc__ = f"""Adaptive average and max, concatenated on channels.

    Args:
        x: input, batched or batch-less.
        output_size: the target output size (1 for global pooling).

    Returns:
        The pooled tensor with twice the channels.

    Shape:
        - Input: ``(N, C, *S_in)`` or ``(C, *S_in)`` with {n} spatial dims.
        - Output: ``(N, 2C, *output_size)`` or ``(2C, *output_size)``.

    Example:
        >>> x = torch.arange(8.0).reshape(1, 1, {_EXAMPLE_SHAPE[n]})
        >>> adaptive_catavgmax_pool{n}d(x).flatten().tolist()
        [3.5, 7.0]
    """
    return adaptive_catavgmax_pool


def _mixed(n: int) -> Callable[..., Tensor]:
    def mixed_pool(
        x: Tensor,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        *,
        training: bool = True,
        max_probability: float = 0.5,
        generator: torch.Generator | None = None,
        ceil_mode: bool = False,
        dilation: IntOrTuple = 1,
    ) -> Tensor:
        check_bool(training, "training")
        prob = check_float_range(max_probability, "max_probability", 0.0, 1.0)
        avg, mx = _avg_and_max(x, n, kernel_size, stride, padding, ceil_mode, True, dilation)
        if not training:
            return prob * mx + (1.0 - prob) * avg
        generator = check_generator(generator, x)
        batch_shape = (mx.shape[0],) if mx.dim() == n + 2 else ()
        draws = torch.rand(batch_shape, generator=generator, device=x.device, dtype=torch.float32)
        use_max = (draws < prob).reshape(batch_shape + (1,) * (n + 1))
        return torch.where(use_max, mx, avg)  # not lerp: 0 * inf would give NaN

    mixed_pool.__name__ = mixed_pool.__qualname__ = f"mixed_pool{n}d"
    mixed_pool.__doc__ = f"""Mixed pooling (Yu et al. 2014): max or average, chosen at random per sample.

    Training: ``lam * max + (1 - lam) * avg`` with ``lam ~ Bernoulli(max_probability)``
    drawn independently for each sample of the batch (one draw per call for batch-less
    input). Eval: the expectation, ``p * max + (1 - p) * avg``. Max pooling pads with
    ``-inf``, average pooling with zeros counted in the divisor.

    Args:
        x: input, batched or batch-less.
        kernel_size: window size.
        stride: window step; ``None`` means ``kernel_size``.
        padding: implicit padding on both sides.
        training: sample ``lam`` (True) or use its expectation (False).
        max_probability: probability ``p`` of choosing max pooling.
        generator: random source for the draws.
        ceil_mode: use ceil instead of floor for the output size (as ``max_pool{n}d``; the
            average's divisor then follows ``avg_pool{n}d``, windows clipped to the padded input).
        dilation: spacing of the window's cells, as in max pooling; the average of a dilated window
            divides by the cells inside the padded input (``count_include_pad``) or the input.

    Returns:
        The pooled tensor.

    Shape:
        - Input: ``(N, C, *S_in)`` or ``(C, *S_in)`` with {n} spatial dims.
        - Output: ``(N, C, *S_out)`` or ``(C, *S_out)``.

    Example:
        >>> x = torch.arange(8.0).reshape(1, 1, {_EXAMPLE_SHAPE[n]})
        >>> mixed_pool{n}d(x, 2, training=False).flatten().tolist()
        {_AVGMAX_EXAMPLE[n]}
    """
    return mixed_pool


avgmax_pool1d, avgmax_pool2d, avgmax_pool3d = (_avgmax(n) for n in (1, 2, 3))
catavgmax_pool1d, catavgmax_pool2d, catavgmax_pool3d = (_catavgmax(n) for n in (1, 2, 3))
adaptive_avgmax_pool1d, adaptive_avgmax_pool2d, adaptive_avgmax_pool3d = (
    _adaptive_avgmax(n) for n in (1, 2, 3)
)
adaptive_catavgmax_pool1d, adaptive_catavgmax_pool2d, adaptive_catavgmax_pool3d = (
    _adaptive_catavgmax(n) for n in (1, 2, 3)
)
mixed_pool1d, mixed_pool2d, mixed_pool3d = (_mixed(n) for n in (1, 2, 3))


def _init_dilation(pool: WindowPool, n: int, dilation: IntOrTuple) -> IntOrTuple:
    """Checks ``dilation`` at construction."""
    check_window(pool.kernel_size, pool.stride, pool.padding, n, dilation)
    return dilation


class _AvgMaxBase(WindowPool):
    _function: Callable[..., Tensor]
    _dims: int
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
        self.dilation = _init_dilation(self, type(self)._dims, dilation)

    def forward(self, x: Tensor) -> Tensor:
        fn = type(self)._function
        return fn(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            dilation=self.dilation,
        )


class _AdaptiveBase(nn.Module):
    _function: Callable[..., Tensor]

    def __init__(self, output_size: IntOrTuple = 1) -> None:
        super().__init__()
        self.output_size = output_size

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

    def forward(self, x: Tensor) -> Tensor:
        return type(self)._function(x, self.output_size)


class _MixedBase(WindowPool):
    _function: Callable[..., Tensor]
    _dims: int
    _repr_options = ("max_probability", "ceil_mode")

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        *,
        max_probability: float = 0.5,
        ceil_mode: bool = False,
        dilation: IntOrTuple = 1,
    ) -> None:
        super().__init__(kernel_size, stride, padding)
        self.max_probability = check_float_range(max_probability, "max_probability", 0.0, 1.0)
        self.ceil_mode = check_bool(ceil_mode, "ceil_mode")
        self.dilation = _init_dilation(self, type(self)._dims, dilation)

    def forward(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        return type(self)._function(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            training=self.training,
            max_probability=self.max_probability,
            generator=generator,
            ceil_mode=self.ceil_mode,
            dilation=self.dilation,
        )


def _module(
    base: type[nn.Module], function: Callable[..., Tensor], name: str, doc: str, n: int = 0
) -> type[nn.Module]:
    namespace = {"_function": staticmethod(function), "__doc__": doc, "__module__": __name__, "_dims": n}
    cls = type(name, (base,), namespace)
    return cls


_WINDOW_DOC = """Module form of :func:`{fn}`; arguments as for the function.

    Shape:
        - Input: ``(N, C, *S_in)`` or ``(C, *S_in)``.
        - Output: ``(N, {c}C, *S_out)`` or ``({c}C, *S_out)``.

    Example:
        >>> {name}(2)(torch.ones(1, 3, {sizes})).shape
        torch.Size([1, {channels}, {out}])
    """


def _doc(name: str, fn: str, n: int, multiplier: int) -> str:
    return _WINDOW_DOC.format(
        name=name,
        fn=fn,
        c="" if multiplier == 1 else multiplier,
        sizes=", ".join(["4"] * n),
        channels=3 * multiplier,
        out=", ".join(["1" if name.startswith("Adaptive") else "2"] * n),
    )


AvgMaxPool1d, AvgMaxPool2d, AvgMaxPool3d = (
    _module(_AvgMaxBase, fn, f"AvgMaxPool{n}d", _doc(f"AvgMaxPool{n}d", f"avgmax_pool{n}d", n, 1), n)
    for n, fn in ((1, avgmax_pool1d), (2, avgmax_pool2d), (3, avgmax_pool3d))
)
CatAvgMaxPool1d, CatAvgMaxPool2d, CatAvgMaxPool3d = (
    _module(_AvgMaxBase, fn, f"CatAvgMaxPool{n}d", _doc(f"CatAvgMaxPool{n}d", f"catavgmax_pool{n}d", n, 2), n)
    for n, fn in ((1, catavgmax_pool1d), (2, catavgmax_pool2d), (3, catavgmax_pool3d))
)
AdaptiveAvgMaxPool1d, AdaptiveAvgMaxPool2d, AdaptiveAvgMaxPool3d = (
    _module(
        _AdaptiveBase,
        fn,
        f"AdaptiveAvgMaxPool{n}d",
        _doc(f"AdaptiveAvgMaxPool{n}d", f"adaptive_avgmax_pool{n}d", n, 1).replace("(2)(", "(1)("),
    )
    for n, fn in ((1, adaptive_avgmax_pool1d), (2, adaptive_avgmax_pool2d), (3, adaptive_avgmax_pool3d))
)
AdaptiveCatAvgMaxPool1d, AdaptiveCatAvgMaxPool2d, AdaptiveCatAvgMaxPool3d = (
    _module(
        _AdaptiveBase,
        fn,
        f"AdaptiveCatAvgMaxPool{n}d",
        _doc(f"AdaptiveCatAvgMaxPool{n}d", f"adaptive_catavgmax_pool{n}d", n, 2).replace("(2)(", "(1)("),
    )
    for n, fn in (
        (1, adaptive_catavgmax_pool1d),
        (2, adaptive_catavgmax_pool2d),
        (3, adaptive_catavgmax_pool3d),
    )
)
MixedPool1d, MixedPool2d, MixedPool3d = (
    _module(_MixedBase, fn, f"MixedPool{n}d", _doc(f"MixedPool{n}d", f"mixed_pool{n}d", n, 1), n)
    for n, fn in ((1, mixed_pool1d), (2, mixed_pool2d), (3, mixed_pool3d))
)


class LearnedMixedPool2d(WindowPool):
    """Mixed max-average pooling with a learned proportion (Lee, Gallagher, Tu 2016).

    ``y = a * max_pool(x) + (1 - a) * avg_pool(x)`` with ``a = sigmoid(mix_logit)`` in
    (0, 1), one value per layer (``channels=None``) or one per channel. ``a`` starts at 0.5.

    Args:
        kernel_size: window size.
        stride: window step; ``None`` means ``kernel_size``.
        padding: implicit padding on both sides.
        channels: learn one proportion per channel (this many) instead of one per layer.
        ceil_mode: use ceil instead of floor for the output size (as ``max_pool2d``).
        dilation: spacing of the window's cells, as in max pooling; the average of a dilated window
            divides by the cells inside the padded input (``count_include_pad``) or the input.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``.

    Example:
        >>> pool = LearnedMixedPool2d(2)
        >>> pool(torch.tensor([[[[1.0, 3.0], [2.0, 2.0]]]])).item()
        2.5
    """

    _repr_options = ("channels", "ceil_mode")

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        *,
        channels: int | None = None,
        ceil_mode: bool = False,
        dilation: IntOrTuple = 1,
    ) -> None:
        super().__init__(kernel_size, stride, padding)
        _check_channels(channels)
        self.channels = channels
        self.ceil_mode = check_bool(ceil_mode, "ceil_mode")
        self.dilation = _init_dilation(self, 2, dilation)
        self.mix_logit = nn.Parameter(torch.zeros(1 if channels is None else channels))

    @property
    def mix(self) -> Tensor:
        """The proportion ``a`` of max pooling, in (0, 1)."""
        return torch.sigmoid(self.mix_logit)

    def forward(self, x: Tensor) -> Tensor:
        avg, mx = _avg_and_max(
            x, 2, self.kernel_size, self.stride, self.padding, self.ceil_mode, True, self.dilation
        )
        a = _per_channel(self.mix, mx, self.channels)
        return a * mx + (1.0 - a) * avg


class GatedPool2d(WindowPool):
    """Gated max-average pooling (Lee, Gallagher, Tu 2016): the mix depends on each window.

    ``g = sigmoid(sum_{r in R} w_r x_r)`` with a learned ``k x k`` gating mask ``w``, shared
    by all channels (``channels=None``) or one mask per channel; then
    ``y = g * max_pool(x) + (1 - g) * avg_pool(x)``. The mask starts at zero (``g = 0.5``).

    Args:
        kernel_size: window size.
        stride: window step; ``None`` means ``kernel_size``.
        padding: implicit padding on both sides (zeros for the gate and the average).
        channels: learn one gating mask per channel (this many) instead of one per layer.
        ceil_mode: use ceil instead of floor for the output size (as ``max_pool2d``); the gate
            sees zeros where the last windows pass the padded input.
        dilation: spacing of the window's cells, as in max pooling; the average of a dilated window
            divides by the cells inside the padded input (``count_include_pad``) or the input.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``.

    Example:
        >>> pool = GatedPool2d(2)
        >>> pool(torch.tensor([[[[1.0, 3.0], [2.0, 2.0]]]])).item()
        2.5
    """

    _repr_options = ("channels", "ceil_mode")

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        *,
        channels: int | None = None,
        ceil_mode: bool = False,
        dilation: IntOrTuple = 1,
    ) -> None:
        super().__init__(kernel_size, stride, padding)
        _check_channels(channels)
        self.channels = channels
        self.ceil_mode = check_bool(ceil_mode, "ceil_mode")
        self.dilation = _init_dilation(self, 2, dilation)
        window = check_window(kernel_size, stride, padding, 2)
        self.gate_weight = nn.Parameter(
            torch.zeros(1 if channels is None else channels, 1, *window.kernel_size)
        )

    def forward(self, x: Tensor) -> Tensor:
        avg, mx = _avg_and_max(
            x, 2, self.kernel_size, self.stride, self.padding, self.ceil_mode, True, self.dilation
        )
        c = mx.shape[-3]
        if self.channels is not None and c != self.channels:
            raise ValueError(f"input has {c} channels, but the pool was built with channels={self.channels}")
        if c == 0:  # no channels: the empty result (a convolution with 0 groups is refused)
            return mx
        # the gate is a depthwise convolution with the window's geometry (zero padding)
        weight = self.gate_weight.expand(c, -1, -1, -1).to(x.dtype)
        window = check_window(self.kernel_size, self.stride, self.padding, 2, self.dilation)
        if self.ceil_mode:  # zeros on the far side, so the gate has the pools' (ceil) output size
            extra = [
                max(0, (o - 1) * s + d * (k - 1) + 1 - (i + 2 * p))
                for o, s, d, k, i, p in zip(
                    mx.shape[-2:],
                    window.stride,
                    window.dilation,
                    window.kernel_size,
                    x.shape[-2:],
                    window.padding,
                )
            ]
            x = F.pad(x, (0, extra[1], 0, extra[0]))
        gate = F.conv2d(x, weight, None, window.stride, window.padding, window.dilation, groups=c)
        gate = torch.sigmoid(gate)
        return gate * mx + (1.0 - gate) * avg


def _check_channels(channels: object) -> None:
    if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
        raise ValueError(f"channels must be None or a positive int, got {channels!r}")


def _per_channel(values: Tensor, like: Tensor, channels: int | None) -> Tensor:
    if channels is None:
        return values.to(like.dtype)
    n_spatial = 2
    c_dim = like.dim() - n_spatial - 1
    if like.shape[c_dim] != channels:
        raise ValueError(
            f"input has {like.shape[c_dim]} channels, but the pool was built with channels={channels}"
        )
    return values.to(like.dtype).reshape(-1, *([1] * n_spatial))


for _n in (1, 2, 3):
    _cls_kwargs = {"kernel_size": 2}
    register_pool(
        f"avgmax{_n}d",
        globals()[f"AvgMaxPool{_n}d"],
        family="combined",
        dims=(_n,),
        description="0.5 * (avg + max) per window",
        example_kwargs=_cls_kwargs,
    )
    register_pool(
        f"catavgmax{_n}d",
        globals()[f"CatAvgMaxPool{_n}d"],
        family="combined",
        dims=(_n,),
        channel_multiplier=2,
        description="[avg, max] per window, on channels",
        example_kwargs=_cls_kwargs,
    )
    register_pool(
        f"adaptive_avgmax{_n}d",
        globals()[f"AdaptiveAvgMaxPool{_n}d"],
        family="combined",
        dims=(_n,),
        description="0.5 * (adaptive avg + adaptive max) (the survey's add_avgmax_pool2d)",
    )
    register_pool(
        f"adaptive_catavgmax{_n}d",
        globals()[f"AdaptiveCatAvgMaxPool{_n}d"],
        family="combined",
        dims=(_n,),
        channel_multiplier=2,
        description="[adaptive avg, adaptive max] on channels (the survey's cat_avgmax_pool2d)",
    )
    register_pool(
        f"mixed{_n}d",
        globals()[f"MixedPool{_n}d"],
        family="combined",
        dims=(_n,),
        description="max or avg at random per sample (Yu et al. 2014)",
        example_kwargs=_cls_kwargs,
    )
register_pool(
    "learned_mixed2d",
    LearnedMixedPool2d,
    family="combined",
    dims=(2,),
    trainable=True,
    description="a * max + (1 - a) * avg, learned a (Lee et al. 2016)",
    example_kwargs={"kernel_size": 2},
)
register_pool(
    "gated2d",
    GatedPool2d,
    family="combined",
    dims=(2,),
    trainable=True,
    description="sigmoid(w . x_R) gates max vs avg (Lee et al. 2016)",
    example_kwargs={"kernel_size": 2},
)
