"""Median pooling, part 1: the selection network, built in pure Python (no tensors).

Sorting networks, the symbolic min/max DAG with common-subexpression elimination, candidate pruning,
and the cheapest plan over axis orders (see the package docstring for the method).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["NETWORK_MAX_OPS"]

NETWORK_MAX_OPS = 600
"""Windows whose min/max network needs more operations per output than this use the unfold fallback."""

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
