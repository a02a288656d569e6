"""Records of the blur pools (family ``blur``): BlurPool and MaxBlurPool (Zhang 2019).

The degenerate walk's ``kernel = input`` case has no literal meaning for a blur: its binomial
window is a weighting centred on the first sample, never a global reduction. Its window
arguments are therefore ``kernel_size=1, stride=size``: plain subsampling, whose single output
is one cell of the plane (checked as a ``draw``: "one cell of the plane"); for MaxBlurPool the
dense max window is the whole input, so the single output is the global max.
"""

from __future__ import annotations

from typing import Any

from op_record import Out, PoolRecord, Semantics

from ._policy import BASE, raises

PAGE = "blur"
_CONV = "PyTorch's depthwise conv{d}d and F.pad (in the input dtype)"


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
        PoolRecord(f"blur{d}d", PAGE, BLUR, Semantics("draw", 1, True, _subsample), _CONV.format(d=d)),
        PoolRecord(
            f"maxblur{d}d",
            PAGE,
            MAX_BLUR,
            Semantics("max", 1, True, _global_max),
            f"PyTorch's max_pool{d}d, then " + _CONV.format(d=d),
        ),
    ]


RECORDS: list[PoolRecord] = [r for d in (1, 2, 3) for r in _records(d)]
