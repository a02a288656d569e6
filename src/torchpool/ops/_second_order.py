"""Shared input checks and normalisation of the second-order family (bilinear, compact bilinear).

Every op of the family takes features ``x`` of shape ``(N, D, *S)`` (any number of spatial
dims, at least one) and reads them as a ``(D, L)`` matrix per sample (``L = prod(S)``
positions). Half-precision inputs are computed in float32 and returned in their own dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensor

from .._checks import check_bool, check_float_range, is_traced

_HALF = (torch.float16, torch.bfloat16)


def _no_values(*tensors: Tensor) -> bool:
    """Whether some tensor has no values to read (``meta``, fake) or a trace is running."""
    return is_traced() or any(t.device.type == "meta" or isinstance(t, FakeTensor) for t in tensors)


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


def _optional_dim(value: object, name: str) -> int | None:
    return None if value is None else _positive_int(value, name)


def _eps(value: object) -> float:
    return check_float_range(value, "eps", 0.0, float("inf"))


def _features(x: object, name: str, channels: int | None = None, channels_name: str = "") -> Tensor:
    """Checks an ``(N, D, *S)`` input and returns it as ``(N, D, L)`` (a view where possible)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 3:
        raise ValueError(
            f"{name} must have shape (N, D, *spatial) with at least one spatial dim, got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {x.dtype}")
    if any(size == 0 for size in x.shape[2:]):
        raise ValueError(f"{name} must have non-zero spatial sizes, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} has {x.shape[1]} channels, but {channels_name}={channels}")
    return x.flatten(2)  # not reshape(N, C, -1), which cannot infer -1 for N = 0


def _pair(
    x_a: object,
    x_b: object | None,
    dim_a: int | None = None,
    dim_b: int | None = None,
) -> tuple[Tensor, Tensor, bool, torch.dtype]:
    """Checks ``x_a`` (and ``x_b``) and returns ``(a, b, homogeneous, out_dtype)`` as ``(N, D, L)``.

    ``dim_b=None`` means ``dim_a``. Without ``x_b`` the input is paired with itself.
    """
    a = _features(x_a, "x_a", dim_a, "dim_a")
    assert isinstance(x_a, Tensor)
    if x_b is None:
        if dim_b is not None and dim_a is not None and dim_b != dim_a:
            raise ValueError(f"x_b is required when dim_b ({dim_b}) differs from dim_a ({dim_a})")
        return a, a, True, x_a.dtype
    b = _features(
        x_b, "x_b", dim_b if dim_b is not None else dim_a, "dim_b" if dim_b is not None else "dim_a"
    )
    assert isinstance(x_b, Tensor)
    if x_b.dtype != x_a.dtype:
        raise TypeError(f"x_b must have the dtype of x_a ({x_a.dtype}), got {x_b.dtype}")
    if x_b.shape[0] != x_a.shape[0]:
        raise ValueError(f"x_b must have the batch size of x_a ({x_a.shape[0]}), got {x_b.shape[0]}")
    if x_b.shape[2:] != x_a.shape[2:]:
        raise ValueError(
            f"x_b must have the spatial size of x_a ({tuple(x_a.shape[2:])}), got {tuple(x_b.shape[2:])}"
        )
    if x_b.device != x_a.device:
        raise ValueError(f"x_b is on {x_b.device}, but x_a is on {x_a.device}")
    return a, b, False, x_a.dtype


def _compute(t: Tensor) -> Tensor:
    """Half-precision tensors are computed in float32."""
    return t.float() if t.dtype in _HALF else t


def _normalize(y: Tensor, signed_sqrt: bool, l2_normalize: bool, eps: float) -> Tensor:
    """Signed square root ``sign(y) sqrt(|y| + eps)`` and L2 over dim 1, each optional."""
    if signed_sqrt:
        y = torch.sign(y) * torch.sqrt(torch.abs(y) + eps)
    if l2_normalize:
        y = F.normalize(y)
    return y


class _NormalizedPool(nn.Module):
    """Shared arguments and ``extra_repr`` of the (compact) bilinear Modules."""

    def __init__(self, dim_a: int, dim_b: int | None, signed_sqrt: bool, l2_normalize: bool, eps: float):
        super().__init__()
        self.dim_a = _positive_int(dim_a, "dim_a")
        self.dim_b = _optional_dim(dim_b, "dim_b")
        self.signed_sqrt = check_bool(signed_sqrt, "signed_sqrt")
        self.l2_normalize = check_bool(l2_normalize, "l2_normalize")
        self.eps = _eps(eps)

    @property
    def _dim_b(self) -> int:
        return self.dim_a if self.dim_b is None else self.dim_b

    def extra_repr(self) -> str:
        return (
            f"dim_a={self.dim_a}, dim_b={self.dim_b}, signed_sqrt={self.signed_sqrt}, "
            f"l2_normalize={self.l2_normalize}, eps={self.eps}"
        )
