"""Median pooling: the lower median of each window, computed with min/max networks on shifted views.

The median of a window is computed exactly, without materialising the ``k``-fold unfolded input,
by a *selection network* of elementwise ``torch.minimum`` / ``torch.maximum`` calls on strided views
of the padded input:

1. **Separable sorting.** Along the first spatial axis, each vertical run of ``k_0`` cells is sorted
   once with a sorting network; the sorted runs are shared by every window that contains them. The
   sorted runs are then sorted along the next axis (shared by windows that differ only in later
   axes), and so on; the last axis is sorted per window. Sorting lines of a column-sorted array keeps
   the columns sorted, so afterwards every window is sorted along every axis (a product order).
2. **Pruning.** In a window sorted along every axis, the cell with per-axis ranks ``j`` has at least
   ``prod(j + 1)`` cells below it and ``prod(k - j)`` above it, so most cells cannot be the median.
   Only the ranks that remain candidates are computed (dead-code elimination of the networks).
3. **Selection.** The candidates are run through a sorting network that skips every comparator whose
   order is already known, and only the ancestors of the wanted rank are evaluated.

For 3x3 windows this is the classic median-of-9 from sorted columns (max of the column minima, median
of the medians, min of the maxima, then the median of those three): 18 min/max per output. The input
is padded a chunk of ``(n, c)`` planes at a time, in the forward and in the backward, so that the extra
memory is about the output's size (no padded copy of the whole input). The eager path runs the network
over chunks of the batch so that intermediates stay in cache and reuses buffers; ``compiled=True`` runs
the same network under :func:`torch.compile` (padding is done eagerly outside the compiled function,
which keeps every load unmasked; the compiled path pads the whole input at once). Windows with too many
cells for a network (see :data:`NETWORK_MAX_OPS`) use a memory-bounded fallback: ``unfold`` +
:func:`torch.median` over chunks of the batch. Dilation only changes where the views start (window
cell ``c`` of an axis sits ``c * dilation`` cells after the window's first cell).

The kernel, its backward, the backward's backward and the indices are ``torch.library`` custom ops
(``torchpool::median_pool``, ...) with fake kernels and a registered gradient, so ``torch.compile``
(``fullgraph=True``) and ``torch.export`` see one opaque op per call. During an ONNX export (either
exporter), which cannot translate a custom op, the network is written out as plain min/max on views.

Conventions:

* Even windows give the **lower** median (as :func:`torch.median`): the element at sorted index
  ``(n - 1) // 2`` of the ``n`` window cells.
* A NaN anywhere in a window gives NaN for that window.
* ``padding_mode`` is ``"reflect"`` (default), ``"replicate"``, ``"circular"``, ``"zeros"`` (padded
  cells are 0 and take part in the median) or ``"valid"`` (the lower median of only the in-bounds
  cells of each window; padded cells are ignored).
* ``dilation`` and ``ceil_mode`` give max pooling's output size. In ceil mode the last window may
  reach past the padded input: those cells are not part of the window (max pooling ignores them
  too), the output is the lower median of the remaining cells.
* Integer and bool inputs give the exact median in their own dtype (no gradient).
* Gradient: one-hot to the *selected cell*, the first cell of the (padded) window in row-major order
  whose value equals the output (for a NaN output, the first NaN cell); overlapping windows add up.
  A padded cell passes its gradient to the input cell it copies (reflect, replicate, circular) or
  drops it (zeros). In ``"valid"`` mode only in-bounds cells can be selected; ceil-mode cells past
  the padded input never are.
* Indices (``*_with_indices``) are flat indices into each ``(n, c)`` spatial plane of the *unpadded*
  input, as returned by ``F.max_pool2d(..., return_indices=True)``: the selected cell, or the input
  cell that a selected reflect/replicate/circular padding cell copies. In ``"zeros"`` mode, when the selected
  cell is a padded zero, the index is the first in-bounds cell of the window equal to the output (0)
  if there is one, else the first in-bounds cell of the window (whose value then differs from the
  output).
"""

from __future__ import annotations

import itertools
import math
import random
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import Window, check_bool, check_choice, check_input, check_window, restore_batch
from .._shape import IntOrTuple
from ..registry import register_pool
from ._base import WindowPool

__all__ = [
    "NETWORK_MAX_OPS",
    "PADDING_MODES",
    "MedianPool1d",
    "MedianPool2d",
    "MedianPool3d",
    "median_pool1d",
    "median_pool1d_with_indices",
    "median_pool2d",
    "median_pool2d_with_indices",
    "median_pool3d",
    "median_pool3d_with_indices",
]

PADDING_MODES: tuple[str, ...] = ("reflect", "replicate", "circular", "zeros", "valid")
"""The accepted values of ``padding_mode``."""

NETWORK_MAX_OPS = 600
"""Windows whose min/max network needs more operations per output than this use the unfold fallback."""

# Elements per chunk of the eager network: small enough for the intermediates to stay in cache.
_CHUNK_ELEMENTS = 1 << 19
# Padded elements per chunk of planes that is padded at a time (forward, backward and indices), so
# that no padded copy of the whole input is made: the extra memory is the output and a few chunks.
_PLANE_CHUNK_ELEMENTS = 1 << 23
# Extra elements the unfold fallback may allocate per chunk (at least; else the input's size).
_FALLBACK_MIN_ELEMENTS = 1 << 22

# ----------------------------------------------------------------------------------------------
# Sorting networks
# ----------------------------------------------------------------------------------------------

# Size-optimal sorting networks for n <= 8 (Knuth, TAOCP vol. 3, 5.3.4); checked by the 0-1
# principle in the tests.
_OPTIMAL_NETWORKS: dict[int, tuple[tuple[int, int], ...]] = {
    2: ((0, 1),),
    3: ((0, 1), (1, 2), (0, 1)),
    4: ((0, 1), (2, 3), (0, 2), (1, 3), (1, 2)),
    5: ((0, 1), (3, 4), (2, 4), (2, 3), (0, 3), (0, 2), (1, 4), (1, 3), (1, 2)),
    6: ((1, 2), (4, 5), (0, 2), (3, 5), (0, 1), (3, 4), (2, 5), (0, 3), (1, 4), (2, 4), (1, 3), (2, 3)),
    7: (
        (1, 2), (3, 4), (5, 6), (0, 2), (3, 5), (4, 6), (0, 1), (4, 5),
        (2, 6), (0, 4), (1, 5), (0, 3), (2, 5), (1, 3), (2, 4), (2, 3),
    ),
    8: (
        (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7), (0, 1), (2, 3),
        (4, 5), (6, 7), (2, 4), (3, 5), (1, 4), (3, 6), (1, 2), (3, 4), (5, 6),
    ),
}  # fmt: skip


def _batcher_network(n: int) -> tuple[tuple[tuple[int, int], ...], int]:
    """Batcher's odd-even merge sort on the next power of two ``>= n`` wires."""
    width = 1
    while width < n:
        width *= 2
    pairs: list[tuple[int, int]] = []
    t = 1
    while t < width:
        k = t
        while k >= 1:
            j = k % t
            while j <= width - 1 - k:
                for i in range(min(k, width - j - k)):
                    if (i + j) // (2 * t) == (i + j + k) // (2 * t):
                        pairs.append((i + j, i + j + k))
                j += 2 * k
            k //= 2
        t *= 2
    return tuple(pairs), width


def _sorting_network(n: int) -> tuple[tuple[tuple[int, int], ...], int]:
    """A sorting network for ``n`` wires: comparators ``(i, j)`` (``i < j``) and the width used.

    Wires beyond ``n`` (up to the width) hold ``+inf`` sentinels.
    """
    if n <= 1:
        return (), n
    if n in _OPTIMAL_NETWORKS:
        return _OPTIMAL_NETWORKS[n], n
    return _batcher_network(n)


# ----------------------------------------------------------------------------------------------
# Symbolic construction of the selection network
# ----------------------------------------------------------------------------------------------

# A node is ("view", parent, axis_stage, offset) or ("min" | "max", a, b, 0); parent -1 is the input.
_Node = tuple[str, int, int, int]


class _Builder:
    """Builds a DAG of min/max nodes with common-subexpression elimination."""

    def __init__(self) -> None:
        self.nodes: list[_Node] = []
        self.stage: list[int] = []
        self._memo: dict[_Node, int] = {}

    def add(self, node: _Node, stage: int) -> int:
        index = self._memo.get(node)
        if index is None:
            index = len(self.nodes)
            self.nodes.append(node)
            self.stage.append(stage)
            self._memo[node] = index
        return index

    def op(self, kind: str, a: int, b: int) -> int:
        a, b = min(a, b), max(a, b)
        return self.add((kind, a, b, 0), self.stage[a])

    def chain(self, kind: str, wires: Sequence[int]) -> int:
        """Minimum or maximum of all wires as a balanced tree."""
        items = list(wires)
        while len(items) > 1:
            items = [self.op(kind, items[i], items[i + 1]) for i in range(0, len(items) - 1, 2)] + (
                [items[-1]] if len(items) % 2 else []
            )
        return items[0]

    def sort(self, wires: Sequence[int], known: set[tuple[int, int]]) -> list[int]:
        """Sorts wires with a sorting network, skipping comparators whose order is known.

        ``known`` holds pairs ``(a, b)`` with ``value(a) <= value(b)``; it is extended in place.
        """
        pairs, width = _sorting_network(len(wires))
        w: list[int | None] = [*wires] + [None] * (width - len(wires))
        for p, q in pairs:
            a, b = w[p], w[q]
            if b is None:
                continue
            if a is None:
                w[p], w[q] = b, None
                continue
            if a == b or (a, b) in known:
                continue
            if (b, a) in known:
                w[p], w[q] = b, a
                continue
            lo, hi = self.op("min", a, b), self.op("max", a, b)
            new = {(lo, hi)}
            for x in w:
                if x is None or x in (a, b):
                    continue
                x_le_a, x_le_b = (x, a) in known, (x, b) in known
                a_le_x, b_le_x = (a, x) in known, (b, x) in known
                if x_le_a and x_le_b:
                    new.add((x, lo))
                if a_le_x or b_le_x:
                    new.add((lo, x))
                if x_le_a or x_le_b:
                    new.add((x, hi))
                if a_le_x and b_le_x:
                    new.add((hi, x))
            known |= new
            w[p], w[q] = lo, hi
        return [wire for wire in w[: len(wires)] if wire is not None]

    def select_line(self, wires: Sequence[int], ranks: set[int]) -> dict[int, int]:
        """Nodes for the given ranks of ``wires`` (minimum/maximum alone use a simple chain)."""
        n = len(wires)
        if n == 1:
            return {0: wires[0]}
        if ranks == {0}:
            return {0: self.chain("min", wires)}
        if ranks == {n - 1}:
            return {n - 1: self.chain("max", wires)}
        result = self.sort(wires, set())
        return {j: result[j] for j in ranks}


@dataclass(frozen=True)
class _Plan:
    """A straight-line min/max program computing the window median."""

    kernel: tuple[int, ...]  # in original axis order
    perm: tuple[int, ...]  # stage a sorts along spatial axis perm[a]
    instrs: tuple[_Node, ...]  # node i of the program is instrs[i]
    out: int
    last_use: tuple[int, ...]  # instruction index after which node i is dead
    deaths: tuple[tuple[int, ...], ...]  # nodes whose last use is instruction t
    ops_per_stage: tuple[int, ...]


def _candidates(kernel: Sequence[int]) -> tuple[list[tuple[int, ...]], int]:
    """Rank tuples that can hold the lower median of a window sorted along every axis, and its rank."""
    n = math.prod(kernel)
    m = (n - 1) // 2
    grid = list(itertools.product(*(range(k) for k in kernel)))
    below = [j for j in grid if math.prod(k - t for k, t in zip(kernel, j)) > n - m]
    cands = [
        j
        for j in grid
        if math.prod(t + 1 for t in j) <= m + 1 and math.prod(k - t for k, t in zip(kernel, j)) <= n - m
    ]
    return cands, m - len(below)


def _build(kernel: tuple[int, ...], order: list[tuple[int, ...]], rank: int) -> tuple[_Builder, int]:
    builder = _Builder()
    d = len(kernel)
    # needed[a]: rank prefixes (length a + 1) that some candidate has
    needed = [{j[: a + 1] for j in order} for a in range(d)]
    grid: dict[tuple[int, ...], int] = {(): -1}
    for a in range(d):
        new: dict[tuple[int, ...], int] = {}
        for prefix, node in grid.items():
            ranks = {j[a] for j in needed[a] if j[:a] == prefix}
            if not ranks:
                continue
            wires = [builder.add(("view", node, a, i), a) for i in range(kernel[a])]
            for j, result in builder.select_line(wires, ranks).items():
                new[prefix + (j,)] = result  # noqa: RUF005
        grid = new
    known = {(grid[p], grid[q]) for p in order for q in order if p != q and all(x <= y for x, y in zip(p, q))}
    if len(order) == 1:
        return builder, grid[order[0]]
    if rank == 0:
        return builder, builder.chain("min", [grid[j] for j in order])
    if rank == len(order) - 1:
        return builder, builder.chain("max", [grid[j] for j in order])
    return builder, builder.sort([grid[j] for j in order], known)[rank]


def _ancestors(builder: _Builder, out: int) -> list[int]:
    seen: set[int] = set()
    stack = [out]
    while stack:
        i = stack.pop()
        if i < 0 or i in seen:
            continue
        seen.add(i)
        kind, a, b, _ = builder.nodes[i]
        stack.append(a)
        if kind != "view":
            stack.append(b)
    return sorted(seen)


@lru_cache(maxsize=256)
def _plan(kernel: tuple[int, ...], perm: tuple[int, ...]) -> _Plan:
    """The cheapest network found for a window, sorting axes in the order ``perm``."""
    k = tuple(kernel[a] for a in perm)
    cands, rank = _candidates(k)
    orders = [cands, cands[::-1], sorted(cands, key=lambda j: (sum(j), j))]
    rng = random.Random(0)
    for _ in range(12 if len(cands) > 3 else 0):
        shuffled = list(cands)
        rng.shuffle(shuffled)
        orders.append(shuffled)
    best: tuple[int, _Builder, int] | None = None
    for order in orders:
        builder, out = _build(k, order, rank)
        count = sum(1 for i in _ancestors(builder, out) if builder.nodes[i][0] != "view")
        if best is None or count < best[0]:
            best = (count, builder, out)
    assert best is not None
    _, builder, out = best
    keep = _ancestors(builder, out)
    renumber = {old: new for new, old in enumerate(keep)}
    renumber[-1] = -1
    instrs: list[_Node] = []
    ops = [0] * len(k)
    for old in keep:
        kind, a, b, c = builder.nodes[old]
        if kind == "view":
            instrs.append((kind, renumber[a], b, c))
        else:
            instrs.append((kind, renumber[a], renumber[b], 0))
            ops[builder.stage[old]] += 1
    last = list(range(len(instrs)))
    for t in range(len(instrs) - 1, -1, -1):
        kind, a, b, _ = instrs[t]
        if kind == "view":
            if a >= 0:
                last[a] = max(last[a], last[t])
        else:
            last[a] = max(last[a], t)
            last[b] = max(last[b], t)
    deaths: list[list[int]] = [[] for _ in instrs]
    for node, t in enumerate(last):
        deaths[t].append(node)
    return _Plan(
        tuple(kernel),
        perm,
        tuple(instrs),
        len(instrs) - 1,
        tuple(last),
        tuple(map(tuple, deaths)),
        tuple(ops),
    )


def _plan_cost(plan: _Plan, out_sizes: Sequence[int], used: Sequence[int]) -> int:
    sizes = list(used)
    cost = 0
    for stage, axis in enumerate(plan.perm):
        sizes[axis] = out_sizes[axis]
        cost += plan.ops_per_stage[stage] * math.prod(sizes)
    return cost


def _choose_plan(
    kernel: tuple[int, ...], stride: Sequence[int], out_sizes: Sequence[int], used: Sequence[int]
) -> _Plan | None:
    """The cheapest network over the axis orders, or None when the window is too large for one."""
    n = math.prod(kernel)
    if n > 64:
        return None
    best: tuple[int, _Plan] | None = None
    nd = len(kernel)
    for perm in itertools.permutations(range(nd)):
        if nd > 1 and stride[nd - 1] > 1 and kernel[nd - 1] > 1 and perm[0] != nd - 1:
            continue  # sort along the innermost axis first: its views can then use contiguous phases
        plan = _plan(kernel, perm)
        cost = _plan_cost(plan, out_sizes, used)
        if best is None or cost < best[0]:
            best = (cost, plan)
    assert best is not None
    if best[0] > NETWORK_MAX_OPS * math.prod(out_sizes):
        return None
    return best[1]


# ----------------------------------------------------------------------------------------------
# Running a plan
# ----------------------------------------------------------------------------------------------


def _leading(spatial: Iterable[slice]) -> tuple[slice, ...]:
    """Index keeping the leading (batch) dimension and slicing the spatial ones."""
    return (slice(None), *spatial)


def _axis_slice(axis: int, ndim: int, start: int, stop: int, step: int) -> tuple[slice, ...]:
    """Index selecting ``start:stop:step`` along spatial ``axis`` of a ``(B, *spatial)`` tensor."""
    index = [slice(None)] * (ndim + 1)
    index[axis + 1] = slice(start, stop, step)
    return tuple(index)


def _run_plan(
    plan: _Plan,
    xs: Tensor,
    out: Tensor,
    stride: Sequence[int],
    dilation: Sequence[int],
    pool: dict[Any, list[Tensor]],
) -> None:
    """Evaluates ``plan`` on ``xs`` (``(b, *used)``) into ``out`` (``(b, *out_sizes)``), eagerly.

    Window cell ``c`` along an axis sits ``c * dilation`` cells after the window start.
    """
    nd = xs.dim() - 1
    out_sizes = out.shape[1:]
    values: dict[int, Tensor] = {}
    owned: set[int] = set()
    step = stride[nd - 1]
    # Strided views along the innermost axis defeat vectorisation: split the input into contiguous
    # phases once (the plan sorts along that axis first, see _choose_plan).
    phases = _phases(xs, step) if _uses_phases(plan, stride) else []
    for t, (kind, a, b, c) in enumerate(plan.instrs):
        if kind == "view":
            axis = plan.perm[b]
            size = out_sizes[axis]
            c *= dilation[axis]
            if a < 0 and phases and axis == nd - 1:
                values[t] = phases[c % step][..., c // step : c // step + size]
            else:
                src = xs if a < 0 else values[a]
                values[t] = src[_axis_slice(axis, nd, c, c + stride[axis] * (size - 1) + 1, stride[axis])]
        else:
            ta, tb = values[a], values[b]
            if t == plan.out:
                dst = out
            elif a in owned and plan.last_use[a] == t:
                dst = ta
                owned.discard(a)
            elif b in owned and plan.last_use[b] == t:
                dst = tb
                owned.discard(b)
            else:
                free = pool.get(ta.shape)
                dst = free.pop() if free else torch.empty(ta.shape, dtype=ta.dtype, device=ta.device)
                owned.add(t)
            if t != plan.out and dst is not out:
                owned.add(t)
            (torch.minimum if kind == "min" else torch.maximum)(ta, tb, out=dst)
            values[t] = dst
        if t == plan.out:
            break
        for node in plan.deaths[t]:
            tensor = values.pop(node)
            if node in owned:
                owned.discard(node)
                pool.setdefault(tensor.shape, []).append(tensor)
    if plan.instrs[plan.out][0] == "view":
        out.copy_(values[plan.out])


def _network_eager(
    plan: _Plan, xu: Tensor, out: Tensor, stride: Sequence[int], dilation: Sequence[int]
) -> None:
    """Runs the network over chunks of the batch so that intermediates stay in cache."""
    per_item = max(1, math.prod(xu.shape[1:]))
    chunk = max(1, _CHUNK_ELEMENTS // per_item)
    pool: dict[Any, list[Tensor]] = {}
    for start in range(0, xu.shape[0], chunk):
        _run_plan(plan, xu[start : start + chunk], out[start : start + chunk], stride, dilation, pool)


def _uses_phases(plan: _Plan, stride: Sequence[int]) -> bool:
    """Whether stage 0 reads the input through contiguous phases of the innermost axis."""
    nd = len(stride)
    return stride[nd - 1] > 1 and plan.perm[0] == nd - 1


def _phases(xu: Tensor, step: int) -> list[Tensor]:
    """The innermost axis split into ``step`` contiguous phases (``xu[..., r::step]``)."""
    return [xu[..., r::step].contiguous() for r in range(step)]


def _network_source(
    plan: _Plan, out_sizes: Sequence[int], stride: Sequence[int], dilation: Sequence[int]
) -> str:
    """Python source of a straight-line function computing the plan.

    Its arguments are the padded ``(B, *padded)`` tensor, or the phases of :func:`_phases`.
    """
    nd = len(out_sizes)
    step = stride[nd - 1]
    phases = _uses_phases(plan, stride)
    lines = [f"def network({', '.join(f'p{r}' for r in range(step)) if phases else 'xp'}):"]
    for t, (kind, a, b, c) in enumerate(plan.instrs):
        if kind == "view":
            axis = plan.perm[b]
            c *= dilation[axis]
            if a < 0 and phases:
                lines.append(f"    v{t} = p{c % step}[..., {c // step}:{c // step + out_sizes[axis]}]")
                continue
            parts = [":"] * (nd + 1)
            parts[axis + 1] = f"{c}:{c + stride[axis] * (out_sizes[axis] - 1) + 1}:{stride[axis]}"
            src = "xp" if a < 0 else f"v{a}"
            lines.append(f"    v{t} = {src}[{', '.join(parts)}]")
        else:
            lines.append(f"    v{t} = torch.{'minimum' if kind == 'min' else 'maximum'}(v{a}, v{b})")
    suffix = ".clone()" if plan.instrs[plan.out][0] == "view" else ""
    lines.append(f"    return v{plan.out}{suffix}")
    return "\n".join(lines) + "\n"


def _select_source(kernel: Sequence[int], stride: Sequence[int], out_sizes: Sequence[int]) -> str:
    """Source of a fused kernel: window offset of the selected cell (first equal cell, row-major)."""
    n = math.prod(kernel)
    # float32 offsets (exact below 2^24) and ``v != v`` (rather than isnan) keep the generated C++
    # loops vectorised, here and in the gather kernel (int32 offsets made that one ~6x slower)
    lines = [
        "def select(xp, y):",
        "    ynan = y != y",
        f"    sel = torch.full_like(y, {n}.0, dtype=torch.float32)",
    ]
    offsets = list(itertools.product(*(range(k) for k in kernel)))
    for o in range(n - 1, -1, -1):
        parts = [":"] + [
            f"{i}:{i + s * (osz - 1) + 1}:{s}" for i, s, osz in zip(offsets[o], stride, out_sizes)
        ]
        lines.append(f"    v = xp[{', '.join(parts)}]")
        lines.append(f"    sel = torch.where((v == y) | ((v != v) & ynan), {float(o)}, sel)")
    lines.append("    return sel")
    return "\n".join(lines) + "\n"


def _gather_source(kernel: Sequence[int], used: Sequence[int]) -> str:
    """Source of a fused gather-form accumulation of the gradient over pre-padded ``selp``/``gp``."""
    lines = ["def gather(selp, gp):"]
    for o, offset in enumerate(itertools.product(*(range(k) for k in kernel))):
        idx = ", ".join([":"] + [f"{k - 1 - i}:{k - 1 - i + u}" for k, i, u in zip(kernel, offset, used)])
        term = f"torch.where(selp[{idx}] == {float(o)}, gp[{idx}], 0)"
        lines.append(f"    acc = {term}" if o == 0 else f"    acc = acc + {term}")
    lines.append("    return acc")
    return "\n".join(lines) + "\n"


def _grad_compiled(xp: Tensor, y: Tensor, g: Tensor, cfg: _Config) -> Tensor | None:
    """Backward with two compiled kernels; the padding/dilation between them is done eagerly."""
    out_sizes = tuple(y.shape[1:])
    key = ("select", cfg.kernel, cfg.stride, tuple(xp.shape), xp.dtype, xp.device)
    sel = _call_compiled(key, lambda: _select_source(cfg.kernel, cfg.stride, out_sizes), "select", xp, y)
    if sel is None:
        return None
    # Outputs sit at multiples of the stride of a grid padded by kernel - 1 on both sides, so that
    # every padded-input cell gathers from kernel-many unmasked shifted views.
    used = [s * (o - 1) + k for k, s, o in zip(cfg.kernel, cfg.stride, out_sizes)]
    grid = (xp.shape[0], *(u + k - 1 for u, k in zip(used, cfg.kernel)))
    inner = (
        slice(None),
        *(slice(k - 1, k - 1 + s * (o - 1) + 1, s) for k, s, o in zip(cfg.kernel, cfg.stride, out_sizes)),
    )
    if all(s == 1 for s in cfg.stride):  # one pass each instead of a fill and a copy
        pads = [q for k in reversed(cfg.kernel) for q in (k - 1, k - 1)]
        selp, gp = F.pad(sel, pads, value=-1.0), F.pad(g, pads)
    else:
        selp = torch.full(grid, -1, dtype=sel.dtype, device=sel.device)
        selp[inner] = sel
        gp = torch.zeros(grid, dtype=g.dtype, device=g.device)
        gp[inner] = g
    key = ("gather", cfg.kernel, grid, (), g.dtype, g.device)
    acc = _call_compiled(key, lambda: _gather_source(cfg.kernel, used), "gather", selp, gp)
    if acc is None:
        return None
    if list(acc.shape[1:]) == list(xp.shape[1:]):
        return acc
    grad = torch.zeros_like(xp)
    grad[_leading(slice(0, u) for u in used)] = acc
    return grad


_COMPILED: dict[tuple[Any, ...], Callable[..., Tensor] | None] = {}
_COMPILED_MAX = 64


def _compiled(key: tuple[Any, ...], source: Callable[[], str], name: str) -> Callable[..., Tensor] | None:
    """A ``torch.compile``-d function generated from source, cached per key (None if compile failed)."""
    if key in _COMPILED:
        return _COMPILED[key]
    namespace: dict[str, Any] = {"torch": torch}
    code = compile(source(), f"<torchpool.median.{name}.{len(_COMPILED)}>", "exec")
    exec(code, namespace)
    if len(_COMPILED) >= _COMPILED_MAX:
        _COMPILED.pop(next(iter(_COMPILED)))
    fn = torch.compile(namespace[name], dynamic=False)
    _COMPILED[key] = fn
    return fn


def _call_compiled(
    key: tuple[Any, ...], source: Callable[[], str], name: str, *args: Tensor
) -> Tensor | None:
    fn = _compiled(key, source, name)
    if fn is None:
        return None
    try:
        return fn(*args)
    except Exception as error:
        warnings.warn(
            f"torch.compile failed for median pooling ({type(error).__name__}: {error}); using eager mode",
            RuntimeWarning,
            stacklevel=4,
        )
        _COMPILED[key] = None
        return None


# ----------------------------------------------------------------------------------------------
# Fallbacks and the "valid" mode
# ----------------------------------------------------------------------------------------------


def _windows(xs: Tensor, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]) -> Tensor:
    """``(b, *out, prod(kernel))`` copy of the windows of ``xs`` (``(b, *spatial)``)."""
    spans = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    if torch.jit.is_tracing():  # the TorchScript ONNX exporter cannot export unfold: stack the views
        out_sizes = [(u - e) // s + 1 for u, e, s in zip(xs.shape[1:], spans, stride)]
        views = [
            xs[
                _leading(
                    slice(i * d, i * d + s * (o - 1) + 1, s)
                    for i, s, d, o in zip(offset, stride, dilation, out_sizes)
                )
            ]
            for offset in itertools.product(*(range(k) for k in kernel))
        ]
        return torch.stack(views, dim=-1)
    w = xs
    for axis, (e, s, d) in enumerate(zip(spans, stride, dilation)):
        w = w.unfold(axis + 1, e, s)[..., ::d]
    nd = len(kernel)
    return w.reshape(*w.shape[: nd + 1], -1)


def _fallback_chunk(xp: Tensor, out_sizes: Sequence[int], kernel: Sequence[int]) -> int:
    budget = max(xp.numel(), _FALLBACK_MIN_ELEMENTS)
    return max(1, budget // max(1, math.prod(out_sizes) * math.prod(kernel)))


def _median_unfold(xu: Tensor, out: Tensor, cfg: _Config) -> None:
    """Memory-bounded fallback: unfold + :func:`torch.median` over chunks of the batch."""
    chunk = _fallback_chunk(xu, out.shape[1:], cfg.kernel)
    for start in range(0, xu.shape[0], chunk):
        windows = _windows(xu[start : start + chunk], cfg.kernel, cfg.stride, cfg.dilation)
        out[start : start + chunk] = windows.median(dim=-1).values


def _outer(vectors: Sequence[Tensor]) -> Tensor:
    """Outer product of 1-d tensors (logical and for bool tensors, product otherwise)."""
    nd = len(vectors)
    result = vectors[0].reshape([-1] + [1] * (nd - 1))
    for axis in range(1, nd):
        shape = [1] * nd
        shape[axis] = -1
        result = result * vectors[axis].reshape(shape)
    return result


def _valid_region(
    xp: Tensor, counted: Sequence[Tensor], cfg: _Config, ranges: Sequence[tuple[int, int]]
) -> Tensor:
    """Lower median of the counted cells of the windows whose outputs lie in ``ranges``."""
    kernel, stride, dilation = cfg.kernel, cfg.stride, cfg.dilation
    spans = [slice(s * lo, s * (hi - 1) + e) for (lo, hi), e, s in zip(ranges, cfg.spans, stride)]
    slab = xp[_leading(spans)]
    mask = _outer([inb[span] for inb, span in zip(counted, spans)])
    counts = _outer(
        [
            torch.stack([inb[s * o : s * o + e : d].sum() for o in range(lo, hi)])
            for inb, (lo, hi), e, s, d in zip(counted, ranges, cfg.spans, stride, dilation)
        ]
    )
    rank = ((counts - 1) // 2).unsqueeze(-1)
    top = float("inf") if xp.is_floating_point() else torch.iinfo(xp.dtype).max
    values = torch.where(mask, slab, torch.tensor(top, dtype=xp.dtype, device=xp.device))
    out_sizes = [hi - lo for lo, hi in ranges]
    result = torch.empty((xp.shape[0], *out_sizes), dtype=xp.dtype, device=xp.device)
    chunk = _fallback_chunk(slab, out_sizes, kernel)
    for start in range(0, xp.shape[0], chunk):
        ordered = _windows(values[start : start + chunk], kernel, stride, dilation).sort(dim=-1).values
        picked = ordered.gather(-1, rank.expand(*ordered.shape[:-1], 1)).squeeze(-1)
        nan = torch.isnan(ordered[..., -1])  # NaN sorts last
        result[start : start + chunk] = torch.where(nan, ordered[..., -1], picked)
    return result


def _fix_borders(y: Tensor, xp: Tensor, cfg: _Config, everything: bool) -> None:
    """Overwrites the outputs whose windows hold uncounted cells with the median of the counted ones.

    Uncounted cells: the padding in ``"valid"`` mode, and the ceil-mode overhang past the padded input.
    """
    counted = cfg.counted(xp.device)
    out_sizes = y.shape[1:]
    nd = len(out_sizes)
    interior: list[tuple[int, int]] = []
    borders: list[list[tuple[int, int]]] = []
    for axis in range(nd):
        s, e, o = cfg.stride[axis], cfg.spans[axis], out_sizes[axis]
        first, last = cfg.counted_range(axis)
        inside = [j for j in range(o) if s * j >= first and s * j + e <= last]
        lo, hi = (inside[0], inside[-1] + 1) if inside and not everything else (0, 0)
        interior.append((lo, hi))
        borders.append([r for r in ((0, lo), (hi, o)) if r[1] > r[0]] if hi > lo else [(0, o)])
    for axis in range(nd):
        for border in borders[axis]:
            ranges = [*interior[:axis], border, *[(0, o) for o in out_sizes[axis + 1 :]]]
            if any(hi <= lo for lo, hi in ranges):
                continue
            y[_leading(slice(lo, hi) for lo, hi in ranges)] = _valid_region(xp, counted, cfg, ranges)


# ----------------------------------------------------------------------------------------------
# Forward, selection and backward
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Config:
    """The window of one call. The kernels see the input padded by ``padding`` on both sides and, in
    ceil mode, by ``overhang`` more cells on the far side (never part of a window)."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    sizes: tuple[int, ...]  # unpadded input sizes
    mode: str
    compiled: bool
    dilation: tuple[int, ...]
    ceil_mode: bool

    @property
    def spans(self) -> tuple[int, ...]:
        """Cells from the first to the last cell of a window, per axis."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))

    @property
    def out_sizes(self) -> tuple[int, ...]:
        """PyTorch's pooling output size (``pooling_output_shape``), with dilation and ceil mode."""
        sizes = []
        for i, e, s, p in zip(self.sizes, self.spans, self.stride, self.padding):
            o = (i + 2 * p - e + (s - 1 if self.ceil_mode else 0)) // s + 1
            if self.ceil_mode and (o - 1) * s >= i + p:
                o -= 1
            sizes.append(o)
        return tuple(sizes)

    @property
    def used(self) -> tuple[int, ...]:
        """Cells of the padded (and overhung) input that the windows cover, per axis."""
        return tuple(s * (o - 1) + e for s, o, e in zip(self.stride, self.out_sizes, self.spans))

    @property
    def overhang(self) -> tuple[int, ...]:
        """Ceil-mode cells past the padded input that the last window reaches, per axis."""
        return tuple(max(0, u - i - 2 * p) for u, i, p in zip(self.used, self.sizes, self.padding))

    @property
    def restricted(self) -> bool:
        """Whether some window holds cells that do not count (``"valid"`` padding, ceil overhang)."""
        return (self.mode == "valid" and any(self.padding)) or any(self.overhang)

    def counted_range(self, axis: int) -> tuple[int, int]:
        """``[first, last)`` cells of the padded axis that count: in bounds for ``"valid"``."""
        p, size = self.padding[axis], self.sizes[axis]
        return (p, p + size) if self.mode == "valid" else (0, size + 2 * p)

    def _masks(self, device: torch.device, ranges: Sequence[tuple[int, int]]) -> list[Tensor]:
        masks = []
        for (first, last), p, size, extra in zip(ranges, self.padding, self.sizes, self.overhang):
            mask = torch.zeros(size + 2 * p + extra, dtype=torch.bool, device=device)
            mask[first:last] = True
            masks.append(mask)
        return masks

    def inbounds(self, device: torch.device) -> list[Tensor]:
        """Per axis, which cells of the padded axis are input cells."""
        return self._masks(device, [(p, p + size) for p, size in zip(self.padding, self.sizes)])

    def counted(self, device: torch.device) -> list[Tensor]:
        """Per axis, which cells of the padded axis can be part of a window."""
        return self._masks(device, [self.counted_range(axis) for axis in range(len(self.sizes))])


def _out_sizes(cfg: _Config) -> tuple[int, ...]:
    return cfg.out_sizes


def _forward(xp: Tensor, cfg: _Config, out: Tensor | None = None, functional: bool = False) -> Tensor:
    """Median of every window of the padded, contiguous ``(B, *padded)`` tensor ``xp`` (into ``out``).

    ``functional`` evaluates the network without ``out=`` buffers (for the ONNX exporters).
    """
    out_sizes = cfg.out_sizes
    xu = xp[_leading(slice(0, u) for u in cfg.used)]
    plan = _choose_plan(cfg.kernel, cfg.stride, out_sizes, cfg.used)
    y: Tensor | None = None
    if cfg.mode == "valid" and all(p == 0 for p in cfg.padding):
        cfg = replace(cfg, mode="zeros")
    if functional:
        y = _functional_network(plan, xu, cfg) if plan is not None else _functional_unfold(xu, cfg)
    elif plan is not None and cfg.compiled:
        key = ("fwd", plan.kernel, plan.perm, tuple(xp.shape), cfg.stride, cfg.dilation, xp.dtype, xp.device)
        args = _phases(xu, cfg.stride[-1]) if _uses_phases(plan, cfg.stride) else [xp]
        y = _call_compiled(
            key, lambda: _network_source(plan, out_sizes, cfg.stride, cfg.dilation), "network", *args
        )
    if y is None:
        y = torch.empty((xp.shape[0], *out_sizes), dtype=xp.dtype, device=xp.device) if out is None else out
        if plan is not None:
            _network_eager(plan, xu, y, cfg.stride, cfg.dilation)
        elif cfg.mode != "valid":
            _median_unfold(xu, y, cfg)
    if cfg.restricted:
        _fix_borders(y, xp, cfg, everything=plan is None and cfg.mode == "valid")
    if out is not None and y is not out:
        out.copy_(y)
        return out
    return y


def _offset_views(cfg: _Config, out_sizes: Sequence[int]) -> list[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """Each window offset in row-major order, with the index of its strided view."""
    views = []
    for offset in itertools.product(*(range(k) for k in cfg.kernel)):
        index = (
            slice(None),
            *(
                slice(i * d, i * d + s * (o - 1) + 1, s)
                for i, s, d, o in zip(offset, cfg.stride, cfg.dilation, out_sizes)
            ),
        )
        views.append((offset, index))
    return views


def _offset_mask(inbounds: Sequence[Tensor], index: tuple[slice, ...]) -> Tensor:
    return _outer([inb[sl] for inb, sl in zip(inbounds, index[1:])])


def _grad_eager(xp: Tensor, y: Tensor, g: Tensor, cfg: _Config) -> Tensor:
    """Scatters ``g`` to the selected cell of each window (first equal cell, row-major)."""
    out_sizes = y.shape[1:]
    views = _offset_views(cfg, out_sizes)
    restrict = cfg.restricted
    counted = cfg.counted(xp.device) if restrict else []
    masks = [_offset_mask(counted, index) for _, index in views] if restrict else []
    has_nan = bool(torch.isnan(y).any())
    grad = torch.zeros_like(xp)
    per_item = max(1, math.prod(xp.shape[1:]))
    chunk = max(1, _CHUNK_ELEMENTS // per_item)
    for start in range(0, xp.shape[0], chunk):
        part = slice(start, start + chunk)
        xs, ys, gr = xp[part], y[part], grad[part]
        remaining = g[part].clone()
        ynan = torch.isnan(ys) if has_nan else None
        for o, (_, index) in enumerate(views):
            v = xs[index]
            match = v == ys
            if ynan is not None:
                match |= torch.isnan(v) & ynan
            if restrict:
                match &= masks[o]
            gr[index].add_(torch.where(match, remaining, 0))
            remaining = remaining.masked_fill(match, 0)
    return grad


def _grad(xp: Tensor, y: Tensor, g: Tensor, cfg: _Config) -> Tensor:
    if (
        cfg.compiled
        and not cfg.restricted
        and all(d == 1 for d in cfg.dilation)
        and math.prod(cfg.kernel) < 32767
        and not torch.is_grad_enabled()
    ):
        grad = _grad_compiled(xp, y, g, cfg)
        if grad is not None:
            return grad
    return _grad_eager(xp, y, g, cfg)


def _selection(xp: Tensor, y: Tensor, cfg: _Config, masks: Sequence[Tensor] | None) -> Tensor:
    """Window offset (row-major, 0..k-1) of the selected cell; ``prod(kernel)`` where none matches.

    ``masks`` (per axis, over the padded axis) restricts the cells that can be selected.
    """
    out_sizes = y.shape[1:]
    views = _offset_views(cfg, out_sizes)
    ynan = torch.isnan(y)
    sel = torch.full(y.shape, len(views), dtype=torch.long, device=y.device)
    for o in range(len(views) - 1, -1, -1):
        v = xp[views[o][1]]
        match = (v == y) | (torch.isnan(v) & ynan)
        if masks is not None:
            match &= _offset_mask(masks, views[o][1])
        sel.masked_fill_(match, o)
    return sel


def _indices(xp: Tensor, y: Tensor, cfg: _Config) -> Tensor:
    """Flat indices into the unpadded spatial plane (see the module docstring for the rules)."""
    if cfg.mode in ("zeros", "valid"):
        masks: list[Tensor] | None = cfg.inbounds(xp.device)
    else:
        masks = cfg.counted(xp.device) if cfg.restricted else None
    sel = _selection(xp, y, cfg, masks)
    nomatch = sel == math.prod(cfg.kernel)
    out_sizes = y.shape[1:]
    nd = len(out_sizes)
    index = torch.zeros_like(sel)
    after = math.prod(cfg.kernel)
    plane = math.prod(cfg.sizes)
    for axis, (k, s, p, size, o, d) in enumerate(
        zip(cfg.kernel, cfg.stride, cfg.padding, cfg.sizes, out_sizes, cfg.dilation)
    ):
        after //= k
        plane //= size
        shape = [1] * (nd + 1)
        shape[axis + 1] = o
        starts = (torch.arange(o, device=y.device) * s).reshape(shape)
        offset = (sel // after) % k
        real = offset * d + starts - p
        if cfg.mode == "reflect":
            real = real.abs()
            real = torch.where(real >= size, 2 * (size - 1) - real, real)
        elif cfg.mode == "circular":
            real = real.remainder(size)
        else:  # replicate; zeros/valid cells are in bounds except where nothing matched
            real = real.clamp(0, size - 1)
        # first in-bounds cell of each window along this axis (used where nothing matched)
        first = (starts - p + ((p - starts).clamp(min=0) + d - 1) // d * d).clamp(max=size - 1)
        real = torch.where(nomatch, first, real)
        index += real * plane
    return index


def _unpad_grad(gp: Tensor, cfg: _Config) -> Tensor:
    """The backward of :func:`_pad`: folds the gradient of padded cells onto the cells they copy.

    Only strided slice additions (no atomics), so it is deterministic on every device.
    """
    for axis, (p, size, extra) in enumerate(zip(cfg.padding, cfg.sizes, cfg.overhang)):
        if extra:  # ceil-mode overhang: never selected
            gp = gp.narrow(axis + 1, 0, size + 2 * p)
        if not p:
            continue
        dim = axis + 1
        inner = gp.narrow(dim, p, size)
        if cfg.mode in ("zeros", "valid"):
            gp = inner
            continue
        lo, hi = gp.narrow(dim, 0, p), gp.narrow(dim, p + size, p)
        inner = inner.clone()
        if cfg.mode == "reflect":
            # padded cell p - 1 - j copies cell j + 1, padded cell p + size + j copies cell size - 2 - j
            inner.narrow(dim, 1, p).add_(lo.flip(dim))
            inner.narrow(dim, size - 1 - p, p).add_(hi.flip(dim))
        elif cfg.mode == "circular":
            # padded cell j (< p) copies cell size - p + j, padded cell p + size + j copies cell j
            inner.narrow(dim, size - p, p).add_(lo)
            inner.narrow(dim, 0, p).add_(hi)
        else:  # replicate
            inner.narrow(dim, 0, 1).add_(lo.sum(dim, keepdim=True))
            inner.narrow(dim, size - 1, 1).add_(hi.sum(dim, keepdim=True))
        gp = inner
    return gp.contiguous()


def _plane_chunks(cfg: _Config, planes: int) -> list[slice]:
    """Chunks of the ``planes`` (flattened ``N * C``) padded one chunk at a time.

    The compiled path takes one chunk: its graphs are specialised to the input shape.
    """
    padded = math.prod(s + 2 * p + e for s, p, e in zip(cfg.sizes, cfg.padding, cfg.overhang))
    chunk = max(1, planes if cfg.compiled else _PLANE_CHUNK_ELEMENTS // max(1, padded))
    return [slice(start, start + chunk) for start in range(0, planes, chunk)]


def _padded_chunk(x: Tensor, part: slice, cfg: _Config) -> Tensor:
    with torch.no_grad():
        return _pad(x[part], cfg).contiguous()


def _forward_chunked(x: Tensor, cfg: _Config) -> Tensor:
    """Median of every window of the unpadded ``(B, *sizes)`` tensor ``x``, padding a chunk at a time."""
    chunks = _plane_chunks(cfg, x.shape[0])
    if len(chunks) == 1:
        return _forward(_padded_chunk(x, chunks[0], cfg), cfg)
    y = torch.empty((x.shape[0], *_out_sizes(cfg)), dtype=x.dtype, device=x.device)
    for part in chunks:
        _forward(_padded_chunk(x, part, cfg), cfg, out=y[part])
    return y


def _grad_chunked(x: Tensor, y: Tensor, g: Tensor, cfg: _Config) -> Tensor:
    """Gradient with respect to the unpadded ``x``, computed a chunk of planes at a time."""
    chunks = _plane_chunks(cfg, x.shape[0])
    if len(chunks) == 1:
        return _unpad_grad(_grad(_padded_chunk(x, chunks[0], cfg), y, g, cfg), cfg)
    grad = torch.empty_like(x, memory_format=torch.contiguous_format)
    for part in chunks:
        grad[part] = _unpad_grad(_grad(_padded_chunk(x, part, cfg), y[part], g[part], cfg), cfg)
    return grad


def _indices_chunked(x: Tensor, y: Tensor, cfg: _Config) -> Tensor:
    """:func:`_indices` for the unpadded ``x``, a chunk of planes at a time."""
    index = torch.empty(y.shape, dtype=torch.long, device=y.device)
    for part in _plane_chunks(cfg, x.shape[0]):
        index[part] = _indices(_padded_chunk(x, part, cfg), y[part], cfg)
    return index


class _MedianFunction(torch.autograd.Function):
    """Median pooling of the unpadded, contiguous ``(B, *sizes)`` input; pads inside, by chunks."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, cfg: _Config) -> Tensor:
        y = _forward_chunked(x, cfg)
        ctx.save_for_backward(x, y)
        ctx.cfg = cfg
        return y

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None]:
        x, y = ctx.saved_tensors
        return _grad_chunked(x.detach(), y.detach(), g, ctx.cfg), None


def _grad_grad_chunked(x: Tensor, y: Tensor, gg: Tensor, cfg: _Config) -> Tensor:
    """The backward's gradient with respect to its ``grad_output``: ``gg`` at each selected cell.

    The backward is linear in ``grad_output``; its transpose reads, for every window, the value of
    ``gg`` (padded like the input, so a padded cell carries what its copied cell carries, and 0 for
    ``"zeros"``) at the window's selected cell.
    """
    out = torch.empty_like(y)
    views = _offset_views(cfg, y.shape[1:])
    for part in _plane_chunks(cfg, x.shape[0]):
        masks = cfg.counted(x.device) if cfg.restricted else None
        sel = _selection(_padded_chunk(x, part, cfg), y[part], cfg, masks)
        ggp = _padded_chunk(gg, part, cfg)
        acc = torch.zeros_like(y[part])
        for o, (_, index) in enumerate(views):
            acc = torch.where(sel == o, ggp[index], acc)
        out[part] = acc
    return out


# ----------------------------------------------------------------------------------------------
# Custom operators: torch.compile and torch.export see one opaque op per call
# ----------------------------------------------------------------------------------------------

_OP_ARGS = (
    "int[] kernel, int[] stride, int[] padding, str mode, bool compiled, int[] dilation, bool ceil_mode"
)
_HAS_CUSTOM_OP = hasattr(torch.library, "custom_op") and hasattr(torch.library, "register_autograd")


def _op_config(x: Tensor, *args: Any) -> _Config:
    """The config of an op call from its input and its ``_OP_ARGS``."""
    kernel, stride, padding, mode, compiled, dilation, ceil_mode = args
    sizes = tuple(x.shape[1:])
    return _Config(
        tuple(kernel), tuple(stride), tuple(padding), sizes, mode, compiled, tuple(dilation), ceil_mode
    )


def _op_args(cfg: _Config) -> tuple[Any, ...]:
    return (
        list(cfg.kernel),
        list(cfg.stride),
        list(cfg.padding),
        cfg.mode,
        cfg.compiled,
        list(cfg.dilation),
        cfg.ceil_mode,
    )


def _median_impl(x: Tensor, *args: Any) -> Tensor:
    return _forward_chunked(x, _op_config(x, *args))


def _median_fake(x: Tensor, *args: Any) -> Tensor:
    return x.new_empty((x.shape[0], *_op_config(x, *args).out_sizes))


def _backward_impl(x: Tensor, y: Tensor, g: Tensor, *args: Any) -> Tensor:
    with torch.no_grad():
        return _grad_chunked(x, y, g.contiguous(), _op_config(x, *args))


def _backward_fake(x: Tensor, y: Tensor, g: Tensor, *args: Any) -> Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _grad_grad_impl(x: Tensor, y: Tensor, gg: Tensor, *args: Any) -> Tensor:
    with torch.no_grad():
        return _grad_grad_chunked(x, y, gg.contiguous(), _op_config(x, *args))


def _grad_grad_fake(x: Tensor, y: Tensor, gg: Tensor, *args: Any) -> Tensor:
    return torch.empty_like(y, memory_format=torch.contiguous_format)


def _indices_impl(x: Tensor, y: Tensor, *args: Any) -> Tensor:
    return _indices_chunked(x, y, _op_config(x, *args))


def _indices_fake(x: Tensor, y: Tensor, *args: Any) -> Tensor:
    return torch.empty(y.shape, dtype=torch.long, device=y.device)


def _forward_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    ctx.save_for_backward(inputs[0], output)
    ctx.args = inputs[1:]


def _forward_backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
    x, y = ctx.saved_tensors
    return (_OPS["backward"](x, y, g, *ctx.args), *([None] * len(ctx.args)))


def _backward_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    ctx.save_for_backward(inputs[0], inputs[1])
    ctx.args = inputs[3:]


def _backward_backward(ctx: Any, gg: Tensor) -> tuple[Tensor | None, ...]:
    x, y = ctx.saved_tensors
    return (None, None, _OPS["grad_grad"](x, y, gg, *ctx.args), *([None] * len(ctx.args)))


def _define_ops() -> dict[str, Callable[..., Tensor]]:
    """``torchpool::median_pool`` (its backward and the backward's backward) and its indices."""
    if not _HAS_CUSTOM_OP:  # torch < 2.4: _MedianFunction and eager indices
        return {}
    ops: dict[str, Callable[..., Tensor]] = {}
    for name, impl, fake, schema in (
        ("median_pool", _median_impl, _median_fake, f"(Tensor x, {_OP_ARGS}) -> Tensor"),
        (
            "median_pool_backward",
            _backward_impl,
            _backward_fake,
            f"(Tensor x, Tensor y, Tensor grad, {_OP_ARGS}) -> Tensor",
        ),
        (
            "median_pool_grad_grad",
            _grad_grad_impl,
            _grad_grad_fake,
            f"(Tensor x, Tensor y, Tensor grad_grad, {_OP_ARGS}) -> Tensor",
        ),
        ("median_pool_indices", _indices_impl, _indices_fake, f"(Tensor x, Tensor y, {_OP_ARGS}) -> Tensor"),
    ):
        op = torch.library.custom_op(f"torchpool::{name}", impl, mutates_args=(), schema=schema)
        op.register_fake(fake)
        ops[name.removeprefix("median_pool").removeprefix("_") or "forward"] = op
    torch.library.register_autograd("torchpool::median_pool", _forward_backward, setup_context=_forward_setup)
    torch.library.register_autograd(
        "torchpool::median_pool_backward", _backward_backward, setup_context=_backward_setup
    )
    return ops


_OPS = _define_ops()


def _functional_unfold(xu: Tensor, cfg: _Config) -> Tensor:
    """Unfold + sort + the lower-median column, NaN where a window holds NaN (for the ONNX exporters)."""
    ordered = _windows(xu, cfg.kernel, cfg.stride, cfg.dilation).sort(dim=-1).values
    picked = ordered[..., (ordered.shape[-1] - 1) // 2]
    if not xu.is_floating_point():
        return picked
    last = ordered[..., -1]  # NaN sorts last
    return torch.where(torch.isnan(last), last, picked)


def _functional_network(plan: _Plan, xu: Tensor, cfg: _Config) -> Tensor:
    """The plan as plain ``torch.minimum``/``torch.maximum`` on views (for the ONNX exporters)."""
    nd = xu.dim() - 1
    out_sizes, stride = cfg.out_sizes, cfg.stride
    values: dict[int, Tensor] = {}
    for t, (kind, a, b, c) in enumerate(plan.instrs):
        if kind == "view":
            axis = plan.perm[b]
            src = xu if a < 0 else values[a]
            size = out_sizes[axis]
            c *= cfg.dilation[axis]
            values[t] = src[_axis_slice(axis, nd, c, c + stride[axis] * (size - 1) + 1, stride[axis])]
        else:
            values[t] = (torch.minimum if kind == "min" else torch.maximum)(values[a], values[b])
    return values[plan.out].clone()


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def _pad(x: Tensor, cfg: _Config) -> Tensor:
    """Pads ``(B, *sizes)`` by ``padding`` in the padding mode, then by the ceil-mode overhang (zeros)."""
    if any(cfg.padding):
        pads = [p for p in reversed(cfg.padding) for _ in range(2)]
        if cfg.mode in ("zeros", "valid"):
            x = F.pad(x, pads, mode="constant", value=0)
        else:  # padded without autograd; the padding backward is _unpad_grad (deterministic)
            x = F.pad(x, pads, mode=cfg.mode)
    if any(cfg.overhang):
        x = F.pad(x, [q for e in reversed(cfg.overhang) for q in (0, e)], mode="constant", value=0)
    return x


_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)


def _prepare(
    x: object,
    nd: int,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    dilation: IntOrTuple,
    ceil_mode: bool,
    padding_mode: str,
    compiled: bool,
) -> tuple[Tensor, bool, Window, _Config]:
    window = check_window(kernel_size, stride, padding, nd, dilation)
    check_bool(ceil_mode, "ceil_mode")
    check_choice(padding_mode, "padding_mode", PADDING_MODES)
    check_bool(compiled, "compiled")
    xb, unbatched = check_input(x, nd, floating=False, window=window, ceil_mode=ceil_mode)
    if not xb.is_floating_point() and xb.dtype not in _INTEGER_DTYPES:
        raise TypeError(f"input must have a floating-point, integer or bool dtype, got {xb.dtype}")
    sizes = tuple(xb.shape[2:])
    if padding_mode in ("reflect", "circular"):
        for axis, (p, size) in enumerate(zip(window.padding, sizes)):
            if p >= size + (padding_mode == "circular"):
                bound = "smaller than" if padding_mode == "reflect" else "at most"
                raise ValueError(
                    f"padding must be {bound} the input size for padding_mode={padding_mode!r}, got "
                    f"padding={p} for size {size} in spatial dimension {axis}"
                )
    cfg = _Config(
        window.kernel_size,
        window.stride,
        window.padding,
        sizes,
        padding_mode,
        compiled,
        window.dilation,
        ceil_mode,
    )
    if padding_mode == "valid":
        for axis, (s, p, size, d, k, o) in enumerate(
            zip(cfg.stride, cfg.padding, sizes, cfg.dilation, cfg.kernel, cfg.out_sizes)
        ):
            for j in range(o):
                if not any(0 <= s * j - p + i * d < size for i in range(k)):
                    raise ValueError(
                        f"padding_mode='valid' leaves window {j} of spatial dimension {axis} without an "
                        f"input cell (kernel_size={k}, dilation={d}, padding={p}, size {size}): "
                        "use less padding or dilation"
                    )
    return xb, unbatched, window, cfg


def _apply(flat: Tensor, cfg: _Config) -> Tensor:
    """Median pooling of the unpadded, contiguous ``(B, *sizes)`` input, differentiable.

    Eager, ``torch.compile`` and ``torch.export`` call the custom op ``torchpool::median_pool``
    (one opaque node with a registered fake and gradient). The ONNX exporters cannot translate a
    custom op, so during an ONNX export the network is written out as plain min/max on views.
    """
    if torch.onnx.is_in_onnx_export():
        return _forward(_pad(flat, cfg).contiguous(), cfg, functional=True)
    if _OPS:
        return _OPS["forward"](flat, *_op_args(cfg))
    return _MedianFunction.apply(flat, cfg)


def _median_pool(
    x: object,
    nd: int,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    dilation: IntOrTuple,
    ceil_mode: bool,
    padding_mode: str,
    compiled: bool,
    with_indices: bool,
) -> tuple[Tensor, Tensor | None]:
    xb, unbatched, _, cfg = _prepare(
        x, nd, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled
    )
    boolean = xb.dtype == torch.bool
    if boolean:  # the min/max network runs on uint8; the median of bools is a bool
        xb = xb.to(torch.uint8)
    n, c = xb.shape[:2]
    channels_last = (
        nd in (2, 3)
        and not xb.is_contiguous()
        and xb.is_contiguous(memory_format=torch.channels_last if nd == 2 else torch.channels_last_3d)
    )
    # padding happens inside the op, a chunk of planes at a time
    flat = xb.contiguous().reshape(n * c, *xb.shape[2:])
    y = _apply(flat, cfg)
    indices = None
    if with_indices:
        with torch.no_grad():
            if _OPS and not torch.onnx.is_in_onnx_export():
                index = _OPS["indices"](flat.detach(), y.detach(), *_op_args(cfg))
            else:
                index = _indices(_pad(flat.detach(), cfg), y.detach(), cfg)
            indices = restore_batch(index.reshape(n, c, *y.shape[1:]), unbatched)
    y = y.reshape(n, c, *y.shape[1:])
    if boolean:
        y = y.bool()
    if channels_last:
        y = y.contiguous(memory_format=torch.channels_last if nd == 2 else torch.channels_last_3d)
    return restore_batch(y, unbatched), indices


_SHAPES = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}


def median_pool1d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    *,
    ceil_mode: bool = False,
    padding_mode: str = "reflect",
    compiled: bool = False,
) -> Tensor:
    """1-d median pooling: the lower median of each window.

    Args:
        x: input of shape ``(N, C, L)`` or ``(C, L)``: floating point, integer or bool (exact; no
            gradient for integers).
        kernel_size: window size.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: padding on both sides, at most ``kernel_size // 2``.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: PyTorch's ceil-mode output size; cells past the padded input are not part of a window.
        padding_mode: ``"reflect"``, ``"replicate"``, ``"circular"``, ``"zeros"`` or ``"valid"``
            (median of the in-bounds cells only).
        compiled: run the min/max network under :func:`torch.compile`.

    Returns:
        The pooled tensor. Even windows give the lower median (sorted index ``(n - 1) // 2``); a window
        containing NaN gives NaN.

    Shape:
        - Input: ``(N, C, L_in)`` or ``(C, L_in)``.
        - Output: ``(N, C, L_out)`` or ``(C, L_out)``, the output size of max pooling:
          ``L_out = (L_in + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1`` (rounded up
          in ceil mode, see :func:`torchpool.pool_output_size`).

    Example:
        >>> x = torch.tensor([[[1.0, 5.0, 2.0, 8.0, 3.0]]])
        >>> median_pool1d(x, 3, stride=1, padding=1)
        tensor([[[5., 2., 5., 3., 8.]]])
        >>> median_pool1d(x, 2, stride=1)
        tensor([[[1., 2., 2., 3.]]])
    """
    return _median_pool(
        x, 1, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled, False
    )[0]


def median_pool2d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    *,
    ceil_mode: bool = False,
    padding_mode: str = "reflect",
    compiled: bool = False,
) -> Tensor:
    """2-d median pooling: the lower median of each window.

    Args:
        x: input of shape ``(N, C, H, W)`` or ``(C, H, W)``, any memory format: floating point, integer
            (``uint8`` images, ...) or bool; the median of integers is exact (no gradient).
        kernel_size: window size, an int or ``(kH, kW)``; even and non-square windows are allowed.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: padding on both sides of each axis, at most half the window.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: PyTorch's ceil-mode output size; cells past the padded input are not part of a window.
        padding_mode: ``"reflect"``, ``"replicate"``, ``"circular"``, ``"zeros"`` or ``"valid"``
            (median of the in-bounds cells only).
        compiled: run the min/max network under :func:`torch.compile` (padding stays eager).

    Returns:
        The pooled tensor. Even windows give the lower median (sorted index ``(n - 1) // 2``); a window
        containing NaN gives NaN. The gradient goes to the selected cell (first equal cell of the window
        in row-major order).

    Shape:
        - Input: ``(N, C, H_in, W_in)`` or ``(C, H_in, W_in)``.
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``, the output size of max pooling:
          ``H_out = (H_in + 2 * padding[0] - dilation[0] * (kernel_size[0] - 1) - 1) // stride[0] + 1``
          (rounded up in ceil mode; same for ``W``).

    Example:
        >>> x = torch.tensor([[[[1.0, 9.0, 2.0], [8.0, 3.0, 7.0], [4.0, 6.0, 5.0]]]])
        >>> median_pool2d(x, 3)
        tensor([[[[5.]]]])
        >>> median_pool2d(x, 2, stride=1)
        tensor([[[[3., 3.],
                  [4., 5.]]]])
        >>> median_pool2d(x, 2, stride=2, ceil_mode=True)  # the shape of max_pool2d with ceil_mode
        tensor([[[[3., 2.],
                  [4., 5.]]]])
        >>> median_pool2d((x * 10).to(torch.uint8), 3, dilation=1)  # integers: exact
        tensor([[[[50]]]], dtype=torch.uint8)
    """
    return _median_pool(
        x, 2, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled, False
    )[0]


def median_pool3d(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    *,
    ceil_mode: bool = False,
    padding_mode: str = "reflect",
    compiled: bool = False,
) -> Tensor:
    """3-d median pooling: the lower median of each window.

    Args:
        x: input of shape ``(N, C, D, H, W)`` or ``(C, D, H, W)``: floating point, integer or bool.
        kernel_size: window size, an int or ``(kD, kH, kW)``.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: padding on both sides of each axis, at most half the window.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: PyTorch's ceil-mode output size; cells past the padded input are not part of a window.
        padding_mode: ``"reflect"``, ``"replicate"``, ``"circular"``, ``"zeros"`` or ``"valid"``.
        compiled: run the min/max network under :func:`torch.compile`.

    Returns:
        The pooled tensor (lower median of each window; NaN where a window holds NaN).

    Shape:
        - Input: ``(N, C, D_in, H_in, W_in)`` or ``(C, D_in, H_in, W_in)``.
        - Output: ``(N, C, D_out, H_out, W_out)`` or ``(C, D_out, H_out, W_out)``.

    Example:
        >>> x = torch.arange(8.0).reshape(1, 1, 2, 2, 2)
        >>> median_pool3d(x, 2)
        tensor([[[[[3.]]]]])
    """
    return _median_pool(
        x, 3, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled, False
    )[0]


def median_pool1d_with_indices(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    *,
    ceil_mode: bool = False,
    padding_mode: str = "reflect",
    compiled: bool = False,
) -> tuple[Tensor, Tensor]:
    """:func:`median_pool1d` and the index of the selected cell of each window.

    Args:
        x: input of shape ``(N, C, L)`` or ``(C, L)``.
        kernel_size: window size.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: padding on both sides.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: PyTorch's ceil-mode output size; cells past the padded input are not part of a window.
        padding_mode: ``"reflect"``, ``"replicate"``, ``"circular"``, ``"zeros"`` or ``"valid"``.
        compiled: run the min/max network under :func:`torch.compile`.

    Returns:
        ``(values, indices)``; indices (int64) index the unpadded input as in
        ``F.max_pool1d(return_indices=True)``. A selected reflect/replicate padding cell gives the index
        of the cell it copies; see the module docstring for a selected zero padding cell.

    Shape:
        - Input: ``(N, C, L_in)`` or ``(C, L_in)``.
        - Output: two tensors of shape ``(N, C, L_out)`` or ``(C, L_out)``.

    Example:
        >>> x = torch.tensor([[[1.0, 5.0, 2.0, 8.0, 3.0, 0.0]]])
        >>> median_pool1d_with_indices(x, 3)
        (tensor([[[2., 3.]]]), tensor([[[2, 4]]]))
    """
    values, indices = _median_pool(
        x, 1, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled, True
    )
    assert indices is not None
    return values, indices


def median_pool2d_with_indices(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    *,
    ceil_mode: bool = False,
    padding_mode: str = "reflect",
    compiled: bool = False,
) -> tuple[Tensor, Tensor]:
    """:func:`median_pool2d` and the index of the selected cell of each window.

    Args:
        x: input of shape ``(N, C, H, W)`` or ``(C, H, W)``.
        kernel_size: window size, an int or ``(kH, kW)``.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: padding on both sides of each axis.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: PyTorch's ceil-mode output size; cells past the padded input are not part of a window.
        padding_mode: ``"reflect"``, ``"replicate"``, ``"circular"``, ``"zeros"`` or ``"valid"``.
        compiled: run the min/max network under :func:`torch.compile`.

    Returns:
        ``(values, indices)``; indices (int64) are flat ``h * W + w`` indices into the unpadded input,
        as in ``F.max_pool2d(return_indices=True)``, usable with ``F.max_unpool2d``.

    Shape:
        - Input: ``(N, C, H_in, W_in)`` or ``(C, H_in, W_in)``.
        - Output: two tensors of shape ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``.

    Example:
        >>> x = torch.tensor([[[[1.0, 9.0, 2.0], [8.0, 3.0, 7.0], [4.0, 6.0, 5.0]]]])
        >>> median_pool2d_with_indices(x, 3)
        (tensor([[[[5.]]]]), tensor([[[[8]]]]))
    """
    values, indices = _median_pool(
        x, 2, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled, True
    )
    assert indices is not None
    return values, indices


def median_pool3d_with_indices(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    *,
    ceil_mode: bool = False,
    padding_mode: str = "reflect",
    compiled: bool = False,
) -> tuple[Tensor, Tensor]:
    """:func:`median_pool3d` and the index of the selected cell of each window.

    Args:
        x: input of shape ``(N, C, D, H, W)`` or ``(C, D, H, W)``.
        kernel_size: window size, an int or ``(kD, kH, kW)``.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: padding on both sides of each axis.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: PyTorch's ceil-mode output size; cells past the padded input are not part of a window.
        padding_mode: ``"reflect"``, ``"replicate"``, ``"circular"``, ``"zeros"`` or ``"valid"``.
        compiled: run the min/max network under :func:`torch.compile`.

    Returns:
        ``(values, indices)``; indices (int64) are flat ``(d * H + h) * W + w`` indices into the
        unpadded input, as in ``F.max_pool3d(return_indices=True)``.

    Shape:
        - Input: ``(N, C, D_in, H_in, W_in)`` or ``(C, D_in, H_in, W_in)``.
        - Output: two tensors of shape ``(N, C, D_out, H_out, W_out)`` or ``(C, D_out, H_out, W_out)``.

    Example:
        >>> x = torch.arange(8.0).reshape(1, 1, 2, 2, 2)
        >>> median_pool3d_with_indices(x, 2)
        (tensor([[[[[3.]]]]]), tensor([[[[[3]]]]]))
    """
    values, indices = _median_pool(
        x, 3, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, compiled, True
    )
    assert indices is not None
    return values, indices


class _MedianPoolNd(WindowPool):
    _repr_options = ("dilation", "ceil_mode", "padding_mode", "compiled")
    _function: Callable[..., Tensor]

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        *,
        ceil_mode: bool = False,
        padding_mode: str = "reflect",
        compiled: bool = False,
    ) -> None:
        super().__init__(kernel_size, stride, padding)
        self.dilation = dilation
        self.ceil_mode = check_bool(ceil_mode, "ceil_mode")
        self.padding_mode = check_choice(padding_mode, "padding_mode", PADDING_MODES)
        self.compiled = check_bool(compiled, "compiled")

    def forward(self, x: Tensor) -> Tensor:
        """Applies the median pooling function with the stored arguments."""
        return type(self)._function(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            ceil_mode=self.ceil_mode,
            padding_mode=self.padding_mode,
            compiled=self.compiled,
        )


class MedianPool1d(_MedianPoolNd):
    """Module form of :func:`median_pool1d`.

    Args:
        kernel_size: window size.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: padding on both sides.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: PyTorch's ceil-mode output size; cells past the padded input are not part of a window.
        padding_mode: ``"reflect"``, ``"replicate"``, ``"circular"``, ``"zeros"`` or ``"valid"``.
        compiled: run the min/max network under :func:`torch.compile`.

    Shape:
        - Input: ``(N, C, L_in)`` or ``(C, L_in)``.
        - Output: ``(N, C, L_out)`` or ``(C, L_out)``.

    Example:
        >>> pool = MedianPool1d(3, stride=1, padding=1, dilation=2)
        >>> pool(torch.arange(6.0).reshape(1, 1, 6))  # reflect padding: 1 0 1 2 3 4 5 4
        tensor([[[1., 2., 3., 4.]]])
    """

    _function = staticmethod(median_pool1d)


class MedianPool2d(_MedianPoolNd):
    """Module form of :func:`median_pool2d`.

    Args:
        kernel_size: window size, an int or ``(kH, kW)``.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: padding on both sides of each axis.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: PyTorch's ceil-mode output size; cells past the padded input are not part of a window.
        padding_mode: ``"reflect"``, ``"replicate"``, ``"circular"``, ``"zeros"`` or ``"valid"``.
        compiled: run the min/max network under :func:`torch.compile`.

    Shape:
        - Input: ``(N, C, H_in, W_in)`` or ``(C, H_in, W_in)``.
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``.

    Example:
        >>> pool = MedianPool2d(3, stride=1, padding=1)
        >>> pool(torch.zeros(2, 3, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
    """

    _function = staticmethod(median_pool2d)


class MedianPool3d(_MedianPoolNd):
    """Module form of :func:`median_pool3d`.

    Args:
        kernel_size: window size, an int or ``(kD, kH, kW)``.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: padding on both sides of each axis.
        dilation: spacing between window cells, as in max pooling.
        ceil_mode: PyTorch's ceil-mode output size; cells past the padded input are not part of a window.
        padding_mode: ``"reflect"``, ``"replicate"``, ``"circular"``, ``"zeros"`` or ``"valid"``.
        compiled: run the min/max network under :func:`torch.compile`.

    Shape:
        - Input: ``(N, C, D_in, H_in, W_in)`` or ``(C, D_in, H_in, W_in)``.
        - Output: ``(N, C, D_out, H_out, W_out)`` or ``(C, D_out, H_out, W_out)``.

    Example:
        >>> MedianPool3d(3, padding=1, padding_mode="zeros")(torch.ones(1, 2, 3, 3, 3)).shape
        torch.Size([1, 2, 1, 1, 1])
    """

    _function = staticmethod(median_pool3d)


for _n, _cls in ((1, MedianPool1d), (2, MedianPool2d), (3, MedianPool3d)):
    register_pool(
        f"median{_n}d",
        _cls,
        family="median",
        dims=(_n,),
        description="lower median of each window (min/max selection network)",
        example_kwargs={"kernel_size": 3, "stride": 1, "padding": 1},
    )
