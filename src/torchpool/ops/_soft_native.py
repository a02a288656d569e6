"""SoftPool and LIP on the CPU in float32 through the C kernel ``csrc/exp_weighted.c``.

Each window is stabilised by its own max (``y = sum e_i v_i / sum e_i``, ``e_i = exp(l_i - m)``),
so the result is exact to rounding for any magnitude and sign, with no second pass and no check.
The kernel is one operator, ``torchpool::exp_weighted_mean``, with a fake (shape) function and
its gradient (``torchpool::exp_weighted_mean_backward``, which computes the windows again: nothing
but the inputs is kept between the passes); under
double backward the gradient is taken through the pure-PyTorch window formula instead, so it is
differentiable again.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .. import _native

__all__ = ["available", "exp_weighted_mean"]


def _library() -> ctypes.CDLL | None:
    return _native.load("exp_weighted")


def available(*tensors: Tensor) -> bool:
    """Whether the kernel is built and takes these tensors (CPU, float32, values readable)."""
    return (
        all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors) and _library() is not None
    )


def _params(v: Tensor, k: list[int], s: list[int], p: list[int], out: list[int]) -> tuple[int, Tensor]:
    """The plane count and the kernel's geometry (size, kernel, stride, padding, out; 3 dims each,
    leading dims of size 1 for 1-d and 2-d)."""
    ndim = len(k)
    lift = [1] * (3 - ndim)
    size = lift + list(v.shape[v.dim() - ndim :])
    geometry = size + lift + k + lift + s + [0] * (3 - ndim) + p + lift + out
    planes = math.prod(v.shape[: v.dim() - ndim])
    return planes, torch.tensor(geometry, dtype=torch.int64)


def _pointer(t: Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(None if t is None else t.data_ptr())


def _call(fn: Callable[..., int], *args: Any) -> None:
    if fn(*args) != 0:
        raise MemoryError("torchpool: the exp_weighted kernel could not allocate its work space")


def _kernel() -> ctypes.CDLL:
    lib = _library()
    if lib is None:
        raise RuntimeError(
            f"torchpool: the exp_weighted kernel is not built: {_native.build_error('exp_weighted')}"
        )
    return lib


# explicit schemas: torch 2.4 cannot read this module's string annotations
@torch.library.custom_op(
    "torchpool::exp_weighted_mean",
    mutates_args=(),
    device_types="cpu",
    schema="(Tensor v, Tensor? logit, int[] k, int[] s, int[] p, int[] out) -> Tensor",
)
def _forward(
    v: Tensor, logit: Tensor | None, k: list[int], s: list[int], p: list[int], out: list[int]
) -> Tensor:
    v = v.contiguous()
    logit = None if logit is None else logit.contiguous()
    y = v.new_empty((*v.shape[: v.dim() - len(k)], *out))
    if y.numel():
        planes, geometry = _params(v, k, s, p, out)
        pointers = [_pointer(t) for t in (v, v if logit is None else logit, y)]
        soft = int(logit is None)
        args = (*pointers, soft, ctypes.c_int64(planes), _pointer(geometry), torch.get_num_threads())
        _call(_kernel().tp_exp_weighted_forward, *args)
    return y


@_forward.register_fake
def _(v: Tensor, logit: Tensor | None, k: list[int], s: list[int], p: list[int], out: list[int]) -> Tensor:
    return v.new_empty((*v.shape[: v.dim() - len(k)], *out))


@torch.library.custom_op(
    "torchpool::exp_weighted_mean_backward",
    mutates_args=(),
    device_types="cpu",
    schema="(Tensor v, Tensor? logit, Tensor grad, int[] k, int[] s, int[] p, int[] out, bool want_v, "
    "bool want_logit) -> (Tensor, Tensor)",
)
def _backward(
    v: Tensor,
    logit: Tensor | None,
    grad: Tensor,
    k: list[int],
    s: list[int],
    p: list[int],
    out: list[int],
    want_v: bool,
    want_logit: bool,
) -> tuple[Tensor, Tensor]:
    """``(grad v, grad logit)``, the windows computed again; SoftPool (``logit=None``) puts the
    whole gradient in the first; one that is not wanted is empty."""
    v = v.contiguous()
    logit = None if logit is None else logit.contiguous()
    grad = grad.contiguous()
    grad_v = torch.empty_like(v) if want_v else v.new_empty(0)
    grad_logit = torch.empty_like(v) if want_logit and logit is not None else v.new_empty(0)
    if v.numel():
        planes, geometry = _params(v, k, s, p, out)
        pointers = [_pointer(t) for t in (v, v if logit is None else logit, grad)]
        targets = [_pointer(grad_v if want_v else None), _pointer(grad_logit if grad_logit.numel() else None)]
        soft = int(logit is None)
        args = (
            *pointers,
            *targets,
            soft,
            ctypes.c_int64(planes),
            _pointer(geometry),
            torch.get_num_threads(),
        )
        _call(_kernel().tp_exp_weighted_backward, *args)
    return grad_v, grad_logit


@_backward.register_fake
def _(
    v: Tensor,
    logit: Tensor | None,
    grad: Tensor,
    k: list[int],
    s: list[int],
    p: list[int],
    out: list[int],
    want_v: bool,
    want_logit: bool,
) -> tuple[Tensor, Tensor]:
    grad_v = torch.empty_like(v) if want_v else v.new_empty(0)
    grad_logit = torch.empty_like(v) if want_logit and logit is not None else v.new_empty(0)
    return grad_v, grad_logit


def _setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    v, logit, k, s, p, out = inputs
    ctx.save_for_backward(v, logit)
    ctx.geometry = (k, s, p, out)


def _window_formula(v: Tensor, logit: Tensor | None, geometry: tuple[list[int], ...]) -> Tensor:
    """The same windows in differentiable PyTorch ops (for double backward)."""
    from .lip import _lip_windows  # imported here: lip and soft import this module
    from .soft import _soft_windows_out

    k, s, p, out = (tuple(g) for g in geometry)
    return _soft_windows_out(v, k, s, p, out) if logit is None else _lip_windows(v, logit, k, s, p)


def _gradient(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    v, logit = ctx.saved_tensors
    want_v, want_logit = ctx.needs_input_grad[0], logit is not None and ctx.needs_input_grad[1]
    if torch.is_grad_enabled():  # double backward: the formula's gradient, itself differentiable
        inputs = [t for t, want in ((v, want_v), (logit, want_logit)) if want]
        grads = iter(
            torch.autograd.grad(_window_formula(v, logit, ctx.geometry), inputs, grad, create_graph=True)
        )
        return (next(grads) if want_v else None, next(grads) if want_logit else None, *(None,) * 4)
    grad_v, grad_logit = _backward(v, logit, grad, *ctx.geometry, want_v, want_logit)
    return (grad_v if want_v else None, grad_logit if want_logit else None, *(None,) * 4)


_forward.register_autograd(_gradient, setup_context=_setup)


def exp_weighted_mean(
    v: Tensor,
    logit: Tensor | None,
    k: tuple[int, ...],
    s: tuple[int, ...],
    p: tuple[int, ...],
    out: tuple[int, ...],
) -> Tensor:
    """``sum(e * v) / sum(e)`` over each window of the last ``len(k)`` dims, ``e = exp(l - m)`` with
    ``l = logit`` (LIP; ``v``'s shape) or ``v`` (SoftPool, ``logit=None``) and ``m`` the window's
    max of ``l``; padding cells carry no weight. CPU, float32 (see :func:`available`)."""
    y: Tensor = _forward(v, logit, list(k), list(s), list(p), list(out))
    return y
