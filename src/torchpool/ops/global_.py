"""Global pooling (section 6 of the survey; NIN, arXiv 1312.4400) and generalized-mean (GeM) pooling.

Each output channel summarises the whole spatial extent, so the output no longer depends on
the input size: ``y_c = mean_{s} x_{c,s}`` (max likewise), and GeM (Radenovic et al. 2018)
``y_c = (mean_s clamp(x, eps)^p)^(1/p)`` with a learnable ``p`` (1 = average, large = max).
Any number of spatial dimensions; channels first (``"NCHW"``) or last (``"NHWC"``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensor

from .._checks import check_bool, check_choice, check_float_range, is_traced
from ..registry import register_pool

__all__ = ["GeM", "GlobalAvgPool", "GlobalMaxPool", "gem", "global_avg_pool", "global_max_pool"]

_FORMATS = ("NCHW", "NHWC")


def _spatial_dims(x: object, input_fmt: str, flatten: bool) -> tuple[Tensor, tuple[int, ...], int]:
    if not isinstance(x, Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
    check_choice(input_fmt, "input_fmt", _FORMATS)
    check_bool(flatten, "flatten")
    if x.dim() < 3:
        raise ValueError(
            f"input must have shape (N, C, *spatial) with at least one spatial dim, got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"input must have a floating-point dtype, got {x.dtype}")
    dims = tuple(range(2, x.dim())) if input_fmt == "NCHW" else tuple(range(1, x.dim() - 1))
    if any(x.shape[d] == 0 for d in dims):
        raise ValueError(f"input must have non-zero spatial sizes, got shape {tuple(x.shape)}")
    channel_dim = 1 if input_fmt == "NCHW" else x.dim() - 1
    return x, dims, channel_dim


def _finish(y: Tensor, flatten: bool) -> Tensor:
    """``y`` was reduced with keepdim=True: flatten it to ``(N, C)`` or keep the size-1 dims."""
    return y.flatten(1) if flatten else y


def _unsaved(y: Tensor) -> Tensor:
    """``y``, or a copy of it when autograd may have saved ``y`` itself for the backward pass.

    ``amax`` and ``pow`` with a tensor exponent keep their output for the backward pass, so an
    in-place op on the returned tensor (EfficientNet's ``Dropout(inplace=True)`` after the head)
    would break backward. The copy is ``(N, C)`` values: negligible next to the reduction.
    """
    return y.clone() if y.requires_grad else y


def global_avg_pool(x: Tensor, *, flatten: bool = True, input_fmt: str = "NCHW") -> Tensor:
    """Mean over all spatial positions of each channel.

    Args:
        x: input with a batch dimension.
        flatten: return ``(N, C)``; otherwise keep size-1 spatial dimensions.
        input_fmt: ``"NCHW"`` (channels first) or ``"NHWC"`` (channels last), for any
            number of spatial dimensions.

    Returns:
        The pooled tensor.

    Shape:
        - Input: ``(N, C, *S)`` or, with ``input_fmt="NHWC"``, ``(N, *S, C)``.
        - Output: ``(N, C)`` if ``flatten``, else the input shape with every ``S`` set to 1.

    Example:
        >>> global_avg_pool(torch.arange(8.0).reshape(1, 2, 2, 2)).tolist()
        [[1.5, 5.5]]
    """
    x, dims, _ = _spatial_dims(x, input_fmt, flatten)
    return _finish(x.mean(dim=dims, keepdim=True), flatten)


def global_max_pool(x: Tensor, *, flatten: bool = True, input_fmt: str = "NCHW") -> Tensor:
    """Max over all spatial positions of each channel (NaN propagates).

    The result is never the tensor autograd saves for the backward pass, so in-place ops on
    it (``nn.Dropout(inplace=True)``, ``nn.ReLU(inplace=True)``) keep backward working.

    Args:
        x: input with a batch dimension.
        flatten: return ``(N, C)``; otherwise keep size-1 spatial dimensions.
        input_fmt: ``"NCHW"`` or ``"NHWC"``, for any number of spatial dimensions.

    Returns:
        The pooled tensor.

    Shape:
        - Input: ``(N, C, *S)`` or ``(N, *S, C)``.
        - Output: ``(N, C)`` if ``flatten``, else the input shape with every ``S`` set to 1.

    Example:
        >>> global_max_pool(torch.arange(8.0).reshape(1, 2, 2, 2)).tolist()
        [[3.0, 7.0]]
    """
    x, dims, _ = _spatial_dims(x, input_fmt, flatten)
    return _finish(_unsaved(x.amax(dim=dims, keepdim=True)), flatten)


def gem(
    x: Tensor,
    p: float | Tensor = 3.0,
    eps: float = 1e-6,
    *,
    flatten: bool = True,
    input_fmt: str = "NCHW",
) -> Tensor:
    """Generalized-mean pooling: ``(mean clamp(x, eps)^p)^(1/p)`` over all spatial positions.

    ``p = 1`` is average pooling; ``p -> inf`` tends to max pooling. Inputs are clamped to
    ``eps`` so zeros (after ReLU) give finite values and gradients. The powers are computed
    directly (as the usual ``avg_pool(x.clamp(eps).pow(p)).pow(1/p)``) when their mean is a
    normal, finite number; otherwise (a large ``p`` on large values overflows, or on small values
    underflows) each such plane is divided by its maximum before the power and multiplied back
    after the root (exact: GeM is homogeneous), so no power overflows or underflows. Half-precision
    inputs are computed in float32 and returned in their own dtype. The result is never the tensor
    autograd saves for the backward pass, so in-place ops on it (``nn.Dropout(inplace=True)``) keep
    backward working.

    ``p`` must be finite and positive, as a number, a tensor or :class:`GeM`'s learned
    parameter alike: anything else raises a ``ValueError`` at the call (for a learned ``p`` at
    every forward, so a bad state dict or an optimizer step that drives ``p`` to 0 or below is
    caught). The ``p -> 0`` limit (the geometric mean) is not computed: ``p = 0`` is refused.
    Under ``torch.compile``, ``torch.export``, the JIT tracer or ONNX export, and for ``meta`` or
    fake tensors, the checks and the choice of the direct formula need values that are not there:
    the tensor ``p`` is not checked and the max-scaled formula always runs.

    Args:
        x: input with a batch dimension.
        p: the exponent, a finite positive number or a tensor (learnable in :class:`GeM`; a
            1-element tensor, or one value per channel) of finite positive values.
        eps: lower clamp of the input, positive.
        flatten: return ``(N, C)``; otherwise keep size-1 spatial dimensions.
        input_fmt: ``"NCHW"`` or ``"NHWC"``, for any number of spatial dimensions.

    Returns:
        The pooled tensor.

    Raises:
        ValueError: if ``p`` is not finite and positive, or has a wrong number of elements.

    Shape:
        - Input: ``(N, C, *S)`` or ``(N, *S, C)``.
        - Output: ``(N, C)`` if ``flatten``, else the input shape with every ``S`` set to 1.

    Example:
        >>> round(gem(torch.tensor([[[1.0, 2.0]]]), p=1.0).item(), 4)
        1.5
    """
    x, dims, channel_dim = _spatial_dims(x, input_fmt, flatten)
    check_float_range(eps, "eps", 0.0, float("inf"), low_open=True)
    compute = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    exponent: float | Tensor
    if isinstance(p, Tensor):
        if p.numel() not in (1, x.shape[channel_dim]):
            raise ValueError(f"p must have 1 or {x.shape[channel_dim]} (channels) elements, got {p.numel()}")
        _check_p_tensor(p)
        shape = [1] * x.dim()
        shape[channel_dim] = p.numel()
        exponent = p.reshape(shape).to(device=compute.device, dtype=compute.dtype)
    else:  # a Python float: pow takes PyTorch's scalar-exponent kernels (x * x * x for p = 3)
        exponent = check_float_range(p, "p", 0.0, float("inf"), low_open=True, high_open=True)
    return _finish(_unsaved(_generalized_mean(compute, exponent, eps, dims).to(x.dtype)), flatten)


def _no_values(*tensors: Tensor) -> bool:
    """Whether some tensor has no values to read (``meta``, fake) or a trace is running."""
    return is_traced() or any(t.device.type == "meta" or isinstance(t, FakeTensor) for t in tensors)


def _check_p_tensor(p: Tensor) -> None:
    """A tensor ``p`` must be real, finite and positive (checked in eager mode only: data-dependent)."""
    if p.is_complex() or p.dtype == torch.bool:
        raise TypeError(f"p must be a real (floating-point or integer) tensor, got {p.dtype}")
    if _no_values(p):
        return
    values = p.detach()
    if not bool((torch.isfinite(values) & (values > 0)).all()):
        shown = values.flatten()[:8].tolist()
        raise ValueError(
            f"p must be finite and positive, got {shown if values.numel() > 1 else shown[0]}"
            + (" ..." if values.numel() > 8 else "")
        )


def _generalized_mean(x: Tensor, exponent: float | Tensor, eps: float, dims: tuple[int, ...]) -> Tensor:
    """``(mean clamp(x, eps)^p)^(1/p)`` over ``dims`` (kept), with no power overflowing or underflowing.

    Direct path: the mean of the powers ``m``; if every ``m`` is finite and at least
    ``tiny / eps`` of the dtype (so every power that matters is a normal number: those that
    underflow add at most ``eps^2`` relative error), the result is ``m^(1/p)``, as fast as the
    usual formula. Otherwise the planes that failed (only those: the others keep their values
    bit for bit), and whenever values cannot be read (traced, meta, fake) every plane, take the
    max-scaled path: the generalized mean is homogeneous of degree 1, ``M_p(x) = s M_p(x / s)``
    for any ``s > 0``; with ``s`` the (detached) maximum of each plane the powers lie in
    ``(0, 1]``, so ``p = 10`` on values ~1000 (``1e30``) or ``p = 13`` (``1e39``, inf in float32)
    stays finite, and a dead (all-zero) channel gives ``eps`` rather than ``eps^p = 0`` for large
    ``p``. The gradients are exact: those of ``M_p`` are homogeneous of degree 0 in ``x`` and do
    not depend on ``s``. An infinite maximum is left unscaled (the result is inf, as without
    scaling).

    Args:
        x: input in the compute dtype.
        exponent: ``p``, a float or a tensor broadcastable to the reduced shape.
        eps: lower clamp of the input, positive.
        dims: the spatial dimensions to reduce.

    Returns:
        The generalized means, with size-1 ``dims``.
    """
    x = x.clamp(min=eps)
    root = 1.0 / exponent
    # sum times 1/n rather than mean: sum's backward is a broadcast view (mean's writes a full tensor)
    inverse_count = 1.0 / math.prod([x.shape[d] for d in dims])
    scale = x.detach().amax(dim=dims, keepdim=True) if _no_values(x) else None
    if scale is None:
        powers = x.pow(exponent).sum(dim=dims, keepdim=True) * inverse_count
        info = torch.finfo(x.dtype)
        direct = (powers >= info.tiny / info.eps) & (powers <= info.max)  # False for NaN
        if bool(direct.all()):
            return powers.pow(root)
        # scale only the other planes: x / 1 and 1 * y are exact, so the direct planes keep their values
        scale = torch.where(direct, 1.0, x.detach().amax(dim=dims, keepdim=True))
    scale = torch.where(torch.isinf(scale), torch.ones_like(scale), scale)
    return scale * ((x / scale).pow(exponent).sum(dim=dims, keepdim=True) * inverse_count).pow(root)


class _GlobalBase(nn.Module):
    def __init__(self, *, flatten: bool = True, input_fmt: str = "NCHW") -> None:
        super().__init__()
        self.flatten = check_bool(flatten, "flatten")
        self.input_fmt = check_choice(input_fmt, "input_fmt", _FORMATS)

    def extra_repr(self) -> str:
        return f"flatten={self.flatten}, input_fmt={self.input_fmt!r}"


class GlobalAvgPool(_GlobalBase):
    """Global average pooling (NIN): the Module form of :func:`global_avg_pool`.

    Shape:
        - Input: ``(N, C, *S)`` or ``(N, *S, C)``.
        - Output: ``(N, C)`` if ``flatten``, else ``S`` set to 1.

    Example:
        >>> GlobalAvgPool()(torch.zeros(4, 12, 18, 18)).shape
        torch.Size([4, 12])
    """

    def forward(self, x: Tensor) -> Tensor:
        return global_avg_pool(x, flatten=self.flatten, input_fmt=self.input_fmt)


class GlobalMaxPool(_GlobalBase):
    """Global max pooling: the Module form of :func:`global_max_pool`.

    Shape:
        - Input: ``(N, C, *S)`` or ``(N, *S, C)``.
        - Output: ``(N, C)`` if ``flatten``, else ``S`` set to 1.

    Example:
        >>> GlobalMaxPool(flatten=False)(torch.zeros(4, 12, 18, 18)).shape
        torch.Size([4, 12, 1, 1])
    """

    def forward(self, x: Tensor) -> Tensor:
        return global_max_pool(x, flatten=self.flatten, input_fmt=self.input_fmt)


class GeM(_GlobalBase):
    """Generalized-mean pooling with a learnable exponent (Radenovic et al. 2018).

    ``p`` must stay finite and positive: it is checked at every forward (eager mode), so a
    state dict or an optimizer step that sets it to 0, a negative value or NaN raises a
    ``ValueError`` instead of giving a meaningless output (see :func:`gem`).

    Args:
        p: initial exponent, finite and positive.
        eps: lower clamp of the input.
        learnable: make ``p`` an ``nn.Parameter`` (else a buffer).
        channels: learn one ``p`` per channel (this many) instead of one per layer.
        flatten: return ``(N, C)``.
        input_fmt: ``"NCHW"`` or ``"NHWC"``.

    Shape:
        - Input: ``(N, C, *S)`` or ``(N, *S, C)``.
        - Output: ``(N, C)`` if ``flatten``, else ``S`` set to 1.

    Example:
        >>> pool = GeM(p=3.0)
        >>> pool(torch.ones(2, 8, 7, 7)).shape
        torch.Size([2, 8])
    """

    p: Tensor

    def __init__(
        self,
        p: float = 3.0,
        eps: float = 1e-6,
        *,
        learnable: bool = True,
        channels: int | None = None,
        flatten: bool = True,
        input_fmt: str = "NCHW",
    ) -> None:
        super().__init__(flatten=flatten, input_fmt=input_fmt)
        p = check_float_range(p, "p", 0.0, float("inf"), low_open=True, high_open=True)
        self.eps = check_float_range(eps, "eps", 0.0, float("inf"), low_open=True)
        self.learnable = check_bool(learnable, "learnable")
        if channels is not None and (
            isinstance(channels, bool) or not isinstance(channels, int) or channels < 1
        ):
            raise ValueError(f"channels must be None or a positive int, got {channels!r}")
        self.channels = channels
        value = torch.full((1 if channels is None else channels,), p)
        if learnable:
            self.p = nn.Parameter(value)
        else:
            self.register_buffer("p", value)

    def extra_repr(self) -> str:
        p = [round(v, 4) for v in self.p.detach().cpu().tolist()]
        shown = p[0] if len(p) == 1 else p
        return (
            f"p={shown}, eps={self.eps}, learnable={self.learnable}, channels={self.channels}, "
            + super().extra_repr()
        )

    def forward(self, x: Tensor) -> Tensor:
        return gem(x, self.p, self.eps, flatten=self.flatten, input_fmt=self.input_fmt)


register_pool(
    "global_avg", GlobalAvgPool, family="global", dims=(1, 2, 3), description="mean over all positions (NIN)"
)
register_pool(
    "global_max", GlobalMaxPool, family="global", dims=(1, 2, 3), description="max over all positions"
)
register_pool(
    "gem",
    GeM,
    family="global",
    dims=(1, 2, 3),
    trainable=True,
    description="generalized mean (mean x^p)^(1/p), learnable p",
)
