"""Stochastic pooling, part 4: the public functions and Modules, and their registration.

One rank-generic private function, :func:`_stochastic` (validation, then the eager, chunked paths
of :mod:`._sampling` and :mod:`._eval`, or their traceable forms); short explicit
``stochastic_pool{1,2,3}d`` functions and ``StochasticPool{1,2,3}d`` classes over it, their
docstrings filled per rank from one template each by :func:`~torchpool.ops._doc.rank_doc`.
"""

from __future__ import annotations

from typing import Literal, overload

import torch
from torch import Tensor

from ..._checks import check_bool, check_generator, check_input, check_window, restore_batch
from ..._shape import IntOrTuple, pool_output_size
from ...registry import register_pool
from .._base import WindowPool
from .._doc import rank_doc
from .._windows import channels_last_format
from ._chunks import _check_values, _symbolic
from ._eval import _eval, _eval_traceable
from ._sampling import _draw, _draw_traceable, _draw_with_grad

__all__ = [
    "StochasticPool1d",
    "StochasticPool2d",
    "StochasticPool3d",
    "stochastic_pool1d",
    "stochastic_pool1d_with_indices",
    "stochastic_pool2d",
    "stochastic_pool2d_with_indices",
    "stochastic_pool3d",
    "stochastic_pool3d_with_indices",
]


# --------------------------------------------------------------------------- entry point


def _stochastic(
    x: Tensor,
    ndim: int,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    dilation: IntOrTuple,
    ceil_mode: bool,
    training: bool,
    generator: torch.Generator | None,
    return_indices: bool,
) -> Tensor | tuple[Tensor, Tensor]:
    """Stochastic pooling of spatial rank ``ndim``: validation, then the eager path (chunked, with
    the custom autograd Functions) or, where there are no values to read, the traceable one."""
    win = check_window(kernel_size, stride, padding, ndim, dilation)
    check_bool(ceil_mode, "ceil_mode")
    x4, unbatched = check_input(x, ndim, "input", window=win, ceil_mode=ceil_mode)
    check_bool(training, "training")
    check_bool(return_indices, "return_indices")
    gen = check_generator(generator, x4)
    if return_indices and not training:
        raise ValueError(
            "return_indices=True is only defined in training mode: the evaluation output "
            "sum(a^2)/sum(a) is a weighted average, not one cell"
        )
    _check_values(x4)
    out = tuple(pool_output_size(tuple(x4.shape[2:]), *win, ceil_mode))
    fmt = channels_last_format(x4)
    index: Tensor | None
    if x4.numel() == 0:
        # N = 0 or C = 0: the empty result, as PyTorch's pools give (connected to x for autograd)
        y = x4.flatten(2)[:, :, :1].reshape(*x4.shape[:2], *[1] * ndim).expand(*x4.shape[:2], *out)
        index = torch.zeros(y.shape, dtype=torch.int64, device=x4.device) if return_indices else None
    elif not training:
        if _symbolic(x4) or any(d > 1 for d in win.dilation):
            y = _eval_traceable(x4, win, ndim, ceil_mode, out)
        else:
            y = _eval(x4, win, ndim, ceil_mode, out, fmt)
        index = None
    elif _symbolic(x4):
        y, index = _draw_traceable(x4, win, out, gen)
        index = index if return_indices else None
    elif torch.is_grad_enabled() and x4.requires_grad:
        y, index = _draw_with_grad(x4, win, out, gen, return_indices)
    else:
        y, _, _, index = _draw(x4, win, out, gen, False, return_indices)
    y = y.contiguous(memory_format=fmt)
    if index is not None:
        return restore_batch(y, unbatched), restore_batch(index.contiguous(memory_format=fmt), unbatched)
    return restore_batch(y, unbatched)


# --------------------------------------------------------------------------- docstring templates

_ARGS_DOC = """kernel_size: window size, an int or {n} ints.
        stride: step between windows; ``None`` means ``kernel_size``. ``stride < kernel_size``
            (overlapping windows) is supported; each window draws independently.
        padding: implicit zero padding on both sides, at most half the window. Padding cells
            have value 0 and are never drawn.
        dilation: spacing between the window's cells, an int or {n} ints, as in max pooling.
        ceil_mode: round the output size up (PyTorch's max-pooling rule); cells beyond the
            padding count as padding."""

_FUNCTION_DOC = """{n}d stochastic pooling; see the module docstring for the sampler.

    Args:
        x: non-negative input of shape ``{shape}`` or ``(C, {dims})``, floating point.
            float16/bfloat16 are summed in float32; the output keeps the input dtype.
        {args}
        training: draw one cell per window (``True``) or return the probabilistic weighting
            ``sum a^2 / sum a`` (``False``).
        generator: optional ``torch.Generator`` for the draws (one uniform per window, in
            output order); ignored when ``training=False``.
        return_indices: also return the flat index of each drawn cell into the unpadded
            spatial volume of its ``(n, c)`` plane, in the format of
            ``F.max_pool{n}d(..., return_indices=True)`` (accepted by ``F.max_unpool{n}d``).
            Only in training mode.

    Returns:
        The pooled tensor, or ``(values, indices)`` with int64 ``indices`` when
        ``return_indices=True``.

    Shape:
        - Input: ``{shape}`` or ``(C, {dims})``.
        - Output: ``{out_shape}`` or ``(C, {out_dims})``, where
          ``out = floor((in + 2 * padding - dilation * (kernel_size - 1) - 1) / stride) + 1``
          (rounded up in ceil mode), the output size of ``F.max_pool{n}d``.

    Raises:
        ValueError: for negative, NaN or infinite input, bad window arguments, a window
            larger than the padded input, or ``return_indices=True`` with ``training=False``.
        TypeError: for a non-tensor or non-floating input, non-int window arguments, or a
            generator that is not a ``torch.Generator``.

    Example:
{example}
    """

_INDICES_DOC = """Training-mode :func:`stochastic_pool{n}d` returning ``(values, indices)``.{note}

    Args:
        x: non-negative input of shape ``{shape}`` or ``(C, {dims})``, floating point.
        {args}
        generator: optional ``torch.Generator`` for the draws (one uniform per window).

    Returns:
        ``(values, indices)``: the drawn values and their int64 flat indices into the unpadded
        spatial volume of each ``(n, c)`` plane.

    Shape:
        - Input: ``{shape}`` or ``(C, {dims})``.
        - Output: two tensors of shape ``{out_shape}`` or ``(C, {out_dims})``.

    Example:
{example}
    """

_MODULE_DOC = """{n}d stochastic pooling: draws a cell per window in training mode (``module.train()``),
    returns ``sum a^2 / sum a`` per window in eval mode. See :func:`stochastic_pool{n}d`.

    Args:
        kernel_size: window size{ints}.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: implicit zero padding on both sides.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: round the output size up, as ``nn.MaxPool{n}d(..., ceil_mode=True)``.
        return_indices: also return the drawn cells' indices (training mode only; raises
            ``ValueError`` in eval mode).

    Shape:
        - Input: ``{shape}`` or ``(C, {dims})``, non-negative.
        - Output: ``{out_shape}`` or ``(C, {out_dims})``.

    Example:
{example}
    """

_ARGS = {n: _ARGS_DOC.format(n=n) for n in (1, 2, 3)}


# --------------------------------------------------------------------------- functions


@overload
def stochastic_pool1d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    training: bool = ...,
    generator: torch.Generator | None = ...,
    return_indices: Literal[False] = ...,
) -> Tensor: ...
@overload
def stochastic_pool1d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    training: bool = ...,
    generator: torch.Generator | None = ...,
    return_indices: Literal[True],
) -> tuple[Tensor, Tensor]: ...
@overload
def stochastic_pool1d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    training: bool = ...,
    generator: torch.Generator | None = ...,
    return_indices: bool,
) -> Tensor | tuple[Tensor, Tensor]: ...
@rank_doc(
    _FUNCTION_DOC,
    1,
    args=_ARGS[1],
    example="""        >>> x = torch.tensor([[[1.0, 3.0, 0.0, 0.0]]])
        >>> stochastic_pool1d(x, 2, training=False)
        tensor([[[2.5000, 0.0000]]])
        >>> y = stochastic_pool1d(x, 2, generator=torch.Generator().manual_seed(0))
        >>> y[0, 0, 0].item() in (1.0, 3.0), y[0, 0, 1].item()
        (True, 0.0)""",
)
def stochastic_pool1d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    training: bool = True,
    generator: torch.Generator | None = None,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    return _stochastic(
        x, 1, kernel_size, stride, padding, dilation, ceil_mode, training, generator, return_indices
    )


@overload
def stochastic_pool2d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    training: bool = ...,
    generator: torch.Generator | None = ...,
    return_indices: Literal[False] = ...,
) -> Tensor: ...
@overload
def stochastic_pool2d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    training: bool = ...,
    generator: torch.Generator | None = ...,
    return_indices: Literal[True],
) -> tuple[Tensor, Tensor]: ...
@overload
def stochastic_pool2d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    training: bool = ...,
    generator: torch.Generator | None = ...,
    return_indices: bool,
) -> Tensor | tuple[Tensor, Tensor]: ...
@rank_doc(
    _FUNCTION_DOC,
    2,
    args=_ARGS[2],
    example="""        >>> x = torch.tensor([[[[1.0, 3.0], [0.0, 0.0]]]])
        >>> stochastic_pool2d(x, 2, training=False)
        tensor([[[[2.5000]]]])
        >>> y, idx = stochastic_pool2d(x, 2, generator=torch.Generator().manual_seed(0), return_indices=True)
        >>> y.shape, idx.item() in (0, 1), y.item() == x.flatten()[idx].item()
        (torch.Size([1, 1, 1, 1]), True, True)""",
)
def stochastic_pool2d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    training: bool = True,
    generator: torch.Generator | None = None,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    return _stochastic(
        x, 2, kernel_size, stride, padding, dilation, ceil_mode, training, generator, return_indices
    )


@overload
def stochastic_pool3d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    training: bool = ...,
    generator: torch.Generator | None = ...,
    return_indices: Literal[False] = ...,
) -> Tensor: ...
@overload
def stochastic_pool3d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    training: bool = ...,
    generator: torch.Generator | None = ...,
    return_indices: Literal[True],
) -> tuple[Tensor, Tensor]: ...
@overload
def stochastic_pool3d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    training: bool = ...,
    generator: torch.Generator | None = ...,
    return_indices: bool,
) -> Tensor | tuple[Tensor, Tensor]: ...
@rank_doc(
    _FUNCTION_DOC,
    3,
    args=_ARGS[3],
    example="""        >>> x = torch.ones(2, 4, 4, 4)
        >>> stochastic_pool3d(x, 2).shape
        torch.Size([2, 2, 2, 2])
        >>> stochastic_pool3d(x, 2, training=False).unique()
        tensor([1.])""",
)
def stochastic_pool3d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    training: bool = True,
    generator: torch.Generator | None = None,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    return _stochastic(
        x, 3, kernel_size, stride, padding, dilation, ceil_mode, training, generator, return_indices
    )


@rank_doc(
    _INDICES_DOC,
    1,
    args=_ARGS[1],
    note="""""",
    example="""        >>> x = torch.tensor([[0.0, 2.0, 5.0, 0.0]])
        >>> stochastic_pool1d_with_indices(x, 2)
        (tensor([[2., 5.]]), tensor([[1, 2]]))""",
)
def stochastic_pool1d_with_indices(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    return stochastic_pool1d(
        x, kernel_size, stride, padding, dilation, ceil_mode, generator=generator, return_indices=True
    )


@rank_doc(
    _INDICES_DOC,
    2,
    args=_ARGS[2],
    note="""

    The indices are in ``F.max_pool2d(..., return_indices=True)`` format (``h * W + w``), so
    ``F.max_unpool2d`` accepts them.""",
    example="""        >>> x = torch.tensor([[[0.0, 2.0], [0.0, 0.0]]])
        >>> stochastic_pool2d_with_indices(x, 2)
        (tensor([[[2.]]]), tensor([[[1]]]))""",
)
def stochastic_pool2d_with_indices(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    return stochastic_pool2d(
        x, kernel_size, stride, padding, dilation, ceil_mode, generator=generator, return_indices=True
    )


@rank_doc(
    _INDICES_DOC,
    3,
    args=_ARGS[3],
    note="""""",
    example="""        >>> x = torch.zeros(1, 2, 2, 2)
        >>> x[0, 1, 0, 1] = 4.0
        >>> stochastic_pool3d_with_indices(x, 2)
        (tensor([[[[4.]]]]), tensor([[[[5]]]]))""",
)
def stochastic_pool3d_with_indices(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    return stochastic_pool3d(
        x, kernel_size, stride, padding, dilation, ceil_mode, generator=generator, return_indices=True
    )


# --------------------------------------------------------------------------- modules


class _StochasticPoolNd(WindowPool):
    """Stores the arguments of ``stochastic_pool{_ndim}d``; ``forward`` calls it, in training mode
    while the Module is in training mode."""

    _repr_options = ("dilation", "ceil_mode", "return_indices")
    _ndim = 0

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        ceil_mode: bool = False,
        *,
        return_indices: bool = False,
    ) -> None:
        super().__init__(kernel_size, stride, padding)
        check_window(kernel_size, stride, padding, self._ndim, dilation)
        self.dilation = dilation
        self.ceil_mode = check_bool(ceil_mode, "ceil_mode")
        self.return_indices = check_bool(return_indices, "return_indices")

    def forward(
        self, x: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Pools ``x``: draws in training mode (with ``generator`` if given), weights in eval mode."""
        return _stochastic(
            x,
            self._ndim,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            self.training,
            generator,
            self.return_indices,
        )


@rank_doc(
    _MODULE_DOC,
    1,
    ints="",
    example="""        >>> pool = StochasticPool1d(2).eval()
        >>> pool(torch.tensor([[[1.0, 3.0, 2.0, 2.0]]]))
        tensor([[[2.5000, 2.0000]]])""",
)
class StochasticPool1d(_StochasticPoolNd):
    _ndim = 1


@rank_doc(
    _MODULE_DOC,
    2,
    ints=", an int or 2 ints",
    example="""        >>> pool = StochasticPool2d(3, stride=2, padding=1)
        >>> pool(torch.rand(2, 8, 16, 16), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 8, 8, 8])
        >>> StochasticPool2d(3, 2, ceil_mode=True)(torch.rand(1, 2, 54, 54)).shape  # SqueezeNet's pool
        torch.Size([1, 2, 27, 27])""",
)
class StochasticPool2d(_StochasticPoolNd):
    _ndim = 2


@rank_doc(
    _MODULE_DOC,
    3,
    ints=", an int or 3 ints",
    example="""        >>> StochasticPool3d(2)(torch.rand(1, 2, 4, 4, 4)).shape
        torch.Size([1, 2, 2, 2, 2])""",
)
class StochasticPool3d(_StochasticPoolNd):
    _ndim = 3


for _ndim, _cls in ((1, StochasticPool1d), (2, StochasticPool2d), (3, StochasticPool3d)):
    register_pool(
        f"stochastic{_ndim}d",
        _cls,
        family="stochastic",
        dims=(_ndim,),
        description="sample a cell with p = a / sum a; eval sum a^2 / sum a (Zeiler & Fergus)",
        example_kwargs={"kernel_size": 2},
    )
