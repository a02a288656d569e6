r"""Records of the pyramid pools (family ``pyramid``): SPPNet, SPPF, YOLO-SPP.

The float64 reference and the sample cases (``OPS``, the ``OpRecord``\ s of ``test_ops.py``):
Records for the spatial-pyramid family (SPPNet, YOLOv3-SPP, SPPF) and their slow references.

The references share no code with ``torchpool.ops.pyramid``/``.yolo``: SPP loops over bins with explicit
``floor``/``ceil`` integer bounds; YOLO SPP pads explicitly with ``-inf`` and loops over windows.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Sequence

import torch
from op_record import Case, OpRecord, Out, PoolRecord, Semantics
from torch import Tensor

import torchpool as tp
import torchpool.ops.pyramid as P
import torchpool.ops.yolo as Y

from ._policy import MAX


def bin_bounds(size: int, bins: int) -> list[tuple[int, int]]:
    """Adaptive bins ``[floor(i * a / n), ceil((i + 1) * a / n))`` in integer arithmetic."""
    return [((i * size) // bins, -((-(i + 1) * size) // bins)) for i in range(bins)]


def spp_reference(
    x: Tensor, levels: Sequence[int | Sequence[int]] = (1, 2, 4), mode: str = "max", flatten: bool = True
) -> Tensor:
    """Loops over levels and bins; ``x`` is ``(N, C, *S)`` or ``(C, *S)``."""
    spatial = x.shape[2:]
    n = len(spatial)
    per_level = []
    for level in levels:
        bins = (level,) * n if isinstance(level, int) else tuple(level)
        bounds = [bin_bounds(size, b) for size, b in zip(spatial, bins)]
        out = torch.empty(*x.shape[:2], *bins, dtype=x.dtype)
        for idx in itertools.product(*(range(b) for b in bins)):
            # index tuples built before subscripting (mypy reads x[(a, *b)] as 3.11 syntax)
            window: tuple[slice, ...] = (slice(None), slice(None))
            window += tuple(slice(*bounds[d][i]) for d, i in enumerate(idx))
            cell: tuple[slice | int, ...] = (slice(None), slice(None), *idx)
            flat = x[window].reshape(*x.shape[:2], -1)
            out[cell] = flat.max(dim=2).values if mode == "max" else flat.mean(dim=2)
        per_level.append(out)
    if flatten:
        return torch.cat([p.reshape(x.shape[0], -1) for p in per_level], dim=1)
    return torch.cat([p.reshape(*x.shape[:2], -1) for p in per_level], dim=2)


def stride_one_max_reference(x: Tensor, k: int) -> Tensor:
    """``k x k`` stride-1 max pool of ``(N, C, H, W)`` with explicit ``-inf`` padding ``k // 2``."""
    r = k // 2
    n, c, h, w = x.shape
    padded = torch.full((n, c, h + 2 * r, w + 2 * r), float("-inf"), dtype=x.dtype)
    padded[:, :, r : r + h, r : r + w] = x
    out = torch.empty_like(x)
    for i in range(h):
        for j in range(w):
            out[:, :, i, j] = padded[:, :, i : i + k, j : j + k].reshape(n, c, -1).max(dim=2).values
    return out


def yolo_spp_reference(
    x: Tensor, kernel_sizes: Sequence[int] = (5, 9, 13), order: str = "ultralytics"
) -> Tensor:
    pools = [stride_one_max_reference(x, k) for k in kernel_sizes]
    blocks = [*reversed(pools), x] if order == "darknet" else [x, *pools]
    return torch.cat(blocks, dim=1)


def sppf_reference(x: Tensor, kernel_size: int = 5, repeats: int = 3, order: str = "ultralytics") -> Tensor:
    """The literal cascade ``y1 = mp(x), y2 = mp(y1), ...``."""
    ys = [x]
    for _ in range(repeats):
        ys.append(stride_one_max_reference(ys[-1], kernel_size))
    return torch.cat(ys if order == "ultralytics" else ys[::-1], dim=1)


OPS: list[OpRecord] = [
    OpRecord(
        "spp2d-max",
        P.spatial_pyramid_pool2d,
        P.SpatialPyramidPool2d,
        spp_reference,
        (
            Case((2, 2, 5, 4), {"levels": (1, 2, 4)}),
            Case((1, 2, 3, 3), {"levels": (4, 2, 1)}),  # input smaller than a level
            Case((1, 2, 7, 5), {"levels": (6, 3, 2, 1)}),
            Case((1, 2, 5, 6), {"levels": ((1, 2), 3), "flatten": False}),
        ),
        2,
    ),
    OpRecord(
        "spp2d-avg",
        lambda x, **kw: P.spatial_pyramid_pool2d(x, mode="avg", **kw),
        lambda **kw: P.SpatialPyramidPool2d(mode="avg", **kw),
        lambda x, **kw: spp_reference(x, mode="avg", **kw),
        (Case((2, 3, 5, 7), {"levels": (1, 2, 4)}), Case((1, 2, 3, 2), {"levels": (3, 1), "flatten": False})),
        2,
    ),
    OpRecord(
        "spp1d-max",
        P.spatial_pyramid_pool1d,
        P.SpatialPyramidPool1d,
        spp_reference,
        (Case((2, 3, 7), {"levels": (1, 2, 4)}), Case((1, 2, 3), {"levels": (5, 1)})),
        1,
    ),
    OpRecord(
        "spp3d-max",
        P.spatial_pyramid_pool3d,
        P.SpatialPyramidPool3d,
        spp_reference,
        (Case((1, 2, 3, 5, 4), {"levels": (1, 2)}),),
        3,
    ),
    OpRecord(
        "spp3d-avg",
        lambda x, **kw: P.spatial_pyramid_pool3d(x, mode="avg", **kw),
        lambda **kw: P.SpatialPyramidPool3d(mode="avg", **kw),
        lambda x, **kw: spp_reference(x, mode="avg", **kw),
        (Case((1, 2, 3, 5, 4), {"levels": (1, 2)}),),
        3,
    ),
    OpRecord(
        "yolo_spp",
        Y.yolo_spp,
        Y.YoloSPP,
        yolo_spp_reference,
        (
            Case((1, 2, 7, 6), {"kernel_sizes": (5, 9, 13)}),
            Case((1, 2, 5, 6), {"kernel_sizes": (5, 9, 13), "order": "ultralytics"}),
            Case((1, 3, 4, 5), {"kernel_sizes": (3, 1, 7)}),
        ),
        2,
    ),
    OpRecord(
        "sppf",
        Y.sppf,
        Y.SPPF,
        sppf_reference,
        (
            Case((1, 2, 6, 5), {"kernel_size": 5, "repeats": 3}),
            Case((1, 1, 6, 5), {"kernel_size": 3, "repeats": 2, "order": "darknet"}),
        ),
        2,
    ),
]


PAGE = "pyramid"
#: the 2-d SPPNet's registry name: ``spp2d`` once registered (``spp`` keeps resolving), else ``spp``.
SPP2D = "spp2d" if "spp2d" in {info.name for info in tp.list_pools()} else "spp"
#: SPPF's count of pools: ``repeats`` once renamed (``n`` is deprecated), else ``n``.
_REPEATS = "repeats" if "repeats" in inspect.signature(tp.SPPF).parameters else "n"

_SPP = Semantics("max", 1, True, lambda s: {"levels": (1,)}, cell="bins")
_CASCADE = {
    **MAX,
    "1x1": Out("ok", "-inf same padding: every pooled channel equals the cell"),
    "kernel": Out("centre", "stride-1 same-padded windows: only the centre window covers the input"),
    "-inf": Out("-inf and finite", "the identity channel keeps -inf; the pooled channels ignore it"),
}
_SELECTION = "exact (selection)"

RECORDS: list[PoolRecord] = [
    *[
        PoolRecord(
            name,
            PAGE,
            {**MAX, "kernel": Out("global", "levels=(1,) is the global max")},
            _SPP,
            "max: exact (selection); avg: as adaptive_avg",
            keep_window=True,
            cuda_inductor=name == SPP2D,
        )
        for name in (SPP2D, "spp1d", "spp3d")
    ],
    PoolRecord(
        "sppf",
        PAGE,
        dict(_CASCADE),
        Semantics("max", 1, True, lambda s: {"kernel_size": s, _REPEATS: 1}, cell="channel-groups"),
        _SELECTION,
        keep_window=True,
        explain_modes=("eval",),
    ),
    PoolRecord(
        "yolo_spp",
        PAGE,
        dict(_CASCADE),
        Semantics("max", 1, True, lambda s: {"kernel_sizes": (s,)}, cell="channel-groups"),
        _SELECTION,
        keep_window=True,
        explain_modes=("eval",),
    ),
]
