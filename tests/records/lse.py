r"""Records of log-sum-exp pooling (family ``lse``): ``(1/r) log(mean exp(r x))`` over all positions.

The float64 reference (``OPS``, the ``OpRecord``\ s of ``test_ops.py``) shares no code with
``torchpool.ops.lse``: it loops over the planes and evaluates ``m + log(fsum(exp(r (x - m))) / n) / r``
with Python's ``math`` on the plane's values, ``m`` their max.
"""

from __future__ import annotations

import math

import torch
from op_record import Case, OpRecord, Out, PoolRecord, Semantics
from torch import Tensor

import torchpool.ops.lse as L

from ._policy import AVG, GLOBAL_ONLY, no_window


def lse_value(values: list[float], r: float) -> float:
    """``(1/r) log(mean exp(r v))`` of finite values, shifted by their max."""
    top = max(values)
    return top + math.log(math.fsum(math.exp(r * (v - top)) for v in values) / len(values)) / r


def lse_reference(x: Tensor, r: float = 10.0, flatten: bool = True) -> Tensor:
    """Loops over the ``(N, C)`` planes of ``x``; float64."""
    planes = x.double().reshape(x.shape[0], x.shape[1], -1)
    out = torch.empty(x.shape[0], x.shape[1], dtype=torch.float64)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            out[n, c] = lse_value([float(v) for v in planes[n, c]], r)
    return out if flatten else out.reshape(*out.shape, *[1] * (x.dim() - 2))


def _function(x: Tensor, r: float = 10.0, flatten: bool = True) -> Tensor:
    return L.lse_pool(x, r, flatten=flatten)


def _module(r: float = 10.0, flatten: bool = True) -> L.LSEPool:
    return L.LSEPool(r, flatten=flatten)


OPS: list[OpRecord] = [
    OpRecord(
        "lse-2d",
        _function,
        _module,
        lse_reference,
        (
            Case((2, 3, 6, 7)),
            Case((2, 3, 5, 5), {"r": 0.5}),
            Case((2, 3, 5, 4), {"r": 0.05}),
            Case((1, 2, 4, 6), {"r": 60.0, "flatten": False}),
            Case((1, 2, 1, 1), {"r": 2.0}),
        ),
        2,
        inputs="real",
        batchless=False,
    ),
    OpRecord(
        "lse-1d",
        _function,
        _module,
        lse_reference,
        (Case((2, 3, 9)), Case((2, 3, 9), {"r": 1.0})),
        1,
        inputs="real",
        batchless=False,
    ),
    OpRecord(
        "lse-3d",
        _function,
        _module,
        lse_reference,
        (Case((1, 2, 3, 4, 5), {"r": 3.0}),),
        3,
        inputs="real",
        batchless=False,
    ),
]


PAGE = "lse"
#: LSE is not homogeneous (``f(s x) != s f(x)``: it tends to the max for large inputs, to the mean
#: for small ones), so the magnitude cases compare with its own float64 result on the same values.
NOT_HOMOGENEOUS = "LSE is not homogeneous: compared with its float64 result on the same values"

LSE = {
    **AVG,
    **GLOBAL_ONLY,
    "f32_huge": Out("ok-f64", f"{NOT_HOMOGENEOUS} (here the max: r x spreads by ~1e30)"),
    "f16_huge": Out("ok", "computed in float32, stabilised by the plane's max: no overflow"),
    "f32_tiny": Out("ok-f64", f"{NOT_HOMOGENEOUS} (here the mean, kept by expm1 / log1p)"),
    "f32_subnormal": Out("ok-f64", NOT_HOMOGENEOUS),
    "nan": Out("nan", "its plane's output"),
    "+inf": Out("+inf", "its plane's output (the stabiliser is 0 for a non-finite max)"),
    "-inf": Out("finite", "weight exp(-inf) = 0 in the mean (the count still includes the cell)"),
}

RECORDS: list[PoolRecord] = [
    PoolRecord(
        "lse",
        PAGE,
        LSE,
        Semantics("lse", 1, True, no_window),
        "float32 (torchpool)",
        onnx_torchscript_fails="expm1 (the small-spread branch) has no symbolic in opset 17",
    ),
]
