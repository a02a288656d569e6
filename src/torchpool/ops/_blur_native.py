"""BlurPool on the CPU in float32 through the C kernel ``csrc/blur.c``.

The separable binomial blur and subsampling of :mod:`.blur` (every padding mode, kernel sizes 1 to
7, any stride, 1-d to 3-d) as one operator, ``torchpool::blur_pool``, with a fake (shape) function
and its gradient, ``torchpool::blur_pool_backward`` (the transposed blur, windows accumulated a
plane at a time). The blur is linear, so each operator's gradient is the other one: double (and
higher) backward runs the kernel too, no pure-PyTorch formula needed.
"""

from __future__ import annotations

import ctypes
import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch._subclasses.fake_tensor import FakeTensor

from .. import _native
from .._checks import is_traced
from ._blur_filter import MAX_KERNEL, binomial_filter

__all__ = ["available", "blur", "max_blur"]

#: the kernel's numbers of the padding modes
MODES = {"zeros": 0, "reflect": 1, "replicate": 2, "circular": 3}


def _library() -> ctypes.CDLL | None:
    return _native.load("blur")


def available(x: Tensor) -> bool:
    """Whether the kernel is built and takes ``x`` (eager mode, CPU, float32, values readable)."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not isinstance(x, FakeTensor)
        and not is_traced()
        and _library() is not None
    )


def _kernel() -> ctypes.CDLL:
    lib = _library()
    if lib is None:
        raise RuntimeError(f"torchpool: the blur kernel is not built: {_native.build_error('blur')}")
    return lib


@functools.lru_cache(maxsize=256)
def _params(
    shape: tuple[int, ...], k: tuple[int, ...], s: tuple[int, ...], mode: str, m: tuple[int, ...]
) -> tuple[int, Tensor, Tensor]:
    """The plane count, the geometry (size, kernel, stride, out: 3 dims each, leading dims of size 1
    for 1-d and 2-d; the mode; then MaxBlurPool's window ``m``, if any, likewise) and the taps (3 x
    ``MAX_KERNEL`` float32, axis-major), for an input (MaxBlurPool: its dense map) of ``shape``.
    Cached: the kernel only reads them."""
    ndim = len(k)
    lift = [1] * (3 - ndim)
    size = lift + list(shape[len(shape) - ndim :])
    kernel, stride = lift + list(k), lift + list(s)
    out = [-(-n // ss) for n, ss in zip(size, stride)]
    window = lift + list(m) if m else []
    with torch.inference_mode(False):  # plain tensors even if first built under inference mode
        geometry = torch.tensor([*size, *kernel, *stride, *out, MODES[mode], *window], dtype=torch.int64)
        taps = torch.zeros(3, MAX_KERNEL, dtype=torch.float32)
        for axis, kk in enumerate(kernel):
            taps[axis, :kk] = torch.tensor(binomial_filter(kk))  # dyadic: exact in float32
    return math.prod(shape[: len(shape) - ndim]), geometry, taps


def _run(
    name: str, tensors: list[Tensor], shape: list[int], k: list[int], s: list[int], mode: str, m: list[int]
) -> None:
    """Calls the kernel ``name`` on ``tensors`` (pointers, in order) with the blur's geometry for an
    input (for MaxBlurPool: the dense map) of ``shape``, then the max window ``m`` if any."""
    planes, geometry, taps = _params(tuple(shape), tuple(k), tuple(s), mode, tuple(m))
    failed = getattr(_kernel(), name)(
        *(ctypes.c_void_p(t.data_ptr()) for t in tensors),
        ctypes.c_int64(planes),
        ctypes.c_void_p(geometry.data_ptr()),
        ctypes.c_void_p(taps.data_ptr()),
        torch.get_num_threads(),
    )
    if failed:
        raise MemoryError("torchpool: the blur kernel could not allocate its work space")


def _out_shape(x_shape: torch.Size | list[int], k: list[int], s: list[int]) -> list[int]:
    ndim = len(k)
    lead = list(x_shape[: len(x_shape) - ndim])
    return lead + [-(-n // ss) for n, ss in zip(x_shape[len(x_shape) - ndim :], s)]


# explicit schemas: torch 2.4 cannot read this module's string annotations
@torch.library.custom_op(
    "torchpool::blur_pool",
    mutates_args=(),
    device_types="cpu",
    schema="(Tensor x, int[] k, int[] s, str mode) -> Tensor",
)
def _forward(x: Tensor, k: list[int], s: list[int], mode: str) -> Tensor:
    """The blurred and subsampled ``x`` over its last ``len(k)`` dims (contiguous result)."""
    x = x.contiguous()
    y = x.new_empty(_out_shape(x.shape, k, s))
    if y.numel():
        _run("tp_blur_forward", [x, y], list(x.shape), k, s, mode, [])
    return y


@_forward.register_fake
def _(x: Tensor, k: list[int], s: list[int], mode: str) -> Tensor:
    return x.new_empty(_out_shape(x.shape, k, s))


@torch.library.custom_op(
    "torchpool::blur_pool_backward",
    mutates_args=(),
    device_types="cpu",
    schema="(Tensor grad, int[] size, int[] k, int[] s, str mode) -> Tensor",
)
def _backward(grad: Tensor, size: list[int], k: list[int], s: list[int], mode: str) -> Tensor:
    """The gradient of :func:`_forward` for an input of spatial ``size`` (the transposed blur)."""
    grad = grad.contiguous()
    shape = [*grad.shape[: grad.dim() - len(k)], *size]
    grad_x = grad.new_empty(shape)
    if grad_x.numel():
        _run("tp_blur_backward", [grad, grad_x], shape, k, s, mode, [])
    return grad_x


@_backward.register_fake
def _(grad: Tensor, size: list[int], k: list[int], s: list[int], mode: str) -> Tensor:
    return grad.new_empty([*grad.shape[: grad.dim() - len(k)], *size])


def _setup_forward(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, k, s, mode = inputs
    ctx.geometry = (list(x.shape[x.dim() - len(k) :]), k, s, mode)


def _forward_gradient(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
    return _backward(grad, *ctx.geometry), None, None, None


def _setup_backward(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    _grad, _size, k, s, mode = inputs
    ctx.geometry = (k, s, mode)


def _backward_gradient(ctx: Any, grad_grad_x: Tensor) -> tuple[Tensor, None, None, None, None]:
    return _forward(grad_grad_x, *ctx.geometry), None, None, None, None


_forward.register_autograd(_forward_gradient, setup_context=_setup_forward)
_backward.register_autograd(_backward_gradient, setup_context=_setup_backward)


def _dense_shape(x_shape: torch.Size | list[int], m: list[int]) -> list[int]:
    ndim = len(m)
    lead = list(x_shape[: len(x_shape) - ndim])
    return lead + [n - mm + 1 for n, mm in zip(x_shape[len(x_shape) - ndim :], m)]


@torch.library.custom_op(
    "torchpool::max_blur_pool",
    mutates_args=(),
    device_types="cpu",
    schema="(Tensor x, int[] m, int[] k, int[] s, str mode) -> Tensor",
)
def _max_forward(x: Tensor, m: list[int], k: list[int], s: list[int], mode: str) -> Tensor:
    """MaxBlurPool: the dense max (window ``m``, stride 1), then the blur, a plane at a time."""
    x = x.contiguous()
    dense_shape = _dense_shape(x.shape, m)
    y = x.new_empty(_out_shape(dense_shape, k, s))
    if y.numel():
        _run("tp_max_blur_forward", [x, y], dense_shape, k, s, mode, m)
    return y


@_max_forward.register_fake
def _(x: Tensor, m: list[int], k: list[int], s: list[int], mode: str) -> Tensor:
    return x.new_empty(_out_shape(_dense_shape(x.shape, m), k, s))


@torch.library.custom_op(
    "torchpool::max_blur_pool_backward",
    mutates_args=(),
    device_types="cpu",
    schema="(Tensor x, Tensor grad, int[] m, int[] k, int[] s, str mode) -> Tensor",
)
def _max_backward(x: Tensor, grad: Tensor, m: list[int], k: list[int], s: list[int], mode: str) -> Tensor:
    """The gradient of :func:`_max_forward`: the blur's, then each dense cell's onto its max."""
    x, grad = x.contiguous(), grad.contiguous()
    grad_x = torch.empty_like(x)
    if grad_x.numel():
        _run("tp_max_blur_backward", [x, grad, grad_x], _dense_shape(x.shape, m), k, s, mode, m)
    return grad_x


@_max_backward.register_fake
def _(x: Tensor, grad: Tensor, m: list[int], k: list[int], s: list[int], mode: str) -> Tensor:
    return torch.empty_like(x)


def _setup_max(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, m, k, s, mode = inputs
    ctx.save_for_backward(x)
    ctx.geometry = (m, k, s, mode)


_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def _max_gradient(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None, None]:
    (x,) = ctx.saved_tensors
    m, k, s, mode = ctx.geometry
    if torch.is_grad_enabled():  # double backward: PyTorch's max pool, then the blur operator
        leaf = x.detach().requires_grad_(True)
        with torch.enable_grad():
            dense = _MAX_POOL[len(m)](leaf, m, 1)
            (grad_x,) = torch.autograd.grad(_forward(dense, k, s, mode), leaf, grad, create_graph=True)
        return grad_x, None, None, None, None
    return _max_backward(x, grad, m, k, s, mode), None, None, None, None


_max_forward.register_autograd(_max_gradient, setup_context=_setup_max)


def blur(x: Tensor, k: tuple[int, ...], s: tuple[int, ...], padding_mode: str) -> Tensor:
    """The blur of :mod:`.blur` over the last ``len(k)`` dims of ``x`` (CPU, float32: see
    :func:`available`; sizes checked by the caller), in ``x``'s memory format."""
    y: Tensor = _forward(x, list(k), list(s), padding_mode)
    return _in_layout_of(y, x)


def max_blur(
    x: Tensor, m: tuple[int, ...], k: tuple[int, ...], s: tuple[int, ...], padding_mode: str
) -> Tensor:
    """MaxBlurPool of :mod:`.blur` (dense max with window ``m``, stride 1, then :func:`blur`; CPU,
    float32; sizes checked by the caller), in ``x``'s memory format."""
    y: Tensor = _max_forward(x, list(m), list(k), list(s), padding_mode)
    return _in_layout_of(y, x)


def _in_layout_of(y: Tensor, x: Tensor) -> Tensor:
    """``y`` (contiguous) in ``x``'s channels-last layout if ``x`` has one."""
    if x.dim() in (4, 5) and not x.is_contiguous():
        fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
        if x.is_contiguous(memory_format=fmt):
            return y.contiguous(memory_format=fmt)
    return y
