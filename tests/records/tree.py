r"""Records of tree pooling (family ``tree``; Lee, Gallagher & Tu 2016, arXiv 1509.08985).

The walks build ``TreePool2d(2, init="average")`` (the registry's example): leaf filters ``1/4``
and zero gating masks, so the fresh pool is ``avg_pool2d`` (``count_include_pad=True``) and the
degenerate-input walk has a known reduction (the mean). The learned pool (non-trivial leaf
filters and gating masks, shared or per channel, depths 1 to 3) is tested against its float64
reference in the ``OPS`` below and in ``tests/test_tree.py``.

The float64 reference and the sample cases (``OPS``, the ``OpRecord``\ s of ``test_ops.py``):
the reference shares no code with ``torchpool.ops.tree``: it loops over the output positions,
reads each window's cells one by one (zero where the window covers padding) and evaluates the
paper's recursion node by node with Python floats (``f_m = v_m . x`` at a leaf,
``sigmoid(w_m . x) f_2m + (1 - sigmoid(w_m . x)) f_2m+1`` at an internal node, from the root
``m = 1``), no convolution.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from op_record import Case, OpRecord, Out, PoolRecord, Semantics
from torch import Tensor

import torchpool.ops.tree as T

from ._policy import AVG, WINDOW_TOO_BIG, kernel_nopad

Size = int | Sequence[int]


def _pair(value: Size | None, default: tuple[int, int] | None = None) -> tuple[int, int]:
    if value is None:
        assert default is not None
        return default
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def filters(rows: int, nodes: int, kernel_size: Size, phase: float, scale: float = 0.4) -> Tensor:
    """Deterministic, non-trivial filters ``(rows, nodes, kh, kw)`` in float64 (float32-exact)."""
    kh, kw = _pair(kernel_size)
    r, m, a, b = torch.meshgrid(
        *(torch.arange(v, dtype=torch.float64) for v in (rows, nodes, kh, kw)), indexing="ij"
    )
    return (scale * torch.sin(phase + 1.3 * r + 2.1 * m + 0.7 * a + 1.9 * b)).float().double()


def tree_value(cells: list[tuple[int, int, float]], leaf: Tensor, gate: Tensor, m: int = 1) -> float:
    """The paper's recursion at node ``m`` for one window's cells ``(row, column, value)``.

    ``leaf`` is ``(L, kh, kw)``, ``gate`` ``(L - 1, kh, kw)``, both float64; node ``m < L`` is
    internal (gate ``m - 1``), node ``m >= L`` the leaf ``m - L``.
    """
    leaves = leaf.shape[0]
    if m >= leaves:
        return sum(float(leaf[m - leaves, a, b]) * v for a, b, v in cells)
    z = sum(float(gate[m - 1, a, b]) * v for a, b, v in cells)
    g = 1.0 / (1.0 + math.exp(-z))
    return g * tree_value(cells, leaf, gate, 2 * m) + (1.0 - g) * tree_value(cells, leaf, gate, 2 * m + 1)


def tree_loops(
    x: Tensor, leaf: Tensor, gate: Tensor, kernel_size: Size, stride: Size | None, padding: Size
) -> Tensor:
    """Loops over outputs; ``leaf`` / ``gate`` are ``(C' , nodes, kh, kw)`` with ``C'`` 1 or ``C``."""
    (kh, kw) = _pair(kernel_size)
    (sh, sw) = _pair(stride, (kh, kw))
    (ph, pw) = _pair(padding)
    unbatched = x.dim() == 3
    xs = (x.unsqueeze(0) if unbatched else x).double()
    n, c, h, w = xs.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = torch.empty(n, c, oh, ow, dtype=torch.float64)
    for b, ch, i, j in itertools.product(range(n), range(c), range(oh), range(ow)):
        cells = []
        for a, q in itertools.product(range(kh), range(kw)):
            r, col = i * sh - ph + a, j * sw - pw + q
            inside = 0 <= r < h and 0 <= col < w
            cells.append((a, q, float(xs[b, ch, r, col]) if inside else 0.0))
        lf = leaf[ch if leaf.shape[0] > 1 else 0]
        gt = gate[ch if gate.shape[0] > 1 else 0]
        y[b, ch, i, j] = tree_value(cells, lf, gt)
    return y.squeeze(0) if unbatched else y


# ------------------------------------------------------------------ the Module (learned filters)


def learned(
    kernel_size: Size,
    stride: Size | None = None,
    padding: Size = 0,
    depth: int = 2,
    per_channel: bool = False,
    channels: int | None = None,
) -> T.TreePool2d:
    """``TreePool2d`` with the deterministic filters of :func:`filters` (not its random start)."""
    pool = T.TreePool2d(kernel_size, stride, padding, depth=depth, per_channel=per_channel, channels=channels)
    rows, leaves = pool.leaf_weight.shape[0], pool.leaf_weight.shape[1]
    state = {
        "leaf_weight": filters(rows, leaves, kernel_size, 0.3),
        "gate_weight": filters(rows, leaves - 1, kernel_size, 1.1, 1.2),
    }
    pool.load_state_dict({k: v.float() for k, v in state.items()})
    return pool


def learned_function(x: Tensor, **kwargs: object) -> Tensor:
    """The learned pool in the input's dtype (float32 parameters for half-precision input)."""
    pool = learned(**kwargs)  # type: ignore[arg-type]
    y: Tensor = pool.to(torch.float64 if x.dtype == torch.float64 else torch.float32)(x)
    return y


def learned_reference(
    x: Tensor,
    kernel_size: Size,
    stride: Size | None = None,
    padding: Size = 0,
    depth: int = 2,
    per_channel: bool = False,
    channels: int | None = None,
) -> Tensor:
    rows, leaves = (channels or 1) if per_channel else 1, 2 ** (depth - 1)
    leaf = filters(rows, leaves, kernel_size, 0.3)
    gate = filters(rows, leaves - 1, kernel_size, 1.1, 1.2)
    return tree_loops(x, leaf, gate, kernel_size, stride, padding)


# ------------------------------------------------------------------ the function (given weights)


def _given(
    x: Tensor, kernel_size: Size, depth: int, leaf_per_channel: bool, gate_per_channel: bool
) -> tuple[Tensor, Tensor]:
    """Weights for :func:`tree_pool2d`: 3-d (shared) or 4-d with one row per channel."""
    c, leaves = x.shape[-3], 2 ** (depth - 1)
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    leaf = filters(c if leaf_per_channel else 1, leaves, kernel_size, 0.5).to(dtype)
    gate = filters(c if gate_per_channel else 1, leaves - 1, kernel_size, 2.3, 0.8).to(dtype)
    return (leaf if leaf_per_channel else leaf[0]), (gate if gate_per_channel else gate[0])


def function_with_weights(
    x: Tensor,
    kernel_size: Size,
    stride: Size | None = None,
    padding: Size = 0,
    depth: int = 2,
    leaf_per_channel: bool = False,
    gate_per_channel: bool = False,
) -> Tensor:
    leaf, gate = _given(x, kernel_size, depth, leaf_per_channel, gate_per_channel)
    return T.tree_pool2d(x, leaf, gate, kernel_size, stride, padding)


def function_reference(
    x: Tensor,
    kernel_size: Size,
    stride: Size | None = None,
    padding: Size = 0,
    depth: int = 2,
    leaf_per_channel: bool = False,
    gate_per_channel: bool = False,
) -> Tensor:
    leaf, gate = _given(x.double(), kernel_size, depth, leaf_per_channel, gate_per_channel)
    leaf = leaf if leaf_per_channel else leaf[None]
    gate = gate if gate_per_channel else gate[None]
    return tree_loops(x, leaf, gate, kernel_size, stride, padding)


class _GivenWeights(torch.nn.Module):
    """A Module around :func:`function_with_weights` (the function's weights are arguments)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__()
        self.kwargs = kwargs

    def forward(self, x: Tensor) -> Tensor:
        return function_with_weights(x, **self.kwargs)  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        return f"kwargs={self.kwargs}"


OPS: list[OpRecord] = [
    OpRecord(
        "tree2d",
        learned_function,
        learned,
        learned_reference,
        (
            Case((2, 3, 6, 7), {"kernel_size": 2}),
            Case((1, 2, 7, 7), {"kernel_size": 3, "stride": 2, "padding": 1, "depth": 3}),
            Case((2, 2, 5, 8), {"kernel_size": (3, 2), "stride": (1, 2), "padding": (1, 0), "depth": 1}),
            Case((2, 3, 6, 6), {"kernel_size": 3, "stride": 2, "per_channel": True, "channels": 3}),
            Case(
                (1, 2, 9, 9), {"kernel_size": 3, "stride": 3, "depth": 4, "per_channel": True, "channels": 2}
            ),
        ),
        2,
        inputs="real",
    ),
    OpRecord(
        "tree2d-function",
        function_with_weights,
        _GivenWeights,
        function_reference,
        (
            Case((2, 3, 6, 7), {"kernel_size": 2}),
            Case(
                (1, 3, 7, 6),
                {"kernel_size": 3, "stride": 2, "padding": 1, "depth": 3, "leaf_per_channel": True},
            ),
            Case((2, 2, 5, 8), {"kernel_size": (2, 3), "stride": 1, "gate_per_channel": True}),
            Case((1, 2, 6, 6), {"kernel_size": 2, "depth": 1, "leaf_per_channel": True}),
        ),
        2,
        inputs="real",
    ),
]


PAGE = "tree"
#: the example pool (``init="average"``): zero gating masks, so an infinite cell makes the gate
#: ``sigmoid(0 * inf) = NaN``, which reaches the output through the mix of the two (infinite) leaves.
_INF = (
    "the gate sigmoid(w . x) is NaN for the zero masks of init='average' (0 * inf); learned masks "
    "saturate it, and g * f_left + (1 - g) * f_right with infinite leaves is inf - inf = NaN or +-inf"
)

TREE = {
    **AVG,
    "1x1": WINDOW_TOO_BIG,
    "f16_huge": Out("ok", "computed in float32"),
    "+inf": Out("nan", _INF),
    "-inf": Out("nan", _INF),
}

RECORDS: list[PoolRecord] = [
    PoolRecord(
        "tree2d",
        PAGE,
        TREE,
        Semantics("mean", 1, True, kernel_nopad),
        "float32 (torchpool)",
    ),
]
