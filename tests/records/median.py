"""Records of median pooling (family ``median``)."""

from __future__ import annotations

from op_record import Out, PoolRecord, Semantics

from ._policy import BASE, kernel_nopad, raises

MEDIAN = {
    **BASE,
    "1x1": raises(
        "ValueError",
        r"padding must be smaller than the input size for padding_mode='reflect', got padding=1 for size 1",
        "reflect padding needs padding < size",
    ),
    "nan": Out("nan", "a NaN anywhere in a window gives NaN (documented)"),
    "+inf": Out("finite", "an order statistic: one extreme cell does not reach the median"),
    "-inf": Out("finite", "an order statistic"),
}

RECORDS: list[PoolRecord] = [
    PoolRecord(
        f"median{d}d",
        "median",
        dict(MEDIAN),
        Semantics("median", 1, True, kernel_nopad, reflect_windows=True),
        "exact (selection)",
        keep_window=True,
        small_input=True,
        explain_modes=("eval",) if d == 2 else (),
        cuda_inductor=d == 2,
    )
    for d in (1, 2, 3)
]
