"""Steps 3 and 4 of :func:`~torchpool.swap_pooling`: build each new pool, and measure its output.

:func:`build` carries the old layer's geometry over (or refuses what cannot be kept) and builds
the new pool with :func:`~torchpool.create_pool`; :func:`measure` runs it on the input the old
layer saw in the dry run.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..registry import create_pool
from ._dry_run import Trace, first_tensor
from ._select import Plan, Target, adaptive_form, windowed

__all__ = ["build", "measure", "squeezed", "width_of"]

# Geometry attributes copied from the old layer, in order.
_GEOMETRY = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "output_size", "output_ratio")
# Required constructor arguments filled with the input's channel count from example_input.
_CHANNEL_ARGS = ("dim", "dim_a", "in_channels", "channels")
# Families whose ``flatten`` chooses between ``(N, C)`` and ``(N, C, 1, ...)``: a swap keeps the
# rank the old layer returned (timm's ConvNeXt head normalises the pooled map before flattening).
_VECTOR_HEADS = frozenset({"global", "lse", "rmac", "attention"})


def _window_argument(target: Target) -> str | None:
    """The target's argument that takes a pooling window: ``kernel_size`` unless its class says
    otherwise with a ``pooling_window`` attribute: another argument (MaxBlurPool's dense max pool,
    ``"max_pool_size"``) or ``None`` (BlurPool's ``kernel_size`` is its binomial filter, the
    stride is the downsampling). Such a pool pads by its own rule, so the old window's padding is
    dropped too and the new output shape is measured."""
    builder = target.info.builder if target.info is not None else target.builder
    window = getattr(builder, "pooling_window", "kernel_size")
    return window if window is None or isinstance(window, str) else "kernel_size"


def _neutral(attr: str, value: Any, old: nn.Module) -> bool:
    """Whether dropping ``attr=value`` leaves the old layer's geometry unchanged."""
    values = value if isinstance(value, tuple | list) else (value,)
    if attr == "padding":
        return all(v == 0 for v in values)
    if attr == "dilation":
        return all(v == 1 for v in values)
    if attr == "ceil_mode":
        return not value
    if attr == "output_ratio":
        return value is None
    if attr == "output_size":  # adaptive(1) is a global pool; a fractional pool's None is unset
        return value is None or all(v in (1, None) for v in values)
    if attr == "stride":
        return value is None or value == getattr(old, "kernel_size", None)
    return False


def _geometry(
    name: str, old: nn.Module, target: Target, given: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """The old layer's geometry for the target, and whether it provably keeps the output shape."""
    out: dict[str, Any] = {}
    same = True
    window_argument = _window_argument(target)
    for attr in _GEOMETRY:
        if attr in given or not hasattr(old, attr):
            continue
        value = getattr(old, attr)
        if attr in ("kernel_size", "padding") and window_argument != "kernel_size":
            if attr == "kernel_size" and window_argument is not None and window_argument not in given:
                out[window_argument] = value
            same = False  # the filter changes the window: the output shape is measured
        elif attr in target.accepted or (target.var_kw and not _neutral(attr, value, old)):
            out[attr] = value  # a **kwargs builder gets only the arguments that matter
        elif attr == "output_size" and target.global_ and not windowed(old):
            same = same and _neutral(attr, value, old)  # an adaptive grid to a global pool: measured
        elif not _neutral(attr, value, old):
            raise ValueError(
                f"cannot swap layer {name!r} ({type(old).__name__}) to {target.label}: the target takes no "
                f"{attr!r} argument, so it cannot keep the layer's {attr}={value!r}; pass a pool that "
                "takes it, or narrow select= to skip this layer"
            )
    return out, same


def _resolve_target(plan: Plan, given: dict[str, Any]) -> Target:
    """The adaptive form of a windowed target for a layer without a window (ResNet's avgpool)."""
    target, old, name = plan.target, plan.old, plan.names[0]
    if not target.windowed or windowed(old) or "kernel_size" in given:
        return target
    adaptive = adaptive_form(target)
    if adaptive is None:
        raise ValueError(
            f"cannot swap layer {name!r} ({type(old).__name__}) to {target.label}: the layer has no "
            f"window (kernel_size) and {target.label} has no adaptive form; pass kernel_size=..., "
            "or narrow select= to skip this layer"
        )
    return adaptive


def _keeps_rank(old: nn.Module, target: Target, given: dict[str, Any]) -> dict[str, Any]:
    """``flatten=`` for a global pool so that it returns the rank the old layer returned."""
    if "flatten" in given or "flatten" not in target.accepted or target.info is None:
        return {}
    if target.info.family not in _VECTOR_HEADS:
        return {}
    flatten = getattr(old, "flatten", False)
    return {"flatten": flatten} if isinstance(flatten, bool) else {}


def _channel_args(plan: Plan, target: Target, given: dict[str, Any], trace: Trace | None) -> dict[str, Any]:
    """NetVLAD's ``dim``, bilinear's ``dim_a``: the input's channels, measured by the dry run."""
    missing = [arg for arg in _CHANNEL_ARGS if arg in target.required and arg not in given]
    if not missing:
        return {}
    seen = trace.io.get(id(plan.old)) if trace is not None else None
    if seen is None:
        raise ValueError(
            f"{target.label} needs {missing[0]}= (the input channels of layer {plan.names[0]!r}); "
            "pass it, or pass example_input= so that it is measured"
        )
    return {arg: int(seen[0].shape[1]) for arg in missing}


def _dims_of(module: nn.Module) -> int | None:
    tail = type(module).__name__[-2:]
    return int(tail[0]) if tail in ("1d", "2d", "3d") else None


def build(plan: Plan, given: dict[str, Any], trace: Trace | None, like: Tensor | None) -> None:
    """Builds ``plan.new`` (on the model's device and dtype, with the old layer's training flag)."""
    name, old = plan.names[0], plan.old
    target = plan.target = _resolve_target(plan, given)
    info = target.info
    if info is not None and (dims := _dims_of(old)) is not None and dims not in info.dims:
        raise ValueError(
            f"cannot swap layer {name!r} ({type(old).__name__}, {dims}d) to {info.name!r}, "
            f"which supports {', '.join(f'{d}d' for d in info.dims)} only"
        )
    geometry, same = _geometry(name, old, target, given)
    plan.kwargs = {**geometry, **_keeps_rank(old, target, given), **_channel_args(plan, target, given, trace)}
    plan.kwargs.update(given)
    try:
        new = create_pool(target.builder, **plan.kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"cannot build {target.label} for layer {name!r} ({type(old).__name__}) with {plan.kwargs}: {err}"
        ) from err
    new.train(old.training)
    if like is not None:
        new.to(device=like.device)
        if any(p.is_floating_point() for p in new.parameters()):
            new.to(dtype=like.dtype)
    plan.new = new
    windowed_copy = "kernel_size" in plan.kwargs
    plan.provably_same = bool(
        info is not None and info.channel_multiplier == 1 and same and (windowed_copy or not windowed(old))
    )


def width_of(t: Tensor) -> int:
    """Features per sample: the product of every dimension after the batch."""
    return math.prod(t.shape[1:])


def squeezed(shape: torch.Size) -> tuple[int, ...]:
    """``shape`` without trailing size-1 dimensions after the first two (``(N, C, 1, 1)`` is ``(N, C)``)."""
    dims = list(shape)
    while len(dims) > 2 and dims[-1] == 1:
        dims.pop()
    return tuple(dims)


def measure(plan: Plan, trace: Trace | None) -> None:
    """Runs the new pool on the old layer's recorded input (or checks the swap keeps the width)."""
    name, old, new = plan.names[0], plan.old, plan.new
    assert new is not None  # built by _build
    seen = trace.io.get(id(old)) if trace is not None else None
    if seen is None:
        if trace is not None:
            raise ValueError(f"layer {name!r} did not run on example_input; cannot measure its width")
        if not plan.provably_same:
            raise ValueError(
                f"swapping layer {name!r} ({type(old).__name__}) to {plan.target.label} may change the "
                "output width; pass example_input= (an input the model accepts) so the new width "
                "can be measured and the following nn.Linear rebuilt"
            )
        return
    x, plan.y_old = seen
    mode = new.training
    try:
        new.eval()
        with torch.no_grad():
            y_new = first_tensor(new(x))
    except Exception as err:
        raise ValueError(
            f"the new pool for layer {name!r} fails on its input shape {tuple(x.shape)}: {err}"
        ) from err
    finally:
        new.train(mode)
    if y_new is None:
        raise ValueError(f"the new pool for layer {name!r} returned no tensor")
    plan.y_new = y_new
