"""Output-size formulas and tuple helpers.

The survey gives the simple formula ``o = floor((i - k) / s) + 1``. PyTorch's full rule
(``aten/src/ATen/native/Pool.h``, ``pooling_output_shape_pad_lr``) adds padding,
dilation and ceil mode; :func:`pool_output_size` implements it exactly, and reduces to
the survey's formula when ``padding=0``, ``dilation=1`` and ``ceil_mode=False``.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import overload

__all__ = ["IntOrTuple", "is_int", "ntuple", "pool_output_size"]

IntOrTuple = int | Sequence[int]
"""An int, or one int per spatial dimension (``kernel_size=3`` or ``(3, 2)``)."""


def ntuple(value: IntOrTuple, n: int, name: str) -> tuple[int, ...]:
    """Expands an int to an ``n``-tuple, or checks that a sequence has length ``n``.

    Args:
        value: an int, or a sequence of ``n`` ints.
        n: the number of spatial dimensions.
        name: the argument's name, used in error messages.

    Returns:
        A tuple of ``n`` Python ints.

    Raises:
        TypeError: if ``value`` or one of its items is not an int (``bool`` is refused).
        ValueError: if a sequence has the wrong length.

    Example:
        >>> ntuple(3, 2, "kernel_size")
        (3, 3)
        >>> ntuple((2, 3), 2, "stride")
        (2, 3)
    """
    if is_int(value):
        return (int(value),) * n  # type: ignore[arg-type]
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = tuple(value)
        if len(items) != n:
            raise ValueError(
                f"{name} must be an int or a sequence of {n} ints, got {len(items)} values: {value!r}"
            )
        for item in items:
            if not is_int(item):
                raise TypeError(f"{name} must contain ints, got {type(item).__name__}: {value!r}")
        return tuple(int(item) for item in items)
    raise TypeError(f"{name} must be an int or a sequence of {n} ints, got {type(value).__name__}")


def is_int(value: object) -> bool:
    """Python ints, numpy integers, SymInts and 0-d integer tensors (anything with ``__index__``),
    but not ``bool``."""
    if isinstance(value, (bool, tuple, list, str, float)):
        # checked first: torch.compile before 2.12 could not trace the TypeError path below
        return False
    try:
        operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return False
    return True


_is_int = is_int  # the former private name, imported by ops/unpool.py


def _one_output_size(
    size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool, axis: int
) -> int:
    # PyTorch's max pooling bounds padding by half the kernel, ignoring dilation
    if padding > kernel // 2:
        raise ValueError(
            f"padding must be at most half of kernel_size ({kernel} // 2 = {kernel // 2}) in dimension "
            f"{axis}, got {padding}"
        )
    effective = dilation * (kernel - 1) + 1
    numerator = size + 2 * padding - effective + (stride - 1 if ceil_mode else 0)
    out = numerator // stride + 1  # floor division rounds towards -inf like div_rtn
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    if out < 1:
        raise ValueError(
            f"the window (kernel_size={kernel}, dilation={dilation}) is larger than the padded "
            f"input ({size} + 2 * {padding}) in dimension {axis}: output size would be {out}"
        )
    return out


@overload
def pool_output_size(
    size: int,
    kernel_size: int,
    stride: int | None = ...,
    padding: int = ...,
    dilation: int = ...,
    ceil_mode: bool = ...,
) -> int: ...


@overload
def pool_output_size(
    size: Sequence[int],
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
) -> tuple[int, ...]: ...


def pool_output_size(
    size: IntOrTuple,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
) -> int | tuple[int, ...]:
    """Output size of a pooling window sliding over an input, exactly as PyTorch computes it.

    ``o = floor((i + 2p - d*(k-1) - 1 + (ceil ? s-1 : 0)) / s) + 1``, and in ceil mode the
    last window must start inside the input or the left padding, otherwise ``o -= 1``.
    With ``p=0, d=1`` and floor mode this is the survey's ``o = floor((i - k) / s) + 1``.

    Args:
        size: input size, an int or one int per spatial dimension.
        kernel_size: window size.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: implicit padding on both sides, at most ``kernel_size // 2`` (PyTorch's bound).
        dilation: spacing between window cells.
        ceil_mode: round the division up instead of down.

    Returns:
        An int when ``size`` is an int, else a tuple with one size per dimension.

    Raises:
        TypeError: if an argument is not an int or a sequence of ints.
        ValueError: if a size is negative, kernel, stride or dilation is not positive, the
            padding exceeds half the window, or the window does not fit the padded input.

    Example:
        >>> pool_output_size(5, 2, 2)
        2
        >>> pool_output_size(5, 2, 2, ceil_mode=True)
        3
        >>> pool_output_size((224, 224), 3, 2, padding=1)
        (112, 112)
    """
    scalar = is_int(size)
    if not scalar and (isinstance(size, (str, bytes)) or not isinstance(size, Sequence)):
        raise TypeError(f"size must be an int or a sequence of ints, got {type(size).__name__}: {size!r}")
    sizes = ntuple(size, 1 if scalar else len(size), "size")  # type: ignore[arg-type]
    n = len(sizes)
    if n == 0:
        raise ValueError("size must have at least one dimension")
    kernels = ntuple(kernel_size, n, "kernel_size")
    strides = kernels if stride is None else ntuple(stride, n, "stride")
    paddings = ntuple(padding, n, "padding")
    dilations = ntuple(dilation, n, "dilation")
    if not isinstance(ceil_mode, bool):
        raise TypeError(f"ceil_mode must be a bool, got {type(ceil_mode).__name__}")
    for name, values, minimum in (
        ("size", sizes, 0),
        ("kernel_size", kernels, 1),
        ("stride", strides, 1),
        ("padding", paddings, 0),
        ("dilation", dilations, 1),
    ):
        if any(v < minimum for v in values):
            bound = "positive" if minimum == 1 else "non-negative"
            raise ValueError(f"{name} must be {bound}, got {values if n > 1 else values[0]}")
    out = tuple(
        _one_output_size(i, k, s, p, d, ceil_mode, axis)
        for axis, (i, k, s, p, d) in enumerate(zip(sizes, kernels, strides, paddings, dilations))
    )
    return out[0] if scalar else out
