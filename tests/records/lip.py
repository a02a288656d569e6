"""Records of LIP (family ``lip``): local importance-based pooling (Gao et al. 2019).

The walks build ``LIPPool2d(4)`` as initialised (the paper code's zero convolution): its logit is
constant, so the pool is the average over the cells inside the input; the learned case is tested
against its float64 reference in ``tests/records_lip.py`` and ``tests/test_lip.py``.
"""

from __future__ import annotations

from op_record import Out, PoolRecord, Semantics

from ._policy import BASE, kernel_nopad

PAGE = "lip"
#: a non-finite cell reaches every logit of its sample: the convolution mixes the channels (0 * inf
#: = NaN even with the initial zero weights) and InstanceNorm's statistics cover the whole plane.
SAMPLE_WIDE = "the logit module (3x3 conv over all channels, then InstanceNorm over the plane) spreads it"

LIP = {
    **BASE,
    "zeros": Out("0, any", "3x3 windows at stride 2 overlap: cells are in 1, 2 or 4 windows"),
    "ties": Out("c, any"),
    "f16_huge": Out("ok", "pooled in float32"),
    "nan": Out("nan@sample", SAMPLE_WIDE),
    "+inf": Out("nan@sample", SAMPLE_WIDE),
    "-inf": Out("nan@sample", SAMPLE_WIDE),
}

RECORDS: list[PoolRecord] = [
    PoolRecord(
        "lip2d",
        PAGE,
        LIP,
        Semantics("mean", 1, True, kernel_nopad),
        "float32 (torchpool); the logit module in float32",
        precision_kwargs={"channels": 8},  # the half-precision walk's input has 8 channels
    ),
]
