"""Step 6 and the entry point: :func:`swap_pooling` runs the steps, then applies every change.

Everything is built and measured before the model is touched; with ``example_input`` the
swapped model is run once and every change undone if it fails.
"""

from __future__ import annotations

import copy
from typing import Any, Literal, overload

from torch import Tensor, nn

from .._checks import check_bool
from ..registry import Builder
from ._build import build, measure
from ._dry_run import dry_run, run_eval
from ._rebuild import rebuild
from ._report import SwapRecord, SwapReport
from ._select import Selector, plan_swaps, selector, target_for

__all__ = ["swap_pooling"]


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
        run_eval(model, example_input)
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
    target = target_for(to)
    result = model if inplace else copy.deepcopy(model)
    plans = plan_swaps(result, selector(select, target), target)
    if not plans:
        raise ValueError(f"select={select!r} matched no layer of the {type(model).__name__}")
    trace = dry_run(result, plans, example_input) if example_input is not None else None
    like = next((p for p in result.parameters() if p.is_floating_point()), None)
    records: list[SwapRecord] = []
    changes: list[tuple[str, nn.Module]] = []
    for plan in plans:  # build and measure everything before touching the model
        build(plan, kwargs, trace, like)
        measure(plan, trace)
        plan_records, rebuilt = rebuild(plan, trace)
        records += plan_records
        assert plan.new is not None
        changes += [(name, plan.new) for name in plan.names] + list(rebuilt.items())
    _apply(result, changes, example_input)
    order = {name: i for i, (name, _) in enumerate(result.named_modules(remove_duplicate=False))}
    records.sort(key=lambda r: order.get(r.name, len(order)))
    report = SwapReport(model=result, replaced=records)
    return (result, report) if return_report else result
