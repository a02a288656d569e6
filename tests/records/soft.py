"""Records of SoftPool (family ``soft``): the softmax-weighted mean of each window (Stergiou et al. 2021)."""

from __future__ import annotations

from op_record import Out, PoolRecord, Semantics

from ._policy import BASE, WINDOW_TOO_BIG, kernel

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
        "nan and finite",
        "NaN in its windows (the term e^a * a is 0 * -inf; its limit is 0); the other outputs of the "
        "plane move by rounding with the cell (the fast path's stabiliser is the plane's max)",
    ),
    "1x1": WINDOW_TOO_BIG,
}

RECORDS: list[PoolRecord] = [
    PoolRecord(f"soft{d}d", PAGE, SOFT, Semantics("soft", 1, True, kernel), "float32 (torchpool)")
    for d in (1, 2, 3)
]
