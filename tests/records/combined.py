"""Records of the combined pools (family ``combined``): avg+max, concatenated, mixed, learned, gated."""

from __future__ import annotations

from op_record import Out, PoolRecord, Semantics

from ._policy import ADAPTIVE_BINS, AVGMAX, GLOBAL_ONLY, MIX_EVAL, WINDOW_TOO_BIG, kernel, no_window

PAGE = "combined"
GENERATOR_ARG = (
    "forward has a keyword-only `generator` argument, which the TorchScript tracer "
    "rejects (TypeError: forward() takes 2 positional arguments but 3 were given)"
)
_KERNELS_3D = "PyTorch's avg/max kernels; 3d avg in float32 (torchpool)"
_AS_ADAPTIVE = "as adaptive_avg and adaptive_max"

CATAVGMAX = {
    **AVGMAX,
    "f16_huge": Out("ok"),
    "-inf": Out("-inf and finite", "avg channel -inf, max channel finite"),
}
MIX_TRAIN = {
    **MIX_EVAL,
    "zeros": Out("0, any", "per sample: max (one-hot) or average (uniform)"),
    "ties": Out("c, any"),
    "+inf": Out("+inf", "the chosen pool's value (here the max; torch.where, so no 0 * inf)"),
    "-inf": Out("finite", "the chosen pool's value: here the max, which ignores it (the average: -inf)"),
}


def _records(d: int) -> list[PoolRecord]:
    return [
        PoolRecord(
            f"avgmax{d}d",
            PAGE,
            {**AVGMAX, "1x1": WINDOW_TOO_BIG},
            Semantics("avgmax", 1, True, kernel),
            _KERNELS_3D,
            cuda_inductor=d == 2,
        ),
        PoolRecord(
            f"adaptive_avgmax{d}d",
            PAGE,
            {**AVGMAX, **GLOBAL_ONLY},
            Semantics("avgmax", 1, True, no_window),
            _AS_ADAPTIVE,
            precision_kwargs=ADAPTIVE_BINS,
        ),
        PoolRecord(
            f"catavgmax{d}d",
            PAGE,
            {**CATAVGMAX, "1x1": WINDOW_TOO_BIG},
            Semantics("catavgmax", 1, True, kernel),
            _KERNELS_3D,
        ),
        PoolRecord(
            f"adaptive_catavgmax{d}d",
            PAGE,
            {**CATAVGMAX, **GLOBAL_ONLY},
            Semantics("catavgmax", 1, True, no_window),
            _AS_ADAPTIVE,
            precision_kwargs=ADAPTIVE_BINS,
            cuda_inductor=d == 2,
        ),
        PoolRecord(
            f"mixed{d}d",
            PAGE,
            {**MIX_EVAL, "1x1": WINDOW_TOO_BIG},
            Semantics("mix", 1, True, kernel),
            _KERNELS_3D,
            train_differs=True,
            train_policy={**MIX_TRAIN, "1x1": WINDOW_TOO_BIG},
            train_semantics=Semantics("max|mean", 1, True, kernel),
            random_in_train=True,
            onnx_torchscript_fails=GENERATOR_ARG,
        ),
    ]


RECORDS: list[PoolRecord] = [
    *[r for d in (1, 2, 3) for r in _records(d)],
    PoolRecord(
        "learned_mixed2d",
        PAGE,
        {**MIX_EVAL, "1x1": WINDOW_TOO_BIG},
        Semantics("mix", 1, True, kernel),
        "PyTorch's avg/max kernels",
    ),
    PoolRecord(
        "gated2d",
        PAGE,
        {
            **MIX_EVAL,
            "1x1": WINDOW_TOO_BIG,
            "+inf": Out(
                "nan",
                "the gate sigmoid(w . x) is NaN for w = 0 (init: 0 * inf); for other w it saturates to 0 "
                "or 1 and g * max + (1 - g) * avg has 0 * inf = NaN",
            ),
            "-inf": Out("nan", "as for +inf"),
        },
        Semantics("mix", 1, True, kernel),
        "PyTorch's avg/max kernels and conv2d (gate)",
    ),
]
