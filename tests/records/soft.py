r"""Records of SoftPool (family ``soft``): the softmax-weighted mean of each window (Stergiou et al. 2021).

The float64 reference and the sample cases (``OPS``, the ``OpRecord``\ s of ``test_ops.py``):
Records for SoftPool (Stergiou et al. 2021) and its slow float64 reference.

The reference shares no code with ``torchpool.ops.soft``: it loops over the output positions,
collects each window's cells inside the input (explicit integer bounds; padding cells are no
part of a window) and evaluates ``sum e^a a / sum e^a`` with Python's ``math`` on the window's
values shifted by their max.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from op_record import Case, OpRecord, Out, PoolRecord, Semantics
from torch import Tensor

import torchpool.ops.soft as S

from ._policy import BASE, WINDOW_TOO_BIG, kernel

Size = int | Sequence[int]


def _tuple(value: Size, n: int) -> tuple[int, ...]:
    return (value,) * n if isinstance(value, int) else tuple(value)


def output_size(size: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    """PyTorch's rule: floor (or ceil) of ``(size + 2p - k) / s`` + 1; a last window starting in the
    right padding is dropped."""
    span = size + 2 * p - k
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def soft_value(values: list[float]) -> float:
    """``sum e^a a / sum e^a`` of a list of finite values, shifted by their max."""
    top = max(values)
    weights = [math.exp(v - top) for v in values]
    return sum(w * v for w, v in zip(weights, values)) / sum(weights)


def soft_reference(
    x: Tensor,
    kernel_size: Size,
    stride: Size | None = None,
    padding: Size = 0,
    ceil_mode: bool = False,
) -> Tensor:
    """Loops over outputs and window cells; ``x`` is ``(N, C, *S)``."""
    n = x.dim() - 2
    k = _tuple(kernel_size, n)
    s = k if stride is None else _tuple(stride, n)
    p = _tuple(padding, n)
    spatial = x.shape[2:]
    out = [output_size(spatial[d], k[d], s[d], p[d], ceil_mode) for d in range(n)]
    y = torch.empty(*x.shape[:2], *out, dtype=torch.float64)
    planes = x.double().reshape(-1, *spatial)
    flat = y.reshape(-1, *out)
    for plane in range(planes.shape[0]):
        for o in itertools.product(*(range(v) for v in out)):
            ranges = [
                range(max(o[d] * s[d] - p[d], 0), min(o[d] * s[d] - p[d] + k[d], spatial[d]))
                for d in range(n)
            ]
            keys = [(plane, *idx) for idx in itertools.product(*ranges)]  # tuples first (3.10 syntax)
            cells = [float(planes[key]) for key in keys]
            place = (plane, *o)
            flat[place] = soft_value(cells)
    return y


OPS: list[OpRecord] = [
    OpRecord(
        "soft2d",
        S.soft_pool2d,
        S.SoftPool2d,
        soft_reference,
        (
            Case((2, 3, 6, 7), {"kernel_size": 2}),
            Case((1, 2, 7, 6), {"kernel_size": 3, "stride": 2, "padding": 1}),
            Case((1, 2, 7, 8), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
            Case((1, 2, 6, 5), {"kernel_size": (2, 3), "stride": (1, 2), "padding": (1, 0)}),
            Case((1, 2, 5, 5), {"kernel_size": 3, "stride": 1}),
        ),
        2,
    ),
    OpRecord(
        "soft1d",
        S.soft_pool1d,
        S.SoftPool1d,
        soft_reference,
        (
            Case((2, 3, 9), {"kernel_size": 2}),
            Case((1, 2, 10), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
        ),
        1,
    ),
    OpRecord(
        "soft3d",
        S.soft_pool3d,
        S.SoftPool3d,
        soft_reference,
        (
            Case((1, 2, 4, 5, 4), {"kernel_size": 2}),
            Case((1, 2, 5, 4, 5), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
        ),
        3,
    ),
]


PAGE = "soft"
#: SoftPool is not homogeneous (``f(s x) != s f(x)``: large inputs tend to the max, small ones to
#: the mean), so the magnitude cases compare with its own float64 result on the same values.
NOT_HOMOGENEOUS = "SoftPool is not homogeneous: compared with its float64 result on the same values"

#: why a non-finite cell moves the other outputs of its plane (only those: checked over its sample).
PLANE = (
    "the other outputs of its plane stay finite but may move by rounding: the plane is recomputed "
    "with each window's own max (the fast path's stabiliser, the plane's max, is not finite)"
)

SOFT = {
    **BASE,
    "zeros": Out("0, uniform"),
    "ties": Out("c, uniform"),
    "f32_huge": Out("ok-f64", f"{NOT_HOMOGENEOUS} (here the window max: the weights are one-hot)"),
    "f16_huge": Out("ok", "computed in float32, each window stabilised by a max: no overflow"),
    "f32_tiny": Out("ok-f64", f"{NOT_HOMOGENEOUS} (here the window mean: the weights are uniform)"),
    "f32_subnormal": Out("ok-f64", NOT_HOMOGENEOUS),
    "nan": Out("nan and finite@sample", f"NaN in the windows holding the cell; {PLANE}"),
    "+inf": Out(
        "nan and finite@sample",
        f"NaN in its windows (inf - inf in the exponent stabilised by their max); {PLANE}",
    ),
    "-inf": Out(
        "nan",
        "NaN in its windows (the term e^a * a is 0 * -inf; its limit is 0); the other outputs do not "
        "move with the cell (the fast path's stabiliser is 0 where the plane's values allow it)",
    ),
    "1x1": WINDOW_TOO_BIG,
}

RECORDS: list[PoolRecord] = [
    PoolRecord(f"soft{d}d", PAGE, SOFT, Semantics("soft", 1, True, kernel), "float32 (torchpool)")
    for d in (1, 2, 3)
]
