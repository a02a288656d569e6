"""Median pooling, part 5: the public functions and Modules, and their registration."""

from __future__ import annotations

from typing import Literal, overload

import torch  # noqa: F401  (the doctests use it)
from torch import Tensor

from ..._checks import check_bool, check_choice
from ..._shape import IntOrTuple
from ...registry import register_pool
from .._base import WindowPool
from .._doc import rank_doc
from ._pool import PADDING_MODES, _median, _median_with_indices

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

# ----------------------------------------------------------------------------------------------
# Docstring templates (filled per rank by rank_doc)
# ----------------------------------------------------------------------------------------------

_ARGS_DOC = """kernel_size: window size, {kernel}; even and non-square windows are allowed.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: padding on both sides of each axis, at most half the window.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: PyTorch's ceil-mode output size; cells past the padded input are not part of a window.
        padding_mode: ``"reflect"``, ``"replicate"``, ``"circular"``, ``"zeros"`` or ``"valid"``
            (median of the in-bounds cells only).
        compiled: run the min/max network under :func:`torch.compile` (padding stays outside the
            network's graph; on the CPU, float32/float64 inputs without NaN run it on integer keys,
            a chunk of planes at a time, with the same values). The bound on extra memory (under 2x
            the input) is the eager path's."""

_FUNCTION_DOC = """{n}-d median pooling: the lower median of each window.

    Args:
        x: input of shape ``{shape}`` or ``(C, {dims})``{layout}: floating point, integer or bool
            (the median of integers is exact; no gradient).
        {args}
        return_indices: also return the index of the selected cell of each window, as
            :func:`median_pool{n}d_with_indices` does.

    Returns:
        The pooled tensor, or ``(values, indices)`` when ``return_indices=True``. Even windows give
        the lower median (sorted index ``(n - 1) // 2``); a window containing NaN gives NaN. The
        gradient goes to the selected cell (first equal cell of the window in row-major order).

    Shape:
        - Input: ``{shape}`` or ``(C, {dims})``.
        - Output: ``{out_shape}`` or ``(C, {out_dims})``, the output size of max pooling:
          ``out = (in + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1`` per axis
          (rounded up in ceil mode, see :func:`torchpool.pool_output_size`).

    Example:
{example}
    """

_INDICES_DOC = """:func:`median_pool{n}d` and the index of the selected cell of each window.

    Args:
        x: input of shape ``{shape}`` or ``(C, {dims})``.
        {args}

    Returns:
        ``(values, indices)``; indices (int64) are flat indices ({flat}) into each ``(n, c)`` plane
        of the unpadded input, as in ``F.max_pool{n}d(return_indices=True)``, usable with
        ``F.max_unpool{n}d``. A selected reflect/replicate/circular padding cell gives the index of
        the cell it copies; see the module docstring for a selected zero padding cell.

    Shape:
        - Input: ``{shape}`` or ``(C, {dims})``.
        - Output: two tensors of shape ``{out_shape}`` or ``(C, {out_dims})``.

    Example:
{example}
    """

_MODULE_DOC = """Module form of :func:`median_pool{n}d`.

    Args:
        {args}
        return_indices: ``forward`` also returns the index of the selected cell of each window.

    Shape:
        - Input: ``{shape}`` or ``(C, {dims})``.
        - Output: ``{out_shape}`` or ``(C, {out_dims})``.

    Example:
{example}
    """

_KERNEL = {1: "an int or a 1-tuple", 2: "an int or ``(kH, kW)``", 3: "an int or ``(kD, kH, kW)``"}
_LAYOUT = {1: "", 2: ", any memory format", 3: ", any memory format"}
_FLAT = {1: "``l``", 2: "``h * W + w``", 3: "``(d * H + h) * W + w``"}

# ----------------------------------------------------------------------------------------------
# Functions
# ----------------------------------------------------------------------------------------------


@overload
def median_pool1d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    padding_mode: str = ...,
    compiled: bool = ...,
    return_indices: Literal[False] = ...,
) -> Tensor: ...
@overload
def median_pool1d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    padding_mode: str = ...,
    compiled: bool = ...,
    return_indices: Literal[True],
) -> tuple[Tensor, Tensor]: ...
@overload
def median_pool1d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    padding_mode: str = ...,
    compiled: bool = ...,
    return_indices: bool,
) -> Tensor | tuple[Tensor, Tensor]: ...
@rank_doc(
    _FUNCTION_DOC,
    1,
    args=_ARGS_DOC.format(kernel=_KERNEL[1]),
    layout=_LAYOUT[1],
    example="""        >>> x = torch.tensor([[[1.0, 5.0, 2.0, 8.0, 3.0]]])
        >>> median_pool1d(x, 3, stride=1, padding=1)
        tensor([[[5., 2., 5., 3., 8.]]])
        >>> median_pool1d(x, 2, stride=1)
        tensor([[[1., 2., 2., 3.]]])
        >>> median_pool1d(x, 3, 2, return_indices=True)
        (tensor([[[2., 3.]]]), tensor([[[2, 4]]]))""",
)
def median_pool1d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    padding_mode: str = "reflect",
    compiled: bool = False,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    return _median(
        x, 1, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled, return_indices
    )


@overload
def median_pool2d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    padding_mode: str = ...,
    compiled: bool = ...,
    return_indices: Literal[False] = ...,
) -> Tensor: ...
@overload
def median_pool2d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    padding_mode: str = ...,
    compiled: bool = ...,
    return_indices: Literal[True],
) -> tuple[Tensor, Tensor]: ...
@overload
def median_pool2d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    padding_mode: str = ...,
    compiled: bool = ...,
    return_indices: bool,
) -> Tensor | tuple[Tensor, Tensor]: ...
@rank_doc(
    _FUNCTION_DOC,
    2,
    args=_ARGS_DOC.format(kernel=_KERNEL[2]),
    layout=_LAYOUT[2],
    example="""        >>> x = torch.tensor([[[[1.0, 9.0, 2.0], [8.0, 3.0, 7.0], [4.0, 6.0, 5.0]]]])
        >>> median_pool2d(x, 3)
        tensor([[[[5.]]]])
        >>> median_pool2d(x, 2, stride=1)
        tensor([[[[3., 3.],
                  [4., 5.]]]])
        >>> median_pool2d(x, 2, 2, 0, 1, True)  # ceil_mode: the shape of max_pool2d with ceil_mode
        tensor([[[[3., 2.],
                  [4., 5.]]]])
        >>> median_pool2d((x * 10).to(torch.uint8), 3, dilation=1)  # integers: exact
        tensor([[[[50]]]], dtype=torch.uint8)
        >>> median_pool2d(x, 3, return_indices=True)
        (tensor([[[[5.]]]]), tensor([[[[8]]]]))""",
)
def median_pool2d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    padding_mode: str = "reflect",
    compiled: bool = False,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    return _median(
        x, 2, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled, return_indices
    )


@overload
def median_pool3d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    padding_mode: str = ...,
    compiled: bool = ...,
    return_indices: Literal[False] = ...,
) -> Tensor: ...
@overload
def median_pool3d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    padding_mode: str = ...,
    compiled: bool = ...,
    return_indices: Literal[True],
) -> tuple[Tensor, Tensor]: ...
@overload
def median_pool3d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    padding_mode: str = ...,
    compiled: bool = ...,
    return_indices: bool,
) -> Tensor | tuple[Tensor, Tensor]: ...
@rank_doc(
    _FUNCTION_DOC,
    3,
    args=_ARGS_DOC.format(kernel=_KERNEL[3]),
    layout=_LAYOUT[3],
    example="""        >>> x = torch.arange(8.0).reshape(1, 1, 2, 2, 2)
        >>> median_pool3d(x, 2)
        tensor([[[[[3.]]]]])""",
)
def median_pool3d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    padding_mode: str = "reflect",
    compiled: bool = False,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    return _median(
        x, 3, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled, return_indices
    )


@rank_doc(
    _INDICES_DOC,
    1,
    args=_ARGS_DOC.format(kernel=_KERNEL[1]),
    flat=_FLAT[1],
    example="""        >>> x = torch.tensor([[[1.0, 5.0, 2.0, 8.0, 3.0, 0.0]]])
        >>> median_pool1d_with_indices(x, 3)
        (tensor([[[2., 3.]]]), tensor([[[2, 4]]]))""",
)
def median_pool1d_with_indices(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    padding_mode: str = "reflect",
    compiled: bool = False,
) -> tuple[Tensor, Tensor]:
    return _median_with_indices(
        x, 1, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled
    )


@rank_doc(
    _INDICES_DOC,
    2,
    args=_ARGS_DOC.format(kernel=_KERNEL[2]),
    flat=_FLAT[2],
    example="""        >>> x = torch.tensor([[[[1.0, 9.0, 2.0], [8.0, 3.0, 7.0], [4.0, 6.0, 5.0]]]])
        >>> median_pool2d_with_indices(x, 3)
        (tensor([[[[5.]]]]), tensor([[[[8]]]]))""",
)
def median_pool2d_with_indices(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    padding_mode: str = "reflect",
    compiled: bool = False,
) -> tuple[Tensor, Tensor]:
    return _median_with_indices(
        x, 2, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled
    )


@rank_doc(
    _INDICES_DOC,
    3,
    args=_ARGS_DOC.format(kernel=_KERNEL[3]),
    flat=_FLAT[3],
    example="""        >>> x = torch.arange(8.0).reshape(1, 1, 2, 2, 2)
        >>> median_pool3d_with_indices(x, 2)
        (tensor([[[[[3.]]]]]), tensor([[[[[3]]]]]))""",
)
def median_pool3d_with_indices(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    padding_mode: str = "reflect",
    compiled: bool = False,
) -> tuple[Tensor, Tensor]:
    return _median_with_indices(
        x, 3, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled
    )


# ----------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------


class _MedianPoolNd(WindowPool):
    """Stores the arguments of ``median_pool{_ndim}d``; ``forward`` calls it."""

    _repr_options = ("dilation", "ceil_mode", "padding_mode", "compiled", "return_indices")
    _ndim = 0

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        ceil_mode: bool = False,
        *,
        padding_mode: str = "reflect",
        compiled: bool = False,
        return_indices: bool = False,
    ) -> None:
        super().__init__(kernel_size, stride, padding)
        self.dilation = dilation
        self.ceil_mode = check_bool(ceil_mode, "ceil_mode")
        self.padding_mode = check_choice(padding_mode, "padding_mode", PADDING_MODES)
        self.compiled = check_bool(compiled, "compiled")
        self.return_indices = check_bool(return_indices, "return_indices")

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """Applies the median pooling function with the stored arguments."""
        return _median(
            x,
            self._ndim,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            self.padding_mode,
            self.compiled,
            self.return_indices,
        )


@rank_doc(
    _MODULE_DOC,
    1,
    args=_ARGS_DOC.format(kernel=_KERNEL[1]),
    example="""        >>> pool = MedianPool1d(3, stride=1, padding=1, dilation=2)
        >>> pool(torch.arange(6.0).reshape(1, 1, 6))  # reflect padding: 1 0 1 2 3 4 5 4
        tensor([[[1., 2., 3., 4.]]])""",
)
class MedianPool1d(_MedianPoolNd):
    _ndim = 1


@rank_doc(
    _MODULE_DOC,
    2,
    args=_ARGS_DOC.format(kernel=_KERNEL[2]),
    example="""        >>> pool = MedianPool2d(3, stride=1, padding=1)
        >>> pool(torch.zeros(2, 3, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
        >>> values, indices = MedianPool2d(2, return_indices=True)(torch.rand(1, 1, 4, 4))
        >>> torch.nn.functional.max_unpool2d(values, indices, 2).shape
        torch.Size([1, 1, 4, 4])""",
)
class MedianPool2d(_MedianPoolNd):
    _ndim = 2


@rank_doc(
    _MODULE_DOC,
    3,
    args=_ARGS_DOC.format(kernel=_KERNEL[3]),
    example="""        >>> MedianPool3d(3, padding=1, padding_mode="zeros")(torch.ones(1, 2, 3, 3, 3)).shape
        torch.Size([1, 2, 1, 1, 1])""",
)
class MedianPool3d(_MedianPoolNd):
    _ndim = 3


for _n, _cls in ((1, MedianPool1d), (2, MedianPool2d), (3, MedianPool3d)):
    register_pool(
        f"median{_n}d",
        _cls,
        family="median",
        dims=(_n,),
        description="lower median of each window (min/max selection network)",
        example_kwargs={"kernel_size": 3, "stride": 1, "padding": 1},
    )
