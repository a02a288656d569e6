"""PyTorch's own max, average, LP, fractional and adaptive pooling, registered in the factory.

These stay PyTorch's implementations (section 1 of the survey: max/average pooling,
overlapping when ``stride < kernel_size``); registering them gives every pool one front
door, :func:`torchpool.create_pool`. The adaptive ones are torchpool's subclasses
(:mod:`torchpool.ops.adaptive`): same results, but they export to ONNX for any output size and
avoid PyTorch's non-deterministic backward in deterministic mode; so do the 3d average and
LP pools (subclasses of PyTorch's modules that average separably in that mode).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_input, check_torch_pool_args
from .._deterministic import avg_pool3d, max_pool3d
from .._shape import ntuple, pool_output_size
from ..registry import register_pool
from . import adaptive

__all__: list[str] = []


def _check_3d_input(input: Tensor, name: str, *, integers: bool) -> None:
    """Refuses what PyTorch's 3d pools would fail on obscurely or answer wrongly: complex input,
    bool input to avg/max, integer input to the average (truncated), and empty spatial sizes.
    ``integers`` allows integer input (and, for ``lp3d``, bool: its result is float)."""
    check_input(input, 3, floating=False)  # (C, H, W) was read as one 3d sample: garbage
    if input.is_complex() or (input.dtype == torch.bool and name != "lp3d"):
        raise TypeError(f"{name}: input must have a real floating-point or integer dtype, got {input.dtype}")
    if not integers and not input.is_floating_point():
        raise TypeError(
            f"{name}: input must have a floating-point dtype (an integer average would be truncated), "
            f"got {input.dtype}"
        )
    if any(size == 0 for size in input.shape[-3:]):
        raise ValueError(f"{name}: input must have non-zero spatial sizes, got shape {tuple(input.shape)}")


def _empty_channels(input: Tensor, module: nn.AvgPool3d | nn.MaxPool3d | nn.LPPool3d) -> Tensor:
    """The empty result for an input with no channels (PyTorch's 3d pools refuse it), as the other
    pools give it: a zero-element reshape to the output size, connected to ``input`` for autograd."""
    k = ntuple(module.kernel_size, 3, "kernel_size")
    s = ntuple(module.stride if module.stride is not None else k, 3, "stride")
    p = ntuple(getattr(module, "padding", 0), 3, "padding")
    d = ntuple(getattr(module, "dilation", 1), 3, "dilation")
    out = pool_output_size(tuple(input.shape[-3:]), k, s, p, d, module.ceil_mode)
    return input.reshape(*input.shape[:-3], *out)


class _AvgPool3d(nn.AvgPool3d):
    """``nn.AvgPool3d``, separable in deterministic mode (PyTorch's CUDA backward raises there);
    half inputs on the CPU, which PyTorch refuses, are averaged in float32."""

    def forward(self, input: Tensor) -> Tensor:
        _check_3d_input(input, "avg3d", integers=False)
        if input.shape[-4] == 0:
            return _empty_channels(input, self)
        if self.divisor_override is not None:
            return super().forward(input)
        batched = input if input.dim() == 5 else input.unsqueeze(0)
        k = ntuple(self.kernel_size, 3, "kernel_size")
        s = ntuple(self.stride if self.stride is not None else k, 3, "stride")
        p = ntuple(self.padding, 3, "padding")
        y = avg_pool3d(batched, k, s, p, self.ceil_mode, self.count_include_pad)
        return y if input.dim() == 5 else y.squeeze(0)


class _MaxPool3d(nn.MaxPool3d):
    """``nn.MaxPool3d``, separable in deterministic mode (PyTorch's CUDA backward raises there)."""

    def forward(self, input: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        _check_3d_input(input, "max3d", integers=True)
        if input.shape[-4] == 0 and not self.return_indices:
            return _empty_channels(input, self)
        if self.return_indices:  # PyTorch's kernel: (values, indices)
            with_indices: tuple[Tensor, Tensor] = super().forward(input)
            return with_indices
        k = ntuple(self.kernel_size, 3, "kernel_size")
        s = ntuple(self.stride if self.stride is not None else k, 3, "stride")
        p = ntuple(self.padding, 3, "padding")
        d = ntuple(self.dilation, 3, "dilation")
        return max_pool3d(input, k, s, p, d, self.ceil_mode)


class _LPPool3d(nn.LPPool3d):
    """``nn.LPPool3d``: ``F.lp_pool3d``'s formula on the average of :class:`_AvgPool3d`, in float32
    for half inputs. Integer and bool inputs give a result in the default float dtype, as
    ``nn.LPPool3d`` (which, for an integer ``norm_type``, averages the integer powers with
    truncation first; here they are averaged exactly)."""

    def forward(self, input: Tensor) -> Tensor:
        _check_3d_input(input, "lp3d", integers=True)
        if input.shape[-4] == 0:
            empty = _empty_channels(input, self)
            return empty if empty.is_floating_point() else empty.to(torch.get_default_dtype())
        k = ntuple(self.kernel_size, 3, "kernel_size")
        s = ntuple(self.stride if self.stride is not None else k, 3, "stride")
        batched = input if input.dim() == 5 else input.unsqueeze(0)
        if batched.dtype in (torch.float16, torch.bfloat16):  # x^p overflows float16 long before the result
            batched = batched.float()
        out_dtype = input.dtype if input.is_floating_point() else torch.get_default_dtype()
        if not batched.is_floating_point() and not batched.is_complex():
            batched = batched.to(torch.get_default_dtype())
        out = avg_pool3d(batched.pow(self.norm_type), k, s, (0, 0, 0), self.ceil_mode)
        out = (torch.sign(out) * F.relu(torch.abs(out))).mul(k[0] * k[1] * k[2]).pow(1.0 / self.norm_type)
        out = out.to(out_dtype)
        return out if input.dim() == 5 else out.squeeze(0)


def _validated(cls: type[nn.Module], kind: str, n: int) -> Callable[..., nn.Module]:
    """``cls`` behind the factory's argument checks (PyTorch checks most only at forward, some never)."""
    signature = inspect.signature(cls)

    def build(*args: object, **kwargs: object) -> nn.Module:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{kind}{n}d: {error}") from None
        check_torch_pool_args(kind, n, bound.arguments)
        return cls(*args, **kwargs)

    build.__name__ = build.__qualname__ = cls.__name__
    build.__doc__ = cls.__doc__
    build.__wrapped__ = cls  # type: ignore[attr-defined]  # inspect.signature and swap_pooling follow it
    return build


_WINDOWED = {
    "max": (nn.MaxPool1d, nn.MaxPool2d, _MaxPool3d, "max over each window (PyTorch)"),
    "avg": (nn.AvgPool1d, nn.AvgPool2d, _AvgPool3d, "mean over each window (PyTorch)"),
    "lp": (nn.LPPool1d, nn.LPPool2d, _LPPool3d, "power-average (sum x^p)^(1/p) (PyTorch)"),
}
_ADAPTIVE = {
    "adaptive_max": (
        adaptive.AdaptiveMaxPool1d,
        adaptive.AdaptiveMaxPool2d,
        adaptive.AdaptiveMaxPool3d,
        "max into a fixed grid",
    ),
    "adaptive_avg": (
        adaptive.AdaptiveAvgPool1d,
        adaptive.AdaptiveAvgPool2d,
        adaptive.AdaptiveAvgPool3d,
        "mean into a fixed grid",
    ),
}

for _name, (*_classes, _text) in _WINDOWED.items():
    for _dim, _cls in enumerate(_classes, start=1):
        _kwargs: dict[str, object] = {"kernel_size": 2}
        if _name == "lp":
            _kwargs = {"norm_type": 2.0, "kernel_size": 2}
        register_pool(
            f"{_name}{_dim}d",
            _validated(_cls, _name, _dim),
            family="max/avg",
            dims=(_dim,),
            description=_text,
            example_kwargs=_kwargs,
        )
        if _name == "max":
            register_pool(
                f"overlapping_max{_dim}d",
                partial(_validated(_cls, _name, _dim), kernel_size=3, stride=2, padding=1),
                family="max/avg",
                dims=(_dim,),
                description="max, 3-wide windows with stride 2 (AlexNet's overlapping pooling)",
            )
for _name, (*_classes, _text) in _ADAPTIVE.items():
    for _dim, _cls in enumerate(_classes, start=1):
        register_pool(
            f"{_name}{_dim}d",
            _cls,
            family="max/avg",
            dims=(_dim,),
            description=_text + " (PyTorch's result; exports for any size)",
            example_kwargs={"output_size": 1},
        )
for _dim, _cls in ((2, nn.FractionalMaxPool2d), (3, nn.FractionalMaxPool3d)):
    register_pool(
        f"fractional_max{_dim}d",
        _validated(_cls, "fractional_max", _dim),
        family="max/avg",
        dims=(_dim,),
        description="max over pseudo-random windows (Graham 2014, PyTorch)",
        example_kwargs={"kernel_size": 2, "output_ratio": 0.5},
    )
