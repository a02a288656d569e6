"""Log-sum-exp (LSE) pooling: a smooth maximum between average and max pooling.

``y = (1/r) log(mean_s exp(r x_s))`` over the spatial positions ``s`` of each channel (Pinheiro &
Collobert 2015, "From Image-level to Pixel-level Labeling with Convolutional Networks"; timm's
``LsePlus2d``). It tends to the maximum as ``r -> inf`` and to the mean as ``r -> 0``
(``y = mean + (r/2) var + O(r^2)``); it is shift-equivariant (``f(x + t) = f(x) + t``) and its
gradient is the softmax of ``r x``.

How it is computed, overflow-safe and accurate at both ends: with ``m`` the plane's maximum
(detached: its gradient cancels) and ``d = r (x - m) <= 0``, ``y = m + (1/r) log(mean exp(d))``, so
no exponential overflows. Where the plane's spread is small (``r (max - min) <= 1``: every
``exp(d)`` lies in ``[1/e, 1]``) the mean is taken of ``expm1(d)`` and the log by ``log1p``: the
textbook ``log(mean exp(d))`` rounds ``exp(d)`` to 1 there and returns the max, so a small ``r``
(or tiny values) would lose the whole difference from the mean. Elsewhere ``exp`` and ``log``
(accurate to ``eps / r`` absolute, below ``eps`` times the spread). Each plane takes its own
branch; traced code (``torch.compile``, ``torch.export``, ONNX), ``meta`` and fake tensors compute
both and select per plane, since the choice reads values. Non-finite planes: a plane with
``+inf`` gives ``+inf``, an all ``-inf`` plane ``-inf`` (the stabiliser is 0 there), a NaN gives NaN.
Half precision is computed in float32 and rounded once.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensor

from .._checks import check_bool, check_float_range, is_traced
from ..registry import register_pool

__all__ = ["LSEPool", "lse_pool"]


def _no_values(*tensors: Tensor) -> bool:
    """Whether some tensor's values cannot be read (``meta``, fake) or a trace is running."""
    return is_traced() or any(t.device.type == "meta" or isinstance(t, FakeTensor) for t in tensors)


def _reduced_dims(x: Tensor, dim: int | tuple[int, ...] | None) -> tuple[int, ...]:
    if dim is None:
        return tuple(range(2, x.dim()))
    dims = (dim,) if isinstance(dim, int) and not isinstance(dim, bool) else dim
    if (
        not isinstance(dims, (tuple, list))
        or not dims
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims)
    ):
        raise TypeError(f"dim must be None, an int or a non-empty tuple of ints, got {dim!r}")
    if any(not -x.dim() <= d < x.dim() for d in dims):
        raise ValueError(
            f"dim must be in [{-x.dim()}, {x.dim() - 1}] for input of shape {tuple(x.shape)}, got {dim}"
        )
    axes = tuple(sorted({d % x.dim() for d in dims}))
    if len(axes) != len(dims):
        raise ValueError(f"dim must not repeat a dimension, got {dim}")
    if 0 in axes:
        raise ValueError(
            f"dim must not include the batch dimension 0 (a pool never mixes samples), got {dim}"
        )
    return axes


def _check_r(r: object, x: Tensor) -> float | Tensor:
    if isinstance(r, Tensor):
        if r.is_complex() or r.dtype == torch.bool or not r.is_floating_point():
            raise TypeError(f"r must be a floating-point tensor, got {r.dtype}")
        if r.numel() != 1:
            raise ValueError(f"r must have exactly 1 element, got {r.numel()}")
        if not _no_values(r):
            value = float(r.detach().reshape(()))
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"r must be finite and positive, got {value}")
        return r.reshape(()).to(device=x.device)
    return check_float_range(r, "r", 0.0, math.inf, low_open=True, high_open=True)


def _extremes(x: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """The max and min over ``dims`` (kept): one ``aminmax`` pass where the dims are the trailing ones
    of a contiguous tensor (then a view flattens them), else ``amax`` and ``amin``."""
    if x.is_contiguous() and dims == tuple(range(x.dim() - len(dims), x.dim())):
        low, top = torch.aminmax(x.flatten(dims[0]) if len(dims) > 1 else x, dim=-1, keepdim=True)
        shape = (*x.shape[: dims[0]], *(1,) * len(dims))
        return top.reshape(shape), low.reshape(shape)
    return x.amax(dim=dims, keepdim=True), x.amin(dim=dims, keepdim=True)


def _lse(x: Tensor, r: float | Tensor, dims: tuple[int, ...]) -> Tensor:
    """``(1/r) log(mean exp(r x))`` over ``dims`` (kept), stabilised by the plane max; see the module doc."""
    if isinstance(r, Tensor):
        r = r.to(x.dtype)
    with torch.no_grad():
        top, low = _extremes(x, dims)
        small = (top - low) * r <= 1.0  # False for NaN and infinite spreads
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    d = x - top
    d = d * r if isinstance(r, Tensor) and r.requires_grad else d.mul_(r)  # r's gradient needs x - top
    inverse_count = 1.0 / math.prod([x.shape[a] for a in dims])
    if _no_values(x) or x.numel() == 0:
        near = torch.log1p(torch.expm1(d).sum(dim=dims, keepdim=True) * inverse_count)
        far = torch.log(torch.exp(d).sum(dim=dims, keepdim=True) * inverse_count)
        # the unused branch of a plane is replaced before it can reach the gradient as NaN
        return top + torch.where(small, near, far.masked_fill(small, 0.0)) / r
    all_small = bool(small.all())
    if all_small or not bool(small.any()):
        # in place: d is a fresh tensor no backward needs (exp's and expm1's need their result)
        if all_small:
            logmean = torch.log1p(d.expm1_().sum(dim=dims, keepdim=True) * inverse_count)
        else:
            logmean = torch.log(d.exp_().sum(dim=dims, keepdim=True) * inverse_count)
        return top + logmean / r
    near = torch.log1p(torch.expm1(d).sum(dim=dims, keepdim=True) * inverse_count)
    far = torch.log(torch.exp(d).sum(dim=dims, keepdim=True) * inverse_count)
    return top + torch.where(small, near, far.masked_fill(small, 0.0)) / r


def lse_pool(
    x: Tensor, r: float | Tensor = 10.0, *, dim: int | tuple[int, ...] | None = None, flatten: bool = True
) -> Tensor:
    """Log-sum-exp pooling: ``x_max + (1/r) log(mean exp(r (x - x_max)))`` over the spatial dims.

    A smooth maximum: the max as ``r -> inf``, the mean as ``r -> 0``. Computed without overflow
    for any magnitude, and accurately for small ``r`` too (``log1p(mean(expm1(.)))`` where the
    plane's spread times ``r`` is at most 1; see the module doc). Half-precision input is computed
    in float32 and returned in its own dtype.

    Args:
        x: input ``(N, C, *S)`` with at least one spatial dim, floating point.
        r: the sharpness, finite and positive: a number or a 1-element tensor (learnable in
            :class:`LSEPool`).
        dim: the dimensions to pool: ``None`` (all spatial dims, ``2, 3, ...``), an int or a tuple
            of ints, never the batch dimension 0 (``dim=(1, 2)`` pools channels-last ``(N, H, W, C)``).
        flatten: drop the pooled dimensions (``(N, C)`` for ``dim=None``); otherwise keep them with
            size 1.

    Returns:
        The pooled tensor.

    Raises:
        ValueError: if ``r`` is not finite and positive, or ``dim`` is out of range, repeated or
            includes the batch dimension.

    Shape:
        - Input: ``(N, C, *S)``.
        - Output: ``(N, C)`` if ``flatten`` (``dim=None``), else ``(N, C, 1, ...)``; for a given
          ``dim``, the input's shape without (or with size-1) ``dim``.

    Example:
        >>> round(lse_pool(torch.tensor([[[0.0, 1.0]]]), r=1.0).item(), 4)
        0.6201
        >>> lse_pool(torch.ones(2, 3, 4, 4), flatten=False).shape
        torch.Size([2, 3, 1, 1])
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
    check_bool(flatten, "flatten")
    if x.dim() < 3:
        raise ValueError(
            f"input must have shape (N, C, *spatial) with at least one spatial dim, got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"input must have a floating-point dtype, got {x.dtype}")
    dims = _reduced_dims(x, dim)
    if any(x.shape[a] == 0 for a in dims):
        raise ValueError(
            f"input must have non-zero sizes in the pooled dims {dims}, got shape {tuple(x.shape)}"
        )
    r = _check_r(r, x)
    compute = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    y = _lse(compute, r, dims).to(x.dtype)
    return y.squeeze(dims) if flatten else y


class LSEPool(nn.Module):
    """Log-sum-exp pooling with a learnable sharpness ``r``: the Module form of :func:`lse_pool`.

    ``r`` is stored as its logarithm, the parameter ``log_r`` (``r = exp(log_r)``), so it stays
    positive whatever an optimizer does to it, and steps on it are relative (the scale of ``r``
    matters, not its offset); the property :attr:`r` reads it. A NaN or infinite ``log_r`` (a bad
    state dict) gives a ``ValueError`` naming ``log_r`` at the forward (eager mode). Equal to
    timm's ``LsePlus2d`` with the same ``r`` (any number of spatial dims here).

    Args:
        r: initial sharpness, finite and positive.
        learnable: make ``log_r`` an ``nn.Parameter`` (else a buffer).
        flatten: return ``(N, C)``; otherwise keep size-1 spatial dimensions.

    Shape:
        - Input: ``(N, C, *S)``.
        - Output: ``(N, C)`` if ``flatten``, else ``(N, C, 1, ...)``.

    Example:
        >>> pool = LSEPool(r=10.0)
        >>> pool(torch.zeros(2, 8, 7, 7)).shape
        torch.Size([2, 8])
        >>> round(pool.r.item(), 4)
        10.0
    """

    log_r: Tensor

    def __init__(self, r: float = 10.0, learnable: bool = True, flatten: bool = True) -> None:
        super().__init__()
        r = check_float_range(r, "r", 0.0, math.inf, low_open=True, high_open=True)
        self.learnable = check_bool(learnable, "learnable")
        self.flatten = check_bool(flatten, "flatten")
        value = torch.tensor(math.log(r))
        if learnable:
            self.log_r = nn.Parameter(value)
        else:
            self.register_buffer("log_r", value)

    @property
    def r(self) -> Tensor:
        """The sharpness ``exp(log_r)`` (in float32 at least, whatever the parameter's dtype)."""
        log_r = self.log_r if self.log_r.dtype == torch.float64 else self.log_r.float()
        return log_r.exp()

    def extra_repr(self) -> str:
        return f"r={self.r.item():.4g}, learnable={self.learnable}, flatten={self.flatten}"

    def forward(self, x: Tensor) -> Tensor:
        if not _no_values(self.log_r) and not bool(torch.isfinite(self.log_r.detach()).all()):
            raise ValueError(f"log_r must be finite (r = exp(log_r)), got {self.log_r.detach().tolist()}")
        return lse_pool(x, self.r, flatten=self.flatten)


register_pool(
    "lse",
    LSEPool,
    family="lse",
    dims=(1, 2, 3),
    trainable=True,
    description="log-sum-exp, (1/r) log mean exp(r x), learnable r (Pinheiro & Collobert 2015)",
    example_kwargs={"r": 10.0},
)
