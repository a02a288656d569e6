"""LIP, local importance-based pooling (Gao, Wang & Wu, ICCV 2019, arXiv 1908.04156).

``y = avg_pool(x * exp(logit)) / avg_pool(exp(logit))``: each window's cells weighted by the
exponential of an importance logit (a map of the input's shape). SoftPool is the case
``logit = x``.

**Stabilised.** The exponent is first taken unshifted; the planes where some window's ``sum(e)``
leaves ``[e^-60, e^60]`` (float32; ``e^+-600`` float64) or ``sum(x * e)`` is not finite are
computed again with the exponent shifted by one constant per plane, the plane's max of the logit
(detached: it cancels between numerator and denominator, so value and gradients are exact), so
``exp`` never overflows however large the logits (the paper's ``logit.exp()`` overflows float32
above 88.7 and float16 above 11.1, which its soft gate, ``12 * sigmoid``, reaches). A window
whose logits all lie more than ~80 (float32; ~700 float64) below its plane's max underflows to ``0 / 0``:
such windows are computed again with their own max (exact for any logits); traced code
(``torch.compile``, ``torch.export``, ONNX) uses the per-plane stabiliser only.

**Speed** (eager): on the CPU in float32, SoftPool's C kernel (:mod:`torchpool.ops._soft_native`:
each window stabilised by its own max of the logit, one pass, the analytic gradients). Otherwise
one autograd node (:func:`torchpool.ops.soft._exp_weighted_mean`, shared with
SoftPool) computes the weights once as ``exp2``, sums ``w`` and ``x * w`` over the windows as
strided slices (no padded copy; ``x * w`` one chunk at a time), in cache-sized chunks of the
leading dims, and has the
analytic gradient (``e_i / den`` for ``x``, ``e_i (x_i - y) / den`` for the logit) from the
weights kept by the forward pass (as the formula keeps ``exp(logit)``), written cell by cell with
no zero fill (the ``x``-only gradient ``e * spread(1 / den)`` in one pass over ``x``'s shape).

**The learned logit module** (:class:`LIPPool2d`) is the paper code's ``SimplifiedLIP`` (used in
place of the stem's max pooling in LIP-ResNet): a 3x3 convolution ``C -> C`` (padding 1, no
bias), ``InstanceNorm2d(C, affine=True)`` and the soft gate ``12 * sigmoid``, with the
convolution's weight initialised to zero (the code's ``init_layer``), so that a fresh pool is
average pooling that ignores padding. The bottleneck logit modules of LIP-ResNet's later stages
(``BottleneckShared`` / ``BottleneckLIP``) belong to the network, not to the pool, and are not
provided.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_input, check_window, restore_batch
from .._shape import IntOrTuple, pool_output_size
from ..registry import register_pool
from . import _soft_native
from ._base import WindowPool
from .soft import _exp_weighted_mean, _no_values

__all__ = ["LIPPool2d", "lip_pool2d"]

#: the soft gate's scale in the paper's code (``COEFF``): logits in (0, 12).
GATE_SCALE = 12.0


def lip_pool2d(
    x: Tensor,
    logit: Tensor,
    kernel_size: IntOrTuple = 3,
    stride: IntOrTuple | None = 2,
    padding: IntOrTuple = 1,
) -> Tensor:
    """LIP (Gao et al. 2019): average pooling weighted by ``exp(logit)``, overflow-safe.

    ``y = avg_pool2d(x * exp(logit)) / avg_pool2d(exp(logit))``. Zero padding carries no weight
    (numerator and denominator share the divisor), so padding cells do not count. Where ``exp``
    would leave a safe range, it is shifted by the plane's max of the logit, which cancels: no
    overflow for any logit, the same
    values and gradients as the formula wherever it is finite.

    Args:
        x: input, batched or batch-less, floating point (float16 / bfloat16 computed in float32).
        logit: the importance logits, the shape of ``x`` (or broadcastable to it, e.g. one
            channel), floating point; computed in the wider of the two dtypes (at least float32),
            returned in ``x``'s dtype.
        kernel_size: window size.
        stride: window step; ``None`` means ``kernel_size``.
        padding: implicit padding on both sides (cells that do not count), at most half the window.

    Returns:
        The pooled tensor.

    Raises:
        TypeError: if ``x`` or ``logit`` is not a floating-point tensor.
        ValueError: if ``logit`` does not broadcast to ``x``'s shape.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``; ``logit`` the same (or broadcastable).
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``, as ``avg_pool2d``.

    Example:
        >>> x = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]]]])
        >>> lip_pool2d(x, torch.zeros_like(x), 2, 2, 0).item()  # constant logit: the average
        4.0
        >>> lip_pool2d(x, 1000 * x, 2, 2, 0).item()  # huge logits: the max, no overflow
        7.0
    """
    window = check_window(kernel_size, stride, padding, 2)
    check_input(x, 2, window=window)
    if not isinstance(logit, Tensor) or not logit.is_floating_point():
        got = logit.dtype if isinstance(logit, Tensor) else type(logit).__name__
        raise TypeError(f"logit must be a floating-point torch.Tensor, got {got}")
    fits = logit.dim() <= x.dim() and all(
        b in (1, a) for a, b in zip(reversed(x.shape), reversed(logit.shape))
    )
    if not fits:
        raise ValueError(
            f"logit must have the input's shape {tuple(x.shape)} (or broadcast to it), "
            f"got shape {tuple(logit.shape)}"
        )
    k, s, p = window.kernel_size, window.stride, window.padding
    if x.shape[-3] == 0:  # no channels: the empty result (PyTorch's average pooling refuses C = 0)
        out = pool_output_size(tuple(x.shape[-2:]), k, s, p)
        return x.new_empty(*x.shape[:-2], *out) + logit.sum() * 0  # keeps the graph to logit
    dtype = torch.promote_types(torch.promote_types(x.dtype, logit.dtype), torch.float32)
    xc, lc = x.to(dtype), logit.to(dtype)
    if _no_values(xc):  # traced: PyTorch's average pooling (its divisor cancels)
        with torch.no_grad():
            c = lc.amax(dim=(-2, -1), keepdim=True)
            c = torch.where(c.isfinite(), c, torch.zeros_like(c))  # inf / NaN logits propagate
        w = (lc - c).exp_()  # in place on the fresh difference: one buffer less
        return (F.avg_pool2d(xc * w, k, s, p) / F.avg_pool2d(w, k, s, p)).to(x.dtype)
    out = pool_output_size(tuple(x.shape[-2:]), k, s, p)
    if _soft_native.available(xc, lc):  # the C kernel: each window stabilised by its own max
        return _soft_native.exp_weighted_mean(xc, lc.expand_as(xc), k, s, p, out).to(x.dtype)
    # one stabiliser per plane (the logit's plane max), for each plane of x
    y, den = _exp_weighted_mean(xc, lc.expand_as(xc), k, s, p, out)
    if den.numel() > 0:
        tiny = math.exp(-80.0 if xc.dtype == torch.float32 else -700.0)
        with torch.no_grad():  # a cheap check of every window first (NaN fails it)
            low = None if bool(den.amin() >= tiny) else den < tiny  # (nearly) underflowing weights
        if low is not None and bool(low.any()):  # (a NaN window compares False: it stays NaN)
            fallback = _lip_windows(xc, lc.expand_as(xc), k, s, p)
            return torch.where(low, fallback, y).to(x.dtype)
    return y.to(x.dtype)


def _lip_windows(
    x: Tensor, logit: Tensor, k: tuple[int, ...], s: tuple[int, ...], p: tuple[int, ...]
) -> Tensor:
    """Each window stabilised by its own max of the logit (the rare fallback: unfolded windows)."""
    n_lead = x.dim() - 2
    pads = (p[1], p[1], p[0], p[0])
    low = torch.finfo(x.dtype).min
    xp = F.pad(x, pads).unfold(n_lead, k[0], s[0]).unfold(n_lead + 1, k[1], s[1])
    lp = F.pad(logit, pads, value=low).unfold(n_lead, k[0], s[0]).unfold(n_lead + 1, k[1], s[1])
    with torch.no_grad():
        m = lp.amax(dim=(-2, -1), keepdim=True)
    e = torch.exp(lp - m)
    return (e * xp).sum(dim=(-2, -1)) / e.sum(dim=(-2, -1))


class _SoftGate(nn.Module):
    """The paper code's soft gate: ``GATE_SCALE * sigmoid(z)``, logits in ``(0, 12)``."""

    def forward(self, z: Tensor) -> Tensor:
        return GATE_SCALE * torch.sigmoid(z)


class LIPPool2d(WindowPool):
    """LIP with the paper's learned logit module (``SimplifiedLIP`` of the authors' code).

    ``logit = 12 * sigmoid(InstanceNorm2d(conv3x3(x)))`` with a ``C -> C`` 3x3 convolution
    (padding 1, no bias) whose weight starts at zero, then :func:`lip_pool2d`. At
    initialisation the logit is constant, so the pool is average pooling over the cells inside
    the input. The logit module is ``self.logit`` (``conv``, ``norm``, ``gate``), as in the paper's
    code, so its state dict keys are ``logit.conv.weight``, ``logit.norm.weight``,
    ``logit.norm.bias``.

    Args:
        channels: the input's channels ``C``.
        kernel_size: window size.
        stride: window step; ``None`` means ``kernel_size``.
        padding: implicit padding on both sides (cells that do not count).

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``.

    Example:
        >>> pool = LIPPool2d(3)
        >>> pool(torch.ones(1, 3, 8, 8)).shape
        torch.Size([1, 3, 4, 4])
    """

    _repr_options = ("channels",)

    def __init__(
        self,
        channels: int,
        kernel_size: IntOrTuple = 3,
        stride: IntOrTuple | None = 2,
        padding: IntOrTuple = 1,
    ) -> None:
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        check_window(kernel_size, stride, padding, 2)
        super().__init__(kernel_size, stride, padding)
        self.channels = channels
        conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        nn.init.zeros_(conv.weight)
        norm = nn.InstanceNorm2d(channels, affine=True)
        self.logit = nn.Sequential(OrderedDict([("conv", conv), ("norm", norm), ("gate", _SoftGate())]))
        self._parts = (conv, norm)  # typed handles on the logit module's layers (a tuple: not registered)

    def forward(self, x: Tensor) -> Tensor:
        window = check_window(self.kernel_size, self.stride, self.padding, 2)
        batched, unbatched = check_input(x, 2, window=window)
        c = batched.shape[1]
        if c != self.channels:
            raise ValueError(f"input has {c} channels, but the pool was built with channels={self.channels}")
        logit = restore_batch(self.importance(batched), unbatched)
        return lip_pool2d(x, logit, self.kernel_size, self.stride, self.padding)

    def importance(self, x: Tensor) -> Tensor:
        """The logit ``12 * sigmoid(InstanceNorm2d(conv3x3(x)))`` of an ``(N, C, H, W)`` input.

        Half-precision input (and half-precision parameters) are evaluated in float32: the
        norm's ``1 / sqrt(var + eps)`` reaches 316 and its backward the cube of that, past
        float16's range. The instance norm is evaluated as ``group_norm`` with one group per
        channel, the same statistics (biased variance, ``eps``), because ``InstanceNorm2d``
        refuses a 1x1 input and an empty batch.
        """
        conv, norm = self._parts
        params: tuple[Tensor, ...] = (conv.weight, norm.weight, norm.bias)
        if x.dtype in (torch.float16, torch.bfloat16) or any(
            p.dtype in (torch.float16, torch.bfloat16) for p in params
        ):
            x, params = x.float(), tuple(p.float() for p in params)
        z = F.conv2d(x, params[0], None, 1, 1)
        z = F.group_norm(z, self.channels, params[1], params[2], norm.eps)
        return GATE_SCALE * torch.sigmoid(z)


register_pool(
    "lip2d",
    LIPPool2d,
    family="lip",
    dims=(2,),
    trainable=True,
    description="avg_pool weighted by exp of a learned importance logit (LIP, Gao et al. 2019)",
    example_kwargs={"channels": 4},
)
