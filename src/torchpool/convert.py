"""Model surgery: swap the pooling layers of an existing model for any torchpool pool.

:func:`swap_pooling` finds pooling layers (by type, name pattern or predicate), builds the
replacement with :func:`torchpool.create_pool`, copies the old layer's window geometry when
the caller does not give it, and, when the swap changes the output width (a channel-doubling
``catavgmax``, NetVLAD, bilinear, a pyramid), rebuilds the ``nn.Linear`` that consumes the
pooled features (and a norm between them), found by running the model once.

The work is split in steps: select the layers (:func:`_plan`), run the model once to record
what each layer sees (:func:`_dry_run`), build the new pools (:func:`_build`), measure their
output (:func:`_measure`), rebuild the consumers (:func:`_rebuild`) and apply everything, undoing
it when the swapped model fails (:func:`_apply`).
"""

from __future__ import annotations

import copy
import fnmatch
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import torch
from torch import Tensor, nn

from . import nn as _tpnn
from ._checks import check_bool
from .registry import Builder, PoolInfo, create_pool, get_pool_info, list_pools

__all__ = ["SwapRecord", "SwapReport", "swap_pooling"]

Selector = type | tuple[type, ...] | str | Callable[[str, nn.Module], bool] | None

_TORCH_POOLS: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.LPPool1d,
    nn.LPPool2d,
    nn.LPPool3d,
    nn.FractionalMaxPool2d,
    nn.FractionalMaxPool3d,
)
_TORCHPOOL_POOLS: tuple[type[nn.Module], ...] = tuple(
    obj
    for name, obj in vars(_tpnn).items()
    if inspect.isclass(obj) and issubclass(obj, nn.Module) and not name.startswith("MaxUnpool")
)
#: Every layer ``select=None`` may swap: PyTorch's pooling layers and torchpool's own pools
#: (unpooling layers excluded); of those, ``select=None`` takes the ones of the target's kind.
DEFAULT_POOL_TYPES: tuple[type[nn.Module], ...] = _TORCH_POOLS + _TORCHPOOL_POOLS

# Geometry attributes copied from the old layer, in order.
_GEOMETRY = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "output_size", "output_ratio")
# Required constructor arguments filled with the input's channel count from example_input.
_CHANNEL_ARGS = ("dim", "dim_a", "in_channels")
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


@dataclass
class SwapRecord:
    """One replaced layer.

    Attributes:
        name: qualified module name, e.g. ``"avgpool"`` or ``"layer1.0.pool"``.
        old: repr of the layer that was removed.
        new: repr of the pool that replaced it.
        old_width: features per sample the old layer produced (flattened), if measured.
        new_width: features per sample the new pool produces (flattened), if measured.
        consumer: name of the ``nn.Linear`` that was rebuilt for the new width, if any.
        note: a short human note on the output width.
    """

    name: str
    old: str
    new: str
    old_width: int | None = None
    new_width: int | None = None
    consumer: str | None = None
    note: str = ""


@dataclass
class SwapReport:
    """What :func:`swap_pooling` did.

    Attributes:
        model: the resulting model (the input model itself when ``inplace=True``).
        replaced: one :class:`SwapRecord` per swapped layer name, in module order (a pool
            instance registered under two names has two records).
    """

    model: nn.Module
    replaced: list[SwapRecord] = field(default_factory=list)

    def __str__(self) -> str:
        rows = [("layer", "old", "new", "output width")]
        rows += [(r.name, _short(r.old), _short(r.new), r.note) for r in self.replaced]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
        ]
        lines.append(f"{len(self.replaced)} layer(s) replaced")
        return "\n".join(lines)


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------------- target


@dataclass(frozen=True)
class _Target:
    """The pool to build: its builder, registry entry (if any) and the arguments it takes."""

    label: str
    builder: Builder
    info: PoolInfo | None
    accepted: frozenset[str]
    var_kw: bool
    required: frozenset[str]

    @property
    def windowed(self) -> bool:
        return "kernel_size" in self.accepted and "output_size" not in self.accepted

    @property
    def global_(self) -> bool:
        """Takes neither a window nor an output grid (GeM, NetVLAD, bilinear, a pyramid)."""
        return not self.var_kw and not {"kernel_size", "kernel_sizes", "output_size"} & self.accepted


def _target(to: object) -> _Target:
    if isinstance(to, str):
        info: PoolInfo | None = get_pool_info(to)
        builder: Builder = info.builder  # type: ignore[union-attr]
        label = repr(info.name)  # type: ignore[union-attr]
    elif isinstance(to, nn.Module) or not callable(to):
        raise TypeError(f"to must be a pool name, a Module class or a callable, got {type(to).__name__}")
    else:
        builder = to
        info = next(
            (i for i in list_pools() if to in (i.builder, getattr(i.builder, "__wrapped__", None))), None
        )
        label = getattr(to, "__name__", repr(to))
    try:
        params = list(inspect.signature(builder).parameters.values())
    except (TypeError, ValueError):
        return _Target(label, builder, info, frozenset(), True, frozenset())
    named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return _Target(
        label=label,
        builder=builder,
        info=info,
        accepted=frozenset(p.name for p in named),
        var_kw=any(p.kind is p.VAR_KEYWORD for p in params),
        required=frozenset(p.name for p in named if p.default is p.empty),
    )


def _adaptive_form(target: _Target) -> _Target | None:
    """``adaptive_catavgmax2d`` for ``catavgmax2d``: the form of a windowed pool for a global layer."""
    if target.info is None:
        return None
    try:
        return _target(get_pool_info(f"adaptive_{target.info.name}").name)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------- select


def _windowed(module: nn.Module) -> bool:
    return hasattr(module, "kernel_size")


def _selector(select: Selector, target: _Target) -> Callable[[str, nn.Module], bool]:
    if select is None:
        if target.windowed:
            return lambda _name, module: isinstance(module, DEFAULT_POOL_TYPES) and _windowed(module)
        if target.global_ or "output_size" in target.accepted:
            return lambda _name, module: isinstance(module, DEFAULT_POOL_TYPES) and not _windowed(module)
        return lambda _name, module: isinstance(module, DEFAULT_POOL_TYPES)
    if isinstance(select, type):
        return lambda _name, module: isinstance(module, select)
    if isinstance(select, tuple):
        if not select or not all(isinstance(t, type) for t in select):
            raise TypeError(f"select: a tuple must hold types only, got {select!r}")
        return lambda _name, module: isinstance(module, select)
    if isinstance(select, str):
        pattern = select
        return lambda name, module: (
            isinstance(module, DEFAULT_POOL_TYPES) and fnmatch.fnmatchcase(name, pattern)
        )
    if callable(select):
        return select
    raise TypeError(
        "select must be None, a type, a tuple of types, a name pattern (str) or a predicate "
        f"(name, module) -> bool, got {type(select).__name__}"
    )


@dataclass
class _Plan:
    """One pooling instance to replace, under every name it is registered as."""

    names: list[str]
    old: nn.Module
    target: _Target
    kwargs: dict[str, Any] = field(default_factory=dict)
    provably_same: bool = False
    new: nn.Module | None = None
    y_old: Tensor | None = None
    y_new: Tensor | None = None


def _plan(model: nn.Module, choose: Callable[[str, nn.Module], bool], target: _Target) -> list[_Plan]:
    """The selected instances, each with all its names; layers nested in a selected one are skipped."""
    plans: dict[int, _Plan] = {}
    taken: list[str] = []
    for name, module in model.named_modules(remove_duplicate=False):
        if not name or any(name.startswith(prefix + ".") for prefix in taken):
            continue
        if id(module) in plans:
            plans[id(module)].names.append(name)
            taken.append(name)
        elif choose(name, module):
            plans[id(module)] = _Plan(names=[name], old=module, target=target)
            taken.append(name)
    return list(plans.values())


# --------------------------------------------------------------------------------- dry run


@dataclass
class _Trace:
    """What one eval run of the original model showed: each selected instance's first (input,
    output), and the leaf modules that ran after it, with the rank of their input."""

    io: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)
    after: dict[int, list[tuple[str, nn.Module, int]]] = field(default_factory=dict)


def _first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, tuple | list) and value and isinstance(value[0], Tensor):
        return value[0]
    return None


def _call(model: nn.Module, example_input: Tensor | tuple[Any, ...]) -> Any:
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    return model(*args)


def _run_eval(model: nn.Module, example_input: Tensor | tuple[Any, ...]) -> None:
    """Runs ``model`` in eval mode without gradients, restoring every training flag."""
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            _call(model, example_input)
    finally:
        for m, mode in modes.items():
            m.train(mode)


def _dry_run(model: nn.Module, plans: list[_Plan], example_input: Tensor | tuple[Any, ...]) -> _Trace:
    trace = _Trace()
    targets = {id(plan.old) for plan in plans}
    calls: list[tuple[str, nn.Module, int]] = []
    first: dict[int, int] = {}

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any, name: str) -> None:
        x, y = _first_tensor(args), _first_tensor(output)
        if id(module) in targets and id(module) not in first and x is not None and y is not None:
            trace.io[id(module)] = (x.detach(), y.detach())
            first[id(module)] = len(calls)
        elif not any(True for _ in module.children()):
            calls.append((name, module, x.dim() if x is not None else 0))

    handles = [
        module.register_forward_hook(lambda m, a, y, name=name: hook(m, a, y, name))
        for name, module in model.named_modules()
    ]
    try:
        _run_eval(model, example_input)
    finally:
        for handle in handles:
            handle.remove()
    trace.after = {key: calls[index:] for key, index in first.items()}
    return trace


# ----------------------------------------------------------------------------------- build


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
    name: str, old: nn.Module, target: _Target, given: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """The old layer's geometry for the target, and whether it provably keeps the output shape."""
    out: dict[str, Any] = {}
    same = True
    for attr in _GEOMETRY:
        if attr in given or not hasattr(old, attr):
            continue
        value = getattr(old, attr)
        if attr in target.accepted or (target.var_kw and not _neutral(attr, value, old)):
            out[attr] = value  # a **kwargs builder gets only the arguments that matter
        elif attr == "output_size" and target.global_ and not _windowed(old):
            same = same and _neutral(attr, value, old)  # an adaptive grid to a global pool: measured
        elif not _neutral(attr, value, old):
            raise ValueError(
                f"cannot swap layer {name!r} ({type(old).__name__}) to {target.label}: the target takes no "
                f"{attr!r} argument, so it cannot keep the layer's {attr}={value!r}; pass a pool that "
                "takes it, or narrow select= to skip this layer"
            )
    return out, same


def _resolve_target(plan: _Plan, given: dict[str, Any]) -> _Target:
    """The adaptive form of a windowed target for a layer without a window (ResNet's avgpool)."""
    target, old, name = plan.target, plan.old, plan.names[0]
    if not target.windowed or _windowed(old) or "kernel_size" in given:
        return target
    adaptive = _adaptive_form(target)
    if adaptive is None:
        raise ValueError(
            f"cannot swap layer {name!r} ({type(old).__name__}) to {target.label}: the layer has no "
            f"window (kernel_size) and {target.label} has no adaptive form; pass kernel_size=..., "
            "or narrow select= to skip this layer"
        )
    return adaptive


def _keeps_rank(old: nn.Module, target: _Target, given: dict[str, Any]) -> dict[str, Any]:
    """``flatten=`` for a global pool so that it returns the rank the old layer returned."""
    if "flatten" in given or "flatten" not in target.accepted or target.info is None:
        return {}
    if target.info.family != "global":
        return {}
    flatten = getattr(old, "flatten", False)
    return {"flatten": flatten} if isinstance(flatten, bool) else {}


def _channel_args(
    plan: _Plan, target: _Target, given: dict[str, Any], trace: _Trace | None
) -> dict[str, Any]:
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


def _build(plan: _Plan, given: dict[str, Any], trace: _Trace | None, like: Tensor | None) -> None:
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
        info is not None and info.channel_multiplier == 1 and same and (windowed_copy or not _windowed(old))
    )


# --------------------------------------------------------------------------------- measure


def _width(t: Tensor) -> int:
    return math.prod(t.shape[1:])


def _squeezed(shape: torch.Size) -> tuple[int, ...]:
    dims = list(shape)
    while len(dims) > 2 and dims[-1] == 1:
        dims.pop()
    return tuple(dims)


def _measure(plan: _Plan, trace: _Trace | None) -> None:
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
            y_new = _first_tensor(new(x))
    except Exception as err:
        raise ValueError(
            f"the new pool for layer {name!r} fails on its input shape {tuple(x.shape)}: {err}"
        ) from err
    finally:
        new.train(mode)
    if y_new is None:
        raise ValueError(f"the new pool for layer {name!r} returned no tensor")
    plan.y_new = y_new


# --------------------------------------------------------------------------------- rebuild


def _chain(plan: _Plan, trace: _Trace) -> tuple[str, nn.Linear, list[tuple[str, nn.Module, int]]]:
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


def _rebuild_norms(plan: _Plan, between: list[tuple[str, nn.Module, int]]) -> dict[str, nn.Module]:
    assert plan.y_old is not None and plan.y_new is not None
    old_c, new_c = int(plan.y_old.shape[1]), int(plan.y_new.shape[1])
    old_w, new_w = _width(plan.y_old), _width(plan.y_new)
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


def _keep_rank(plan: _Plan, between: list[tuple[str, nn.Module, int]]) -> None:
    """Unflattens a 2-D output to the old rank where a module between needs it (ConvNeXt's norm)."""
    assert plan.new is not None and plan.y_old is not None and plan.y_new is not None
    rank = plan.y_old.dim()
    if plan.y_new.dim() != 2 or rank <= 2:
        return
    if not any(r > 2 and not isinstance(m, _RANK_FREE) for _c, m, r in between):
        return
    shape = (_width(plan.y_new),) + (1,) * (rank - 2)
    plan.new = nn.Sequential(plan.new, nn.Unflatten(1, shape))
    plan.y_new = plan.y_new.reshape(-1, *shape)


def _rebuild(plan: _Plan, trace: _Trace | None) -> tuple[list[SwapRecord], dict[str, nn.Module]]:
    """Records for every name of the plan, and the consumers rebuilt for a new width."""
    records = [SwapRecord(name=n, old=repr(plan.old), new=repr(plan.new)) for n in plan.names]
    if plan.y_old is None or plan.y_new is None or trace is None:
        for record in records:
            record.note = "same (not measured)"
        return records, {}
    name, y_old, y_new = plan.names[0], plan.y_old, plan.y_new
    old_w, new_w = _width(y_old), _width(y_new)
    rebuilt: dict[str, nn.Module] = {}
    if _squeezed(y_old.shape) == _squeezed(y_new.shape):
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


# ----------------------------------------------------------------------------------- apply


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name), attr, module)


def _apply(
    model: nn.Module, changes: list[tuple[str, nn.Module]], example_input: Tensor | tuple[Any, ...] | None
) -> None:
    """Sets every change; with ``example_input``, runs the model once and undoes all on failure."""
    undo = [(name, model.get_submodule(name)) for name, _ in changes]
    for name, module in changes:
        _set(model, name, module)
    if example_input is None:
        return
    try:
        _run_eval(model, example_input)
    except Exception as err:
        for name, module in reversed(undo):
            _set(model, name, module)
        raise ValueError(f"the swapped model fails on example_input (swap undone): {err}") from err


@overload
def swap_pooling(
    model: nn.Module,
    to: str | type[nn.Module] | Builder,
    *,
    select: Selector = None,
    inplace: bool = False,
    example_input: Tensor | tuple[Any, ...] | None = None,
    return_report: Literal[False] = False,
    **kwargs: Any,
) -> nn.Module: ...


@overload
def swap_pooling(
    model: nn.Module,
    to: str | type[nn.Module] | Builder,
    *,
    select: Selector = None,
    inplace: bool = False,
    example_input: Tensor | tuple[Any, ...] | None = None,
    return_report: Literal[True],
    **kwargs: Any,
) -> tuple[nn.Module, SwapReport]: ...


@overload
def swap_pooling(
    model: nn.Module,
    to: str | type[nn.Module] | Builder,
    *,
    select: Selector = None,
    inplace: bool = False,
    example_input: Tensor | tuple[Any, ...] | None = None,
    return_report: bool = False,
    **kwargs: Any,
) -> nn.Module | tuple[nn.Module, SwapReport]: ...


def swap_pooling(
    model: nn.Module,
    to: str | type[nn.Module] | Builder,
    *,
    select: Selector = None,
    inplace: bool = False,
    example_input: Tensor | tuple[Any, ...] | None = None,
    return_report: bool = False,
    **kwargs: Any,
) -> nn.Module | tuple[nn.Module, SwapReport]:
    """Replaces pooling layers of ``model`` with pools built by ``create_pool(to, **kwargs)``.

    Which layers: by default the pooling layers of the target's kind: window pools (max,
    average, LP, fractional, torchpool's window pools) for a windowed target such as
    ``"median2d"``; global and adaptive pools (ResNet's ``avgpool``) for a global or adaptive
    target such as ``"gem"`` or ``"adaptive_catavgmax2d"``. ``select`` picks others. Squeeze-and-
    excitation blocks (EfficientNet, MobileNetV3, RegNet) hold global pools too: to swap only the
    head, select it by name (``select="avgpool"``; timm: ``"global_pool.pool"``).

    Geometry: for each argument in ``kernel_size, stride, padding, dilation, ceil_mode,
    output_size, output_ratio`` that the old layer has and ``kwargs`` does not give, the value
    is copied when the target takes it, dropped when it is harmless (padding 0, dilation 1,
    stride equal to the kernel, an adaptive ``output_size`` of 1, ...), and otherwise the swap
    is refused. A layer without a window (an adaptive pool) swapped to a windowed name uses
    the adaptive form (``catavgmax2d`` -> ``adaptive_catavgmax2d``, keeping ``output_size``);
    an adaptive grid (VGG's 7x7) swapped to a global pool becomes global (the width changes).
    A global pool (``gem``, ``global_max``) keeps the rank the old layer returned
    (``flatten=False`` for a layer that kept its spatial dims). Required channel arguments
    (NetVLAD's ``dim``, bilinear's ``dim_a``) are the layer's input channels, measured with
    ``example_input``.

    Output width: with ``example_input``, the original model is run once (eval mode, no
    gradients, training flags restored) with forward hooks recording each selected layer's
    input and the modules that run after it; the new pool runs on that input. A swap that
    keeps the flattened width per sample (``(N, C, 1, 1)`` -> ``(N, C)`` counts as the same)
    leaves the rest of the model untouched. A swap that changes it needs an ``nn.Linear``
    to be the first module with weights to run after the pool (only ``Flatten``, ``Dropout``,
    ``Identity``, activations and norms in between, as in torchvision's ResNet ``fc``, VGG's and
    EfficientNet's ``classifier`` or ConvNeXt's ``LayerNorm2d`` -> ``Linear``); that Linear is
    replaced by a freshly initialised ``nn.Linear(new_width, out_features)`` with the same bias
    setting, dtype and device, and a norm in between by a fresh one of the new width (their
    trained weights are lost). If a module in between needs the old rank (ConvNeXt's
    ``LayerNorm2d``), a 2-D output is unflattened to ``(N, width, 1, 1)``. Without
    ``example_input`` a swap is accepted only when it provably keeps the width (registry
    channel multiplier 1 and the geometry copied or global -> global); otherwise a ValueError
    asks for ``example_input``. With ``example_input`` the swapped model is also run once as a
    check; if that fails every change is undone and the error re-raised as a ValueError.

    A pool instance registered under several names is replaced under every name by one new
    instance (shared as before), with one record per name.

    Args:
        model: the model to edit.
        to: a registered pool name (without a dimension suffix: the 2-d pool), a Module class
            or a callable returning a Module.
        select: which layers: None (the pooling layers of the target's kind, see above), a
            type or tuple of types (any module of those types), an fnmatch pattern matched
            against qualified module names (among pooling layers only; use a predicate for
            other modules), or a predicate ``(name, module) -> bool``. The root module and
            layers nested in an already selected layer are never swapped.
        inplace: edit ``model`` itself instead of a ``copy.deepcopy``.
        example_input: a tensor (or tuple of positional arguments) the model accepts;
            required for swaps that change the output width or need the input channels.
        return_report: also return a :class:`SwapReport`.
        **kwargs: arguments for the new pool's constructor; they take precedence over the
            copied geometry.

    Returns:
        The resulting model (``model`` itself when ``inplace=True``, like
        ``nn.SyncBatchNorm.convert_sync_batchnorm``); with ``return_report=True`` the pair
        ``(model, report)``. The new pools are moved to the dtype/device of the model's
        parameters and given the old layer's training flag.

    Raises:
        TypeError: if ``model`` is not an ``nn.Module``, or ``select``, ``to``, ``inplace`` or
            ``return_report`` has the wrong type.
        ValueError: for an unknown pool name (with close matches), when nothing is selected,
            when a layer's geometry cannot be carried over, or when a width-changing swap
            has no ``example_input`` or no ``nn.Linear`` to rebuild.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ...                     nn.Linear(4, 2))
        >>> x = torch.zeros(1, 3, 8, 8)
        >>> new, report = swap_pooling(net, "catavgmax", select="2", example_input=x, return_report=True)
        >>> new[2], new[4]
        (AdaptiveCatAvgMaxPool2d(output_size=1), Linear(in_features=8, out_features=2, bias=True))
        >>> print(report.replaced[0].note)
        4 -> 8; 4 rebuilt (4->2 to 8->2)
        >>> type(swap_pooling(net, "median2d")[1]).__name__
        'MedianPool2d'
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    check_bool(inplace, "inplace")
    check_bool(return_report, "return_report")
    target = _target(to)
    result = model if inplace else copy.deepcopy(model)
    plans = _plan(result, _selector(select, target), target)
    if not plans:
        raise ValueError(f"select={select!r} matched no layer of the {type(model).__name__}")
    trace = _dry_run(result, plans, example_input) if example_input is not None else None
    like = next((p for p in result.parameters() if p.is_floating_point()), None)
    records: list[SwapRecord] = []
    changes: list[tuple[str, nn.Module]] = []
    for plan in plans:  # build and measure everything before touching the model
        _build(plan, kwargs, trace, like)
        _measure(plan, trace)
        plan_records, rebuilt = _rebuild(plan, trace)
        records += plan_records
        assert plan.new is not None
        changes += [(name, plan.new) for name in plan.names] + list(rebuilt.items())
    _apply(result, changes, example_input)
    order = {name: i for i, (name, _) in enumerate(result.named_modules(remove_duplicate=False))}
    records.sort(key=lambda r: order.get(r.name, len(order)))
    report = SwapReport(model=result, replaced=records)
    return (result, report) if return_report else result
