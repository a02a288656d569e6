"""Step 1 of :func:`~torchpool.swap_pooling`: the target pool, and the layers it replaces.

:func:`target_for` reads what the target pool takes (its registry entry and signature),
:func:`selector` turns ``select=`` into a predicate and :func:`plan_swaps` finds the selected
instances, each with every name it is registered under.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from .. import nn as _tpnn
from ..registry import Builder, PoolInfo, get_pool_info, list_pools

__all__ = [
    "DEFAULT_POOL_TYPES",
    "Plan",
    "Selector",
    "Target",
    "adaptive_form",
    "plan_swaps",
    "selector",
    "target_for",
    "windowed",
]

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
    getattr(_tpnn, name) for name in _tpnn.__all__ if not name.startswith("MaxUnpool")
)
DEFAULT_POOL_TYPES: tuple[type[nn.Module], ...] = _TORCH_POOLS + _TORCHPOOL_POOLS
"""Every layer ``select=None`` may swap: PyTorch's pooling layers and torchpool's own pools
(unpooling layers excluded); of those, ``select=None`` takes the ones of the target's kind."""


@dataclass(frozen=True)
class Target:
    """The pool to build: its builder, registry entry (if any) and the arguments it takes."""

    label: str
    builder: Builder
    info: PoolInfo | None
    accepted: frozenset[str]
    var_kw: bool
    required: frozenset[str]

    @property
    def windowed(self) -> bool:
        """Takes a window but no output grid (a window pool such as ``median2d``)."""
        return "kernel_size" in self.accepted and "output_size" not in self.accepted

    @property
    def global_(self) -> bool:
        """Takes neither a window nor an output grid (GeM, NetVLAD, bilinear, a pyramid)."""
        return not self.var_kw and not {"kernel_size", "kernel_sizes", "output_size"} & self.accepted


def target_for(to: object) -> Target:
    """What ``to`` (a name, Module class or callable) builds and which arguments it takes."""
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
        return Target(label, builder, info, frozenset(), True, frozenset())
    named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return Target(
        label=label,
        builder=builder,
        info=info,
        accepted=frozenset(p.name for p in named),
        var_kw=any(p.kind is p.VAR_KEYWORD for p in params),
        required=frozenset(p.name for p in named if p.default is p.empty),
    )


def adaptive_form(target: Target) -> Target | None:
    """``adaptive_catavgmax2d`` for ``catavgmax2d``: the form of a windowed pool for a global layer."""
    if target.info is None:
        return None
    try:
        return target_for(get_pool_info(f"adaptive_{target.info.name}").name)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------- select


def windowed(module: nn.Module) -> bool:
    """Whether ``module`` pools over a window (has a ``kernel_size``)."""
    return hasattr(module, "kernel_size")


def selector(select: Selector, target: Target) -> Callable[[str, nn.Module], bool]:
    """``select=`` as a predicate ``(name, module) -> bool``; None picks the pools of the target's kind."""
    if select is None:
        if target.windowed:
            return lambda _name, module: isinstance(module, DEFAULT_POOL_TYPES) and windowed(module)
        if target.global_ or "output_size" in target.accepted:
            return lambda _name, module: isinstance(module, DEFAULT_POOL_TYPES) and not windowed(module)
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
class Plan:
    """One pooling instance to replace, under every name it is registered as."""

    names: list[str]
    old: nn.Module
    target: Target
    kwargs: dict[str, Any] = field(default_factory=dict)
    provably_same: bool = False
    new: nn.Module | None = None
    y_old: Tensor | None = None
    y_new: Tensor | None = None


def plan_swaps(model: nn.Module, choose: Callable[[str, nn.Module], bool], target: Target) -> list[Plan]:
    """The selected instances, each with all its names; layers nested in a selected one are skipped."""
    plans: dict[int, Plan] = {}
    taken: list[str] = []
    for name, module in model.named_modules(remove_duplicate=False):
        if not name or any(name.startswith(prefix + ".") for prefix in taken):
            continue
        if id(module) in plans:
            plans[id(module)].names.append(name)
            taken.append(name)
        elif choose(name, module):
            plans[id(module)] = Plan(names=[name], old=module, target=target)
            taken.append(name)
    return list(plans.values())
