"""Adaptive average and max pooling that export to ONNX and stay deterministic.

PyTorch's ``adaptive_{avg,max}_pool*d`` fail to export when an output size does not divide
the input size (TorchScript exporter: "output size that are not factor of input size",
pytorch #42653 / #64806; dynamo exporter: no ONNX function for ``adaptive_max_pool2d``), and
on CUDA their backward raises under ``torch.use_deterministic_algorithms(True)``. These
functions return exactly what PyTorch's do, and take another route in those two situations:

* every output size divides its input size: ``max_pool`` / ``avg_pool`` with
  ``kernel_size = stride = in // out`` (ONNX ``MaxPool`` / ``AveragePool``);
* otherwise, separably, one spatial axis at a time. Bin ``i`` of an axis covers
  ``[floor(i * in / out), ceil((i + 1) * in / out))``, as in PyTorch. The average is a
  product with a fixed ``(out, in)`` matrix of ``1 / bin_size`` entries (ONNX ``MatMul``),
  and the maximum a ``gather`` of each bin's cells padded to the longest bin by repeating
  its last cell, then ``amax`` (ONNX ``Gather`` + ``ReduceMax``). A box average or maximum
  is the composition of per-axis ones, so the result is the same up to rounding order.

The route is chosen while exporting (``torch.onnx.is_in_onnx_export()`` or
``torch.compiler.is_exporting()``) or in torchpool's deterministic mode for an input that
needs a gradient; otherwise PyTorch's kernels run (fastest). ``return_indices=True`` always
uses PyTorch's kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_bool, check_input, is_exporting, restore_batch
from .._compat import cpu_kernel_missing
from .._deterministic import avg_pool3d, max_pool3d, needs_deterministic_backward
from ._doc import rank_doc

__all__ = [
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
]

OutputSize = int | None | Sequence[int | None]

_NATIVE_AVG: dict[int, Callable[..., Tensor]] = {
    1: F.adaptive_avg_pool1d,
    2: F.adaptive_avg_pool2d,
    3: F.adaptive_avg_pool3d,
}
_NATIVE_MAX: dict[int, Callable[..., Tensor]] = {
    1: F.adaptive_max_pool1d,
    2: F.adaptive_max_pool2d,
    3: F.adaptive_max_pool3d,
}


def _check_output_size(output_size: object, spatial: Sequence[int]) -> tuple[int, ...]:
    """Normalises ``output_size`` (an int, or one int or ``None`` per spatial dim) to ints."""
    ndim = len(spatial)
    if isinstance(output_size, bool) or not isinstance(output_size, (int, tuple, list, torch.Size)):
        raise TypeError(
            f"output_size must be an int or a sequence of {ndim} ints (or None), "
            f"got {type(output_size).__name__}"
        )
    sizes = (output_size,) * ndim if isinstance(output_size, int) else tuple(output_size)
    if len(sizes) != ndim:
        raise ValueError(f"output_size must have {ndim} entries for {ndim}d pooling, got {output_size!r}")
    out = []
    for size, size_in in zip(sizes, spatial):
        if size is None:
            out.append(size_in)
        elif isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"output_size must contain ints or None, got {output_size!r}")
        elif size < 1:
            raise ValueError(f"output_size must be positive, got {output_size!r}")
        else:
            out.append(size)
    return tuple(out)


def _bins(size_in: int, size_out: int) -> list[tuple[int, int]]:
    return [(i * size_in // size_out, -(-(i + 1) * size_in // size_out)) for i in range(size_out)]


def _avg_axis(x: Tensor, axis: int, size_out: int) -> Tensor:
    size_in = x.shape[axis]
    rows = [
        [1.0 / (end - start) if start <= j < end else 0.0 for j in range(size_in)]
        for start, end in _bins(size_in, size_out)
    ]
    weight = torch.tensor(rows, dtype=x.dtype, device=x.device)
    last = x.dim() - 1  # non-negative: the TorchScript exporter mis-handles movedim(-1)
    return (x.movedim(axis, last) @ weight.T).movedim(last, axis)


def _max_axis(x: Tensor, axis: int, size_out: int) -> Tensor:
    bins = _bins(x.shape[axis], size_out)
    width = max(end - start for start, end in bins)
    index = torch.tensor(
        [[min(start + j, end - 1) for j in range(width)] for start, end in bins], device=x.device
    )
    # one gather per offset into the bins, stacked (a reshape of a single gather is mis-exported
    # by the TorchScript exporter)
    return torch.stack([x.index_select(axis, index[:, j]) for j in range(width)]).amax(0)


def _decomposed(x: Tensor, sizes: tuple[int, ...], mode: str) -> Tensor:
    """Adaptive pooling of the trailing ``len(sizes)`` dims without PyTorch's adaptive kernels."""
    ndim = len(sizes)
    spatial = tuple(x.shape[-ndim:])
    if all(i % o == 0 for i, o in zip(spatial, sizes)):
        kernel = tuple(i // o for i, o in zip(spatial, sizes))
        if mode == "max":
            if ndim == 3:  # separable in deterministic mode (PyTorch's CUDA max_pool3d backward raises)
                return max_pool3d(x, kernel, kernel, (0, 0, 0))
            return (F.max_pool1d, F.max_pool2d)[ndim - 1](x, kernel, kernel)
        if ndim == 3:
            batched = x if x.dim() == 5 else x.unsqueeze(0)
            y = avg_pool3d(batched, kernel, kernel, (0, 0, 0))
            return y if x.dim() == 5 else y.squeeze(0)
        return (F.avg_pool1d, F.avg_pool2d)[ndim - 1](x, kernel, kernel)
    reduce_axis = _max_axis if mode == "max" else _avg_axis
    for axis, (size_in, size_out) in enumerate(zip(spatial, sizes), start=x.dim() - ndim):
        if size_in != size_out:
            x = reduce_axis(x, axis, size_out)
    return x


def _adaptive_pool(x: Tensor, ndim: int, output_size: OutputSize, mode: str) -> Tensor:
    """Adaptive ``mode`` (``"avg"`` or ``"max"``) pooling of the ``ndim`` trailing dims, validated."""
    xb, _ = check_input(x, ndim)
    if any(size == 0 for size in xb.shape[2:]):
        raise ValueError(f"input must have non-zero spatial sizes, got shape {tuple(x.shape)}")
    sizes = _check_output_size(output_size, xb.shape[2:])
    if xb.shape[1] == 0:  # no channels: the empty result (PyTorch's adaptive max pools refuse C = 0)
        return x.reshape(*x.shape[:-ndim], *sizes)
    if mode == "avg" and x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16):
        # PyTorch's CPU adaptive_avg_pool3d sums in the input dtype (float16 overflows)
        return _adaptive_pool(x.float(), ndim, sizes, mode).to(x.dtype)
    if mode == "max" and ndim == 3 and cpu_kernel_missing("adaptive_max_pool3d", x):
        return _adaptive_pool(x.float(), ndim, sizes, mode).to(x.dtype)  # exact: a selection
    if is_exporting() or needs_deterministic_backward(x):
        return _decomposed(x, sizes, mode)
    return (_NATIVE_MAX if mode == "max" else _NATIVE_AVG)[ndim](x, sizes)


def _adaptive_max(
    x: Tensor, ndim: int, output_size: OutputSize, return_indices: bool
) -> Tensor | tuple[Tensor, Tensor]:
    if check_bool(return_indices, "return_indices"):
        xb, unbatched = check_input(x, ndim)
        sizes = _check_output_size(output_size, xb.shape[2:])
        if xb.shape[1] == 0:  # no channels: the empty result (PyTorch's kernel refuses C = 0)
            y = xb.reshape(*xb.shape[:2], *sizes)
            idx = torch.zeros(y.shape, dtype=torch.int64, device=y.device)
        elif ndim == 3 and cpu_kernel_missing("adaptive_max_pool3d", xb):
            y, idx = _NATIVE_MAX[ndim](xb.float(), sizes, True)  # exact: a selection
            y = y.to(xb.dtype)
        else:
            y, idx = _NATIVE_MAX[ndim](xb, sizes, True)
        return restore_batch(y, unbatched), restore_batch(idx, unbatched)
    return _adaptive_pool(x, ndim, output_size, "max")


_AVG_DOC = """Mean over adaptive bins, as ``F.adaptive_avg_pool{n}d``.

    Exports to ONNX for any output size and avoids PyTorch's non-deterministic backward in
    deterministic mode (module docstring).

    Args:
        x: input, batched or batch-less.
        output_size: bins per spatial dim: an int, or {n} ints where ``None`` keeps that size.

    Returns:
        The pooled tensor.

    Shape:
        - Input: ``(N, C, *S_in)`` or ``(C, *S_in)`` with {n} spatial dims.
        - Output: ``(N, C, *output_size)`` or ``(C, *output_size)``.

    Example:
        >>> x = torch.randn(1, 2, {sizes})
        >>> torch.allclose(adaptive_avg_pool{n}d(x, 3), F.adaptive_avg_pool{n}d(x, 3))
        True
    """

_MAX_DOC = """Maximum over adaptive bins, as ``F.adaptive_max_pool{n}d``.

    Exports to ONNX for any output size and avoids PyTorch's non-deterministic backward in
    deterministic mode (module docstring); ``return_indices=True`` runs PyTorch's kernel.

    Args:
        x: input, batched or batch-less.
        output_size: bins per spatial dim: an int, or {n} ints where ``None`` keeps that size.
        return_indices: also return the flat index of each maximum in its ``(n, c)`` plane.

    Returns:
        The pooled tensor, or ``(values, indices)``.

    Shape:
        - Input: ``(N, C, *S_in)`` or ``(C, *S_in)`` with {n} spatial dims.
        - Output: ``(N, C, *output_size)`` or ``(C, *output_size)``.

    Example:
        >>> x = torch.randn(1, 2, {sizes})
        >>> torch.equal(adaptive_max_pool{n}d(x, 3), F.adaptive_max_pool{n}d(x, 3))
        True
    """


@rank_doc(_AVG_DOC, 1, sizes="5")
def adaptive_avg_pool1d(x: Tensor, output_size: OutputSize) -> Tensor:
    return _adaptive_pool(x, 1, output_size, "avg")


@rank_doc(_AVG_DOC, 2, sizes="5, 5")
def adaptive_avg_pool2d(x: Tensor, output_size: OutputSize) -> Tensor:
    return _adaptive_pool(x, 2, output_size, "avg")


@rank_doc(_AVG_DOC, 3, sizes="5, 5, 5")
def adaptive_avg_pool3d(x: Tensor, output_size: OutputSize) -> Tensor:
    return _adaptive_pool(x, 3, output_size, "avg")


@overload
def adaptive_max_pool1d(
    x: Tensor, output_size: OutputSize, return_indices: Literal[False] = ...
) -> Tensor: ...
@overload
def adaptive_max_pool1d(
    x: Tensor, output_size: OutputSize, return_indices: Literal[True]
) -> tuple[Tensor, Tensor]: ...
@overload
def adaptive_max_pool1d(
    x: Tensor, output_size: OutputSize, return_indices: bool = ...
) -> Tensor | tuple[Tensor, Tensor]: ...
@rank_doc(_MAX_DOC, 1, sizes="5")
def adaptive_max_pool1d(
    x: Tensor, output_size: OutputSize, return_indices: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    return _adaptive_max(x, 1, output_size, return_indices)


@overload
def adaptive_max_pool2d(
    x: Tensor, output_size: OutputSize, return_indices: Literal[False] = ...
) -> Tensor: ...
@overload
def adaptive_max_pool2d(
    x: Tensor, output_size: OutputSize, return_indices: Literal[True]
) -> tuple[Tensor, Tensor]: ...
@overload
def adaptive_max_pool2d(
    x: Tensor, output_size: OutputSize, return_indices: bool = ...
) -> Tensor | tuple[Tensor, Tensor]: ...
@rank_doc(_MAX_DOC, 2, sizes="5, 5")
def adaptive_max_pool2d(
    x: Tensor, output_size: OutputSize, return_indices: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    return _adaptive_max(x, 2, output_size, return_indices)


@overload
def adaptive_max_pool3d(
    x: Tensor, output_size: OutputSize, return_indices: Literal[False] = ...
) -> Tensor: ...
@overload
def adaptive_max_pool3d(
    x: Tensor, output_size: OutputSize, return_indices: Literal[True]
) -> tuple[Tensor, Tensor]: ...
@overload
def adaptive_max_pool3d(
    x: Tensor, output_size: OutputSize, return_indices: bool = ...
) -> Tensor | tuple[Tensor, Tensor]: ...
@rank_doc(_MAX_DOC, 3, sizes="5, 5, 5")
def adaptive_max_pool3d(
    x: Tensor, output_size: OutputSize, return_indices: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    return _adaptive_max(x, 3, output_size, return_indices)


class AdaptiveAvgPool1d(nn.AdaptiveAvgPool1d):
    """``torch.nn.AdaptiveAvgPool1d`` running :func:`adaptive_avg_pool1d` (exports for any size).

    Shape:
        - Input: ``(N, C, L_in)`` or ``(C, L_in)``.
        - Output: ``(N, C, output_size)`` or ``(C, output_size)``.

    Example:
        >>> AdaptiveAvgPool1d(3)(torch.randn(2, 4, 7)).shape
        torch.Size([2, 4, 3])
    """

    def forward(self, input: Tensor) -> Tensor:
        return adaptive_avg_pool1d(input, self.output_size)


class AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """``torch.nn.AdaptiveAvgPool2d`` running :func:`adaptive_avg_pool2d` (exports for any size).

    Shape:
        - Input: ``(N, C, H_in, W_in)`` or ``(C, H_in, W_in)``.
        - Output: ``(N, C, *output_size)`` or ``(C, *output_size)``.

    Example:
        >>> AdaptiveAvgPool2d(3)(torch.randn(2, 4, 7, 7)).shape
        torch.Size([2, 4, 3, 3])
    """

    def forward(self, input: Tensor) -> Tensor:
        return adaptive_avg_pool2d(input, self.output_size)


class AdaptiveAvgPool3d(nn.AdaptiveAvgPool3d):
    """``torch.nn.AdaptiveAvgPool3d`` running :func:`adaptive_avg_pool3d` (exports for any size).

    Shape:
        - Input: ``(N, C, D_in, H_in, W_in)`` or ``(C, D_in, H_in, W_in)``.
        - Output: ``(N, C, *output_size)`` or ``(C, *output_size)``.

    Example:
        >>> AdaptiveAvgPool3d(2)(torch.randn(2, 4, 5, 5, 5)).shape
        torch.Size([2, 4, 2, 2, 2])
    """

    def forward(self, input: Tensor) -> Tensor:
        return adaptive_avg_pool3d(input, self.output_size)


class AdaptiveMaxPool1d(nn.AdaptiveMaxPool1d):
    """``torch.nn.AdaptiveMaxPool1d`` running :func:`adaptive_max_pool1d` (exports for any size).

    Shape:
        - Input: ``(N, C, L_in)`` or ``(C, L_in)``.
        - Output: ``(N, C, output_size)`` or ``(C, output_size)``.

    Example:
        >>> AdaptiveMaxPool1d(3)(torch.randn(2, 4, 7)).shape
        torch.Size([2, 4, 3])
    """

    def forward(self, input: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        return adaptive_max_pool1d(input, self.output_size, self.return_indices)


class AdaptiveMaxPool2d(nn.AdaptiveMaxPool2d):
    """``torch.nn.AdaptiveMaxPool2d`` running :func:`adaptive_max_pool2d` (exports for any size).

    Shape:
        - Input: ``(N, C, H_in, W_in)`` or ``(C, H_in, W_in)``.
        - Output: ``(N, C, *output_size)`` or ``(C, *output_size)``.

    Example:
        >>> AdaptiveMaxPool2d(3)(torch.randn(2, 4, 7, 7)).shape
        torch.Size([2, 4, 3, 3])
    """

    def forward(self, input: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        return adaptive_max_pool2d(input, self.output_size, self.return_indices)


class AdaptiveMaxPool3d(nn.AdaptiveMaxPool3d):
    """``torch.nn.AdaptiveMaxPool3d`` running :func:`adaptive_max_pool3d` (exports for any size).

    Shape:
        - Input: ``(N, C, D_in, H_in, W_in)`` or ``(C, D_in, H_in, W_in)``.
        - Output: ``(N, C, *output_size)`` or ``(C, *output_size)``.

    Example:
        >>> AdaptiveMaxPool3d(2)(torch.randn(2, 4, 5, 5, 5)).shape
        torch.Size([2, 4, 2, 2, 2])
    """

    def forward(self, input: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        return adaptive_max_pool3d(input, self.output_size, self.return_indices)
