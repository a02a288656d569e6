"""Records of the second-order pools (family ``bilinear``): bilinear, compact, low-rank, matrix sqrt."""

from __future__ import annotations

from op_record import Out, PoolRecord, Semantics

from ._policy import STATS

PAGE = "bilinear"
FLOAT32 = "float32 (torchpool)"

RECORDS: list[PoolRecord] = [
    PoolRecord("bilinear", PAGE, dict(STATS), Semantics("stats", 0, False, None), FLOAT32),
    PoolRecord(
        "compact_bilinear",
        PAGE,
        {
            **STATS,
            "f32_huge": Out("nan and 0", STATS["f32_huge"].why),
            "nan": Out("nan@sample", "every output of the sample, the unreachable bins too (NaN * 0 mask)"),
        },
        Semantics("stats", 0, False, None),
        FLOAT32,
    ),
    PoolRecord(
        "low_rank_bilinear",
        PAGE,
        {
            **STATS,
            "f32_huge": Out(
                "nan", "the exact scores (~1e60) exceed float32; the difference of energies is inf - inf"
            ),
            "f16_huge": Out("±inf", "the exact scores (~4e9) exceed float16"),
            "f32_tiny": Out("0", "the exact scores (~1e-60) underflow float32"),
            "f32_subnormal": Out("0", "the exact scores underflow"),
            "nan": Out("nan@sample", "every class score of the sample"),
            "+inf": Out("nan@sample", "inf - inf between the U and V energies"),
            "-inf": Out("nan@sample", "inf - inf between the U and V energies"),
        },
        Semantics("stats", 2, False, None),
        FLOAT32,
        input_top=(100.0, "unnormalised scores ~ rank * mean(x^2) exceed 65504 beyond ~100"),
    ),
    PoolRecord(
        "matrix_sqrt",
        PAGE,
        {
            **STATS,
            "ties": Out("as-1x1, 0", "zero covariance: output 0, gradient 0 (trace replaced by 1)"),
            "f32_huge": Out("nan", "LIMIT: the covariance (~1e60) overflows float32"),
            "f32_tiny": Out(
                "0", "LIMIT: the covariance (~1e-60) underflows to 0: the zero-covariance output"
            ),
            "f32_subnormal": Out("0", "LIMIT: as for f32_tiny"),
            "+inf": Out("nan@sample", "inf - inf in the centring"),
            "-inf": Out("nan@sample", "inf - inf in the centring"),
        },
        Semantics("stats", 1, False, None),
        FLOAT32,
        onnx_torchscript_fails="aten::triu_indices has no opset-17 symbolic",
    ),
]
