"""R-MAC, regional maximum activations of convolutions (Tolias, Sicre & Jegou 2016, "Particular
object retrieval with integral max-pooling of CNN activations", ICLR).

Each region of a fixed multi-scale grid is max-pooled to a ``C``-vector, each vector is
L2-normalised, the vectors are summed and the sum is L2-normalised: ``(N, C, H, W) -> (N, C)``.
L2 normalisation is ``v / (||v|| + eps)``, as in the public retrieval code.

**The region grid** (for an ``H x W`` map, ``levels`` and the target ``overlap``), the region
count and placement of the public retrieval code (Radenovic et al., ``cirtorch``'s ``rmac``):

* the whole map, one ``H x W`` region;
* ``w = min(H, W)``. On a non-square map, ``e`` extra regions along the long side, ``e`` in
  1..6, the one whose overlap of neighbouring level-1 regions, ``(w^2 - w b) / w^2`` with
  ``b = (max(H, W) - w) / e``, is closest to ``overlap`` (the first on a tie);
* for each level ``l = 1 .. levels``: square regions of side ``wl = floor(2 w / (l + 1))``,
  ``l`` per side on the short side and ``l + e`` on the long one (``l`` on both of a square
  map); along a side of length ``S`` with ``n`` regions they start at ``floor(i (S - wl) / (n - 1))``,
  ``i = 0 .. n - 1`` (evenly spaced from one border to the other; 0 if ``n = 1``). Level 1 thus
  covers the short side fully. A level with ``wl = 0`` (``w = 1`` beyond level 1) has no region.
  Coinciding regions are all counted, as the public code counts them.

The public code evaluates the closest-overlap choice and the start positions in float32 (its
``torch.Tensor`` arithmetic); so does this one, step by step, so that sizes where two choices tie
exactly, or where ``i (S - wl) / (n - 1)`` is an integer that float32 rounds just below, give the
same grid. On a 7x7 map (ResNet-50 at 224) ``levels=3`` gives 1 + 1 + 4 + 9 = 15 regions.

How it is computed: per distinct region size, separably: the maximum over the rows of each
distinct top (an ``amax`` of a slice), then over the columns of each distinct left on that block
(``tops + lefts`` reductions for all the regions of the size, not one pooling per region); a
region that occurs several times is pooled once and weighted by its count; then the
normalisations on the ``(N, C, regions)`` block. Each normalisation divides the vectors by their
largest ``|v|`` first (and ``eps`` alike: exact), so neither huge nor tiny values over- or
underflow the norm.
Half precision is computed in float32 and rounded once.
"""

from __future__ import annotations

import collections
import math

import torch
from torch import Tensor, nn

from .._checks import check_bool, check_float_range, check_input, is_traced, restore_batch
from ..registry import register_pool

__all__ = ["RMAC", "rmac", "rmac_regions"]

#: the public code's choices of extra regions along the long side: steps 2..7 regions, less 1.
_STEPS = (2, 3, 4, 5, 6, 7)


def _f32(value: float) -> float:
    """``value`` rounded to the nearest float32 (ties to even), in plain Python arithmetic."""
    if value == 0.0 or not math.isfinite(value):
        return value
    mantissa, exponent = math.frexp(value)
    return math.ldexp(round(mantissa * 2**24), exponent - 24)


def _extra_regions(height: int, width: int, overlap: float) -> int:
    """The extra level-1 regions along the long side (0 on a square map), chosen in float32."""
    if height == width:
        return 0
    short, long = min(height, width), max(height, width)
    area = _f32(short * short)
    target = _f32(overlap)
    best, extra = math.inf, 0
    for count, steps in enumerate(_STEPS, start=1):
        # int / tensor in PyTorch is reciprocal() * int; each float32 operation is rounded once
        step = _f32(_f32(1.0 / (steps - 1)) * (long - short))
        error = abs(_f32(_f32(_f32(area - _f32(short * step)) / area) - target))
        if error < best:
            best, extra = error, count
    return extra


def _starts(size: int, side: int, count: int) -> list[int]:
    """Start positions of ``count`` regions of side ``side`` along ``size``, in float32 as the public code."""
    if count == 1:
        return [0]
    half = math.floor(side / 2 - 1)
    step = _f32((size - side) / (count - 1))
    return [math.floor(_f32(half + _f32(i * step))) - half for i in range(count)]


def rmac_regions(
    height: int, width: int, levels: int = 3, overlap: float = 0.4
) -> tuple[tuple[int, int, int, int], ...]:
    """The R-MAC region grid of an ``height x width`` map: ``(top, left, region_height, region_width)`` each.

    The first region is the whole map; then the square regions of levels ``1 .. levels`` (see the
    module doc for the rule), row by row. Regions that coincide are repeated, as they are counted.

    Args:
        height: the map's height, positive.
        width: the map's width, positive.
        levels: the number of levels, positive.
        overlap: the target overlap of neighbouring level-1 regions, in ``[0, 1)``.

    Returns:
        The regions, a tuple of ``(top, left, height, width)``.

    Example:
        >>> len(rmac_regions(7, 7, 3))
        15
        >>> rmac_regions(3, 5, 1)
        ((0, 0, 3, 5), (0, 0, 3, 3), (0, 2, 3, 3))
    """
    for name, value in (("height", height), ("width", width), ("levels", levels)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be a positive int, got {type(value).__name__}")
        if value < 1:
            raise ValueError(f"{name} must be a positive int, got {value}")
    overlap = check_float_range(overlap, "overlap", 0.0, 1.0, high_open=True)
    extra = _extra_regions(height, width, overlap)
    extra_w, extra_h = (extra, 0) if height < width else (0, extra)
    short = min(height, width)
    regions = [(0, 0, height, width)]
    for level in range(1, levels + 1):
        side = (2 * short) // (level + 1)
        if side == 0:
            continue
        for top in _starts(height, side, level + extra_h):
            for left in _starts(width, side, level + extra_w):
                regions.append((top, left, side, side))
    return tuple(regions)


#: the grids computed so far (eager mode), by ``(height, width, levels, overlap)``.
_GRIDS: dict[tuple[int, int, int, float], tuple[tuple[int, int, int, int], ...]] = {}


def _grid(height: int, width: int, levels: int, overlap: float) -> tuple[tuple[int, int, int, int], ...]:
    """:func:`rmac_regions`, remembered in eager mode (traced code computes it: no side effects)."""
    if is_traced():
        return rmac_regions(height, width, levels, overlap)
    key = (height, width, levels, overlap)
    if key not in _GRIDS:
        if len(_GRIDS) >= 1024:
            _GRIDS.clear()
        _GRIDS[key] = rmac_regions(height, width, levels, overlap)
    return _GRIDS[key]


def _normalize(v: Tensor, eps: float) -> Tensor:
    """``v / (||v|| + eps)`` over dim 1, with ``v`` and ``eps`` divided by the largest ``|v|`` first.

    The scale is detached and exact (``v / (||v|| + eps) = (v/s) / (||v/s|| + eps/s)``), so the
    gradient is that of the plain formula; 1 where the largest ``|v|`` is 0 or not finite.
    """
    with torch.no_grad():
        scale = v.abs().amax(dim=1, keepdim=True)
        scale = torch.where((scale > 0) & (scale < math.inf), scale, torch.ones_like(scale))
    u = v / scale
    norm: Tensor = torch.linalg.vector_norm(u, dim=1, keepdim=True)
    # a tensor divided by a tensor: ``eps / scale`` would be ``eps * scale.reciprocal()``, which
    # overflows for a subnormal scale
    return u / (norm + torch.full_like(scale, eps) / scale)


def _region_maxima(x: Tensor, regions: tuple[tuple[int, int, int, int], ...]) -> tuple[Tensor, Tensor]:
    """The maximum of each distinct region, ``(N, C, D)``, and how often each region occurs, ``(D,)``.

    Separable, per region size: the maximum over the rows of each distinct top (one ``amax`` of a
    slice each), then over the columns of each distinct left on that ``(N, C, tops, W)`` block:
    every region of the size at once, ``tops + lefts`` reductions instead of one per region.
    """
    counts = collections.Counter(regions)
    by_size: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}
    for region in counts:
        by_size.setdefault(region[2:], []).append(region)
    parts: list[Tensor] = []
    weights: list[int] = []
    for (h, w), members in by_size.items():
        tops = sorted({top for top, _, _, _ in members})
        lefts = sorted({left for _, left, _, _ in members})
        rows = torch.stack([x.narrow(-2, top, h).amax(dim=-2) for top in tops], dim=-2)
        grid = torch.stack([rows.narrow(-1, left, w).amax(dim=-1) for left in lefts], dim=-1).flatten(-2)
        picks = [tops.index(top) * len(lefts) + lefts.index(left) for top, left, _, _ in members]
        if picks != list(range(len(tops) * len(lefts))):
            grid = grid.index_select(-1, torch.tensor(picks, device=x.device))
        parts.append(grid)
        weights.extend(counts[region] for region in members)
    maxima = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
    return maxima, torch.tensor(weights, dtype=x.dtype, device=x.device)


def _check_levels(levels: object) -> int:
    if isinstance(levels, bool) or not isinstance(levels, int):
        raise TypeError(f"levels must be a positive int, got {type(levels).__name__}")
    if levels < 1:
        raise ValueError(f"levels must be a positive int, got {levels}")
    return levels


def rmac(
    x: Tensor, levels: int = 3, *, overlap: float = 0.4, eps: float = 1e-6, flatten: bool = True
) -> Tensor:
    """R-MAC (Tolias et al. 2016): L2-normalised sum of the L2-normalised maxima of a region grid.

    The grid is that of the public retrieval code (see :func:`rmac_regions` and the module doc):
    the whole map and ``levels`` levels of square regions, with ``overlap`` the target overlap of
    neighbouring level-1 regions. L2 normalisation is ``v / (||v|| + eps)``. Half-precision input
    is computed in float32 and returned in its own dtype.

    Args:
        x: input ``(N, C, H, W)`` or batch-less ``(C, H, W)``, floating point.
        levels: the number of region levels, positive.
        overlap: the target overlap of neighbouring level-1 regions, in ``[0, 1)``.
        eps: added to each norm, positive.
        flatten: return ``(N, C)``; ``False`` keeps the pooled axes with size 1, ``(N, C, 1, 1)``
            (a drop-in for a pool followed by a norm on the map, as in ConvNeXt's head).

    Returns:
        The unit-norm descriptor of each sample.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
        - Output: ``(N, C)`` or ``(C,)``; ``(N, C, 1, 1)`` or ``(C, 1, 1)`` if not ``flatten``.

    Example:
        >>> x = torch.zeros(1, 2, 3, 3)
        >>> x[0, 0, 0, 0] = 1.0
        >>> x[0, 1, 2, 2] = 1.0
        >>> [round(v, 4) for v in rmac(x, 2)[0].tolist()]
        [0.7071, 0.7071]
    """
    levels = _check_levels(levels)
    overlap = check_float_range(overlap, "overlap", 0.0, 1.0, high_open=True)
    eps = check_float_range(eps, "eps", 0.0, math.inf, low_open=True, high_open=True)
    check_bool(flatten, "flatten")
    x, unbatched = check_input(x, 2)
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"input must have non-zero spatial sizes, got shape {tuple(x.shape)}")
    if x.shape[1] == 0:  # no channels: the empty descriptor (nothing to normalise)
        return restore_batch(x.amax(dim=(-2, -1), keepdim=not flatten), unbatched)
    compute = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    regions = _grid(int(x.shape[-2]), int(x.shape[-1]), levels, overlap)
    maxima, counts = _region_maxima(compute, regions)
    y = _normalize((_normalize(maxima, eps) * counts).sum(dim=-1), eps).to(x.dtype)
    return restore_batch(y if flatten else y[..., None, None], unbatched)


class RMAC(nn.Module):
    """R-MAC (Tolias et al. 2016): the Module form of :func:`rmac`.

    Args:
        levels: the number of region levels, positive.
        overlap: the target overlap of neighbouring level-1 regions, in ``[0, 1)``.
        eps: added to each norm, positive.
        flatten: return ``(N, C)``; ``False`` keeps ``(N, C, 1, 1)``.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
        - Output: ``(N, C)`` or ``(C,)``; ``(N, C, 1, 1)`` or ``(C, 1, 1)`` if not ``flatten``.

    Example:
        >>> RMAC()(torch.rand(2, 16, 7, 7)).shape
        torch.Size([2, 16])
        >>> RMAC(flatten=False)(torch.rand(2, 16, 7, 7)).shape
        torch.Size([2, 16, 1, 1])
    """

    def __init__(
        self, levels: int = 3, overlap: float = 0.4, eps: float = 1e-6, *, flatten: bool = True
    ) -> None:
        super().__init__()
        self.levels = _check_levels(levels)
        self.overlap = check_float_range(overlap, "overlap", 0.0, 1.0, high_open=True)
        self.eps = check_float_range(eps, "eps", 0.0, math.inf, low_open=True, high_open=True)
        self.flatten = check_bool(flatten, "flatten")

    def extra_repr(self) -> str:
        return f"levels={self.levels}, overlap={self.overlap}, eps={self.eps}, flatten={self.flatten}"

    def forward(self, x: Tensor) -> Tensor:
        return rmac(x, self.levels, overlap=self.overlap, eps=self.eps, flatten=self.flatten)


register_pool(
    "rmac",
    RMAC,
    family="rmac",
    dims=(2,),
    description="sum of L2-normalised region maxima on a multi-scale grid (R-MAC, Tolias et al. 2016)",
    example_kwargs={"levels": 3},
)
