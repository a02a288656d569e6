"""Records of the global pools (family ``global``): global max, global average, GeM."""

from __future__ import annotations

from op_record import Out, PoolRecord, Semantics

from ._policy import AVG, GLOBAL_ONLY, MAX, no_window

PAGE = "global"

RECORDS: list[PoolRecord] = [
    PoolRecord(
        "gem",
        PAGE,
        {
            **AVG,
            **GLOBAL_ONLY,
            "zeros": Out("eps, 0", "clamp(x, eps): output eps, gradient 0 (clamped)"),
            "f32_huge": Out("ok", "each plane is divided by its max before the power"),
            "f32_tiny": Out("eps", "by design: the input is clamped to eps = 1e-6"),
            "f32_subnormal": Out("eps", "by design: clamped to eps"),
            "-inf": Out("finite", "clamped to eps"),
        },
        Semantics("gem", 1, False, no_window),
        "float32 (torchpool), max-scaled powers",
        cuda_inductor=True,
    ),
    PoolRecord(
        "global_avg",
        PAGE,
        {**AVG, **GLOBAL_ONLY},
        Semantics("mean", 1, True, no_window),
        "PyTorch's mean (float32 accumulation)",
    ),
    PoolRecord(
        "global_max",
        PAGE,
        {
            **MAX,
            **GLOBAL_ONLY,
            "zeros": Out(
                "0, uniform", "x.amax splits the gradient evenly between tied maxima (max pools pick one)"
            ),
            "ties": Out("c, uniform", "x.amax splits the gradient evenly between tied maxima"),
        },
        Semantics("max", 1, True, no_window),
        "exact (selection)",
    ),
]
