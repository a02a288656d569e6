"""Mixed, learned mixed and gated pooling: max and average weighed against each other.

* Mixed pooling (Yu et al. 2014): ``lam * max + (1 - lam) * avg`` with ``lam`` in {0, 1}
  drawn per sample in training, and its expectation at eval.
* Learned mixed and gated pooling (Lee, Gallagher, Tu 2016, arXiv 1509.08985): a learned
  proportion ``a`` in [0, 1] (per layer or per channel), or a gate ``sigmoid(w . x_R)``
  computed from each window by a learned ``k x k`` mask.

The averages and maxima are those of :mod:`torchpool.ops.combined`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_bool, check_float_range, check_generator, check_window
from .._shape import IntOrTuple
from ..registry import register_pool
from ._base import WindowPool
from ._doc import rank_doc
from .combined import _avg_and_max, _init_dilation

__all__ = [
    "GatedPool2d",
    "LearnedMixedPool2d",
    "MixedPool1d",
    "MixedPool2d",
    "MixedPool3d",
    "mixed_pool1d",
    "mixed_pool2d",
    "mixed_pool3d",
]


def _mixed(
    x: Tensor,
    ndim: int,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    ceil_mode: bool,
    training: bool,
    max_probability: float,
    generator: torch.Generator | None,
    dilation: IntOrTuple,
) -> Tensor:
    check_bool(training, "training")
    prob = check_float_range(max_probability, "max_probability", 0.0, 1.0)
    avg, mx = _avg_and_max(x, ndim, kernel_size, stride, padding, ceil_mode, True, dilation)
    if not training:
        return prob * mx + (1.0 - prob) * avg
    generator = check_generator(generator, x)
    batch_shape = (mx.shape[0],) if mx.dim() == ndim + 2 else ()
    draws = torch.rand(batch_shape, generator=generator, device=x.device, dtype=torch.float32)
    use_max = (draws < prob).reshape(batch_shape + (1,) * (ndim + 1))
    return torch.where(use_max, mx, avg)  # not lerp: 0 * inf would give NaN


_MIXED_DOC = """Mixed pooling (Yu et al. 2014): max or average, chosen at random per sample.

    Training: ``lam * max + (1 - lam) * avg`` with ``lam ~ Bernoulli(max_probability)``
    drawn independently for each sample of the batch (one draw per call for batch-less
    input). Eval: the expectation, ``p * max + (1 - p) * avg``. Max pooling pads with
    ``-inf``, average pooling with zeros counted in the divisor.

    Args:
        x: input, batched or batch-less.
        kernel_size: window size.
        stride: window step; ``None`` means ``kernel_size``.
        padding: implicit padding on both sides.
        ceil_mode: use ceil instead of floor for the output size (as ``max_pool{n}d``; the
            average's divisor then follows ``avg_pool{n}d``, windows clipped to the padded input).
        training: sample ``lam`` (True) or use its expectation (False).
        max_probability: probability ``p`` of choosing max pooling.
        generator: random source for the draws.
        dilation: spacing of the window's cells, as in max pooling; the average of a dilated window
            divides by the cells inside the padded input (``count_include_pad``) or the input.

    Returns:
        The pooled tensor.

    Shape:
        - Input: ``(N, C, *S_in)`` or ``(C, *S_in)`` with {n} spatial dims.
        - Output: ``(N, C, *S_out)`` or ``(C, *S_out)``.

    Example:
        >>> x = torch.arange(8.0).reshape(1, 1, {example_shape})
        >>> mixed_pool{n}d(x, 2, training=False).flatten().tolist()
        {example}
    """


@rank_doc(_MIXED_DOC, 1, example_shape="8", example="[0.75, 2.75, 4.75, 6.75]")
def mixed_pool1d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    *,
    training: bool = True,
    max_probability: float = 0.5,
    generator: torch.Generator | None = None,
    dilation: IntOrTuple = 1,
) -> Tensor:
    return _mixed(
        x, 1, kernel_size, stride, padding, ceil_mode, training, max_probability, generator, dilation
    )


@rank_doc(_MIXED_DOC, 2, example_shape="2, 4", example="[3.75, 5.75]")
def mixed_pool2d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    *,
    training: bool = True,
    max_probability: float = 0.5,
    generator: torch.Generator | None = None,
    dilation: IntOrTuple = 1,
) -> Tensor:
    return _mixed(
        x, 2, kernel_size, stride, padding, ceil_mode, training, max_probability, generator, dilation
    )


@rank_doc(_MIXED_DOC, 3, example_shape="2, 2, 2", example="[5.25]")
def mixed_pool3d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    *,
    training: bool = True,
    max_probability: float = 0.5,
    generator: torch.Generator | None = None,
    dilation: IntOrTuple = 1,
) -> Tensor:
    return _mixed(
        x, 3, kernel_size, stride, padding, ceil_mode, training, max_probability, generator, dilation
    )


class _MixedNd(WindowPool):
    """Stores the arguments of :func:`mixed_pool2d`; ``forward`` runs it for rank ``_ndim``."""

    _ndim: int
    _repr_options = ("max_probability", "ceil_mode")

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        ceil_mode: bool = False,
        *,
        max_probability: float = 0.5,
        dilation: IntOrTuple = 1,
    ) -> None:
        super().__init__(kernel_size, stride, padding)
        self.max_probability = check_float_range(max_probability, "max_probability", 0.0, 1.0)
        self.ceil_mode = check_bool(ceil_mode, "ceil_mode")
        self.dilation = _init_dilation(self, self._ndim, dilation)

    def forward(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        return _mixed(
            x,
            self._ndim,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.training,
            self.max_probability,
            generator,
            self.dilation,
        )


_MODULE_DOC = """Module form of :func:`mixed_pool{n}d`; arguments as for the function.

    Shape:
        - Input: ``(N, C, *S_in)`` or ``(C, *S_in)``.
        - Output: ``(N, C, *S_out)`` or ``(C, *S_out)``.

    Example:
        >>> MixedPool{n}d(2)(torch.ones(1, 3, {sizes})).shape
        torch.Size([1, 3, {out}])
    """


@rank_doc(_MODULE_DOC, 1, sizes="4", out="2")
class MixedPool1d(_MixedNd):
    _ndim = 1


@rank_doc(_MODULE_DOC, 2, sizes="4, 4", out="2, 2")
class MixedPool2d(_MixedNd):
    _ndim = 2


@rank_doc(_MODULE_DOC, 3, sizes="4, 4, 4", out="2, 2, 2")
class MixedPool3d(_MixedNd):
    _ndim = 3


class LearnedMixedPool2d(WindowPool):
    """Mixed max-average pooling with a learned proportion (Lee, Gallagher, Tu 2016).

    ``y = a * max_pool(x) + (1 - a) * avg_pool(x)`` with ``a = sigmoid(mix_logit)`` in
    (0, 1), one value per layer (``channels=None``) or one per channel. ``a`` starts at 0.5.

    Args:
        kernel_size: window size.
        stride: window step; ``None`` means ``kernel_size``.
        padding: implicit padding on both sides.
        ceil_mode: use ceil instead of floor for the output size (as ``max_pool2d``).
        channels: learn one proportion per channel (this many) instead of one per layer.
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
        ceil_mode: bool = False,
        *,
        channels: int | None = None,
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
        ceil_mode: use ceil instead of floor for the output size (as ``max_pool2d``); the gate
            sees zeros where the last windows pass the padded input.
        channels: learn one gating mask per channel (this many) instead of one per layer.
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
        ceil_mode: bool = False,
        *,
        channels: int | None = None,
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


for _ndim, _cls in ((1, MixedPool1d), (2, MixedPool2d), (3, MixedPool3d)):
    register_pool(
        f"mixed{_ndim}d",
        _cls,
        family="combined",
        dims=(_ndim,),
        description="max or avg at random per sample (Yu et al. 2014)",
        example_kwargs={"kernel_size": 2},
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
