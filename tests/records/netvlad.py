"""Records of NetVLAD and GhostVLAD (family ``netvlad``)."""

from __future__ import annotations

from op_record import Out, PoolRecord, Semantics

from ._policy import STATS

PAGE = "netvlad"
NETVLAD = {
    **STATS,
    "zeros": Out("ref, any", "the zero descriptor is assigned by softmax(bias): V_k = -L a_k c_k"),
    "ties": Out("ref, any"),
    "f32_huge": Out("ok", "a descriptor whose ||x||^2 overflows is divided by its largest |x_i| first"),
    "f32_tiny": Out("as-zeros", "by design: descriptors with ||x|| << sqrt(eps) are damped to 0"),
    "f32_subnormal": Out("as-zeros", "by design (eps)"),
    "nan": Out("nan@sample", "every output of the sample is NaN"),
    "+inf": Out(
        "nan@sample", "x / ||x|| = inf / inf = NaN for the descriptor, then every output of the sample"
    ),
    "-inf": Out("nan@sample", "as for +inf"),
}
_SEMANTICS = Semantics("netvlad", 0, False, None)

RECORDS: list[PoolRecord] = [
    PoolRecord("netvlad", PAGE, dict(NETVLAD), _SEMANTICS, "float32 (torchpool)", cuda_inductor=True),
    PoolRecord(
        "ghostvlad",
        PAGE,
        {
            **NETVLAD,
            "zeros": Out("ref, any", "the ghost cluster takes the mass (bias 0 vs -100): output ~1e-36"),
        },
        _SEMANTICS,
        "float32 (torchpool)",
    ),
]
