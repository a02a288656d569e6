"""SoftPool / LIP, the rule shared by the autograd node of :mod:`.soft` and the tile path of
:mod:`._soft_tiles`: ``exp`` is first taken unshifted (as ``exp2`` of ``a log2(e)``), and the planes
where that may be inexact are found here and computed again with their max subtracted.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["LIMIT", "LOG2E", "unsafe_planes"]

#: ``log2(e)``: ``exp(a) = exp2(a * LOG2E)`` (on the CPU PyTorch's ``exp2`` is several times faster).
LOG2E = 1.4426950408889634

#: how far (in the exponent) a window's max may lie below its plane's max on the shifted pass, and
#: the range ``[exp(-limit), exp(limit)]`` of each window's ``sum(e)`` on the unshifted first pass.
LIMIT = {torch.float32: 60.0, torch.float64: 600.0}


def unsafe_planes(sums: Tensor, lip: bool, ndim: int) -> tuple[Tensor, ...] | None:
    """The planes whose unshifted weights may be inexact (as indices of the leading dims of
    ``sums = (den, num)``, each ``(*lead, *out)`` with ``ndim`` window dims), or ``None``: some
    window's ``sum(e)`` outside ``[exp(-limit), exp(limit)]`` (then its largest weight may be
    subnormal, or ``e`` overflowed; a NaN fails too), for LIP also a non-finite ``sum(e * v)``
    (``v`` is not bounded by the logit).

    Example:
        >>> sums = torch.tensor([[[1.0, 2.0], [0.0, 1.0]], [[0.5, 1.0], [0.0, 0.0]]])
        >>> unsafe_planes(sums, False, 1)  # plane 1 has a window with sum(e) = 0
        (tensor([1]),)
    """
    limit = LIMIT[sums.dtype]
    den, num = sums[0], sums[1]
    if den.numel() == 0:
        return None
    lo, hi = torch.aminmax(den)
    ok = (lo >= math.exp(-limit)) & (hi <= math.exp(limit))
    if lip:
        num_lo, num_hi = torch.aminmax(num)
        ok &= num_lo.isfinite() & num_hi.isfinite()
    if bool(ok):
        return None
    with torch.no_grad():
        good = (den >= math.exp(-limit)) & (den <= math.exp(limit))
        if lip:
            good &= num.isfinite()
        good = good.flatten(den.dim() - ndim).all(dim=-1)
    return tuple(torch.nonzero(~good, as_tuple=True))
