r"""Records of LIP (family ``lip``): local importance-based pooling (Gao et al. 2019).

The walks build ``LIPPool2d(4)`` as initialised (the paper code's zero convolution): its logit is
constant, so the pool is the average over the cells inside the input; the learned case is tested
against its float64 reference in its ``OPS`` below and ``tests/test_lip.py``.

The float64 reference and the sample cases (``OPS``, the ``OpRecord``\ s of ``test_ops.py``):
Records for LIP (Gao et al. 2019) and its slow float64 references.

The references share no code with ``torchpool.ops.lip``: the logit module's convolution is a sum
of shifted slices times the weights (no ``conv2d``), its instance norm takes mean and biased
variance by hand, and the pooling loops over output positions and the window cells inside the
input, weighting them by ``exp(logit - window max)`` with Python's ``math``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from op_record import Case, OpRecord, Out, PoolRecord, Semantics
from torch import Tensor

import torchpool.ops.lip as L

from ._policy import BASE, kernel_nopad

Size = int | Sequence[int]
EPS = 1e-5  # InstanceNorm2d's default eps


def _pair(value: Size) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def conv_weight(channels: int) -> Tensor:
    """Deterministic, non-trivial weights for the logit convolution ``(C, C, 3, 3)``."""
    o, i, a, b = torch.meshgrid(
        *(torch.arange(v, dtype=torch.float64) for v in (channels, channels, 3, 3)), indexing="ij"
    )
    return 0.3 * torch.sin(1 + o + 2 * i + 3 * a + 5 * b)


def norm_affine(channels: int) -> tuple[Tensor, Tensor]:
    c = torch.arange(channels, dtype=torch.float64)
    return 1 + 0.1 * c, 0.1 - 0.05 * c


def learned(channels: int, kernel_size: Size = 3, stride: Size = 2, padding: Size = 1) -> L.LIPPool2d:
    """``LIPPool2d`` with the deterministic parameters above (instead of the zero initialisation)."""
    pool = L.LIPPool2d(channels, kernel_size, stride, padding)
    weight, bias = norm_affine(channels)
    state = {"logit.conv.weight": conv_weight(channels), "logit.norm.weight": weight, "logit.norm.bias": bias}
    pool.load_state_dict({k: v.float() for k, v in state.items()})
    return pool


def learned_function(x: Tensor, channels: int, **window: Size) -> Tensor:
    """The learned pool in the input's dtype (float32 parameters for half-precision input)."""
    pool = learned(channels, **window)
    y: Tensor = pool.to(torch.float64 if x.dtype == torch.float64 else torch.float32)(x)
    return y


def logit_reference(x: Tensor) -> Tensor:
    """``12 * sigmoid(instance_norm(conv3x3(x)))`` in float64 by hand; ``x`` is ``(N, C, H, W)``."""
    n, c, h, w = x.shape
    weight = conv_weight(c).float().double()  # the Module holds float32 parameters
    padded = torch.zeros(n, c, h + 2, w + 2, dtype=torch.float64)
    padded[:, :, 1 : h + 1, 1 : w + 1] = x.double()
    z = torch.zeros(n, c, h, w, dtype=torch.float64)
    for a, b in itertools.product(range(3), range(3)):
        z = z + torch.einsum("oi,nihw->nohw", weight[:, :, a, b], padded[:, :, a : a + h, b : b + w])
    mean = z.mean(dim=(2, 3), keepdim=True)
    var = ((z - mean) ** 2).mean(dim=(2, 3), keepdim=True)
    gamma, beta = (v.float().double() for v in norm_affine(c))
    z = (z - mean) / torch.sqrt(var + EPS) * gamma[:, None, None] + beta[:, None, None]
    return 12 / (1 + torch.exp(-z))


def lip_loops(x: Tensor, logit: Tensor, kernel_size: Size, stride: Size, padding: Size) -> Tensor:
    """Loops over outputs; each window's cells inside the input weighted by ``exp(logit)``."""
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel_size), _pair(stride), _pair(padding)
    n, c, h, w = x.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = torch.empty(n, c, oh, ow, dtype=torch.float64)
    xs, ls = x.double(), logit.double().expand_as(x)
    for b, ch, i, j in itertools.product(range(n), range(c), range(oh), range(ow)):
        rows = range(max(i * sh - ph, 0), min(i * sh - ph + kh, h))
        cols = range(max(j * sw - pw, 0), min(j * sw - pw + kw, w))
        cells = [(float(xs[b, ch, r, q]), float(ls[b, ch, r, q])) for r in rows for q in cols]
        top = max(v for _, v in cells)
        weights = [math.exp(v - top) for _, v in cells]
        y[b, ch, i, j] = sum(wt * a for wt, (a, _) in zip(weights, cells)) / sum(weights)
    return y


def learned_reference(
    x: Tensor, channels: int, kernel_size: Size = 3, stride: Size = 2, padding: Size = 1
) -> Tensor:
    return lip_loops(x, logit_reference(x), kernel_size, stride, padding)


def given_logit(x: Tensor) -> Tensor:
    """The logit of the function's record: another function of the input (so both get gradients)."""
    return 3 * x.flip(-1) - x


def function_with_logit(x: Tensor, kernel_size: Size = 3, stride: Size = 2, padding: Size = 1) -> Tensor:
    return L.lip_pool2d(x, given_logit(x), kernel_size, stride, padding)


def function_reference(x: Tensor, kernel_size: Size = 3, stride: Size = 2, padding: Size = 1) -> Tensor:
    return lip_loops(x, given_logit(x.double()), kernel_size, stride, padding)


class _GivenLogit(torch.nn.Module):
    """A Module around :func:`function_with_logit` (the function has no Module of its own)."""

    def __init__(self, kernel_size: Size = 3, stride: Size = 2, padding: Size = 1) -> None:
        super().__init__()
        self.window = (kernel_size, stride, padding)

    def forward(self, x: Tensor) -> Tensor:
        return function_with_logit(x, *self.window)

    def extra_repr(self) -> str:
        return f"window={self.window}"


OPS: list[OpRecord] = [
    OpRecord(
        "lip2d",
        learned_function,
        learned,
        learned_reference,
        (
            Case((2, 3, 6, 7), {"channels": 3}),
            Case((1, 2, 7, 6), {"channels": 2, "kernel_size": 2, "stride": 2, "padding": 0}),
            Case((1, 2, 5, 8), {"channels": 2, "kernel_size": (3, 2), "stride": (1, 2), "padding": (1, 0)}),
        ),
        2,
    ),
    OpRecord(
        "lip2d-function",
        function_with_logit,
        _GivenLogit,
        function_reference,
        (
            Case((2, 3, 6, 7), {}),
            Case((1, 2, 7, 6), {"kernel_size": 2, "stride": 2, "padding": 0}),
            Case((1, 2, 5, 8), {"kernel_size": (3, 2), "stride": (1, 2), "padding": (1, 0)}),
        ),
        2,
    ),
]


PAGE = "lip"
#: a non-finite cell reaches every logit of its sample: the convolution mixes the channels (0 * inf
#: = NaN even with the initial zero weights) and InstanceNorm's statistics cover the whole plane.
SAMPLE_WIDE = "the logit module (3x3 conv over all channels, then InstanceNorm over the plane) spreads it"

LIP = {
    **BASE,
    "zeros": Out("0, any", "3x3 windows at stride 2 overlap: cells are in 1, 2 or 4 windows"),
    "ties": Out("c, any"),
    "f16_huge": Out("ok", "pooled in float32"),
    "nan": Out("nan@sample", SAMPLE_WIDE),
    "+inf": Out("nan@sample", SAMPLE_WIDE),
    "-inf": Out("nan@sample", SAMPLE_WIDE),
}

RECORDS: list[PoolRecord] = [
    PoolRecord(
        "lip2d",
        PAGE,
        LIP,
        Semantics("mean", 1, True, kernel_nopad),
        "float32 (torchpool); the logit module in float32",
        precision_kwargs={"channels": 8},  # the half-precision walk's input has 8 channels
    ),
]
