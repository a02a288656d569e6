"""Model surgery: swap the pooling layers of an existing model for any torchpool pool.

:func:`swap_pooling` finds pooling layers (by type, name pattern or predicate), builds the
replacement with :func:`torchpool.create_pool`, copies the old layer's window geometry when
the caller does not give it, and, when the swap changes the output width (a channel-doubling
``catavgmax``, NetVLAD, bilinear, a pyramid), rebuilds the ``nn.Linear`` that consumes the
pooled features.
"""

from __future__ import annotations

import copy
import fnmatch
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from . import nn as _tpnn
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
#: Every layer ``select=None`` swaps: PyTorch's pooling layers and torchpool's own pools
#: (unpooling layers excluded).
DEFAULT_POOL_TYPES: tuple[type[nn.Module], ...] = _TORCH_POOLS + _TORCHPOOL_POOLS

# Geometry attributes copied from the old layer, in order; the value that is harmless to drop
# when the target does not take the argument.
_GEOMETRY = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "output_size", "output_ratio")
# Modules between a pool and its Linear that keep the flattened width.
_PASS_THROUGH = (
    nn.Flatten,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.Identity,
)


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
        replaced: one :class:`SwapRecord` per swapped layer, in module order.
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


def _selector(select: Selector) -> Callable[[str, nn.Module], bool]:
    if select is None:
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


def _target_info(to: str | type[nn.Module] | Builder) -> PoolInfo | None:
    if isinstance(to, str):
        return get_pool_info(to)
    return next((info for info in list_pools() if info.builder is to), None)


def _builder_of(to: str | type[nn.Module] | Builder) -> Builder:
    if isinstance(to, str):
        return get_pool_info(to).builder
    if isinstance(to, nn.Module) or not callable(to):
        raise TypeError(f"to must be a pool name, a Module class or a callable, got {type(to).__name__}")
    return to


def _accepted(builder: Builder) -> tuple[set[str], bool]:
    """Parameter names the builder takes, and whether it takes ``**kwargs``."""
    try:
        params = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):
        return set(), True
    names = {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


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


def _geometry_kwargs(
    name: str, old: nn.Module, to: Any, builder: Builder, given: dict[str, Any]
) -> dict[str, Any]:
    accepted, var_kw = _accepted(builder)
    out: dict[str, Any] = {}
    for attr in _GEOMETRY:
        if attr in given or not hasattr(old, attr):
            continue
        value = getattr(old, attr)
        if attr in accepted or (var_kw and not _neutral(attr, value, old)):
            out[attr] = value  # a **kwargs builder gets only the arguments that matter
        elif not var_kw and not _neutral(attr, value, old):
            raise ValueError(
                f"cannot swap layer {name!r} ({type(old).__name__}) to {_label(to)}: the target takes no "
                f"{attr!r} argument, so it cannot keep the layer's {attr}={value!r}; pass a pool that "
                "takes it, or narrow select= to skip this layer"
            )
    return out


def _label(to: Any) -> str:
    return repr(to) if isinstance(to, str) else getattr(to, "__name__", repr(to))


def _dims_of(module: nn.Module) -> int | None:
    tail = type(module).__name__[-2:]
    return int(tail[0]) if tail in ("1d", "2d", "3d") else None


def _width(t: Tensor) -> int:
    return math.prod(t.shape[1:])


def _squeezed(shape: torch.Size) -> tuple[int, ...]:
    dims = list(shape)
    while len(dims) > 2 and dims[-1] == 1:
        dims.pop()
    return tuple(dims)


def _first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, tuple | list) and value and isinstance(value[0], Tensor):
        return value[0]
    return None


def _call(model: nn.Module, example_input: Tensor | tuple[Any, ...]) -> Any:
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    return model(*args)


def _dry_run(
    model: nn.Module, targets: dict[str, nn.Module], example_input: Tensor | tuple[Any, ...]
) -> dict[str, tuple[Tensor, Tensor]]:
    """Runs ``model`` in eval mode without gradients; records (input, output) of each target."""
    seen: dict[str, tuple[Tensor, Tensor]] = {}
    handles = []
    for name, module in targets.items():

        def hook(_m: nn.Module, args: tuple[Any, ...], output: Any, name: str = name) -> None:
            x, y = _first_tensor(args), _first_tensor(output)
            if x is not None and y is not None and name not in seen:
                seen[name] = (x.detach(), y.detach())

        handles.append(module.register_forward_hook(hook))
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            _call(model, example_input)
    finally:
        for handle in handles:
            handle.remove()
        for m, mode in modes.items():
            m.train(mode)
    return seen


def _find_consumer(model: nn.Module, name: str) -> tuple[str | None, nn.Linear | None, str]:
    """The Linear following ``name`` in its parent's module order, skipping Flatten/Dropout/Identity."""
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    children = list(parent.named_children())
    index = [child for child, _ in children].index(attr)
    for child, module in children[index + 1 :]:
        qualified = f"{parent_name}.{child}" if parent_name else child
        if isinstance(module, nn.Linear):
            return qualified, module, ""
        if not isinstance(module, _PASS_THROUGH):
            return None, None, f"the next module in its parent is {qualified!r} ({type(module).__name__})"
    return None, None, f"{name!r} is the last module of its parent"


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name), attr, module)


def swap_pooling(
    model: nn.Module,
    to: str | type[nn.Module] | Builder,
    *,
    select: Selector = None,
    inplace: bool = False,
    example_input: Tensor | tuple[Any, ...] | None = None,
    **kwargs: Any,
) -> SwapReport:
    """Replaces pooling layers of ``model`` with pools built by ``create_pool(to, **kwargs)``.

    Geometry: for each argument in ``kernel_size, stride, padding, dilation, ceil_mode,
    output_size, output_ratio`` that the old layer has and ``kwargs`` does not give, the value
    is copied when the target takes it, dropped when it is harmless (padding 0, dilation 1,
    stride equal to the kernel, an adaptive ``output_size`` of 1, ...), and otherwise the swap
    is refused. So ``swap_pooling(model, "median2d")`` keeps each max pool's window, and a
    global/adaptive(1) pool swaps to a global pool (``gem``, ``netvlad``, ...) as is.

    Output width: with ``example_input``, the original model is run once (eval mode, no
    gradients, training flags restored) with forward hooks recording each selected layer's
    input; the new pool runs on zeros of that shape. A swap that keeps the flattened width
    per sample (``(N, C, 1, 1)`` -> ``(N, C)`` counts as the same) leaves the rest of the model
    untouched. A swap that changes it needs an ``nn.Linear`` that directly follows the pool in
    its parent's module order (only ``Flatten``/``Dropout``/``Identity`` in between, as in
    torchvision's ResNet ``avgpool`` -> ``fc``); that Linear is replaced by a freshly
    initialised ``nn.Linear(new_width, out_features)`` with the same bias setting, dtype and
    device (its trained weights are lost). Without ``example_input`` a swap is accepted only
    when it provably keeps the width (registry channel multiplier 1 and the geometry copied
    or global -> global); otherwise a ValueError asks for ``example_input``. With
    ``example_input`` the swapped model is also run once as a check; if that fails the
    swap is undone and the error re-raised as a ValueError.

    Args:
        model: the model to edit.
        to: a registered pool name, a Module class or a callable returning a Module.
        select: which layers: None (every PyTorch pooling layer and every torchpool pool), a
            type or tuple of types (any module of those types), an fnmatch pattern matched
            against qualified module names (among pooling layers only; use a predicate for
            other modules), or a predicate ``(name, module) -> bool``. The root module and
            layers nested in an already selected layer are never swapped.
        inplace: edit ``model`` itself instead of a ``copy.deepcopy``.
        example_input: a tensor (or tuple of positional arguments) the model accepts;
            required for swaps that change the output width.
        **kwargs: arguments for the new pool's constructor; they take precedence over the
            copied geometry.

    Returns:
        A :class:`SwapReport` with the resulting model and one record per swapped layer.
        The new pools are moved to the dtype/device of the model's parameters and given
        the old layer's training flag.

    Raises:
        TypeError: if ``select`` or ``to`` has the wrong type.
        ValueError: for an unknown pool name (with close matches), when nothing is selected,
            when a layer's geometry cannot be carried over, or when a width-changing swap
            has no ``example_input`` or no ``nn.Linear`` to rebuild.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ...                     nn.Linear(4, 2))
        >>> x = torch.zeros(1, 3, 8, 8)
        >>> report = swap_pooling(net, "adaptive_catavgmax2d", select="2", example_input=x)
        >>> report.model[4]
        Linear(in_features=8, out_features=2, bias=True)
        >>> type(swap_pooling(net, "median2d", select=nn.MaxPool2d).model[1]).__name__
        'MedianPool2d'
    """
    choose = _selector(select)
    builder = _builder_of(to)
    info = _target_info(to)
    result = model if inplace else copy.deepcopy(model)

    selected: dict[str, nn.Module] = {}
    for name, module in result.named_modules():
        if not name or any(name.startswith(prefix + ".") for prefix in selected):
            continue
        if choose(name, module):
            selected[name] = module
    if not selected:
        raise ValueError(f"select={select!r} matched no layer of the {type(model).__name__}")

    params = [p for p in result.parameters() if p.is_floating_point()]
    device = params[0].device if params else None
    dtype = params[0].dtype if params else None

    # Build every replacement before touching the model.
    new_modules: dict[str, nn.Module] = {}
    provably_same: dict[str, bool] = {}
    for name, old in selected.items():
        if info is not None and (dims := _dims_of(old)) is not None and dims not in info.dims:
            raise ValueError(
                f"cannot swap layer {name!r} ({type(old).__name__}, {dims}d) to {info.name!r}, "
                f"which supports {', '.join(f'{d}d' for d in info.dims)} only"
            )
        geometry = _geometry_kwargs(name, old, to, builder, kwargs)
        try:
            new = create_pool(builder, **geometry, **kwargs)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"cannot build {_label(to)} for layer {name!r} ({type(old).__name__}) with "
                f"{ {**geometry, **kwargs} }: {err}"
            ) from err
        new.train(old.training)
        if device is not None:
            new.to(device=device)
            if any(p.is_floating_point() for p in new.parameters()):
                new.to(dtype=dtype)
        new_modules[name] = new
        windowed_copy = "kernel_size" in geometry or "kernel_size" in kwargs
        global_old = not hasattr(old, "kernel_size") and _neutral(
            "output_size", getattr(old, "output_size", None), old
        )
        provably_same[name] = bool(
            info is not None and info.channel_multiplier == 1 and (windowed_copy or global_old)
        )

    # Measure widths and find the Linears to rebuild.
    records: list[SwapRecord] = []
    linears: dict[str, nn.Linear] = {}
    seen = _dry_run(result, selected, example_input) if example_input is not None else {}
    for name, new in new_modules.items():
        old = selected[name]
        record = SwapRecord(name=name, old=repr(old), new=repr(new))
        records.append(record)
        if name not in seen:
            if example_input is not None:
                raise ValueError(f"layer {name!r} did not run on example_input; cannot measure its width")
            if not provably_same[name]:
                raise ValueError(
                    f"swapping layer {name!r} ({type(old).__name__}) to {_label(to)} may change the "
                    "output width; pass example_input= (an input the model accepts) so the new width "
                    "can be measured and the following nn.Linear rebuilt"
                )
            record.note = "same (not measured)"
            continue
        x, y_old = seen[name]
        modes = new.training
        try:
            new.eval()
            with torch.no_grad():
                y_new = _first_tensor(new(torch.zeros_like(x)))
        except Exception as err:
            raise ValueError(
                f"the new pool for layer {name!r} fails on its input shape {tuple(x.shape)}: {err}"
            ) from err
        finally:
            new.train(modes)
        if y_new is None:
            raise ValueError(f"the new pool for layer {name!r} returned no tensor")
        record.old_width, record.new_width = _width(y_old), _width(y_new)
        if _squeezed(y_old.shape) == _squeezed(y_new.shape):
            record.note = f"same ({record.old_width})"
            continue
        if record.old_width == record.new_width:
            raise ValueError(
                f"swapping layer {name!r} changes its output shape from {tuple(y_old.shape)} to "
                f"{tuple(y_new.shape)}; only the flattened width may change"
            )
        consumer_name, linear, why = _find_consumer(result, name)
        if linear is None or consumer_name is None:
            raise ValueError(
                f"swapping layer {name!r} changes its output width from {record.old_width} to "
                f"{record.new_width}, and cannot find the nn.Linear that consumes {name!r} ({why}); "
                "pass a pool of the same width, or narrow select= to skip this layer"
            )
        if linear.in_features != record.old_width:
            raise ValueError(
                f"cannot find the nn.Linear that consumes {name!r}: {consumer_name!r} takes "
                f"{linear.in_features} features but {name!r} makes {record.old_width}; pass a pool "
                "of the same width, or narrow select= to skip this layer"
            )
        new_linear = nn.Linear(
            record.new_width,
            linear.out_features,
            bias=linear.bias is not None,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )
        new_linear.train(linear.training)
        linears[consumer_name] = new_linear
        record.consumer = consumer_name
        record.note = (
            f"{record.old_width} -> {record.new_width}; {consumer_name} rebuilt "
            f"({linear.in_features}->{linear.out_features} to {record.new_width}->{linear.out_features})"
        )

    undo = [(name, result.get_submodule(name)) for name in [*new_modules, *linears]]
    for name, module in [*new_modules.items(), *linears.items()]:
        _set(result, name, module)
    if example_input is not None:
        modes_after = {m: m.training for m in result.modules()}
        try:
            result.eval()
            with torch.no_grad():
                _call(result, example_input)
        except Exception as err:
            for name, module in undo:
                _set(result, name, module)
            raise ValueError(f"the swapped model fails on example_input (swap undone): {err}") from err
        finally:
            for m, mode in modes_after.items():
                m.train(mode)
    return SwapReport(model=result, replaced=records)
