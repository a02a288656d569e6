r"""Records of spectral pooling (family ``spectral``): the lowest DFT frequencies (Rippel et al. 2015).

The degenerate walk's ``kernel = input`` case is ``output_size=1``: the DC coefficient alone,
scaled so that it is the mean of the plane.

The float64 reference and the sample cases (``OPS``, the ``OpRecord``\ s of ``test_ops.py``)
share no code with ``torchpool.ops.spectral`` (a real cosine matrix per axis): they take the
complex 2-D DFT by explicit sums ``X[k] = sum_t x[t] exp(-2 pi i k t / n)``, build each output
bin from the input bins that land on it (for an even output size, the two input bins ``+m/2`` and
``-m/2`` both land on the output's Nyquist bin), scale by ``m / n`` and take the inverse DFT by
explicit sums, asserting that its imaginary part vanishes.
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Sequence

import torch
from op_record import Case, OpRecord, Out, PoolRecord, Semantics
from torch import Tensor

import torchpool.ops.spectral as SP

from ._policy import BASE, raises

Size = int | Sequence[int]


def _pair(value: Size) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def input_bins(j: int, m: int, n: int) -> list[int]:
    """The input DFT bins (of ``n``) that land on output bin ``j`` (of ``m <= n``)."""
    f = j if j <= m // 2 else j - m  # the signed frequency of output bin j
    if m % 2 == 0 and abs(f) == m // 2 and m < n:
        return [m // 2, n - m // 2]  # both halves of the output's Nyquist frequency
    return [f % n]


def dft(values: list[complex], sign: int) -> list[complex]:
    """``out[k] = sum_t values[t] exp(sign 2 pi i k t / n)``, by explicit sums."""
    n = len(values)
    return [
        sum(v * cmath.exp(sign * 2j * math.pi * k * t / n) for t, v in enumerate(values)) for k in range(n)
    ]


def _dft2(plane: list[list[complex]], sign: int) -> list[list[complex]]:
    rows = [dft(row, sign) for row in plane]
    cols = [dft([row[c] for row in rows], sign) for c in range(len(rows[0]))]
    return [[cols[c][r] for c in range(len(cols))] for r in range(len(rows))]


def spectral_plane(plane: list[list[float]], out: tuple[int, int]) -> list[list[float]]:
    """One ``(n_h, n_w)`` plane to ``out`` by DFT, band selection and inverse DFT."""
    (nh, nw), (mh, mw) = (len(plane), len(plane[0])), out
    spectrum = _dft2([[complex(v) for v in row] for row in plane], -1)
    scale = (mh / nh) * (mw / nw)
    kept = [
        [
            scale * sum(spectrum[a][b] for a in input_bins(i, mh, nh) for b in input_bins(j, mw, nw))
            for j in range(mw)
        ]
        for i in range(mh)
    ]
    back = _dft2(kept, +1)
    result = []
    for row in back:
        for v in row:
            assert abs(v.imag) <= 1e-9 * (1 + abs(v.real)) * mh * mw, f"not real: {v}"
        result.append([v.real / (mh * mw) for v in row])
    return result


def spectral_reference(x: Tensor, output_size: Size) -> Tensor:
    """``x`` of shape ``(..., H, W)`` pooled to ``output_size`` in float64, plane by plane."""
    out = _pair(output_size)
    lead = x.shape[:-2]
    planes = x.double().reshape(-1, *x.shape[-2:])
    result = torch.empty(planes.shape[0], *out, dtype=torch.float64)
    for p in range(planes.shape[0]):
        result[p] = torch.tensor(spectral_plane(planes[p].tolist(), out), dtype=torch.float64)
    return result.reshape(*lead, *out)


OPS: list[OpRecord] = [
    OpRecord(
        "spectral2d",
        SP.spectral_pool2d,
        SP.SpectralPool2d,
        spectral_reference,
        (
            Case((2, 3, 8, 8), {"output_size": 4}),
            Case((1, 2, 7, 8), {"output_size": (3, 5)}),
            Case((1, 2, 9, 6), {"output_size": (4, 2)}),
            Case((1, 2, 5, 7), {"output_size": (5, 6)}),
            Case((1, 2, 6, 6), {"output_size": 1}),
            Case((1, 2, 8, 9), {"output_size": (8, 9)}),
        ),
        2,
        inputs="real",
    ),
]

PAGE = "spectral"


def _dc(size: int) -> dict[str, int]:
    """``output_size=1``: the DC coefficient, the mean."""
    return {"output_size": 1}


_EVERY_OUTPUT = "every output of the plane (the DFT mixes all its cells)"

SPECTRAL = {
    **BASE,
    "1x1": raises(
        "ValueError",
        r"output_size \(4, 4\) is larger than the input's spatial size \(1, 1\)",
        "spectral pooling only downsamples",
    ),
    "kernel": Out("global", "output_size=1: the DC coefficient, scaled to the mean"),
    "zeros": Out("0, uniform", "every cell's gradient is (H_out W_out) / (H W)"),
    "ties": Out("c, uniform", "a constant keeps its value (the DC term scaled by m / n)"),
    "f16_huge": Out("ok", "computed in float32"),
    "nan": Out("nan", _EVERY_OUTPUT),
    "+inf": Out("+inf and -inf", _EVERY_OUTPUT + ": the band's taps have both signs"),
    "-inf": Out("+inf and -inf", _EVERY_OUTPUT + ": as for +inf"),
}

RECORDS: list[PoolRecord] = [
    PoolRecord(
        "spectral2d",
        PAGE,
        SPECTRAL,
        Semantics("mean", 1, True, _dc),
        "float32 (torchpool): two real matrix products",
    ),
]
