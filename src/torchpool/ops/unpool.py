"""Max unpooling (section 9 of the survey): put pooled values back at their recorded positions.

Pooling with indices records where each output came from ("switches"); unpooling scatters
values back to those positions and fills the rest with zeros. Indices may come from
``torch.nn.functional.max_pool*d(return_indices=True)``, or from torchpool's stochastic and
median pooling ``*_with_indices`` functions: all use the same format, a flat index into
each ``(n, c)`` plane of the unpadded input.

Overlapping windows (``kernel_size > stride``) can record the same position twice. PyTorch's
``max_unpool`` then keeps one of the values in the forward but copies the gradient to every
duplicate in the backward, so forward and backward disagree (pytorch #80204). torchpool
combines duplicates with one rule used by both passes, chosen by ``reduce``:

* ``"mean"`` (default): a position receiving several values gets their mean. Straight after
  pooling the duplicates are equal (they are the same input cell), so this reproduces the
  pooled value exactly (``sum / count`` of equal values can be 1 ulp off, so where all the
  values at a position are equal that value itself is returned); the operation is linear, so
  its gradient (``1/count`` to each duplicate) is exact and ``gradcheck`` passes.
* ``"sum"``: duplicates are added; also linear and exact.

Non-overlapping windows (``kernel_size <= stride`` in every dimension, as SegNet's 2x2 stride-2
pooling) cannot record a position twice: their indices are unique, so both reductions are a
plain scatter, as fast as PyTorch's ``max_unpool`` (forward and backward) and with its result.
Indices given with such a window must be those of such a pooling (each in its own window);
indices with duplicates need the overlapping window they came from.

The input and ``indices`` must be on one device; ``meta`` and fake tensors give the output's
shape (the range of the indices is checked only where values can be read).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from torch import Tensor
from torch._subclasses.fake_tensor import FakeTensor

from .._checks import Window, check_choice, check_input, check_window, is_exporting, is_traced, restore_batch
from .._shape import IntOrTuple, _is_int
from ._base import WindowPool
from ._doc import rank_doc

__all__ = ["MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d", "max_unpool1d", "max_unpool2d", "max_unpool3d"]

_REDUCTIONS = ("mean", "sum")


def _unpool_size(
    spatial_in: Sequence[int],
    window_args: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]],
    output_size: Sequence[int] | None,
    ndim: int,
    leading: Sequence[int] = (),
) -> tuple[int, ...]:
    """The output's spatial size; ``leading`` is the input's ``(N, C)`` or ``(C,)``, which sizes
    given before the spatial ones in ``output_size`` must match."""
    kernel, stride, padding = window_args
    default = tuple((i - 1) * s - 2 * p + k for i, k, s, p in zip(spatial_in, kernel, stride, padding))
    if output_size is None:
        if any(size < 1 for size in default):
            raise ValueError(f"the default output size {default} is empty; pass output_size")
        return default
    if isinstance(output_size, (str, bytes)) or not isinstance(output_size, Sequence):
        raise TypeError(f"output_size must be a sequence of ints or None, got {type(output_size).__name__}")
    sizes = tuple(output_size)
    if len(sizes) not in (ndim, ndim + 1, ndim + 2):
        raise ValueError(
            f"output_size must give the {ndim} spatial sizes (optionally preceded by N, C), got {sizes}"
        )
    if not all(_is_int(size) for size in sizes):
        raise TypeError(f"output_size must contain ints, got {output_size!r}")
    given = tuple(int(size) for size in sizes[:-ndim])
    expected = tuple(leading)[len(leading) - len(given) :] if len(given) <= len(leading) else None
    if given and given != expected:
        names = ("N", "C")[2 - len(given) :] if len(given) <= 2 else ()
        raise ValueError(
            f"output_size {tuple(sizes)} gives {', '.join(names)} = {given}, but the input has shape "
            f"{tuple(leading)} before its spatial dims: give only the {ndim} spatial sizes, "
            "or the input's own"
        )
    sizes = tuple(int(size) for size in sizes[-ndim:])
    for axis, (size, low, s) in enumerate(zip(sizes, default, stride)):
        if not low - s < size < low + s:
            raise ValueError(
                f"output_size {sizes} is not reachable from input size {tuple(spatial_in)} "
                f"in dimension {axis}: "
                f"must lie strictly between {low - s} and {low + s}"
            )
    return sizes


def _max_unpool(
    x: Tensor,
    ndim: int,
    indices: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    output_size: Sequence[int] | None,
    reduce: str,
) -> Tensor:
    window = check_window(kernel_size, stride, padding, ndim)
    check_choice(reduce, "reduce", _REDUCTIONS)
    xb, unbatched = check_input(x, ndim)
    if any(size == 0 for size in xb.shape[2:]):  # as F.max_unpool: no pooled cells, no output size
        raise ValueError(f"input must have non-zero spatial sizes, got shape {tuple(x.shape)}")
    if not isinstance(indices, Tensor):
        raise TypeError(f"indices must be a torch.Tensor, got {type(indices).__name__}")
    if indices.dtype != torch.int64:
        raise TypeError(f"indices must have dtype torch.int64, got {indices.dtype}")
    if indices.shape != x.shape:
        raise ValueError(f"indices must have the input's shape {tuple(x.shape)}, got {tuple(indices.shape)}")
    if indices.device != x.device:
        raise ValueError(f"indices must be on the input's device {x.device}, got {indices.device}")
    out_spatial = _unpool_size(
        xb.shape[2:], (window.kernel_size, window.stride, window.padding), output_size, ndim, x.shape[:-ndim]
    )
    plane = math.prod(out_spatial)
    batch, channels = xb.shape[0], xb.shape[1]
    flat_indices = indices.reshape(batch, channels, math.prod(xb.shape[2:]))  # -1 fails for N = 0
    # the index range is data-dependent (eager only); on the CPU the scatter checks it anyway, so
    # the range is computed (for the message) only when the scatter refuses
    readable = flat_indices.numel() > 0 and not _no_values(x, indices)
    if readable and x.device.type != "cpu" and (problem := _range_problem(flat_indices, plane, out_spatial)):
        raise ValueError(problem)
    values = xb.reshape(flat_indices.shape)
    try:
        out = _scatter(values, flat_indices, plane, window, reduce)
    except RuntimeError:
        if readable and (problem := _range_problem(flat_indices, plane, out_spatial)):
            raise ValueError(problem) from None
        raise
    out = out.reshape(batch, channels, *out_spatial)
    return restore_batch(out, unbatched)


def _range_problem(flat_indices: Tensor, plane: int, out_spatial: tuple[int, ...]) -> str:
    """The message for indices outside ``[0, plane)``, or ``""``."""
    low, high = (int(v) for v in torch.aminmax(flat_indices))
    if low < 0 or high >= plane:
        return (
            f"indices must lie in [0, {plane}) for output size {out_spatial}, got values in [{low}, {high}]"
        )
    return ""


def _scatter(values: Tensor, flat_indices: Tensor, plane: int, window: Window, reduce: str) -> Tensor:
    """``values`` ``(N, C, L)`` scattered into ``(N, C, plane)`` zeros, duplicates combined by ``reduce``."""
    if all(k <= s for k, s in zip(window.kernel_size, window.stride)):
        # non-overlapping windows: the indices of such a pooling are unique, and a scatter is
        # every reduction (PyTorch's max_unpool, forward and backward; in place on fresh zeros)
        return values.new_zeros(*values.shape[:2], plane).scatter_(2, flat_indices, values)
    if reduce == "sum":
        return values.new_zeros(*values.shape[:2], plane).scatter_add_(2, flat_indices, values)
    if is_exporting() or _jit_is_tracing():  # plain ops (the TorchScript exporter has no Functions)
        out, _ = _UnpoolMean.forward(values, flat_indices, plane)
    else:
        out, _ = _unpool_mean(values, flat_indices, plane)
    return out


def _jit_is_tracing() -> bool:
    """``torch.jit.is_tracing()``, typed (torch does not annotate it)."""
    return cast(bool, torch.jit.is_tracing())  # type: ignore[attr-defined, no-untyped-call]


def _unpool_mean(values: Tensor, flat_indices: Tensor, plane: int) -> tuple[Tensor, Tensor]:
    """``_UnpoolMean.apply``, typed (``Function.apply`` is not annotated)."""
    apply = cast(Callable[[Tensor, Tensor, int], tuple[Tensor, Tensor]], _UnpoolMean.apply)
    return apply(values, flat_indices, plane)


class _UnpoolMean(torch.autograd.Function):
    """Scatter with duplicates averaged; exact where a position's values are all equal.

    Straight after pooling the duplicates are equal (one input cell), but their ``sum / count``
    can be 1 ulp off: where every value scattered to a position equals the one that a plain
    scatter kept, that value is the result (exactly the mean). The backward is the mean's,
    ``grad / count`` to each duplicate (linear, so double backward works).
    """

    @staticmethod
    def forward(values: Tensor, flat_indices: Tensor, plane: int) -> tuple[Tensor, Tensor]:
        shape = (*values.shape[:2], plane)
        counts = values.new_zeros(shape).scatter_add_(2, flat_indices, torch.ones_like(values))
        mean = values.new_zeros(shape).scatter_add_(2, flat_indices, values).div_(counts.clamp_min(1))
        one = values.new_zeros(shape).scatter_(2, flat_indices, values)  # one of each position's values
        differs = values != one.gather(2, flat_indices)  # True for NaN
        # mark the positions with a differing value (the others scatter to a spare last slot)
        mixed = torch.zeros((*shape[:2], plane + 1), dtype=torch.bool, device=values.device)
        mixed.scatter_(2, torch.where(differs, flat_indices, plane), differs)
        return torch.where(mixed[..., :plane], mean, one), counts

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
        _, flat_indices, _ = inputs
        ctx.save_for_backward(flat_indices, output[1])
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor, _: Tensor | None) -> tuple[Tensor, None, None]:
        flat_indices, counts = ctx.saved_tensors
        return (grad / counts.clamp_min(1)).gather(2, flat_indices), None, None


def _no_values(*tensors: Tensor) -> bool:
    """Whether some tensor has no values to read (``meta``, fake) or a trace is running."""
    return is_traced() or any(t.device.type == "meta" or isinstance(t, FakeTensor) for t in tensors)


_UNPOOL_DOC = """Scatters pooled values back to the positions in ``indices``; zeros elsewhere.

    Duplicate indices (overlapping windows) are combined by ``reduce`` in the forward and
    the backward alike (see the module docstring); PyTorch's ``max_unpool{n}d`` keeps one
    value forward but sums gradients backward.

    Args:
        x: the pooled values, batched or batch-less.
        indices: int64 flat indices into each ``(n, c)`` plane of the output, as returned
            by ``max_pool{n}d(..., return_indices=True)`` or torchpool's ``*_with_indices``.
        kernel_size: the pooling window size.
        stride: the pooling stride; ``None`` means ``kernel_size``.
        padding: the pooling padding.
        output_size: the spatial size to produce (several input sizes pool to the same
            size, so the default ``(H_in - 1) * s - 2p + k`` may need overriding); may
            include the leading ``N, C``.
        reduce: ``"mean"`` or ``"sum"`` for positions receiving several values.

    Returns:
        The unpooled tensor.

    Shape:
        - Input: ``(N, C, *S_in)`` or ``(C, *S_in)``; ``indices`` the same.
        - Output: ``(N, C, *S_out)`` or ``(C, *S_out)``.

    Example:
        >>> x = torch.arange({numel}.0).reshape(1, 1, {sizes})
        >>> y, idx = torch.nn.functional.max_pool{n}d(x, 2, return_indices=True)
        >>> torch.equal(max_unpool{n}d(y, idx, 2).flatten(2).gather(2, idx.flatten(2)), y.flatten(2))
        True
    """


@rank_doc(_UNPOOL_DOC, 1, numel=4, sizes="4")
def max_unpool1d(
    x: Tensor,
    indices: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    output_size: Sequence[int] | None = None,
    *,
    reduce: str = "mean",
) -> Tensor:
    return _max_unpool(x, 1, indices, kernel_size, stride, padding, output_size, reduce)


@rank_doc(_UNPOOL_DOC, 2, numel=16, sizes="4, 4")
def max_unpool2d(
    x: Tensor,
    indices: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    output_size: Sequence[int] | None = None,
    *,
    reduce: str = "mean",
) -> Tensor:
    return _max_unpool(x, 2, indices, kernel_size, stride, padding, output_size, reduce)


@rank_doc(_UNPOOL_DOC, 3, numel=64, sizes="4, 4, 4")
def max_unpool3d(
    x: Tensor,
    indices: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    output_size: Sequence[int] | None = None,
    *,
    reduce: str = "mean",
) -> Tensor:
    return _max_unpool(x, 3, indices, kernel_size, stride, padding, output_size, reduce)


class _MaxUnpoolNd(WindowPool):
    """Stores the arguments of :func:`max_unpool2d`; ``forward`` runs it for rank ``_ndim``."""

    _ndim: int
    _repr_options = ("reduce",)

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        *,
        reduce: str = "mean",
    ) -> None:
        super().__init__(kernel_size, stride, padding)
        self.reduce = check_choice(reduce, "reduce", _REDUCTIONS)

    def forward(self, x: Tensor, indices: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        return _max_unpool(
            x, self._ndim, indices, self.kernel_size, self.stride, self.padding, output_size, self.reduce
        )


_MODULE_DOC = """Module form of :func:`max_unpool{n}d`; ``forward(x, indices, output_size=None)``.

    Shape:
        - Input: ``(N, C, *S_in)`` or ``(C, *S_in)``; ``indices`` the same.
        - Output: ``(N, C, *S_out)`` or ``(C, *S_out)``.

    Example:
        >>> pool = torch.nn.MaxPool{n}d(2, return_indices=True)
        >>> y, idx = pool(torch.randn(1, 3, {sizes}))
        >>> MaxUnpool{n}d(2)(y, idx).shape
        torch.Size([1, 3, {sizes}])
    """


@rank_doc(_MODULE_DOC, 1, sizes="4")
class MaxUnpool1d(_MaxUnpoolNd):
    _ndim = 1


@rank_doc(_MODULE_DOC, 2, sizes="4, 4")
class MaxUnpool2d(_MaxUnpoolNd):
    _ndim = 2


@rank_doc(_MODULE_DOC, 3, sizes="4, 4, 4")
class MaxUnpool3d(_MaxUnpoolNd):
    _ndim = 3
