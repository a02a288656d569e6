"""Records of the pyramid pools (family ``pyramid``): SPPNet, SPPF, YOLO-SPP."""

from __future__ import annotations

import inspect

from op_record import Out, PoolRecord, Semantics

import torchpool as tp

from ._policy import MAX

PAGE = "pyramid"
#: the 2-d SPPNet's registry name: ``spp2d`` once registered (``spp`` keeps resolving), else ``spp``.
SPP2D = "spp2d" if "spp2d" in {info.name for info in tp.list_pools()} else "spp"
#: SPPF's count of pools: ``repeats`` once renamed (``n`` is deprecated), else ``n``.
_REPEATS = "repeats" if "repeats" in inspect.signature(tp.SPPF).parameters else "n"

_SPP = Semantics("max", 1, True, lambda s: {"levels": (1,)}, cell="bins")
_CASCADE = {
    **MAX,
    "1x1": Out("ok", "-inf same padding: every pooled channel equals the cell"),
    "kernel": Out("centre", "stride-1 same-padded windows: only the centre window covers the input"),
    "-inf": Out("-inf and finite", "the identity channel keeps -inf; the pooled channels ignore it"),
}
_SELECTION = "exact (selection)"

RECORDS: list[PoolRecord] = [
    *[
        PoolRecord(
            name,
            PAGE,
            {**MAX, "kernel": Out("global", "levels=(1,) is the global max")},
            _SPP,
            "max: exact (selection); avg: as adaptive_avg",
            keep_window=True,
            cuda_inductor=name == SPP2D,
        )
        for name in (SPP2D, "spp1d", "spp3d")
    ],
    PoolRecord(
        "sppf",
        PAGE,
        dict(_CASCADE),
        Semantics("max", 1, True, lambda s: {"kernel_size": s, _REPEATS: 1}, cell="channel-groups"),
        _SELECTION,
        keep_window=True,
        explain_modes=("eval",),
    ),
    PoolRecord(
        "yolo_spp",
        PAGE,
        dict(_CASCADE),
        Semantics("max", 1, True, lambda s: {"kernel_sizes": (s,)}, cell="channel-groups"),
        _SELECTION,
        keep_window=True,
        explain_modes=("eval",),
    ),
]
