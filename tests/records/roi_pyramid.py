"""Records of SPP on regions (``roi_spatial_pyramid_pool``, SPPNet's detection mode, He et al. 2014).

Not a registered pool: its forward takes boxes besides the feature map, which no generic walk
over ``create_pool(name)(x)`` can supply, so ``RECORDS`` is empty and its OpRecords are declared in
``op_table.UNREGISTERED_OPS`` (as ``max_unpool2d``). The OpRecords (``OPS``) build their boxes from
the input's shape (:func:`boxes_for`), so ``test_ops.py`` runs its walks on them: the float64
reference in every dtype, gradcheck, layouts, Module equals function, ``state_dict``, the mutation
check.

The reference (:func:`roi_spp_reference`) shares no code with ``torchpool.ops.roi_pyramid``: it
loops over the boxes, levels and bins, computes each bin's bounds with Python's ``math`` as
torchvision's ``roi_pool`` CPU kernel does (corners rounded half away from zero, bin
``[floor(i * (roi / n)), ceil((i + 1) * (roi / n)))`` shifted by the corner, clipped; empty bins 0),
and reduces the bin's slice of the map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from op_record import Case, OpRecord, PoolRecord
from torch import Tensor, nn

import torchpool as tp

FAMILY = "roi_pyramid"
NAME = "roi_spp"  # the registry name it would have: roi_spatial_pyramid_pool -> roi_spp


def _c_round(v: float) -> int:
    """C's ``round``: halves away from zero."""
    return math.floor(v + 0.5) if v >= 0 else math.ceil(v - 0.5)


def _edges(start: float, end: float, bins: int, size: int, scale: float) -> list[tuple[int, int]]:
    first, last = _c_round(start * scale), _c_round(end * scale)
    extent = max(last - first + 1, 1)
    out = []
    step = extent / bins  # then times i, in this order, as the kernel computes it
    for i in range(bins):
        lo = math.floor(i * step) + first
        hi = math.ceil((i + 1) * step) + first
        out.append((min(max(lo, 0), size), min(max(hi, 0), size)))
    return out


def roi_spp_reference(
    x: Tensor,
    boxes: Tensor,
    levels: Sequence[int | tuple[int, int]] = (1, 2, 4),
    spatial_scale: float = 1.0,
    mode: str = "max",
) -> Tensor:
    """``(K, C * sum(bins))`` in float64: loops over boxes, levels and bins; per level channel-major."""
    x = x.double()
    _, channels, height, width = x.shape
    rows = []
    for box in boxes.double().tolist():
        image, x1, y1, x2, y2 = box
        features = []
        for level in levels:
            bh, bw = (level, level) if isinstance(level, int) else level
            out = torch.zeros(channels, bh, bw, dtype=torch.float64)
            for i, (h0, h1) in enumerate(_edges(y1, y2, bh, height, spatial_scale)):
                for j, (w0, w1) in enumerate(_edges(x1, x2, bw, width, spatial_scale)):
                    if h1 <= h0 or w1 <= w0:
                        continue  # an empty bin: 0
                    cells = x[int(image), :, h0:h1, w0:w1].reshape(channels, -1)
                    out[:, i, j] = cells.max(dim=1).values if mode == "max" else cells.mean(dim=1)
            features.append(out.reshape(-1))
        rows.append(torch.cat(features) if features else torch.zeros(0, dtype=torch.float64))
    total = sum((lv * lv if isinstance(lv, int) else lv[0] * lv[1]) for lv in levels) * channels
    return torch.stack(rows) if rows else torch.zeros(0, total, dtype=torch.float64)


def boxes_for(n: int, height: int, width: int, scale: float, kind: str = "mixed") -> Tensor:
    """Boxes ``(K, 5)`` in image coordinates (the map times ``1 / scale``) for an ``(n, C, height, width)``
    map: ``"mixed"``: the whole map, an inner box, one over the border, one wholly outside, a malformed
    one (``x2 < x1``), a one-cell one, half-integer corners; ``"inner"``: boxes well inside the map."""
    s = 1.0 / scale
    rows: list[list[float]] = []
    for image in range(n):
        if kind == "inner":
            rows += [
                [image, 0.0, 0.0, (width - 1) * s, (height - 1) * s],
                [image, 1 * s, 0.0, (width - 1) * s, (height - 2) * s],
            ]
            continue
        rows += [
            [image, 0.0, 0.0, (width - 1) * s, (height - 1) * s],  # the whole map
            [image, 1 * s, 1 * s, (width - 2) * s, (height - 1) * s],  # inside
            [image, -2 * s, (height - 2) * s, (width + 3) * s, (height + 4) * s],  # over the border
            [image, (width + 2) * s, 0.0, (width + 6) * s, 3 * s],  # wholly outside: every bin empty
            [image, 3 * s, 2 * s, 1 * s, 1 * s],  # malformed (x2 < x1): one cell
            [image, 1 * s, 1 * s, 1 * s, 1 * s],  # one cell: smaller than every level > 1
            [image, 0.5 * s, 1.5 * s, (width - 1.5) * s, (height - 0.5) * s],  # halves round away from 0
        ]
    return torch.tensor(rows, dtype=torch.float64)


def _roi_fn(
    x: Tensor,
    levels: Sequence[int | tuple[int, int]] = (1, 2, 4),
    spatial_scale: float = 1.0,
    mode: str = "max",
    kind: str = "mixed",
) -> Tensor:
    boxes = boxes_for(x.shape[0], x.shape[2], x.shape[3], spatial_scale, kind)
    out: Tensor = tp.roi_spatial_pyramid_pool(x, boxes, levels, spatial_scale=spatial_scale, mode=mode)
    return out


class _RoIModule(nn.Module):
    """``RoISpatialPyramidPool`` with the boxes of :func:`boxes_for` (the op table calls ``m(x)``)."""

    def __init__(self, kind: str = "mixed", **kwargs: Any) -> None:
        super().__init__()
        self.kind = kind
        self.pool = tp.RoISpatialPyramidPool(**kwargs)

    def forward(self, x: Tensor) -> Tensor:
        boxes = boxes_for(x.shape[0], x.shape[2], x.shape[3], self.pool.spatial_scale, self.kind)
        out = self.pool(x, boxes)
        assert isinstance(out, Tensor)
        return out


def _roi_ref(
    x: Tensor,
    levels: Sequence[int | tuple[int, int]] = (1, 2, 4),
    spatial_scale: float = 1.0,
    mode: str = "max",
    kind: str = "mixed",
) -> Tensor:
    boxes = boxes_for(x.shape[0], x.shape[2], x.shape[3], spatial_scale, kind)
    return roi_spp_reference(x, boxes, levels, spatial_scale, mode)


OPS: list[OpRecord] = [
    OpRecord(
        f"{NAME}-{mode}",
        _roi_fn,
        _RoIModule,
        _roi_ref,
        (
            Case((2, 3, 7, 9), {"mode": mode}),
            Case((1, 2, 9, 6), {"levels": (1, 2, 3, 6), "spatial_scale": 0.5, "mode": mode}),
            Case((2, 2, 11, 13), {"levels": (4, 2, 1), "spatial_scale": 1 / 16, "mode": mode}),
            Case((1, 3, 6, 10), {"levels": ((2, 3), 1, (4, 6)), "spatial_scale": 0.25, "mode": mode}),
            Case((1, 2, 5, 4), {"levels": (7,), "mode": mode, "kind": "inner"}),
        ),
        2,
        batchless=False,
    )
    for mode in ("max", "avg")
]

#: no registered pool: see the module docstring.
RECORDS: list[PoolRecord] = []
