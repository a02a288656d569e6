"""Spatial pyramid pooling (section 5 of the survey): SPPNet.

SPPNet (He et al. 2014, arXiv 1406.4729): max (or average) pool into ``n x n`` bins for each
pyramid level ``n`` and concatenate, giving ``C * sum(n^2)`` features for any input size.
The bins are PyTorch's adaptive bins ``[floor(i*a/n), ceil((i+1)*a/n))``, which always give
exactly ``n`` bins; the paper's ``win = ceil(a/n), str = floor(a/n)`` rule does not
(``a=5, n=3`` gives 4 bins, ``a=7, n=4`` gives 6, ``a < n`` a zero stride).

The YOLO blocks (YOLOv3-SPP, SPPF, the darknet cfg reader) are in :mod:`torchpool.ops.yolo`;
they are importable from here too, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .._checks import check_bool, check_choice, check_input, restore_batch
from ..registry import register_pool
from ._doc import rank_doc
from .adaptive import _adaptive_pool
from .yolo import SPPF as SPPF
from .yolo import YoloSPP as YoloSPP
from .yolo import from_darknet_cfg as from_darknet_cfg
from .yolo import spp_to_sppf as spp_to_sppf
from .yolo import sppf as sppf
from .yolo import yolo_spp as yolo_spp

__all__ = [
    "SpatialPyramidPool",
    "SpatialPyramidPool1d",
    "SpatialPyramidPool2d",
    "SpatialPyramidPool3d",
    "spatial_pyramid_pool",
    "spatial_pyramid_pool1d",
    "spatial_pyramid_pool2d",
    "spatial_pyramid_pool3d",
]

_MODES = ("max", "avg")
Level = int | Sequence[int]


def _check_levels(levels: object, ndim: int) -> tuple[tuple[int, ...], ...]:
    """Normalises ``levels`` to a tuple of ``ndim``-tuples of positive ints (bins per dimension)."""
    if isinstance(levels, (int, bool)) or not isinstance(levels, Sequence) or isinstance(levels, str):
        raise TypeError(
            f"levels must be a sequence of ints (or of {ndim}-tuples), got {type(levels).__name__}"
        )
    if len(levels) == 0:
        raise ValueError("levels must not be empty")
    out: list[tuple[int, ...]] = []
    for level in levels:
        if isinstance(level, bool):
            raise TypeError(f"levels must contain ints, got {level!r}")
        if isinstance(level, int):
            bins: tuple[int, ...] = (level,) * ndim
        elif isinstance(level, Sequence) and not isinstance(level, str):
            if len(level) != ndim or any(isinstance(v, bool) or not isinstance(v, int) for v in level):
                raise TypeError(f"levels must contain ints or {ndim}-tuples of ints, got {level!r}")
            bins = tuple(level)
        else:
            raise TypeError(f"levels must contain ints or {ndim}-tuples of ints, got {type(level).__name__}")
        if any(v < 1 for v in bins):
            raise ValueError(f"levels must be positive, got {level!r}")
        out.append(bins)
    return tuple(out)


def _bin_count(bins: tuple[tuple[int, ...], ...]) -> int:
    """``B = sum(prod(level))``: the bins of all levels."""
    count = 0
    for level in bins:
        cells = 1
        for b in level:
            cells *= b
        count += cells
    return count


def _pool_level(x: Tensor, bins: tuple[int, ...], mode: str, ndim: int) -> Tensor:
    """``(N, C, *bins)``: one level of the pyramid."""
    if all(b == 1 for b in bins):  # global level: a plain reduction (max keeps one argmax)
        flat = x.flatten(2)
        y = flat.max(dim=2).values if mode == "max" else flat.mean(dim=2)
        return y.reshape(*y.shape, *bins)
    return _adaptive_pool(x, ndim, bins, mode)


def _spp(x: Tensor, ndim: int, levels: Sequence[Level], mode: str, flatten: bool) -> Tensor:
    """Spatial pyramid pooling of ``ndim``-d input: the body of every ``spatial_pyramid_pool<n>d``."""
    bins = _check_levels(levels, ndim)
    check_choice(mode, "mode", _MODES)
    check_bool(flatten, "flatten")
    x, unbatched = check_input(x, ndim)
    if any(size == 0 for size in x.shape[2:]):
        raise ValueError(f"input must have non-zero spatial sizes, got shape {tuple(x.shape)}")
    if x.shape[1] == 0:
        # C = 0: the empty result (adaptive pooling refuses an empty channel dimension)
        empty = x.flatten(2)[:, :, :1].expand(x.shape[0], 0, _bin_count(bins))
        return restore_batch((empty.flatten(1) if flatten else empty).contiguous(), unbatched)
    pooled = [_pool_level(x, b, mode, ndim) for b in bins]
    if flatten:
        y = torch.cat([p.flatten(1) for p in pooled], dim=1)
    else:
        y = torch.cat([p.flatten(2) for p in pooled], dim=2)
    return restore_batch(y, unbatched)


_SPP_DOC = """Spatial pyramid pooling (SPPNet) of {n}-d input: a fixed-length vector for any input size.

    Each level ``l`` splits every spatial dimension of size ``a`` into ``l`` adaptive bins
    ``[floor(i*a/l), ceil((i+1)*a/l))`` (PyTorch's adaptive pooling bins, which overlap when
    ``a`` is not a multiple of ``l`` and when ``a < l``), pools each bin and concatenates.

    Args:
        x: input ``{shape}`` or batch-less, any spatial size ``>= 1``.
        levels: bins per dimension for each level: ints, or {n}-tuples of ints.
        mode: ``"max"`` or ``"avg"`` pooling in each bin.
        flatten: return one vector per sample, ``[level 0 (C * bins, channel-major), level 1, ...]``
            as in SPPNet; otherwise ``(N, C, sum bins)`` with the bins of all levels
            (row-major within a level) along the last dimension.

    Returns:
        The pooled features.

    Shape:
        - Input: ``(N, C, *S)`` or ``(C, *S)`` with {n} spatial dims.
        - Output: ``(N, C * B)`` or ``(C * B,)`` with ``B = sum(prod(level))``; with
          ``flatten=False``, ``(N, C, B)`` or ``(C, B)``.

    Example:
        >>> x = torch.randn({example_in})
        >>> spatial_pyramid_pool{n}d(x).shape
        torch.Size([1, {features}])
        >>> spatial_pyramid_pool{n}d(x, flatten=False).shape
        torch.Size([1, 2, {bins}])
    """


@rank_doc(_SPP_DOC, 1, example_in="1, 2, 8", features=2 * 7, bins=7)
def spatial_pyramid_pool1d(
    x: Tensor, levels: Sequence[Level] = (1, 2, 4), mode: str = "max", *, flatten: bool = True
) -> Tensor:
    return _spp(x, 1, levels, mode, flatten)


@rank_doc(_SPP_DOC, 2, example_in="1, 2, 5, 7", features=2 * 21, bins=21)
def spatial_pyramid_pool2d(
    x: Tensor, levels: Sequence[Level] = (1, 2, 4), mode: str = "max", *, flatten: bool = True
) -> Tensor:
    return _spp(x, 2, levels, mode, flatten)


@rank_doc(_SPP_DOC, 3, example_in="1, 2, 3, 5, 4", features=2 * 73, bins=73)
def spatial_pyramid_pool3d(
    x: Tensor, levels: Sequence[Level] = (1, 2, 4), mode: str = "max", *, flatten: bool = True
) -> Tensor:
    return _spp(x, 3, levels, mode, flatten)


spatial_pyramid_pool = spatial_pyramid_pool2d


class _SpatialPyramidPoolNd(nn.Module):
    """The Modules' shared body: ``_ndim`` is the spatial rank."""

    _ndim: int

    def __init__(
        self, levels: Sequence[Level] = (1, 2, 4), mode: str = "max", *, flatten: bool = True
    ) -> None:
        super().__init__()
        _check_levels(levels, self._ndim)
        self.levels = tuple(levels)
        self.mode = check_choice(mode, "mode", _MODES)
        self.flatten = check_bool(flatten, "flatten")

    def output_features(self, channels: int) -> int:
        """Length of the flattened output for ``channels`` input channels."""
        return channels * _bin_count(_check_levels(self.levels, self._ndim))

    def extra_repr(self) -> str:
        return f"levels={self.levels}, mode={self.mode!r}, flatten={self.flatten}"

    def forward(self, x: Tensor) -> Tensor:
        return _spp(x, self._ndim, self.levels, self.mode, self.flatten)


_SPP_MODULE_DOC = """The SPPNet layer: the Module form of :func:`spatial_pyramid_pool{n}d`.

    Args:
        levels: bins per dimension for each level: ints, or {n}-tuples of ints, e.g.
            ``(1, 2, 4)`` or ``(6, 3, 2, 1)``.
        mode: ``"max"`` or ``"avg"``.
        flatten: return ``(N, C * B)`` with ``B = sum(prod(level))``; otherwise ``(N, C, B)``.

    Shape:
        - Input: ``{shape}`` or ``(C, {dims})``, any ``{dims} >= 1``.
        - Output: ``(N, C * B)`` or ``(C * B,)``; with ``flatten=False``, ``(N, C, B)`` or ``(C, B)``.

    Example:
        >>> pool = SpatialPyramidPool{n}d({levels})
        >>> pool(torch.randn({example_in})).shape
        torch.Size([{batch}, {features}])
        >>> pool.output_features({channels})
        {features}
    """


@rank_doc(_SPP_MODULE_DOC, 1, levels=(1, 2, 4), example_in="3, 8, 11", batch=3, channels=8, features=56)
class SpatialPyramidPool1d(_SpatialPyramidPoolNd):
    _ndim = 1


@rank_doc(
    _SPP_MODULE_DOC, 2, levels=(1, 2, 4), example_in="2, 256, 13, 9", batch=2, channels=256, features=5376
)
class SpatialPyramidPool2d(_SpatialPyramidPoolNd):
    _ndim = 2


@rank_doc(_SPP_MODULE_DOC, 3, levels=(1, 2), example_in="1, 4, 3, 5, 5", batch=1, channels=4, features=36)
class SpatialPyramidPool3d(_SpatialPyramidPoolNd):
    _ndim = 3


SpatialPyramidPool = SpatialPyramidPool2d


register_pool(
    "spp2d",
    SpatialPyramidPool2d,
    family="pyramid",
    dims=(2,),
    channel_multiplier=None,
    description="SPPNet spatial pyramid pooling: C * sum(n^2) features for any input size",
    example_kwargs={"levels": (1, 2, 4)},
)
register_pool(
    "spp1d",
    SpatialPyramidPool1d,
    family="pyramid",
    dims=(1,),
    channel_multiplier=None,
    description="1-d spatial pyramid pooling",
    example_kwargs={"levels": (1, 2, 4)},
)
register_pool(
    "spp3d",
    SpatialPyramidPool3d,
    family="pyramid",
    dims=(3,),
    channel_multiplier=None,
    description="3-d spatial pyramid pooling",
    example_kwargs={"levels": (1, 2)},
)
