"""Records of PyTorch's own pools, registered as is (family ``max/avg``).

Max, average, LP, adaptive and fractional max pooling.
"""

from __future__ import annotations

from op_record import Known, Out, PoolRecord, Semantics

from ._policy import (
    ADAPTIVE_BINS,
    AVG,
    GLOBAL_ONLY,
    MAX,
    POW_OVERFLOW,
    TORCH_TOO_SMALL,
    kernel,
    kernel_nopad,
    no_window,
    raises,
)

PAGE = "max-avg"
SELECTION = "exact (selection)"

LP_OVERFLOW = Known(
    "overflow",
    "PyTorch's LPPool sums x^p in the input dtype: inf once a window's sum of |x|^p > 65504",
    "PyTorch's LPPool computes avg_pool(x^p) * window size in the input dtype: inf as soon as a "
    "window's sum of |x|^p exceeds 65504 (an L2 window norm above 256)",
)
FRACTIONAL_REGIONS = Known(
    "regions",
    "PyTorch places the random regions in the input dtype: some shift by a cell vs float32",
    "PyTorch's fractional_max_pool computes its pseudo-random region boundaries ((i + u) * alpha) in "
    "the input dtype: with the same samples u, some half-precision regions are shifted by a cell "
    "(float32 and float64 agree); values are exact maxima of those regions",
)
_MAX_1D_TOO_SMALL = raises(
    "RuntimeError",
    r"max_pool1d\(\) Invalid computed output size: 0",
    "UPSTREAM: the message names the output size only, not the input's",
)
_3D_TOO_SMALL = raises(
    "RuntimeError",
    r"Given input size: \(1x1x1\)\. Calculated output size: .*too small",
    "avg_pool2d's message: the 3d average runs separably where an input dim is below the kernel",
)

#: the registry family of these pools (the file name is not it).
FAMILY = "max/avg"


def _records(d: int) -> list[PoolRecord]:
    lp_policy = {
        **AVG,
        "1x1": TORCH_TOO_SMALL,
        "zeros": Out("0, 0", "PyTorch's sign(s) * relu(|s|) gives the 2-norm at 0 the subgradient 0"),
        "ties": Out("c*k^(1/p), uniform"),
        "f32_huge": Out("inf", f"UPSTREAM {POW_OVERFLOW}"),
        "f16_huge": Out("inf", "UPSTREAM LIMIT: x**2 overflows float16 (6e4**2 > 65504)"),
        "f32_tiny": Out("0", "UPSTREAM LIMIT: x**2 underflows to 0 (exact answer ~1e-30)"),
        "f32_subnormal": Out("0", "UPSTREAM LIMIT: x**2 underflows to 0"),
        "-inf": Out("+inf", "(-inf)**2 = +inf"),
    }
    avg_policy = {**AVG, "1x1": TORCH_TOO_SMALL}
    if d == 3:
        lp_policy["1x1"] = _3D_TOO_SMALL
        avg_policy["1x1"] = _3D_TOO_SMALL
        avg_policy["f16_huge"] = Out("ok", "averaged in float32 on the CPU, which has no float16 avg_pool3d")
    return [
        PoolRecord(
            f"max{d}d",
            PAGE,
            {**MAX, "1x1": _MAX_1D_TOO_SMALL if d == 1 else TORCH_TOO_SMALL},
            Semantics("max", 1, True, kernel),
            SELECTION,
        ),
        PoolRecord(
            f"overlapping_max{d}d",
            PAGE,
            {**MAX, "1x1": Out("ok", "-inf padding 1 fits a 3-wide window")},
            Semantics("max", 1, True, kernel_nopad),
            SELECTION,
        ),
        PoolRecord(
            f"adaptive_max{d}d",
            PAGE,
            {**MAX, **GLOBAL_ONLY},
            Semantics("max", 1, True, no_window),
            SELECTION,
            precision_kwargs=ADAPTIVE_BINS,
        ),
        PoolRecord(
            f"avg{d}d",
            PAGE,
            avg_policy,
            Semantics("mean", 1, True, kernel),
            "PyTorch's kernel (float32 accumulation); 3d: float32 (torchpool)",
        ),
        PoolRecord(
            f"adaptive_avg{d}d",
            PAGE,
            {**AVG, **GLOBAL_ONLY},
            Semantics("mean", 1, True, no_window),
            "PyTorch's kernel (float32 accumulation); on the CPU in float32 (torchpool)",
            precision_kwargs=ADAPTIVE_BINS,
        ),
        PoolRecord(
            f"lp{d}d",
            PAGE,
            lp_policy,
            Semantics("lp2", 1, False, kernel),
            "input dtype (PyTorch's LPPool formula); 3d: float32 (torchpool)",
            half_exceptions={"float16": LP_OVERFLOW} if d < 3 else {},
        ),
    ]


def _fractional(d: int) -> PoolRecord:
    policy = {**MAX, "-inf": Out("finite", "ignored by the max")}
    if d == 2:
        policy["1x1"] = Out(
            "empty",
            "UPSTREAM BUG: output_ratio=0.5 of 1 gives a (2, 4, 0, 0) output silently (3d raises); "
            "torchpool registers nn.FractionalMaxPool2d as is (ops/standard.py)",
        )
    else:
        policy["1x1"] = raises(
            "RuntimeError",
            r"pool time 2 too large relative to input time 1",
            "the window shrunk to 1 raises as for kernel",
        )
        policy["kernel"] = raises(
            "RuntimeError",
            r"pool time \d+ too large relative to input time \d+",
            "UPSTREAM BUG: 3d demands output + kernel - 1 < input (2d: <=), so no window may span the input",
        )
    return PoolRecord(
        f"fractional_max{d}d",
        PAGE,
        policy,
        Semantics("max", 1, True, lambda s: {"kernel_size": s, "output_size": 1, "output_ratio": None}),
        SELECTION,
        random_in_train=True,
        random_in_eval=True,
        half_exceptions=(
            {"float16": FRACTIONAL_REGIONS, "bfloat16": FRACTIONAL_REGIONS}
            if d == 2
            else {"bfloat16": FRACTIONAL_REGIONS}
        ),
        keep_window=True,
        onnx_exception=f"aten::fractional_max_pool{d}d has no ONNX equivalent in either exporter (and draws "
        "random regions even in eval mode)",
        deterministic_exception=f"PyTorch's fractional_max_pool{d}d_backward_cuda has no deterministic "
        "implementation",
    )


RECORDS: list[PoolRecord] = [r for d in (1, 2, 3) for r in _records(d)] + [_fractional(d) for d in (2, 3)]
