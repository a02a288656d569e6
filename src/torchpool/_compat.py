"""What older PyTorch releases lack: CPU kernels that torchpool calls in half precision.

``torch>=2.4`` is supported, and CI runs the op table on 2.4.1, whose CPU build has no float16
kernel for ``adaptive_max_pool3d`` nor for reflection/replication padding. Where a kernel is
missing, the op computes in float32 and converts back, which gives the same values (and
indices) here, since these ops only select or copy input values.

The kernels are probed once, at import, on tiny CPU tensors, so compiled and exported code
sees a constant.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cpu_kernel_missing"]

_HALF = (torch.float16, torch.bfloat16)


def _probes() -> dict[str, Callable[[torch.dtype], Tensor]]:
    def pad(mode: str, ndim: int) -> Callable[[torch.dtype], Tensor]:
        return lambda dtype: F.pad(torch.zeros((1, 1) + (2,) * ndim, dtype=dtype), (1, 1) * ndim, mode=mode)

    def adaptive_max3d(dtype: torch.dtype) -> Tensor:
        return F.adaptive_max_pool3d(torch.zeros(1, 1, 2, 2, 2, dtype=dtype), 1)

    probes: dict[str, Callable[[torch.dtype], Tensor]] = {"adaptive_max_pool3d": adaptive_max3d}
    for mode in ("reflect", "replicate", "circular"):
        for ndim in (1, 2, 3):
            probes[f"pad_{mode}{ndim}d"] = pad(mode, ndim)
    return probes


def _missing() -> frozenset[tuple[str, torch.dtype]]:
    missing = set()
    for name, probe in _probes().items():
        for dtype in _HALF:
            try:
                probe(dtype)
            except RuntimeError:
                missing.add((name, dtype))
    return frozenset(missing)


_MISSING = _missing()


def cpu_kernel_missing(name: str, x: Tensor) -> bool:
    """Whether this PyTorch has no CPU kernel ``name`` for ``x``'s dtype (and ``x`` is on the CPU).

    ``name`` is ``"adaptive_max_pool3d"`` or ``"pad_<mode><n>d"`` (``mode`` reflect, replicate
    or circular).

    Example:
        >>> cpu_kernel_missing("adaptive_max_pool3d", torch.zeros(2, dtype=torch.float32))
        False
    """
    return x.device.type == "cpu" and (name, x.dtype) in _MISSING
