"""Degenerate-input outcomes shared by several families (``tests/test_degenerate.py`` asserts them).

A family's records start from one of these tables and override what differs.
"""

from __future__ import annotations

from typing import Any

from op_record import Out


def raises(exc: str, match: str, why: str = "") -> Out:
    """The outcome ``raises exc`` with a message matching ``match``."""
    return Out(f"raises {exc}", why, match)


def kernel(size: int) -> dict[str, Any]:
    """A ``size``-wide window."""
    return {"kernel_size": size}


def kernel_nopad(size: int) -> dict[str, Any]:
    """A ``size``-wide window without padding."""
    return {"kernel_size": size, "padding": 0}


def no_window(size: int) -> dict[str, Any]:
    """Already a reduction over the whole input."""
    return {}


SIZE_MSG = r"larger than the padded input \(1 \+ 2 \* 0\)"
WINDOW_TOO_BIG = raises("ValueError", rf"shape \(2, 4(, 1)+\) does not fit the window: .*{SIZE_MSG}")
TORCH_TOO_SMALL = raises(
    "RuntimeError", r"Given input size: \(4x1(x1)*\)\. Calculated output size: .*too small"
)
POW_OVERFLOW = "LIMIT: x**p overflows float32 above ~1e19 (p=2) / ~7e12 (p=3)"

#: outcomes shared by max / average / mixed pools; pools override what differs.
BASE: dict[str, Out] = {
    "n0": Out("ok"),
    "1x1": Out("ok"),
    "kernel": Out("global"),
    "zeros": Out("0, one-hot"),
    "ties": Out("c, one-hot"),
    "f32_huge": Out("ok"),
    "f16_huge": Out("ok"),
    "f32_tiny": Out("ok"),
    "f32_subnormal": Out("ok"),
    "nan": Out("nan", "propagates to the windows containing the cell"),
    "+inf": Out("+inf"),
    "-inf": Out("finite", "ignored by the max (the window's max of the other cells)"),
}
MAX = {**BASE}
AVG = {**BASE, "zeros": Out("0, uniform"), "ties": Out("c, uniform"), "-inf": Out("-inf")}
AVGMAX = {
    **BASE,
    "zeros": Out("0, any"),
    "ties": Out("c, any"),
    "-inf": Out("-inf", "the average is -inf"),
    "f16_huge": Out("ok", "0.5 * avg + 0.5 * max: no intermediate sum to overflow"),
}
MIX_EVAL = {**AVGMAX, "f16_huge": Out("ok"), "-inf": Out("-inf", "p * max + (1 - p) * avg with avg = -inf")}
GLOBAL_ONLY = {"kernel": Out("global", "already a global reduction (output_size=1)")}
STATS: dict[str, Out] = {
    "n0": Out("ok"),
    "1x1": Out("ok"),
    "kernel": Out("n/a"),
    "zeros": Out("0, 0"),
    "ties": Out("as-1x1, any"),
    "f32_huge": Out("nan", "LIMIT: the second moment (~1e60) overflows float32; inf / inf in the L2 norm"),
    "f16_huge": Out("ok", "computed in float32"),
    "f32_tiny": Out("0", "LIMIT: the second moment (~1e-60) underflows to 0; sign(0) = 0"),
    "f32_subnormal": Out("0", "LIMIT: the second moment underflows to 0"),
    "nan": Out("nan@sample", "every output of the sample is NaN (channels mix, then L2 normalisation)"),
    "+inf": Out(
        "nan and finite",
        "entries pairing the channel are inf; the L2 norm gives inf/inf = NaN there, 0 elsewhere",
    ),
    "-inf": Out("nan and finite", "as for +inf"),
}

#: the half-precision walk's adaptive output: 2 bins per dimension (1 takes PyTorch's plain-mean path).
ADAPTIVE_BINS: dict[str, Any] = {"output_size": 2}
