"""Median pooling, part 4: the rank-generic pooling function (validation, layout, the op call)."""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor

from ..._checks import Window, check_bool, check_choice, check_input, check_window, restore_batch
from ..._shape import IntOrTuple
from .._windows import channels_last_format
from ._kernels import _Config, _pad
from ._ops import _OPS, _forward, _indices, _MedianFunction, _op_args

PADDING_MODES: tuple[str, ...] = ("reflect", "replicate", "circular", "zeros", "valid")
"""The accepted values of ``padding_mode``."""

_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)


def _prepare(
    x: object,
    nd: int,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    dilation: IntOrTuple,
    ceil_mode: bool,
    padding_mode: str,
    compiled: bool,
) -> tuple[Tensor, bool, Window, _Config]:
    window = check_window(kernel_size, stride, padding, nd, dilation)
    check_bool(ceil_mode, "ceil_mode")
    check_choice(padding_mode, "padding_mode", PADDING_MODES)
    check_bool(compiled, "compiled")
    xb, unbatched = check_input(x, nd, floating=False, window=window, ceil_mode=ceil_mode)
    if not xb.is_floating_point() and xb.dtype not in _INTEGER_DTYPES:
        raise TypeError(f"input must have a floating-point, integer or bool dtype, got {xb.dtype}")
    sizes = tuple(xb.shape[2:])
    if padding_mode in ("reflect", "circular"):
        for axis, (p, size) in enumerate(zip(window.padding, sizes)):
            if p >= size + (padding_mode == "circular"):
                bound = "smaller than" if padding_mode == "reflect" else "at most"
                raise ValueError(
                    f"padding must be {bound} the input size for padding_mode={padding_mode!r}, got "
                    f"padding={p} for size {size} in spatial dimension {axis}"
                )
    cfg = _Config(
        window.kernel_size,
        window.stride,
        window.padding,
        sizes,
        padding_mode,
        compiled,
        window.dilation,
        ceil_mode,
    )
    if padding_mode == "valid" and any(d > 1 for d in cfg.dilation):  # undilated windows always hold one
        for axis, (s, p, size, d, k, o) in enumerate(
            zip(cfg.stride, cfg.padding, sizes, cfg.dilation, cfg.kernel, cfg.out_sizes)
        ):
            for j in range(o):
                if not any(0 <= s * j - p + i * d < size for i in range(k)):
                    raise ValueError(
                        f"padding_mode='valid' leaves window {j} of spatial dimension {axis} without an "
                        f"input cell (kernel_size={k}, dilation={d}, padding={p}, size {size}): "
                        "use less padding or dilation"
                    )
    return xb, unbatched, window, cfg


def _apply(flat: Tensor, cfg: _Config) -> Tensor:
    """Median pooling of the unpadded, contiguous ``(B, *sizes)`` input, differentiable.

    Eager, ``torch.compile`` and ``torch.export`` call the custom op ``torchpool::median_pool``
    (one opaque node with a registered fake and gradient). The ONNX exporters cannot translate a
    custom op, so during an ONNX export the network is written out as plain min/max on views.
    """
    if torch.onnx.is_in_onnx_export():
        return _forward(_pad(flat, cfg).contiguous(), cfg, functional=True)
    if _OPS:
        return _OPS["forward"](flat, *_op_args(cfg))
    return cast(Tensor, _MedianFunction.apply(flat, cfg))  # type: ignore[no-untyped-call]


def _median_pool(
    x: object,
    ndim: int,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    dilation: IntOrTuple,
    ceil_mode: bool,
    padding_mode: str,
    compiled: bool,
    with_indices: bool,
) -> tuple[Tensor, Tensor | None]:
    xb, unbatched, _, cfg = _prepare(
        x, ndim, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled
    )
    boolean = xb.dtype == torch.bool
    if boolean:  # the min/max network runs on uint8; the median of bools is a bool
        xb = xb.to(torch.uint8)
    n, c = xb.shape[:2]
    layout = channels_last_format(xb)
    # padding happens inside the op, a chunk of planes at a time
    flat = xb.contiguous().reshape(n * c, *xb.shape[2:])
    y = _apply(flat, cfg)
    indices = None
    if with_indices:
        with torch.no_grad():
            if _OPS and not torch.onnx.is_in_onnx_export():
                index = _OPS["indices"](flat.detach(), y.detach(), *_op_args(cfg))
            else:
                index = _indices(_pad(flat.detach(), cfg), y.detach(), cfg)
            indices = restore_batch(index.reshape(n, c, *y.shape[1:]), unbatched)
    y = y.reshape(n, c, *y.shape[1:])
    if boolean:
        y = y.bool()
    if layout != torch.contiguous_format:
        y = y.contiguous(memory_format=layout)
    return restore_batch(y, unbatched), indices


def _median(
    x: object,
    ndim: int,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    dilation: IntOrTuple,
    ceil_mode: bool,
    padding_mode: str,
    compiled: bool,
    return_indices: bool,
) -> Tensor | tuple[Tensor, Tensor]:
    """The rank-generic body of ``median_pool{1,2,3}d``."""
    check_bool(return_indices, "return_indices")
    values, indices = _median_pool(
        x, ndim, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled, return_indices
    )
    if indices is None:
        return values
    return values, indices


def _median_with_indices(
    x: object,
    ndim: int,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    dilation: IntOrTuple,
    ceil_mode: bool,
    padding_mode: str,
    compiled: bool,
) -> tuple[Tensor, Tensor]:
    """The rank-generic body of ``median_pool{1,2,3}d_with_indices``."""
    values, indices = _median_pool(
        x, ndim, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled, True
    )
    assert indices is not None  # with_indices=True always computes them
    return values, indices
