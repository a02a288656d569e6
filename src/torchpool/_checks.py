"""Argument and input validation. Every failure is a ValueError or TypeError naming the parameter."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import torch
from torch import Tensor

from ._shape import IntOrTuple, ntuple, pool_output_size

__all__ = [
    "Window",
    "check_bool",
    "check_choice",
    "check_float_range",
    "check_generator",
    "check_input",
    "check_torch_pool_args",
    "check_window",
    "is_exporting",
    "is_jit_tracing",
    "is_traced",
    "restore_batch",
]


class Window(NamedTuple):
    """A validated pooling window: one int per spatial dimension in each field."""

    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]


def check_window(
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    n: int,
    dilation: IntOrTuple = 1,
) -> Window:
    """Normalises window arguments to ``n``-tuples and checks them.

    ``stride=None`` (or an empty sequence, as PyTorch allows) means ``kernel_size``.
    Padding must be at most ``kernel_size // 2``, as PyTorch's max pooling requires.
    """
    k = ntuple(kernel_size, n, "kernel_size")
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        s = k
    else:
        s = ntuple(stride, n, "stride")
    p = ntuple(padding, n, "padding")
    d = ntuple(dilation, n, "dilation")
    for name, values, minimum in (
        ("kernel_size", k, 1),
        ("stride", s, 1),
        ("padding", p, 0),
        ("dilation", d, 1),
    ):
        if any(v < minimum for v in values):
            bound = "positive" if minimum == 1 else "non-negative"
            raise ValueError(f"{name} must be {bound}, got {values}")
    for axis, (kk, pp) in enumerate(zip(k, p)):
        if pp > kk // 2:
            raise ValueError(
                f"padding must be at most half of kernel_size in dimension {axis} "
                f"(kernel_size={kk}: at most {kk // 2}), got {pp}"
            )
    return Window(k, s, p, d)


def check_input(
    x: object,
    n: int,
    name: str = "input",
    *,
    floating: bool = True,
    window: Window | None = None,
    ceil_mode: bool = False,
) -> tuple[Tensor, bool]:
    """Checks an ``(N, C, *spatial)`` or batch-less ``(C, *spatial)`` input with ``n`` spatial dims.

    Returns:
        The input with a batch dimension, and whether one was added.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (n + 1, n + 2):
        raise ValueError(
            f"{name} must have {n + 1} (C, *spatial) or {n + 2} (N, C, *spatial) dimensions "
            f"for {n}d pooling, got shape {tuple(x.shape)}"
        )
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {x.dtype}")
    unbatched = x.dim() == n + 1
    if unbatched:
        x = x.unsqueeze(0)
    if window is not None:
        spatial = tuple(x.shape[2:])
        if any(size == 0 for size in spatial):
            raise ValueError(f"{name} must have non-zero spatial sizes, got shape {tuple(x.shape)}")
        try:
            pool_output_size(
                spatial, window.kernel_size, window.stride, window.padding, window.dilation, ceil_mode
            )
        except ValueError as error:
            raise ValueError(f"{name} of shape {tuple(x.shape)} does not fit the window: {error}") from None
    return x, unbatched


def is_exporting() -> bool:
    """Whether an ONNX export or a ``torch.export`` trace is running."""
    exporting = getattr(torch.compiler, "is_exporting", None)  # torch >= 2.4
    return torch.onnx.is_in_onnx_export() or bool(exporting is not None and exporting())


def is_traced() -> bool:
    """Whether ``torch.compile``, ``torch.export``, an ONNX export or the JIT tracer is running.

    Data-dependent input checks (a Python ``bool`` of a tensor) break those graphs, so they
    run in eager mode only.
    """
    return torch.compiler.is_compiling() or is_jit_tracing() or is_exporting()


def is_jit_tracing() -> bool:
    """Whether the TorchScript tracer runs (``torch.jit.trace``, the TorchScript ONNX exporter)."""
    return bool(torch.jit.is_tracing())  # type: ignore[attr-defined, no-untyped-call]  # torch leaves it untyped


def restore_batch(y: Tensor, unbatched: bool) -> Tensor:
    """Removes the batch dimension that :func:`check_input` added."""
    return y.squeeze(0) if unbatched else y


def check_choice(value: object, name: str, choices: Iterable[str]) -> str:
    """Checks that ``value`` is one of ``choices``."""
    options = tuple(choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {options}, got {type(value).__name__}")
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def check_bool(value: object, name: str) -> bool:
    """Checks that ``value`` is a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def check_float_range(
    value: object, name: str, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> float:
    """Checks that ``value`` is a real number in ``[low, high]`` (ends optionally open)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    too_low = v <= low if low_open else v < low
    too_high = v >= high if high_open else v > high
    if too_low or too_high or v != v:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ValueError(f"{name} must be in {left}{low}, {high}{right}, got {value}")
    return v


def check_generator(generator: object, x: Tensor) -> torch.Generator | None:
    """Checks an optional ``torch.Generator`` against the input's device."""
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != x.device.type:
        raise ValueError(f"generator is on {generator.device}, but the input is on {x.device}")
    return generator


def _check_optional_bool(arguments: Mapping[str, object], *names: str) -> None:
    for name in names:
        if name in arguments:
            check_bool(arguments[name], name)


def _check_fractional(arguments: Mapping[str, object], n: int) -> None:
    size, ratio = arguments.get("output_size"), arguments.get("output_ratio")
    if (size is None) == (ratio is None):
        raise ValueError(
            "fractional max pooling needs exactly one of output_size and output_ratio, "
            f"got output_size={size!r}, output_ratio={ratio!r}"
        )
    if size is not None:
        sizes = ntuple(size, n, "output_size")  # type: ignore[arg-type]
        if any(v < 1 for v in sizes):
            raise ValueError(f"output_size must be positive, got {sizes}")
    if ratio is not None:
        ratios = ratio if isinstance(ratio, (tuple, list)) else (ratio,) * n
        if len(ratios) != n:
            raise ValueError(f"output_ratio must be a number or a sequence of {n} numbers, got {ratio!r}")
        for value in ratios:
            check_float_range(value, "output_ratio", 0.0, 1.0, low_open=True, high_open=True)


def check_torch_pool_args(kind: str, n: int, arguments: Mapping[str, object]) -> None:
    """Checks the constructor arguments of one of PyTorch's own pooling Modules.

    PyTorch checks most of them only at forward (with a RuntimeError), and some not at all
    (``FractionalMaxPool2d(kernel_size=0)`` returns ``-inf``); the factory checks them first.

    Args:
        kind: ``"max"``, ``"avg"``, ``"lp"`` or ``"fractional_max"``.
        n: the number of spatial dimensions.
        arguments: the constructor's arguments by name (``inspect.BoundArguments.arguments``);
            absent ones keep PyTorch's defaults.

    Raises:
        TypeError: for an argument of the wrong type, naming it.
        ValueError: for an argument out of range, naming it.
    """
    check_choice(kind, "kind", ("max", "avg", "lp", "fractional_max"))
    if "kernel_size" not in arguments:
        raise TypeError(f"{kind}{n}d pooling needs kernel_size (an int or a sequence of {n} ints)")
    kernel_size = arguments["kernel_size"]
    stride = arguments.get("stride")
    if kind == "fractional_max":
        check_window(kernel_size, None, 0, n)  # type: ignore[arg-type]
        _check_fractional(arguments, n)
        _check_optional_bool(arguments, "return_indices")
        return
    padding = arguments.get("padding", 0)
    dilation = arguments.get("dilation", 1)
    check_window(kernel_size, stride, padding, n, dilation)  # type: ignore[arg-type]
    _check_optional_bool(arguments, "ceil_mode", "return_indices", "count_include_pad")
    divisor = arguments.get("divisor_override")
    if divisor is not None and (isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 1):
        raise ValueError(f"divisor_override must be None or a positive int, got {divisor!r}")
    if kind == "lp":
        norm_type = check_float_range(arguments.get("norm_type"), "norm_type", 0.0, math.inf, low_open=True)
        if math.isinf(norm_type):
            raise ValueError(
                "norm_type must be finite (LP pooling with p = inf is max pooling: use max pooling)"
            )
