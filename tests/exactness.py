"""Comparing two computations of the same math that may run through different CPU kernels.

Bit-equality is a promise only where the docs make it (selection ops such as median, max,
stochastic and unpooling return input values; SPPF equals YOLO SPP; the windowed avg+max ops are
the survey's snippets' elementwise arithmetic). Ops built on matrix products (NetVLAD, the bilinear
family) are not bit-reproducible between a Module and its function, or before and after a
``state_dict`` round trip: MKL/oneDNN pick kernels by instruction set and by the alignment of
the operands, so a cloned parameter can round differently (1.2e-7 seen on an Intel Xeon with
AVX-512). Those comparisons use :func:`assert_same_computation`: a few ulp of the dtype, far
tighter than the reference tolerances.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: (rtol, atol) for the same computation through another kernel: a few ulp
KERNEL_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-13, 1e-13),
    torch.float32: (4e-6, 4e-6),
    torch.float16: (4e-3, 4e-3),
    torch.bfloat16: (2e-2, 2e-2),
}


def assert_same_computation(actual: Tensor, expected: Tensor) -> None:
    """``actual`` and ``expected`` agree to a few ulp of their dtype (see the module notes)."""
    rtol, atol = KERNEL_TOLERANCES.get(expected.dtype, (0.0, 0.0))
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)
