"""Step 2 of :func:`~torchpool.swap_pooling`: one eval run of the original model, recorded.

Forward hooks record each selected layer's first input and output, and the leaf modules that
run after it (the consumers a width change must rebuild).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ._select import Plan

__all__ = ["Trace", "dry_run", "first_tensor", "run_eval"]


@dataclass
class Trace:
    """What one eval run of the original model showed: each selected instance's first (input,
    output), and the leaf modules that ran after it, with the rank of their input."""

    io: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)
    after: dict[int, list[tuple[str, nn.Module, int]]] = field(default_factory=dict)


def first_tensor(value: Any) -> Tensor | None:
    """``value`` if it is a tensor, the first item of a tuple or list of tensors, else None."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, tuple | list) and value and isinstance(value[0], Tensor):
        return value[0]
    return None


def _call(model: nn.Module, example_input: Tensor | tuple[Any, ...]) -> Any:
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    return model(*args)


def run_eval(model: nn.Module, example_input: Tensor | tuple[Any, ...]) -> None:
    """Runs ``model`` in eval mode without gradients, restoring every training flag."""
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            _call(model, example_input)
    finally:
        for m, mode in modes.items():
            m.train(mode)


def dry_run(model: nn.Module, plans: list[Plan], example_input: Tensor | tuple[Any, ...]) -> Trace:
    """Runs ``model`` once in eval mode and records what the selected layers and their consumers see."""
    trace = Trace()
    targets = {id(plan.old) for plan in plans}
    calls: list[tuple[str, nn.Module, int]] = []
    first: dict[int, int] = {}

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any, name: str) -> None:
        x, y = first_tensor(args), first_tensor(output)
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
        run_eval(model, example_input)
    finally:
        for handle in handles:
            handle.remove()
    trace.after = {key: calls[index:] for key, index in first.items()}
    return trace
