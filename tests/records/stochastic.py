"""Records of stochastic pooling (family ``stochastic``)."""

from __future__ import annotations

from op_record import Out, PoolRecord, Semantics

from ._policy import BASE, WINDOW_TOO_BIG, kernel, raises
from .combined import GENERATOR_ARG

EVAL = {
    **BASE,
    "1x1": WINDOW_TOO_BIG,
    "zeros": Out("0, 0", "zero windows output 0 with zero gradient (documented)"),
    "ties": Out("c, uniform"),
    "f32_huge": Out("inf", "LIMIT: sum(a^2) / sum(a) in float32: a^2 overflows above ~1.8e19"),
    "f32_tiny": Out("0", "LIMIT: a^2 underflows to 0 below ~1e-19 (exact answer ~1e-30)"),
    "f32_subnormal": Out("0", "LIMIT: a^2 underflows to 0"),
    "nan": raises(
        "ValueError", r"must not contain NaN", "refuses: probabilities a / sum(a) need finite a >= 0"
    ),
    "+inf": raises("ValueError", r"must be finite for stochastic pooling, got inf"),
    "-inf": raises("ValueError", r"must be non-negative for stochastic pooling .* minimum of -inf"),
}
TRAIN = {
    **EVAL,
    "ties": Out("c, one-hot", "one drawn cell per window"),
    "f32_huge": Out("ok", "draws compare running sums, no squares"),
    "f32_tiny": Out("ok"),
    "f32_subnormal": Out("ok"),
}

RECORDS: list[PoolRecord] = [
    PoolRecord(
        f"stochastic{d}d",
        "stochastic",
        dict(EVAL),
        Semantics("stochastic", 1, False, kernel),
        "float32 sums and draws (torchpool)",
        train_differs=True,
        train_policy=dict(TRAIN),
        train_semantics=Semantics("draw", 1, True, kernel),
        random_in_train=True,
        nonnegative_only=True,
        explain_modes=("train", "eval") if d == 2 else (),
        onnx_torchscript_fails=GENERATOR_ARG,
        cuda_inductor=d == 2,
    )
    for d in (1, 2, 3)
]
