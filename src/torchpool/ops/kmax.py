"""k-max pooling (Kalchbrenner, Grefenstette & Blunsom 2014, "A Convolutional Neural Network for
Modelling Sentences"): the ``k`` largest values along one dimension, kept in their original order.

Text CNNs pool each feature row of a sentence this way, so the output keeps which features fired
most and in which order, for any sentence length. Selection only: every output is an input value,
exact in every dtype, and the gradient reaches exactly the kept cells.

**Ties** are broken by position, the earliest cells win: among equal values at the boundary of
the top ``k`` (say ``k = 2`` on ``[3, 1, 3, 3]``) the kept cells are the first ones (positions 0
and 2). This is a rule, not an accident of the sort: ``torch.topk`` alone picks among ties in an
unspecified way (on the CPU it returns ``[12, 14, 13]`` for the top 3 of 20 zeros).

**NaN** counts as larger than every number, as in ``torch.topk`` and ``torch.sort``: a NaN along
the dimension is always kept (the first ``k`` NaNs if there are more), so NaN propagates to the
output. ``+inf`` is kept like any large value; ``-inf`` only when fewer than ``k`` cells are larger.

How it is computed: on the CPU, for rows contiguous in memory with ``k >= 4`` and ``64 k <= L``
(``k = 8`` on ``L = 512``), from column maxima. Each row is cut into ``m`` strided columns (cells
``j, j + m, ...``; ``m`` a divisor of ``L`` near ``sqrt(k L)``, 64 there): the column maxima are
one vectorised ``amax``, and the ``k`` largest cells lie in the ``k`` columns with the largest
maxima (``topk`` of the ``m`` maxima). Where each of those columns holds exactly one cell at or
above the least of their maxima and every other column's maximum is below it (most rows of
random data), the ``k`` largest are those maxima, unique, and their positions are read off that
comparison. The other rows (all rows where they are the majority) take a second ``topk``, of the
chosen columns' ``k L / m`` cells; PyTorch's CPU ``topk`` costs about three times as much per
cell below ``L = 64 k`` (nth_element) as above (partial sort), so the two stages are used where
they select among at most a third of ``L`` cells (no such divisor: one ``topk`` as below). Such
a row stands only if its ``k``-th kept value ``t`` is a number and every other candidate and
every other column's maximum is below ``t``; otherwise (a tie at the boundary, a kept NaN, a
cell the columns missed) the row is redone by a stable descending sort, which keeps equal
values in their original order. Elsewhere it is ``torch.topk`` of ``k + 1`` (a tie at the
boundary: the ``k``-th and ``(k + 1)``-th largest are equal, those rows redone the same way),
or, where ``k + 1`` would leave the CPU's partial sort (``64 k <= L < 64 (k + 1)``), ``topk``
of ``k`` and a count of each row's cells at or above the ``k``-th largest (more than ``k``: a
tie at the boundary; a kept NaN is redone too). The kept positions are then sorted (``k`` of
them) and gathered; the gradient is ``gather``'s (a scatter into zeros).
Traced code (``torch.compile``, ``torch.export``, ONNX), ``meta`` and fake tensors, where the
tie check cannot read values, apply the rule without a sort (ONNX has no stable sort): the
``k``-th largest by ``topk``, the cells above it, then the cells equal to it in position order
(running counts) as many as are missing.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensor

from .._checks import is_traced
from ..registry import register_pool

__all__ = ["KMaxPool1d", "kmax_pool1d"]


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be a positive int, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be a positive int, got {k}")
    return k


def _check_dim(dim: object) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    return dim


def _checked(x: object, k: object, dim: object) -> tuple[Tensor, int, int]:
    """The input, ``k`` and ``dim`` as a non-negative axis, checked."""
    k = _check_k(k)
    dim = _check_dim(dim)
    if not isinstance(x, Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (2, 3):
        raise ValueError(
            f"input must have 2 (C, L) or 3 (N, C, L) dimensions for 1d pooling, got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"input must have a floating-point dtype, got {x.dtype}")
    if not -x.dim() <= dim < x.dim():
        raise ValueError(
            f"dim must be in [{-x.dim()}, {x.dim() - 1}] for input of shape {tuple(x.shape)}, got {dim}"
        )
    axis = dim % x.dim()
    if x.dim() == 3 and axis == 0:
        raise ValueError(
            f"dim must not be the batch dimension 0 of an (N, C, L) input (a pool never mixes "
            f"samples), got {dim}"
        )
    length = x.shape[axis]
    if k > length:
        raise ValueError(
            f"k must be at most the length {length} of dim {dim} of input of shape "
            f"{tuple(x.shape)}, got k={k}"
        )
    return x, k, axis


def _no_values(x: Tensor) -> bool:
    """Whether ``x``'s values cannot be read (``meta``, fake) or a trace is running."""
    return is_traced() or x.device.type == "meta" or isinstance(x, FakeTensor)


def _stable_top(x: Tensor, k: int, axis: int) -> Tensor:
    """The positions of the ``k`` largest along ``axis``, equal values in their original order."""
    order = torch.sort(x.detach(), dim=axis, descending=True, stable=True).indices
    return order.narrow(axis, 0, k)


def _ranked_top(x: Tensor, k: int, axis: int) -> Tensor:
    """:func:`_stable_top` without a sort (for traced code: ONNX has no stable sort), ascending positions.

    The ``k``-th largest ``t`` (NaN as ``+inf`` here) by ``topk``; the cells above ``t`` are kept,
    then the cells equal to ``t``, NaNs first, each in position order (running counts), as many as
    are missing; the kept positions are the ``topk`` of ``keep * (L - position)`` (distinct keys).
    """
    x = x.detach()
    nan = x.isnan()
    v = torch.where(nan, torch.full_like(x, math.inf), x)
    t = v.topk(k, dim=axis).values.narrow(axis, k - 1, 1)
    above = v > t
    equal = v == t
    need = k - above.sum(dim=axis, keepdim=True, dtype=torch.int64)
    nan_equal = equal & nan
    take_nan = nan_equal & (nan_equal.to(torch.int64).cumsum(dim=axis) <= need)
    left = need - nan_equal.sum(dim=axis, keepdim=True, dtype=torch.int64)
    value_equal = equal & ~nan
    take_value = value_equal & (value_equal.to(torch.int64).cumsum(dim=axis) <= left)
    keep = above | take_nan | take_value
    length = x.shape[axis]
    shape = [1] * x.dim()
    shape[axis] = length
    countdown = torch.arange(length, 0, -1, device=x.device, dtype=x.dtype).reshape(shape)
    return (keep.to(x.dtype) * countdown).topk(k, dim=axis).indices


def _column_count(x: Tensor, k: int, axis: int) -> int:
    """The number of columns ``m`` of the two-stage selection on the CPU, 0 where it does not pay.

    ``topk`` of ``k`` over ``m`` column maxima, then, for the rows that need it, over ``k L / m``
    cells (``m`` a divisor of ``L``, near ``sqrt(k L)``), against one ``topk`` over ``L``: PyTorch's
    CPU ``topk`` costs about three times as much per cell below ``L = 64 k`` (nth_element) as above
    (partial sort), so the two stages are used where they select among at most a third of ``L``
    cells, and only on rows contiguous in memory (the column maxima are then one vectorised
    ``amax`` over strided views); at most 256 levels (cells per column), counted in bytes.
    """
    length = x.shape[axis]
    if x.device.type != "cpu" or k < 4 or k * 64 > length or not x.movedim(axis, -1).is_contiguous():
        return 0  # below k = 4 the extra passes cost more than one topk saves (measured)
    best, cost = 0, length // 3 + 1
    for small in range(1, math.isqrt(length) + 1):
        if length % small:
            continue
        for m in (small, length // small):  # the divisors of L in pairs
            if 2 * k <= m <= length // 2 and length // m <= 256 and m + k * (length // m) < cost:
                best, cost = m, m + k * (length // m)
    return best


def _two_stage(x: Tensor, k: int, axis: int, m: int) -> tuple[Tensor, Tensor]:
    """Positions of the ``k`` largest of each row and the rows to redo, by columns (:func:`_column_count`).

    Each row of ``L`` cells is cut into ``m`` strided columns (cells ``j, j + m, ...``); the ``k``
    largest cells lie in the ``k`` columns with the largest maxima (a column holding one of them
    has its maximum at or above the ``k``-th largest), so ``topk`` of the column maxima first.
    Where each chosen column holds exactly one cell at or above ``low``, the least of the chosen
    maxima, and every other column's maximum is below ``low`` (a NaN fails both), the ``k``
    largest are exactly those maxima, unique: their levels are read off the comparison. The
    other rows (two of a chosen column's cells among the ``k`` largest, ties, NaN) take
    :func:`_pick`; all rows do where they are the majority.
    """
    length = x.shape[axis]
    rows = x.detach().movedim(axis, -1).reshape(-1, length)
    count, depth = rows.shape[0], length // m
    table = rows.view(count, depth, m)  # column j holds the cells j, j + m, ...
    maxima = table.amax(dim=1)  # (rows, m)
    tops, columns = maxima.topk(k, dim=1, sorted=False)  # (rows, k)
    # (rows, depth, k): the cells of the chosen columns, level by level
    candidates = table.gather(2, columns.unsqueeze(1).expand(count, depth, k))
    others = maxima.scatter_(1, columns, -math.inf).amax(dim=1)  # the other columns' largest
    low = tops.amin(dim=1)  # NaN if a chosen column holds a NaN
    above = candidates >= low.view(count, 1, 1)
    simple = (above.view(count, depth * k).sum(dim=1, dtype=torch.int32) == k) & (others < low)
    hard = (~simple).nonzero().squeeze(1)
    if 2 * hard.numel() > count:
        return _pick(candidates, columns, others, m)
    # the level of each chosen column's one cell above: a sum of level x above in bytes (depth <= 256;
    # a matmul is slower, much slower with two threads)
    levels = torch.arange(depth, device=x.device, dtype=torch.uint8).view(1, depth, 1)
    level = (above.view(torch.uint8) * levels).sum(dim=1, dtype=torch.uint8)
    positions = level.long() * m + columns
    ambiguous = torch.zeros(count, dtype=torch.bool, device=x.device)
    if hard.numel():
        chosen, flags = _pick(candidates[hard], columns[hard], others[hard], m)
        positions[hard] = chosen
        ambiguous[hard] = flags
    return positions, ambiguous


def _pick(candidates: Tensor, columns: Tensor, others: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """The second stage of :func:`_two_stage` on some rows: ``topk`` of the chosen columns' cells.

    A row stands only if its ``k``-th kept value ``t`` is a number and every other candidate and
    every other column's maximum (``others``) is below ``t``; otherwise (a tie at the boundary, a
    kept NaN, a cell the columns missed) it is flagged for the stable sort.
    """
    count, depth, k = candidates.shape
    flat = candidates.reshape(count, depth * k)
    values, picked = flat.topk(k, dim=1, sorted=False)
    kth = values.amin(dim=1)  # NaN if a NaN is kept: those rows are redone
    rest = torch.maximum(others, flat.scatter_(1, picked, -math.inf).amax(dim=1))
    # candidate i * k + s is the cell i * m + columns[s]
    slots = torch.arange(depth * k, device=candidates.device)
    starts = slots.div(k, rounding_mode="floor") * m
    positions = starts.take(picked) + columns.gather(1, slots.remainder(k).take(picked))
    return positions, ~(rest < kth)


def _one_stage(x: Tensor, k: int, axis: int) -> tuple[Tensor, Tensor]:
    """Positions of the ``k`` largest along ``axis`` by one ``topk``, and where the tie rule may differ."""
    length = x.shape[axis]
    if x.device.type != "cpu" or (k + 1) * 64 <= length or k * 64 > length:
        # the (k+1)-th largest comes at no extra cost: a tie at the boundary is kth == next
        values, positions = x.topk(k + 1, dim=axis)
        kth, after = values.narrow(axis, k - 1, 1), values.narrow(axis, k, 1)
        return positions.narrow(axis, 0, k), (kth == after) | (kth.isnan() & after.isnan())
    # PyTorch's CPU topk is a partial sort up to k = length / 64 and twice as slow beyond:
    # at that boundary, topk(k) and a count of the cells at or above the k-th largest
    values, top = x.topk(k, dim=axis)  # sorted: faster than unsorted on the CPU here
    kth = values.narrow(axis, k - 1, 1)  # NaN where only NaNs are kept: those rows are redone
    # the kept NaNs are not counted by >=: the other kept cells are k less those
    numbers = k - values.isnan().sum(dim=axis, keepdim=True, dtype=torch.int32)
    return top, ((x >= kth).sum(dim=axis, keepdim=True, dtype=torch.int32) > numbers) | kth.isnan()


def _top_positions(x: Tensor, k: int, axis: int) -> Tensor:
    """The positions (unordered) of the ``k`` largest along ``axis``; ties: the earliest win."""
    if _no_values(x) or x.numel() == 0:
        return _ranked_top(x, k, axis)
    with torch.no_grad():
        m = _column_count(x, k, axis)
        if m:
            chosen, ambiguous = _two_stage(x, k, axis, m)  # rows-major (rows, k), (rows,)
        else:
            top, flags = _one_stage(x, k, axis)
            chosen = top.movedim(axis, -1).reshape(-1, k)
            ambiguous = flags.movedim(axis, -1).reshape(-1)
        lead = x.movedim(axis, -1).shape[:-1]
        if bool(ambiguous.any()):
            # only the rows with a tie at the boundary (or a kept NaN) take the stable sort
            rows = x.detach().movedim(axis, -1).reshape(-1, x.shape[axis])
            chosen = chosen.clone()
            redo = ambiguous.nonzero().squeeze(1)
            chosen[redo] = _stable_top(rows.index_select(0, redo), k, 1)
        return chosen.reshape(*lead, k).movedim(-1, axis)


def kmax_pool1d(x: Tensor, k: int, *, dim: int = -1) -> Tensor:
    """k-max pooling (Kalchbrenner et al. 2014): the ``k`` largest values along ``dim``, in order.

    The kept values appear in their original order along ``dim`` (not sorted by value). Ties are
    broken by position, the earliest cells win; NaN counts as larger than every number (kept,
    propagates). The gradient reaches exactly the kept cells. Any floating dtype, computed in it
    (selection is exact).

    Args:
        x: input ``(N, C, L)`` or batch-less ``(C, L)``, floating point.
        k: how many values to keep, from 1 to the length of ``dim``.
        dim: the dimension to pool (default the last, ``L``); never the batch dimension 0 of a
            3-d input. ``dim=1`` pools channels-last ``(N, L, C)`` input along ``L``.

    Returns:
        The input with ``dim`` reduced to size ``k``.

    Raises:
        ValueError: if ``k`` is below 1 or larger than the length of ``dim``, or ``dim`` is out of
            range or the batch dimension.

    Shape:
        - Input: ``(N, C, L)`` or ``(C, L)``.
        - Output: ``(N, C, k)`` or ``(C, k)`` (for ``dim=-1``; ``dim`` reduced to ``k`` in general).

    Example:
        >>> kmax_pool1d(torch.tensor([[[1.0, 5.0, 2.0, 4.0, 3.0]]]), 3).tolist()
        [[[5.0, 4.0, 3.0]]]
        >>> kmax_pool1d(torch.tensor([[3.0, 1.0, 3.0, 3.0]]), 2).tolist()
        [[3.0, 3.0]]
    """
    x, k, axis = _checked(x, k, dim)
    if k == x.shape[axis]:
        return x.clone()
    positions = _top_positions(x, k, axis).sort(dim=axis).values
    return x.gather(axis, positions)


class KMaxPool1d(nn.Module):
    """k-max pooling (Kalchbrenner et al. 2014): the Module form of :func:`kmax_pool1d`.

    Args:
        k: how many values to keep along ``dim``.
        dim: the dimension to pool (default the last).

    Shape:
        - Input: ``(N, C, L)`` or ``(C, L)``.
        - Output: ``(N, C, k)`` or ``(C, k)`` (``dim`` reduced to ``k``).

    Example:
        >>> KMaxPool1d(3)(torch.zeros(2, 8, 20)).shape
        torch.Size([2, 8, 3])
    """

    def __init__(self, k: int, dim: int = -1) -> None:
        super().__init__()
        self.k = _check_k(k)
        self.dim = _check_dim(dim)

    def extra_repr(self) -> str:
        return f"k={self.k}, dim={self.dim}"

    def forward(self, x: Tensor) -> Tensor:
        return kmax_pool1d(x, self.k, dim=self.dim)


register_pool(
    "kmax1d",
    KMaxPool1d,
    family="kmax",
    dims=(1,),
    description="the k largest values along L in their original order (k-max, Kalchbrenner et al. 2014)",
    example_kwargs={"k": 2},
)
