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

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .._checks import check_bool, check_choice, check_input, restore_batch
from ..registry import register_pool
from .adaptive import adaptive_pool
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


def _check_levels(levels: object, n: int) -> tuple[tuple[int, ...], ...]:
    """Normalises ``levels`` to a tuple of ``n``-tuples of positive ints (bins per dimension)."""
    if isinstance(levels, (int, bool)) or not isinstance(levels, Sequence) or isinstance(levels, str):
        raise TypeError(f"levels must be a sequence of ints (or of {n}-tuples), got {type(levels).__name__}")
    if len(levels) == 0:
        raise ValueError("levels must not be empty")
    out: list[tuple[int, ...]] = []
    for level in levels:
        if isinstance(level, bool):
            raise TypeError(f"levels must contain ints, got {level!r}")
        if isinstance(level, int):
            bins: tuple[int, ...] = (level,) * n
        elif isinstance(level, Sequence) and not isinstance(level, str):
            if len(level) != n or any(isinstance(v, bool) or not isinstance(v, int) for v in level):
                raise TypeError(f"levels must contain ints or {n}-tuples of ints, got {level!r}")
            bins = tuple(level)
        else:
            raise TypeError(f"levels must contain ints or {n}-tuples of ints, got {type(level).__name__}")
        if any(v < 1 for v in bins):
            raise ValueError(f"levels must be positive, got {level!r}")
        out.append(bins)
    return tuple(out)


def _pool_level(x: Tensor, bins: tuple[int, ...], mode: str, n: int) -> Tensor:
    """``(N, C, *bins)``: one level of the pyramid."""
    if all(b == 1 for b in bins):  # global level: a plain reduction (max keeps one argmax)
        flat = x.flatten(2)
        y = flat.max(dim=2).values if mode == "max" else flat.mean(dim=2)
        return y.reshape(*y.shape, *bins)
    return adaptive_pool(x, n, bins, mode)


def _spp(x: Tensor, n: int, levels: Sequence[Level], mode: str, flatten: bool) -> Tensor:
    bins = _check_levels(levels, n)
    check_choice(mode, "mode", _MODES)
    check_bool(flatten, "flatten")
    x, unbatched = check_input(x, n)
    if any(size == 0 for size in x.shape[2:]):
        raise ValueError(f"input must have non-zero spatial sizes, got shape {tuple(x.shape)}")
    if x.shape[1] == 0:
        # C = 0: the empty result (adaptive pooling refuses an empty channel dimension)
        count = 0
        for level in bins:
            cells = 1
            for b in level:
                cells *= b
            count += cells
        empty = x.flatten(2)[:, :, :1].expand(x.shape[0], 0, count)
        return restore_batch((empty.flatten(1) if flatten else empty).contiguous(), unbatched)
    pooled = [_pool_level(x, b, mode, n) for b in bins]
    if flatten:
        y = torch.cat([p.flatten(1) for p in pooled], dim=1)
    else:
        y = torch.cat([p.flatten(2) for p in pooled], dim=2)
    return restore_batch(y, unbatched)


def _spp_function(n: int) -> Callable[..., Tensor]:
    shape = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}[n]
    example_in = {1: "1, 2, 8", 2: "1, 2, 5, 7", 3: "1, 2, 3, 5, 4"}[n]
    example_len = {1: 2 * 7, 2: 2 * 21, 3: 2 * 73}[n]

    def spatial_pyramid_pool(
        x: Tensor, levels: Sequence[Level] = (1, 2, 4), mode: str = "max", *, flatten: bool = True
    ) -> Tensor:
        return _spp(x, n, levels, mode, flatten)

    spatial_pyramid_pool.__name__ = spatial_pyramid_pool.__qualname__ = f"spatial_pyramid_pool{n}d"
    spatial_pyramid_pool.__doc__ = f"""Spatial pyramid pooling (SPPNet): a fixed-length vector for any input.

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
        torch.Size([1, {example_len}])
        >>> spatial_pyramid_pool{n}d(x, flatten=False).shape
        torch.Size([1, 2, {example_len // 2}])
    """
    return spatial_pyramid_pool


spatial_pyramid_pool1d, spatial_pyramid_pool2d, spatial_pyramid_pool3d = (_spp_function(n) for n in (1, 2, 3))
spatial_pyramid_pool = spatial_pyramid_pool2d


class _SPPBase(nn.Module):
    _n: int

    def __init__(
        self, levels: Sequence[Level] = (1, 2, 4), mode: str = "max", *, flatten: bool = True
    ) -> None:
        super().__init__()
        _check_levels(levels, self._n)
        self.levels = tuple(levels)
        self.mode = check_choice(mode, "mode", _MODES)
        self.flatten = check_bool(flatten, "flatten")

    def output_features(self, channels: int) -> int:
        """Length of the flattened output for ``channels`` input channels."""
        total = 0
        for bins in _check_levels(self.levels, self._n):
            count = 1
            for b in bins:
                count *= b
            total += count
        return channels * total

    def extra_repr(self) -> str:
        return f"levels={self.levels}, mode={self.mode!r}, flatten={self.flatten}"

    def forward(self, x: Tensor) -> Tensor:
        return _spp(x, self._n, self.levels, self.mode, self.flatten)


class SpatialPyramidPool1d(_SPPBase):
    """Module form of :func:`spatial_pyramid_pool1d`; arguments as for the function.

    Example:
        >>> SpatialPyramidPool1d((1, 2, 4))(torch.randn(3, 8, 11)).shape
        torch.Size([3, 56])
    """

    _n = 1


class SpatialPyramidPool2d(_SPPBase):
    """SPPNet's spatial pyramid pooling layer: the Module form of :func:`spatial_pyramid_pool2d`.

    Args:
        levels: bins per side for each level, e.g. ``(1, 2, 4)`` or ``(6, 3, 2, 1)``.
        mode: ``"max"`` or ``"avg"``.
        flatten: return ``(N, C * sum(n^2))``; otherwise ``(N, C, sum(n^2))``.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``, any ``H, W >= 1``.
        - Output: ``(N, C * sum(n^2))`` or ``(C * sum(n^2),)``.

    Example:
        >>> pool = SpatialPyramidPool2d((1, 2, 4))
        >>> pool(torch.randn(2, 256, 13, 9)).shape
        torch.Size([2, 5376])
        >>> pool.output_features(256)
        5376
    """

    _n = 2


class SpatialPyramidPool3d(_SPPBase):
    """Module form of :func:`spatial_pyramid_pool3d`; arguments as for the function.

    Example:
        >>> SpatialPyramidPool3d((1, 2))(torch.randn(1, 4, 3, 5, 5)).shape
        torch.Size([1, 36])
    """

    _n = 3


SpatialPyramidPool = SpatialPyramidPool2d


register_pool(
    "spp",
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
