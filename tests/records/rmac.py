r"""Records of R-MAC (family ``rmac``): regional maximum activations of convolutions (Tolias et al. 2016).

The float64 reference (``OPS``, the ``OpRecord``\ s of ``test_ops.py``) shares no code with
``torchpool.ops.rmac``: it builds the region grid the way the public retrieval code does (its
``torch.Tensor`` float32 arithmetic for the choice of the extra regions and for the start positions),
takes each region's maximum cell by cell with Python loops, and normalises with ``v / (||v|| + eps)``
in float64.
"""

from __future__ import annotations

import math

import torch
from op_record import Case, OpRecord, Out, PoolRecord, Semantics
from torch import Tensor

import torchpool.ops.rmac as R

from ._policy import STATS


def reference_regions(height: int, width: int, levels: int, overlap: float) -> list[tuple[int, int, int]]:
    """``(top, left, side)`` of every square region, the public code's rule (without the whole map)."""
    short = min(height, width)
    steps = torch.tensor([2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    b = (max(height, width) - short) / (steps - 1)
    index = int(torch.argmin(torch.abs((short**2 - short * b) / short**2 - overlap)))
    extra_w = index + 1 if height < width else 0
    extra_h = index + 1 if height > width else 0
    regions = []
    for level in range(1, levels + 1):
        side = math.floor(2 * short / (level + 1))
        if side == 0:
            continue
        half = math.floor(side / 2 - 1)
        starts = []
        for size, count in ((height, level + extra_h), (width, level + extra_w)):
            step = 0.0 if count == 1 else (size - side) / (count - 1)
            starts.append([int(v) - half for v in torch.floor(half + torch.arange(count).float() * step)])
        regions += [(top, left, side) for top in starts[0] for left in starts[1]]
    return regions


def _unit(v: list[float], eps: float) -> list[float]:
    norm = math.sqrt(math.fsum(a * a for a in v))
    return [a / (norm + eps) for a in v]


def rmac_reference(
    x: Tensor, levels: int = 3, overlap: float = 0.4, eps: float = 1e-6, flatten: bool = True
) -> Tensor:
    """Loops over samples, regions, channels and cells; ``x`` is ``(N, C, H, W)``; float64; the
    result is ``(N, C)``, or ``(N, C, 1, 1)`` without ``flatten``."""
    x = x.double()
    n, c, height, width = x.shape
    boxes = [(0, 0, height, width)] + [
        (top, left, s, s) for top, left, s in reference_regions(height, width, levels, overlap)
    ]
    out = torch.empty(n, c, dtype=torch.float64)
    for sample in range(n):
        total = [0.0] * c
        for top, left, h, w in boxes:
            maxima = [
                max(float(x[sample, ch, i, j]) for i in range(top, top + h) for j in range(left, left + w))
                for ch in range(c)
            ]
            total = [a + b for a, b in zip(total, _unit(maxima, eps))]
        out[sample] = torch.tensor(_unit(total, eps), dtype=torch.float64)
    return out if flatten else out.reshape(n, c, 1, 1)


OPS: list[OpRecord] = [
    OpRecord(
        "rmac",
        R.rmac,
        R.RMAC,
        rmac_reference,
        (
            Case((2, 3, 7, 7)),
            Case((1, 3, 5, 9)),
            Case((1, 3, 9, 5), {"levels": 2}),
            Case((1, 2, 3, 3), {"levels": 4, "overlap": 0.3}),
            Case((1, 2, 2, 6)),
            Case((2, 2, 1, 1)),
            Case((1, 3, 6, 11), {"eps": 1e-3}),
            Case((2, 3, 5, 6), {"flatten": False}),
        ),
        2,
        inputs="real",
    ),
]


PAGE = "rmac"
#: eps in ``v / (||v|| + eps)`` dominates tiny vectors, so R-MAC is scale-invariant only away from eps.
NEAR_EPS = (
    "eps dominates the norms of tiny vectors (not scale-invariant there): compared with its float64 result"
)

RMAC = {
    **STATS,
    "1x1": Out("ok", "two regions (the map and level 1), both the cell: x / ||x||"),
    "zeros": Out("0, any", "0 / (0 + eps) = 0"),
    "ties": Out("as-1x1, any"),
    "f32_huge": Out("ok", "each normalisation divides by the largest |v| first: no overflow"),
    "f16_huge": Out("ok", "computed in float32"),
    "f32_tiny": Out("ok-f64", NEAR_EPS),
    "f32_subnormal": Out("ok-f64", NEAR_EPS),
    "nan": Out(
        "nan@sample", "the regions' maxima hold the NaN, then the normalisations spread it to the sample"
    ),
    "+inf": Out("nan@sample", "inf / inf = NaN in the normalisation, then every output of the sample"),
    "-inf": Out(
        "finite@sample", "ignored by the maxima; the other outputs of the sample move by normalisation"
    ),
}

RECORDS: list[PoolRecord] = [
    PoolRecord(
        "rmac", PAGE, RMAC, Semantics("stats", 0, False, None), "float32 (torchpool)", cuda_inductor=True
    ),
]
