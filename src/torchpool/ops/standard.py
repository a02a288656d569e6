"""PyTorch's own max, average, LP, fractional and adaptive pooling, registered in the factory.

These stay PyTorch's implementations (section 1 of the survey: max/average pooling,
overlapping when ``stride < kernel_size``); registering them gives every pool one front
door, :func:`torchpool.create_pool`.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from ..registry import register_pool

__all__: list[str] = []

_WINDOWED = {
    "max": (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, "max over each window (PyTorch)"),
    "avg": (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, "mean over each window (PyTorch)"),
    "lp": (nn.LPPool1d, nn.LPPool2d, nn.LPPool3d, "power-average (sum x^p)^(1/p) (PyTorch)"),
}
_ADAPTIVE = {
    "adaptive_max": (
        nn.AdaptiveMaxPool1d,
        nn.AdaptiveMaxPool2d,
        nn.AdaptiveMaxPool3d,
        "max into a fixed grid",
    ),
    "adaptive_avg": (
        nn.AdaptiveAvgPool1d,
        nn.AdaptiveAvgPool2d,
        nn.AdaptiveAvgPool3d,
        "mean into a fixed grid",
    ),
}

for _name, (*_classes, _text) in _WINDOWED.items():
    for _dim, _cls in enumerate(_classes, start=1):
        _kwargs: dict[str, object] = {"kernel_size": 2}
        if _name == "lp":
            _kwargs = {"norm_type": 2.0, "kernel_size": 2}
        register_pool(
            f"{_name}{_dim}d", _cls, family="max/avg", dims=(_dim,), description=_text, example_kwargs=_kwargs
        )
        if _name == "max":
            register_pool(
                f"overlapping_max{_dim}d",
                partial(_cls, kernel_size=3, stride=2, padding=1),
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
            description=_text + " (PyTorch)",
            example_kwargs={"output_size": 1},
        )
for _dim, _cls in ((2, nn.FractionalMaxPool2d), (3, nn.FractionalMaxPool3d)):
    register_pool(
        f"fractional_max{_dim}d",
        _cls,
        family="max/avg",
        dims=(_dim,),
        description="max over pseudo-random windows (Graham 2014, PyTorch)",
        example_kwargs={"kernel_size": 2, "output_ratio": 0.5},
    )
