"""The records the generic tests iterate over: ``Case``, ``OpRecord``, ``make_input``.

Each family's records live in ``op_table.py`` (the seed's windowed and global ops) or in a
``records_<family>.py`` module exporting ``RECORDS``; ``op_table.OPS`` collects them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

Kwargs = dict[str, Any]


@dataclass(frozen=True)
class Case:
    """An input shape (with batch) and the op's keyword arguments."""

    shape: tuple[int, ...]
    kwargs: Kwargs = field(default_factory=dict)

    def __repr__(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{'x'.join(map(str, self.shape))}[{args}]"


@dataclass(frozen=True)
class OpRecord:
    """An op under test.

    Attributes:
        name: test id.
        function: ``function(x, **kwargs)``, deterministic (eval mode for random ops).
        module: ``module(**kwargs)`` builds the Module; it is called in eval mode as ``m(x)``.
        reference: ``reference(x, **kwargs)`` in float64.
        cases: shapes and arguments.
        inputs: ``"tiefree"`` (distinct values), ``"positive"`` (distinct, > 0) or ``"real"``.
        batchless: whether ``(C, *spatial)`` input is accepted.
        dims: number of spatial dims.
    """

    name: str
    function: Callable[..., Tensor]
    module: Callable[..., nn.Module]
    reference: Callable[..., Tensor]
    cases: tuple[Case, ...]
    dims: int
    inputs: str = "tiefree"
    batchless: bool = True


def make_input(
    record: OpRecord, shape: tuple[int, ...], dtype: torch.dtype = torch.float64, seed: int = 0
) -> Tensor:
    """Distinct values (so max/median have no ties), shuffled; positive where the op needs it."""
    g = torch.Generator().manual_seed(seed)
    numel = 1
    for size in shape:
        numel *= size
    values = torch.randperm(numel, generator=g).double() / max(numel, 1)
    values = values + 0.1 * torch.rand(numel, generator=g, dtype=torch.float64) / max(numel, 1)
    values = values + 0.05 if record.inputs == "positive" else values * 4 - 2
    return values.reshape(shape).to(dtype)
