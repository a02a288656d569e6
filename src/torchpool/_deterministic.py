"""Deterministic mode: route around PyTorch kernels whose backward is non-deterministic.

With ``torch.use_deterministic_algorithms(True)``, PyTorch raises a ``RuntimeError`` in the
backward of several pooling kernels on CUDA (``avg_pool3d``, ``max_pool3d``,
``adaptive_avg_pool2d/3d``, ``adaptive_max_pool2d``) because they accumulate gradients with atomic
adds. torchpool's ops use other formulations there, built only from kernels that PyTorch
runs deterministically in that mode (``avg_pool1d/2d``, matrix products, ``gather`` /
``gather`` / ``scatter_add``, strided slice additions).

The mode is global, like PyTorch's:

* ``use_deterministic(None)`` (the default): take the deterministic paths when
  ``torch.are_deterministic_algorithms_enabled()`` and the tensor is not on the CPU (PyTorch's
  CPU kernels are deterministic already).
* ``use_deterministic(True)``: always take them, on every device (same numerics everywhere).
* ``use_deterministic(False)``: never.

The deterministic paths compute the same function (tests compare them with the default paths
on every op that has one); they are slower.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "avg_pool3d",
    "deterministic",
    "is_deterministic",
    "max_pool3d",
    "needs_deterministic_backward",
    "use_deterministic",
]

_MODE: bool | None = None


def use_deterministic(mode: bool | None) -> None:
    """Sets when torchpool takes its deterministic paths.

    Args:
        mode: ``None`` follows ``torch.are_deterministic_algorithms_enabled()`` on non-CPU
            devices (the default); ``True`` always; ``False`` never.

    Example:
        >>> import torchpool
        >>> torchpool.use_deterministic(True)
        >>> torchpool.is_deterministic()
        True
        >>> torchpool.use_deterministic(None)
    """
    global _MODE
    if mode is not None and not isinstance(mode, bool):
        raise TypeError(f"mode must be True, False or None, got {mode!r}")
    _MODE = mode


def is_deterministic(x: Tensor | None = None) -> bool:
    """Whether torchpool takes its deterministic paths (for ``x``'s device, when given).

    Example:
        >>> import torchpool
        >>> torchpool.is_deterministic(torch.zeros(1))
        False
    """
    if x is not None and not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor or None, got {type(x).__name__}")
    if _MODE is not None:
        return _MODE
    if not torch.are_deterministic_algorithms_enabled():
        return False
    return x is None or x.device.type != "cpu"


@contextmanager
def deterministic(mode: bool | None = True) -> Iterator[None]:
    """Context manager form of :func:`use_deterministic`; restores the previous mode.

    Example:
        >>> import torchpool
        >>> with torchpool.deterministic():
        ...     torchpool.is_deterministic()
        True
    """
    previous = _MODE
    use_deterministic(mode)
    try:
        yield
    finally:
        use_deterministic(previous)


def needs_deterministic_backward(x: Tensor) -> bool:
    """True when ``x`` will be differentiated and the deterministic mode is on for it."""
    return torch.is_grad_enabled() and x.requires_grad and is_deterministic(x)


def avg_pool3d(
    x: Tensor,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Tensor:
    """``F.avg_pool3d`` on ``(N, C, D, H, W)`` or ``(C, D, H, W)``, separably (``avg_pool2d`` then
    ``avg_pool1d``) in deterministic mode or for an input smaller than the kernel (which
    ``F.avg_pool3d`` refuses
    although padding makes the window valid), and in float32 for half inputs on the CPU (which
    lacks that kernel).

    A box average is the product of per-axis averages, and so is its divisor with
    ``count_include_pad=False`` (the in-bounds cells of a box are a product of per-axis ranges).
    """
    if x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16):
        return avg_pool3d(x.float(), kernel_size, stride, padding, ceil_mode, count_include_pad).to(x.dtype)
    # PyTorch's avg_pool3d also refuses an unpadded size smaller than the kernel (padding can
    # make such a window valid; avg_pool1d/2d accept it)
    small = any(size < k for size, k in zip(x.shape[2:], kernel_size))
    if not small and not needs_deterministic_backward(x):
        return F.avg_pool3d(
            x, tuple(kernel_size), tuple(stride), tuple(padding), ceil_mode, count_include_pad
        )
    if x.dim() == 4:  # batch-less (C, D, H, W)
        return avg_pool3d(x.unsqueeze(0), kernel_size, stride, padding, ceil_mode, count_include_pad)[0]
    n, c, d, h, w = x.shape
    kd, kh, kw = kernel_size
    sd, sh, sw = stride
    pd, ph, pw = padding
    plane = F.avg_pool2d(
        x.reshape(n * c, d, h, w), (kh, kw), (sh, sw), (ph, pw), ceil_mode, count_include_pad
    )
    ho, wo = plane.shape[-2:]
    depth = plane.reshape(n * c, d, ho * wo).transpose(1, 2)
    out = F.avg_pool1d(depth, kd, sd, pd, ceil_mode, count_include_pad)
    return out.transpose(1, 2).reshape(n, c, out.shape[-1], ho, wo)


def max_pool3d(
    x: Tensor,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int] = (1, 1, 1),
    ceil_mode: bool = False,
) -> Tensor:
    """``F.max_pool3d`` on ``(N, C, D, H, W)`` or ``(C, D, H, W)``, separably (``max_pool2d`` over
    each depth slice, then ``max_pool1d`` over depth) in deterministic mode, where PyTorch's CUDA
    ``max_pool3d`` backward raises.

    The maximum of a box is the maximum over depth of the per-slice maxima, padding is ``-inf``
    in both, and each axis's output size follows its own rule, so the values are
    ``F.max_pool3d``'s exactly. On ties the gradient may go to another maximum of the window.
    """
    if not needs_deterministic_backward(x):
        return F.max_pool3d(x, tuple(kernel_size), tuple(stride), tuple(padding), tuple(dilation), ceil_mode)
    if x.dim() == 4:  # batch-less (C, D, H, W)
        return max_pool3d(x.unsqueeze(0), kernel_size, stride, padding, dilation, ceil_mode)[0]
    n, c, d, h, w = x.shape
    plane = F.max_pool2d(
        x.reshape(n * c * d, 1, h, w),
        tuple(kernel_size[1:]),
        tuple(stride[1:]),
        tuple(padding[1:]),
        tuple(dilation[1:]),
        ceil_mode,
    )
    ho, wo = plane.shape[-2:]
    depth = plane.reshape(n * c, d, ho * wo).transpose(1, 2)
    out = F.max_pool1d(depth, kernel_size[0], stride[0], padding[0], dilation[0], ceil_mode)
    return out.transpose(1, 2).reshape(n, c, out.shape[-1], ho, wo)
