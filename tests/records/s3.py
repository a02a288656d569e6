r"""Records of S3Pool (family ``s3``): stochastic spatial sampling (Zhai et al. 2017).

The walks run the pool in eval mode (the authors' deterministic rule) and, since its output
depends on the mode, in train mode under a fixed seed / ``generator`` (random rows and columns).
The degenerate walk's ``kernel = input`` case sets ``stride`` to the input size: in eval mode the
single output is the mean of the dense 2x2 max over the first ``size - size // 2`` cells per dim
(the ``s3`` reduction of ``tests/test_degenerate.py``); in train mode it is the dense max at one
drawn row and column, a cell of the plane (``draw``).

The float64 reference and the sample cases (``OPS``, the ``OpRecord``\ s of ``test_ops.py``) are
the eval rule, written with loops: the dense max of every 2x2 window clipped to the input, then
for each output the mean over the dense cells of its ``stride``-wide window that starts
``stride // 2`` cells early, clipped to the map. The train mode is tested against the same dense
max in ``tests/test_s3.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
from op_record import Case, OpRecord, Out, PoolRecord, Semantics
from torch import Tensor

import torchpool.ops.s3 as S3

from ._policy import BASE, raises
from .combined import GENERATOR_ARG

Size = int | Sequence[int]


def _pair(value: Size) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def dense_max_reference(x: Tensor) -> Tensor:
    """``max`` over each 2x2 window ``[r, r + 1] x [c, c + 1]`` clipped to the input (same size)."""
    h, w = x.shape[-2:]
    out = torch.empty_like(x, dtype=torch.float64)
    for r, c in itertools.product(range(h), range(w)):
        cells = [x[..., i, j].double() for i in range(r, min(r + 2, h)) for j in range(c, min(c + 2, w))]
        best = cells[0]
        for cell in cells[1:]:
            best = torch.maximum(best, cell)
        out[..., r, c] = best
    return out


def eval_reference(x: Tensor, stride: Size = 2, grid_size: Size | None = None) -> Tensor:
    """The eval rule by loops: each output the mean of the dense max over its window, clipped."""
    (sh, sw) = _pair(stride)
    dense = dense_max_reference(x)
    h, w = x.shape[-2:]
    out = torch.empty(*x.shape[:-2], h // sh, w // sw, dtype=torch.float64)
    for i, j in itertools.product(range(h // sh), range(w // sw)):
        rows = [r for r in range(i * sh - sh // 2, i * sh - sh // 2 + sh) if 0 <= r < h]
        cols = [c for c in range(j * sw - sw // 2, j * sw - sw // 2 + sw) if 0 <= c < w]
        total = torch.zeros(x.shape[:-2], dtype=torch.float64)
        for r, c in itertools.product(rows, cols):
            total = total + dense[..., r, c]
        out[..., i, j] = total / (len(rows) * len(cols))
    return out


def eval_function(x: Tensor, **kwargs: Any) -> Tensor:
    return S3.s3_pool2d(x, training=False, **kwargs)


OPS: list[OpRecord] = [
    OpRecord(
        "s3pool2d",
        eval_function,
        S3.S3Pool2d,
        eval_reference,
        (
            Case((2, 3, 8, 8), {}),
            Case((1, 2, 7, 9), {"stride": 2}),
            Case((1, 2, 9, 10), {"stride": 3, "grid_size": 6}),
            Case((1, 2, 8, 7), {"stride": (2, 3), "grid_size": (4, 3)}),
            Case((1, 2, 5, 6), {"stride": 1}),
            Case((1, 2, 4, 11), {"stride": 4}),
        ),
        2,
    ),
]


PAGE = "s3"


def _whole(size: int) -> dict[str, Any]:
    """``stride`` = the input size: one output."""
    return {"stride": size}


_TOO_SMALL = raises(
    "ValueError",
    r"input of shape \(2, 4, 1, 1\) is smaller than stride \(2, 2\)",
    "the output would have size // stride = 0 rows",
)

EVAL = {
    **BASE,
    "1x1": _TOO_SMALL,
    "kernel": Out(
        "global", "stride = size: the mean of the dense 2x2 max over its first size - size // 2 cells"
    ),
    "zeros": Out("0, any", "each output averages the maxima of up to stride^2 windows"),
    "ties": Out("c, any"),
    "-inf": Out("finite", "ignored by the dense 2x2 max (the window keeps a finite cell)"),
}
_KEPT = "reaches the outputs whose kept window holds the cell (the corner cell is in one window only)"
TRAIN = {
    **EVAL,
    "kernel": Out("global", "stride = size: the dense max at one drawn row and column, a cell of the plane"),
    "zeros": Out("0, one-hot", "each output is one kept 2x2 window's max"),
    "ties": Out("c, one-hot"),
    "nan": Out("nan@kept", _KEPT),
    "+inf": Out("+inf@kept", _KEPT),
    "-inf": Out("finite@kept", "ignored by the dense 2x2 max; " + _KEPT),
}

RECORDS: list[PoolRecord] = [
    PoolRecord(
        "s3pool2d",
        PAGE,
        EVAL,
        Semantics("s3", 1, True, _whole),
        "PyTorch's max / avg pooling and index_select, in the input dtype",
        train_differs=True,
        train_policy=TRAIN,
        train_semantics=Semantics("draw", 1, True, _whole),
        random_in_train=True,
        onnx_torchscript_fails=GENERATOR_ARG,
    ),
]
