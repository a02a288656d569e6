"""Step 5 of :func:`~torchpool.swap_pooling`: rebuild what consumes a pool whose width changed.

The first ``nn.Linear`` after the pool is replaced by a fresh one of the new width, a norm in
between by a fresh one, and a 2-D output is unflattened where a module in between needs the
old rank.
"""

from __future__ import annotations

import copy

from torch import nn

from ._build import squeezed, width_of
from ._dry_run import Trace
from ._report import SwapRecord
from ._select import Plan

__all__ = ["rebuild"]

_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
)
# Modules between a pool and its Linear that keep the width and take any rank.
_RANK_FREE = (nn.Flatten, nn.Dropout, nn.AlphaDropout, nn.Identity, *_ACTIVATIONS)
# Modules between a pool and its Linear that keep the width but need the pool's rank.
_RANKED = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
# Norms between a pool and its Linear: rebuilt (fresh) for a new width.
_NORMS = (nn.LayerNorm, nn.modules.batchnorm._BatchNorm)


def _chain(plan: Plan, trace: Trace) -> tuple[str, nn.Linear, list[tuple[str, nn.Module, int]]]:
    """The first ``nn.Linear`` that runs after the pool, and the modules that run between."""
    name = plan.names[0]
    between: list[tuple[str, nn.Module, int]] = []
    for call in trace.after.get(id(plan.old), []):
        child, module, _rank = call
        if isinstance(module, nn.Linear):
            return child, module, between
        if not isinstance(module, _RANK_FREE + _RANKED + _NORMS):
            raise ValueError(
                f"swapping layer {name!r} changes its output width, and cannot find the nn.Linear that "
                f"consumes {name!r}: {child!r} ({type(module).__name__}) runs before any nn.Linear and "
                "would need rebuilding; pass a pool of the same width, or narrow select= to skip this layer"
            )
        between.append(call)
    raise ValueError(
        f"swapping layer {name!r} changes its output width, and cannot find the nn.Linear that consumes "
        f"{name!r}: no nn.Linear runs after it; pass a pool of the same width, or narrow select= to "
        "skip this layer"
    )


def _norm_width(norm: nn.Module) -> int | None:
    if isinstance(norm, nn.LayerNorm):
        return norm.normalized_shape[0] if len(norm.normalized_shape) == 1 else None
    return int(norm.num_features)  # type: ignore[arg-type]


def _resized_norm(norm: nn.Module, width: int) -> nn.Module:
    """A fresh copy of ``norm`` (same class and options) for ``width`` features."""
    new = copy.deepcopy(norm)
    if isinstance(new, nn.LayerNorm):
        new.normalized_shape = (width,)
    else:
        new.num_features = width  # type: ignore[assignment]
    for key, param in list(new.named_parameters(recurse=False)):
        setattr(new, key, nn.Parameter(param.new_empty(width)))
    for key, buffer in list(new.named_buffers(recurse=False)):
        if buffer.dim() == 1:
            new.register_buffer(key, buffer.new_empty(width))
    new.reset_parameters()  # type: ignore[operator]
    return new


def _rebuild_norms(plan: Plan, between: list[tuple[str, nn.Module, int]]) -> dict[str, nn.Module]:
    assert plan.y_old is not None and plan.y_new is not None
    old_c, new_c = int(plan.y_old.shape[1]), int(plan.y_new.shape[1])
    old_w, new_w = width_of(plan.y_old), width_of(plan.y_new)
    rebuilt: dict[str, nn.Module] = {}
    for child, module, _rank in between:
        if not isinstance(module, _NORMS):
            continue
        width = _norm_width(module)
        if width not in (old_c, old_w):
            raise ValueError(
                f"swapping layer {plan.names[0]!r} changes its output width, and {child!r} "
                f"({type(module).__name__}) between it and its nn.Linear normalises {width} features, "
                f"neither its {old_c} channels nor its {old_w} features; narrow select= to skip this layer"
            )
        rebuilt[child] = _resized_norm(module, new_c if width == old_c else new_w)
    return rebuilt


def _keep_rank(plan: Plan, between: list[tuple[str, nn.Module, int]]) -> None:
    """Unflattens a 2-D output to the old rank where a module between needs it (ConvNeXt's norm)."""
    assert plan.new is not None and plan.y_old is not None and plan.y_new is not None
    rank = plan.y_old.dim()
    if plan.y_new.dim() != 2 or rank <= 2:
        return
    if not any(r > 2 and not isinstance(m, _RANK_FREE) for _c, m, r in between):
        return
    shape = (width_of(plan.y_new),) + (1,) * (rank - 2)
    plan.new = nn.Sequential(plan.new, nn.Unflatten(1, shape))
    plan.y_new = plan.y_new.reshape(-1, *shape)


def rebuild(plan: Plan, trace: Trace | None) -> tuple[list[SwapRecord], dict[str, nn.Module]]:
    """Records for every name of the plan, and the consumers rebuilt for a new width."""
    records = [SwapRecord(name=n, old=repr(plan.old), new=repr(plan.new)) for n in plan.names]
    if plan.y_old is None or plan.y_new is None or trace is None:
        for record in records:
            record.note = "same (not measured)"
        return records, {}
    name, y_old, y_new = plan.names[0], plan.y_old, plan.y_new
    old_w, new_w = width_of(y_old), width_of(y_new)
    rebuilt: dict[str, nn.Module] = {}
    if squeezed(y_old.shape) == squeezed(y_new.shape):
        note = f"same ({old_w})"
    elif old_w == new_w:
        raise ValueError(
            f"swapping layer {name!r} changes its output shape from {tuple(y_old.shape)} to "
            f"{tuple(y_new.shape)}; only the flattened width may change"
        )
    else:
        consumer, linear, between = _chain(plan, trace)
        if linear.in_features != old_w:
            raise ValueError(
                f"cannot find the nn.Linear that consumes {name!r}: {consumer!r} takes "
                f"{linear.in_features} features but {name!r} makes {old_w}; pass a pool "
                "of the same width, or narrow select= to skip this layer"
            )
        _keep_rank(plan, between)
        rebuilt = _rebuild_norms(plan, between)
        new_linear = nn.Linear(
            new_w,
            linear.out_features,
            bias=linear.bias is not None,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )
        new_linear.train(linear.training)
        rebuilt[consumer] = new_linear
        norms = "".join(f", {n} rebuilt" for n in rebuilt if n != consumer)
        note = (
            f"{old_w} -> {new_w}; {consumer} rebuilt "
            f"({linear.in_features}->{linear.out_features} to {new_w}->{linear.out_features}){norms}"
        )
    for record in records:
        record.new = repr(plan.new)
        record.old_width, record.new_width = old_w, new_w
        record.consumer = next((n for n, m in rebuilt.items() if isinstance(m, nn.Linear)), None)
        record.note = note
    return records, rebuilt
