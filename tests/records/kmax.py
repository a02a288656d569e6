r"""Records of k-max pooling (family ``kmax``): the k largest values along L in their original order
(Kalchbrenner et al. 2014).

The float64 reference (``OPS``, the ``OpRecord``\ s of ``test_ops.py``) shares no code with
``torchpool.ops.kmax``: for every row it ranks the positions by ``(-value, position)`` with Python's
``sorted`` (the earliest position first among equal values; NaN counts as the largest), keeps
the first ``k`` and lists their values in position order.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from op_record import Case, OpRecord, Out, PoolRecord, Semantics
from torch import Tensor

import torchpool.ops.kmax as K

from ._policy import BASE, raises


def kmax_reference(x: Tensor, k: int, dim: int = -1) -> Tensor:
    """Loops over the rows of ``x`` along ``dim``; float64."""
    moved = x.double().movedim(dim, -1)
    rows = moved.reshape(-1, moved.shape[-1])
    out = torch.empty(rows.shape[0], k, dtype=torch.float64)
    for row in range(rows.shape[0]):
        values = [float(v) for v in rows[row]]
        # NaN first (the largest), then by value, the earliest position first among equal values
        ranked = sorted(range(len(values)), key=lambda i: (not math.isnan(values[i]), -values[i], i))
        kept = sorted(ranked[:k])
        for slot, position in enumerate(kept):
            out[row, slot] = values[position]
    return out.reshape(*moved.shape[:-1], k).movedim(-1, dim)


def _window(size: int) -> dict[str, Any]:
    """k = 1: the max of the whole row (the kernel = input case of the degenerate walk)."""
    return {"k": 1}


OPS: list[OpRecord] = [
    OpRecord(
        "kmax1d",
        K.kmax_pool1d,
        K.KMaxPool1d,
        kmax_reference,
        (
            Case((2, 3, 9), {"k": 3}),
            Case((2, 3, 9), {"k": 1}),
            Case((2, 3, 9), {"k": 8}),
            Case((2, 3, 9), {"k": 9}),
            Case((2, 7, 5), {"k": 2, "dim": 1}),
            Case((1, 4, 12), {"k": 5, "dim": -1}),
        ),
        1,
        inputs="real",
    ),
]


PAGE = "kmax"
KMAX = {
    **BASE,
    "1x1": raises("ValueError", r"k must be at most the length 1 of dim -1", "k = 2 > L = 1"),
    "kernel": Out("global", "k = 1 (the window is always the whole row): the max over L"),
    "zeros": Out("0, one-hot", "ties: the earliest k positions are kept, each gets its gradient"),
    "ties": Out("c, one-hot", "the earliest k positions"),
    "nan": Out(
        "nan and finite@sample",
        "NaN counts as the largest value: kept in its row, where the other kept values may shift "
        "position; the other rows are unchanged",
    ),
    "+inf": Out("+inf and finite@sample", "kept in its row, as for NaN"),
    "-inf": Out("finite", "never among the k largest here (the row's other values are kept)"),
}

RECORDS: list[PoolRecord] = [
    PoolRecord(
        "kmax1d",
        PAGE,
        KMAX,
        Semantics("max", 1, True, _window),
        "exact (selection)",
    ),
]
