r"""Records of the blur pools (family ``blur``): BlurPool and MaxBlurPool (Zhang 2019).

The degenerate walk's ``kernel = input`` case has no literal meaning for a blur: its binomial
window is a weighting centred on the first sample, never a global reduction. Its window
arguments are therefore ``kernel_size=1, stride=size``: plain subsampling, whose single output
is one cell of the plane (checked as a ``draw``: "one cell of the plane"); for MaxBlurPool the
dense max window is the whole input, so the single output is the global max.

The float64 reference and the sample cases (``OPS``, the ``OpRecord``\ s of ``test_ops.py``):
Records of the blur family (BlurPool, MaxBlurPool: Zhang 2019) and their slow references.

The references share no code with ``torchpool.ops.blur``: the binomial taps come from Pascal's
triangle built by additions, the padding is an explicit index map per mode, and every output is
a loop over its window's cells (and, for MaxBlurPool, a loop over the dense max pool's windows).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from op_record import Case, OpRecord, Out, PoolRecord, Semantics
from torch import Tensor

import torchpool.ops.blur as B

from ._policy import BASE, raises

Size = int | Sequence[int]


def pascal_row(k: int) -> list[float]:
    """Row ``k - 1`` of Pascal's triangle, normalised to sum 1."""
    row = [1]
    for _ in range(k - 1):
        row = [a + b for a, b in zip([0, *row], [*row, 0])]
    total = sum(row)
    return [v / total for v in row]


def source_index(i: int, size: int, mode: str) -> int | None:
    """The input index read at padded position ``i`` (``None``: a zero)."""
    if 0 <= i < size:
        return i
    if mode == "zeros":
        return None
    if mode == "replicate":
        return min(max(i, 0), size - 1)
    if mode == "circular":
        return i % size
    return -i if i < 0 else 2 * (size - 1) - i  # reflect (the edge not repeated)


def axis_matrix(size: int, k: int, stride: int, mode: str) -> Tensor:
    """The blur of one axis as a dense ``(outputs, size)`` float64 matrix, from Pascal's row (the
    padded cells folded onto the input cells ``mode`` reads)."""
    taps = pascal_row(k)
    outputs = -(-size // stride)
    matrix = torch.zeros(outputs, size, dtype=torch.float64)
    for o in range(outputs):
        for t in range(k):
            i = source_index(o * stride - (k - 1) // 2 + t, size, mode)
            if i is not None:
                matrix[o, i] += taps[t]
    return matrix


def _tuple(value: Size, n: int) -> tuple[int, ...]:
    return (value,) * n if isinstance(value, int) else tuple(value)


def blur_reference(
    x: Tensor, kernel_size: Size = 3, stride: Size = 2, padding_mode: str = "reflect"
) -> Tensor:
    """Loops over outputs and window cells; ``x`` is ``(N, C, *S)`` or ``(C, *S)``."""
    n = x.dim() - 2
    k, s = _tuple(kernel_size, n), _tuple(stride, n)
    spatial = x.shape[2:]
    taps = [pascal_row(kk) for kk in k]
    out_size = [(size + ss - 1) // ss for size, ss in zip(spatial, s)]
    out = torch.zeros(*x.shape[:2], *out_size, dtype=x.dtype)
    for o in itertools.product(*(range(v) for v in out_size)):
        total = torch.zeros(x.shape[:2], dtype=x.dtype)
        for cell in itertools.product(*(range(kk) for kk in k)):
            weight = 1.0
            index = []
            for axis in range(n):
                weight *= taps[axis][cell[axis]]
                start = o[axis] * s[axis] - (k[axis] - 1) // 2
                index.append(source_index(start + cell[axis], spatial[axis], padding_mode))
            if None not in index:
                where: tuple[slice | int, ...] = (
                    slice(None),
                    slice(None),
                    *[int(i) for i in index if i is not None],
                )
                total = total + weight * x[where]
        place: tuple[slice | int, ...] = (slice(None), slice(None), *o)
        out[place] = total
    return out


def dense_max_reference(x: Tensor, size: Size) -> Tensor:
    """Max over every ``size`` window at stride 1, no padding."""
    n = x.dim() - 2
    m = _tuple(size, n)
    out_size = [v - mm + 1 for v, mm in zip(x.shape[2:], m)]
    out = torch.empty(*x.shape[:2], *out_size, dtype=x.dtype)
    for o in itertools.product(*(range(v) for v in out_size)):
        window: tuple[slice, ...] = (slice(None), slice(None), *(slice(a, a + mm) for a, mm in zip(o, m)))
        place: tuple[slice | int, ...] = (slice(None), slice(None), *o)
        out[place] = x[window].reshape(*x.shape[:2], -1).max(dim=2).values
    return out


def max_blur_reference(
    x: Tensor,
    kernel_size: Size = 3,
    stride: Size = 2,
    max_pool_size: Size = 2,
    ceil_mode: bool = False,
    padding_mode: str = "reflect",
) -> Tensor:
    return blur_reference(dense_max_reference(x, max_pool_size), kernel_size, stride, padding_mode)


def _batchless(reference: Callable[..., Tensor], ndim: int) -> Callable[..., Tensor]:
    """``reference`` also for a batch-less ``(C, *S)`` input."""

    def ref(x: Tensor, **kwargs: Any) -> Tensor:
        if x.dim() == ndim + 1:
            return reference(x.unsqueeze(0), **kwargs).squeeze(0)
        return reference(x, **kwargs)

    return ref


def _blur_ref(ndim: int) -> Callable[..., Tensor]:
    return _batchless(blur_reference, ndim)


def _max_blur_ref(ndim: int) -> Callable[..., Tensor]:
    return _batchless(max_blur_reference, ndim)


_MODES = ("reflect", "replicate", "zeros", "circular")

OPS: list[OpRecord] = [
    OpRecord(
        "blur2d",
        B.blur_pool2d,
        B.BlurPool2d,
        _blur_ref(2),
        (
            Case((2, 3, 7, 8), {}),
            *(Case((1, 2, 7, 6), {"kernel_size": k, "stride": 2}) for k in range(1, 8)),
            *(Case((1, 2, 5, 6), {"kernel_size": 4, "stride": 3, "padding_mode": m}) for m in _MODES),
            *(Case((1, 2, 6, 7), {"kernel_size": 5, "padding_mode": m}) for m in _MODES),
            Case((1, 2, 6, 5), {"kernel_size": (3, 2), "stride": (1, 2), "padding_mode": "replicate"}),
            Case((1, 2, 1, 1), {"kernel_size": 3, "padding_mode": "zeros"}),
        ),
        2,
    ),
    OpRecord(
        "blur1d",
        B.blur_pool1d,
        B.BlurPool1d,
        _blur_ref(1),
        (
            Case((2, 3, 9), {}),
            *(
                Case((1, 2, 8), {"kernel_size": k, "stride": 3, "padding_mode": m})
                for k, m in zip((2, 6, 7, 1), _MODES)
            ),
        ),
        1,
    ),
    OpRecord(
        "blur3d",
        B.blur_pool3d,
        B.BlurPool3d,
        _blur_ref(3),
        (
            Case((1, 2, 4, 5, 3), {}),
            Case(
                (1, 2, 5, 4, 4), {"kernel_size": (2, 3, 4), "stride": (2, 1, 3), "padding_mode": "circular"}
            ),
            Case((1, 1, 4, 3, 5), {"kernel_size": 5, "padding_mode": "zeros"}),
        ),
        3,
    ),
    OpRecord(
        "maxblur2d",
        B.max_blur_pool2d,
        B.MaxBlurPool2d,
        _max_blur_ref(2),
        (
            Case((2, 3, 7, 8), {}),
            Case((1, 2, 8, 7), {"kernel_size": 5, "stride": 2, "max_pool_size": 3, "padding_mode": "zeros"}),
            Case((1, 2, 6, 6), {"kernel_size": 4, "stride": 3, "max_pool_size": (2, 1), "ceil_mode": True}),
            *(Case((1, 2, 6, 7), {"kernel_size": 3, "padding_mode": m}) for m in _MODES),
        ),
        2,
    ),
    OpRecord(
        "maxblur1d",
        B.max_blur_pool1d,
        B.MaxBlurPool1d,
        _max_blur_ref(1),
        (Case((2, 3, 9), {}), Case((1, 2, 10), {"kernel_size": 6, "stride": 3, "max_pool_size": 3})),
        1,
    ),
    OpRecord(
        "maxblur3d",
        B.max_blur_pool3d,
        B.MaxBlurPool3d,
        _max_blur_ref(3),
        (Case((1, 2, 5, 4, 5), {}), Case((1, 1, 4, 5, 3), {"kernel_size": 2, "padding_mode": "replicate"})),
        3,
    ),
]


PAGE = "blur"
_CONV = "PyTorch's depthwise convolution and F.pad (in the input dtype)"


def _subsample(size: int) -> dict[str, Any]:
    """One output of plain subsampling (kernel_size 1) for a ``size``-wide input."""
    return {"kernel_size": 1, "stride": size}


def _global_max(size: int) -> dict[str, Any]:
    """The dense max window is the whole input; the blur of its single cell is the cell."""
    return {"kernel_size": 1, "stride": size, "max_pool_size": size}


REFLECT_TOO_SMALL = raises(
    "ValueError",
    r"spatial size \(1(, 1)*,?\) is too small for padding_mode='reflect'",
    "reflection needs every size above kernel_size // 2 (use 'replicate' or 'zeros')",
)
BLUR = {
    **BASE,
    "1x1": REFLECT_TOO_SMALL,
    "kernel": Out("global", "kernel_size=1, stride=size (see the module docstring): one cell of the plane"),
    "zeros": Out("0, any"),
    "ties": Out("c, any", "the binomial taps sum to 1 and reflection keeps a constant"),
    "nan": Out("nan", "propagates to the outputs whose window holds the cell"),
    "+inf": Out("+inf"),
    "-inf": Out("-inf"),
}
MAX_BLUR = {
    **BASE,
    "1x1": raises(
        "ValueError",
        r"input of shape \(2, 4(, 1)+\) is smaller than max_pool_size",
        "the dense max pool has no padding",
    ),
    "kernel": Out("global", "max_pool_size = input size: the global max, then kernel_size=1"),
    "zeros": Out("0, any"),
    "ties": Out("c, any"),
    "-inf": Out("finite", "ignored by the dense max (a 2-wide window keeps a finite cell)"),
}


def _records(d: int) -> list[PoolRecord]:
    return [
        PoolRecord(f"blur{d}d", PAGE, BLUR, Semantics("draw", 1, True, _subsample), _CONV),
        PoolRecord(
            f"maxblur{d}d",
            PAGE,
            MAX_BLUR,
            Semantics("max", 1, True, _global_max),
            "PyTorch's max pooling, then " + _CONV,
        ),
    ]


RECORDS: list[PoolRecord] = [r for d in (1, 2, 3) for r in _records(d)]
