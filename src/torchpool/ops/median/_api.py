"""Median pooling, part 4: the public functions and Modules, and their registration."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..._checks import Window, check_bool, check_choice, check_input, check_window, restore_batch
from ..._shape import IntOrTuple
from ...registry import register_pool
from .._base import WindowPool
from ._kernels import _Config, _pad
from ._ops import _OPS, _forward, _indices, _MedianFunction, _op_args

__all__ = [
    "PADDING_MODES",
    "MedianPool1d",
    "MedianPool2d",
    "MedianPool3d",
    "median_pool1d",
    "median_pool1d_with_indices",
    "median_pool2d",
    "median_pool2d_with_indices",
    "median_pool3d",
    "median_pool3d_with_indices",
]

PADDING_MODES: tuple[str, ...] = ("reflect", "replicate", "circular", "zeros", "valid")
"""The accepted values of ``padding_mode``."""

# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


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
    return _MedianFunction.apply(flat, cfg)


def _median_pool(
    x: object,
    nd: int,
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
        x, nd, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled
    )
    boolean = xb.dtype == torch.bool
    if boolean:  # the min/max network runs on uint8; the median of bools is a bool
        xb = xb.to(torch.uint8)
    n, c = xb.shape[:2]
    channels_last = (
        nd in (2, 3)
        and not xb.is_contiguous()
        and xb.is_contiguous(memory_format=torch.channels_last if nd == 2 else torch.channels_last_3d)
    )
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
    if channels_last:
        y = y.contiguous(memory_format=torch.channels_last if nd == 2 else torch.channels_last_3d)
    return restore_batch(y, unbatched), indices


_SHAPES = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}


def median_pool1d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    *,
    ceil_mode: bool = False,
    padding_mode: str = "reflect",
    compiled: bool = False,
) -> Tensor:
    """1-d median pooling: the lower median of each window.

    Args:
        x: input of shape ``(N, C, L)`` or ``(C, L)``: floating point, integer or bool (exact; no
            gradient for integers).
        kernel_size: window size.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: padding on both sides, at most ``kernel_size // 2``.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: PyTorch's ceil-mode output size; cells past the padded input are not part of a window.
        padding_mode: ``"reflect"``, ``"replicate"``, ``"circular"``, ``"zeros"`` or ``"valid"``
            (median of the in-bounds cells only).
        compiled: run the min/max network under :func:`torch.compile`.

    Returns:
        The pooled tensor. Even windows give the lower median (sorted index ``(n - 1) // 2``); a window
        containing NaN gives NaN.

    Shape:
        - Input: ``(N, C, L_in)`` or ``(C, L_in)``.
        - Output: ``(N, C, L_out)`` or ``(C, L_out)``, the output size of max pooling:
          ``L_out = (L_in + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1`` (rounded up
          in ceil mode, see :func:`torchpool.pool_output_size`).

    Example:
        >>> x = torch.tensor([[[1.0, 5.0, 2.0, 8.0, 3.0]]])
        >>> median_pool1d(x, 3, stride=1, padding=1)
        tensor([[[5., 2., 5., 3., 8.]]])
        >>> median_pool1d(x, 2, stride=1)
        tensor([[[1., 2., 2., 3.]]])
    """
    return _median_pool(
        x, 1, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled, False
    )[0]


def median_pool2d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    *,
    ceil_mode: bool = False,
    padding_mode: str = "reflect",
    compiled: bool = False,
) -> Tensor:
    """2-d median pooling: the lower median of each window.

    Args:
        x: input of shape ``(N, C, H, W)`` or ``(C, H, W)``, any memory format: floating point, integer
            (``uint8`` images, ...) or bool; the median of integers is exact (no gradient).
        kernel_size: window size, an int or ``(kH, kW)``; even and non-square windows are allowed.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: padding on both sides of each axis, at most half the window.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: PyTorch's ceil-mode output size; cells past the padded input are not part of a window.
        padding_mode: ``"reflect"``, ``"replicate"``, ``"circular"``, ``"zeros"`` or ``"valid"``
            (median of the in-bounds cells only).
        compiled: run the min/max network under :func:`torch.compile` (padding stays eager).

    Returns:
        The pooled tensor. Even windows give the lower median (sorted index ``(n - 1) // 2``); a window
        containing NaN gives NaN. The gradient goes to the selected cell (first equal cell of the window
        in row-major order).

    Shape:
        - Input: ``(N, C, H_in, W_in)`` or ``(C, H_in, W_in)``.
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``, the output size of max pooling:
          ``H_out = (H_in + 2 * padding[0] - dilation[0] * (kernel_size[0] - 1) - 1) // stride[0] + 1``
          (rounded up in ceil mode; same for ``W``).

    Example:
        >>> x = torch.tensor([[[[1.0, 9.0, 2.0], [8.0, 3.0, 7.0], [4.0, 6.0, 5.0]]]])
        >>> median_pool2d(x, 3)
        tensor([[[[5.]]]])
        >>> median_pool2d(x, 2, stride=1)
        tensor([[[[3., 3.],
                  [4., 5.]]]])
        >>> median_pool2d(x, 2, stride=2, ceil_mode=True)  # the shape of max_pool2d with ceil_mode
        tensor([[[[3., 2.],
                  [4., 5.]]]])
        >>> median_pool2d((x * 10).to(torch.uint8), 3, dilation=1)  # integers: exact
        tensor([[[[50]]]], dtype=torch.uint8)
    """
    return _median_pool(
        x, 2, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled, False
    )[0]


def median_pool3d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    *,
    ceil_mode: bool = False,
    padding_mode: str = "reflect",
    compiled: bool = False,
) -> Tensor:
    """3-d median pooling: the lower median of each window.

    Args:
        x: input of shape ``(N, C, D, H, W)`` or ``(C, D, H, W)``: floating point, integer or bool.
        kernel_size: window size, an int or ``(kD, kH, kW)``.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: padding on both sides of each axis, at most half the window.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: PyTorch's ceil-mode output size; cells past the padded input are not part of a window.
        padding_mode: ``"reflect"``, ``"replicate"``, ``"circular"``, ``"zeros"`` or ``"valid"``.
        compiled: run the min/max network under :func:`torch.compile`.

    Returns:
        The pooled tensor (lower median of each window; NaN where a window holds NaN).

    Shape:
        - Input: ``(N, C, D_in, H_in, W_in)`` or ``(C, D_in, H_in, W_in)``.
        - Output: ``(N, C, D_out, H_out, W_out)`` or ``(C, D_out, H_out, W_out)``.

    Example:
        >>> x = torch.arange(8.0).reshape(1, 1, 2, 2, 2)
        >>> median_pool3d(x, 2)
        tensor([[[[[3.]]]]])
    """
    return _median_pool(
        x, 3, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled, False
    )[0]


def median_pool1d_with_indices(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    *,
    ceil_mode: bool = False,
    padding_mode: str = "reflect",
    compiled: bool = False,
) -> tuple[Tensor, Tensor]:
    """:func:`median_pool1d` and the index of the selected cell of each window.

    Args:
        x: input of shape ``(N, C, L)`` or ``(C, L)``.
        kernel_size: window size.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: padding on both sides.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: PyTorch's ceil-mode output size; cells past the padded input are not part of a window.
        padding_mode: ``"reflect"``, ``"replicate"``, ``"circular"``, ``"zeros"`` or ``"valid"``.
        compiled: run the min/max network under :func:`torch.compile`.

    Returns:
        ``(values, indices)``; indices (int64) index the unpadded input as in
        ``F.max_pool1d(return_indices=True)``. A selected reflect/replicate padding cell gives the index
        of the cell it copies; see the module docstring for a selected zero padding cell.

    Shape:
        - Input: ``(N, C, L_in)`` or ``(C, L_in)``.
        - Output: two tensors of shape ``(N, C, L_out)`` or ``(C, L_out)``.

    Example:
        >>> x = torch.tensor([[[1.0, 5.0, 2.0, 8.0, 3.0, 0.0]]])
        >>> median_pool1d_with_indices(x, 3)
        (tensor([[[2., 3.]]]), tensor([[[2, 4]]]))
    """
    values, indices = _median_pool(
        x, 1, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled, True
    )
    assert indices is not None
    return values, indices


def median_pool2d_with_indices(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    *,
    ceil_mode: bool = False,
    padding_mode: str = "reflect",
    compiled: bool = False,
) -> tuple[Tensor, Tensor]:
    """:func:`median_pool2d` and the index of the selected cell of each window.

    Args:
        x: input of shape ``(N, C, H, W)`` or ``(C, H, W)``.
        kernel_size: window size, an int or ``(kH, kW)``.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: padding on both sides of each axis.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: PyTorch's ceil-mode output size; cells past the padded input are not part of a window.
        padding_mode: ``"reflect"``, ``"replicate"``, ``"circular"``, ``"zeros"`` or ``"valid"``.
        compiled: run the min/max network under :func:`torch.compile`.

    Returns:
        ``(values, indices)``; indices (int64) are flat ``h * W + w`` indices into the unpadded input,
        as in ``F.max_pool2d(return_indices=True)``, usable with ``F.max_unpool2d``.

    Shape:
        - Input: ``(N, C, H_in, W_in)`` or ``(C, H_in, W_in)``.
        - Output: two tensors of shape ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``.

    Example:
        >>> x = torch.tensor([[[[1.0, 9.0, 2.0], [8.0, 3.0, 7.0], [4.0, 6.0, 5.0]]]])
        >>> median_pool2d_with_indices(x, 3)
        (tensor([[[[5.]]]]), tensor([[[[8]]]]))
    """
    values, indices = _median_pool(
        x, 2, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled, True
    )
    assert indices is not None
    return values, indices


def median_pool3d_with_indices(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    *,
    ceil_mode: bool = False,
    padding_mode: str = "reflect",
    compiled: bool = False,
) -> tuple[Tensor, Tensor]:
    """:func:`median_pool3d` and the index of the selected cell of each window.

    Args:
        x: input of shape ``(N, C, D, H, W)`` or ``(C, D, H, W)``.
        kernel_size: window size, an int or ``(kD, kH, kW)``.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: padding on both sides of each axis.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: PyTorch's ceil-mode output size; cells past the padded input are not part of a window.
        padding_mode: ``"reflect"``, ``"replicate"``, ``"circular"``, ``"zeros"`` or ``"valid"``.
        compiled: run the min/max network under :func:`torch.compile`.

    Returns:
        ``(values, indices)``; indices (int64) are flat ``(d * H + h) * W + w`` indices into the
        unpadded input, as in ``F.max_pool3d(return_indices=True)``.

    Shape:
        - Input: ``(N, C, D_in, H_in, W_in)`` or ``(C, D_in, H_in, W_in)``.
        - Output: two tensors of shape ``(N, C, D_out, H_out, W_out)`` or ``(C, D_out, H_out, W_out)``.

    Example:
        >>> x = torch.arange(8.0).reshape(1, 1, 2, 2, 2)
        >>> median_pool3d_with_indices(x, 2)
        (tensor([[[[[3.]]]]]), tensor([[[[[3]]]]]))
    """
    values, indices = _median_pool(
        x, 3, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled, True
    )
    assert indices is not None
    return values, indices


class _MedianPoolNd(WindowPool):
    _repr_options = ("dilation", "ceil_mode", "padding_mode", "compiled")
    _function: Callable[..., Tensor]

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        *,
        ceil_mode: bool = False,
        padding_mode: str = "reflect",
        compiled: bool = False,
    ) -> None:
        super().__init__(kernel_size, stride, padding)
        self.dilation = dilation
        self.ceil_mode = check_bool(ceil_mode, "ceil_mode")
        self.padding_mode = check_choice(padding_mode, "padding_mode", PADDING_MODES)
        self.compiled = check_bool(compiled, "compiled")

    def forward(self, x: Tensor) -> Tensor:
        """Applies the median pooling function with the stored arguments."""
        return type(self)._function(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            ceil_mode=self.ceil_mode,
            padding_mode=self.padding_mode,
            compiled=self.compiled,
        )


class MedianPool1d(_MedianPoolNd):
    """Module form of :func:`median_pool1d`.

    Args:
        kernel_size: window size.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: padding on both sides.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: PyTorch's ceil-mode output size; cells past the padded input are not part of a window.
        padding_mode: ``"reflect"``, ``"replicate"``, ``"circular"``, ``"zeros"`` or ``"valid"``.
        compiled: run the min/max network under :func:`torch.compile`.

    Shape:
        - Input: ``(N, C, L_in)`` or ``(C, L_in)``.
        - Output: ``(N, C, L_out)`` or ``(C, L_out)``.

    Example:
        >>> pool = MedianPool1d(3, stride=1, padding=1, dilation=2)
        >>> pool(torch.arange(6.0).reshape(1, 1, 6))  # reflect padding: 1 0 1 2 3 4 5 4
        tensor([[[1., 2., 3., 4.]]])
    """

    _function = staticmethod(median_pool1d)


class MedianPool2d(_MedianPoolNd):
    """Module form of :func:`median_pool2d`.

    Args:
        kernel_size: window size, an int or ``(kH, kW)``.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: padding on both sides of each axis.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: PyTorch's ceil-mode output size; cells past the padded input are not part of a window.
        padding_mode: ``"reflect"``, ``"replicate"``, ``"circular"``, ``"zeros"`` or ``"valid"``.
        compiled: run the min/max network under :func:`torch.compile`.

    Shape:
        - Input: ``(N, C, H_in, W_in)`` or ``(C, H_in, W_in)``.
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``.

    Example:
        >>> pool = MedianPool2d(3, stride=1, padding=1)
        >>> pool(torch.zeros(2, 3, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
    """

    _function = staticmethod(median_pool2d)


class MedianPool3d(_MedianPoolNd):
    """Module form of :func:`median_pool3d`.

    Args:
        kernel_size: window size, an int or ``(kD, kH, kW)``.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: padding on both sides of each axis.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: PyTorch's ceil-mode output size; cells past the padded input are not part of a window.
        padding_mode: ``"reflect"``, ``"replicate"``, ``"circular"``, ``"zeros"`` or ``"valid"``.
        compiled: run the min/max network under :func:`torch.compile`.

    Shape:
        - Input: ``(N, C, D_in, H_in, W_in)`` or ``(C, D_in, H_in, W_in)``.
        - Output: ``(N, C, D_out, H_out, W_out)`` or ``(C, D_out, H_out, W_out)``.

    Example:
        >>> MedianPool3d(3, padding=1, padding_mode="zeros")(torch.ones(1, 2, 3, 3, 3)).shape
        torch.Size([1, 2, 1, 1, 1])
    """

    _function = staticmethod(median_pool3d)


for _n, _cls in ((1, MedianPool1d), (2, MedianPool2d), (3, MedianPool3d)):
    register_pool(
        f"median{_n}d",
        _cls,
        family="median",
        dims=(_n,),
        description="lower median of each window (min/max selection network)",
        example_kwargs={"kernel_size": 3, "stride": 1, "padding": 1},
    )
