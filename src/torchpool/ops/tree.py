"""Tree pooling (Lee, Gallagher & Tu, AISTATS 2016, arXiv 1509.08985): learned pooling filters
fused by a binary tree of learned sigmoid gates.

The tree has ``depth`` levels of nodes, numbered in heap order: the root is node 1 and node ``m``
has the children ``2m`` and ``2m + 1``; nodes ``1 .. L - 1`` are internal, nodes ``L .. 2L - 1``
are the ``L = 2 ** (depth - 1)`` leaves. On the cells ``x`` of one window (``k x k``, flattened):

* a leaf ``m`` is a learned pooling filter: ``f_m(x) = v_m . x``;
* an internal node ``m`` mixes its children with a learned gating mask ``w_m``:
  ``f_m(x) = sigmoid(w_m . x) f_{2m}(x) + (1 - sigmoid(w_m . x)) f_{2m+1}(x)``;
* the pooled value is the root's ``f_1(x)``.

``depth=1`` is a single leaf: one learned ``k x k`` filter (a strided depthwise convolution);
``depth=2`` (the default) is two leaves and one gate, the ``TreepoolKernel1L`` layer of the authors'
Caffe code; ``depth=3`` is four leaves and three gates (their ``TreepoolKernel2L``).

**How it is computed.** Every node's response ``v_m . x`` / ``w_m . x`` at every window comes from
one grouped convolution (``groups=C``, ``2L - 1`` maps per channel; shared filters are expanded
over the channels, which on the CPU is faster than folding the channels into the batch), then the
tree is folded bottom-up, node by node (``torch.lerp`` of the children's maps by the gate's
sigmoid; ``L - 1`` gates, each over every window at once). Zero padding
enters every filter and gate as zeros. Half-precision input is computed in float32 and rounded once.

**Initialisation.** As the authors' code (``weight_filler`` ``gaussian``, ``std: 0.1`` in their
AlexNet example): every leaf filter and every gating mask drawn from ``N(0, 0.1^2)``
(``init="normal"``, the default). ``init="average"`` starts from average pooling instead (leaf
filters ``1 / (kh * kw)``, gating masks zero), like LIP's zero start.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_bool, check_choice, check_input, check_window, restore_batch
from .._shape import IntOrTuple, pool_output_size
from ..registry import register_pool
from ._base import WindowPool

__all__ = ["TreePool2d", "tree_pool2d"]

#: the standard deviation of the authors' Gaussian filler for every filter and gating mask.
INIT_STD = 0.1
INITS = ("normal", "average")


def tree_pool2d(
    x: Tensor,
    leaf_weights: Tensor,
    gate_weights: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
) -> Tensor:
    """Tree pooling (Lee et al. 2016): leaf pooling filters fused by a binary tree of sigmoid gates.

    With ``L`` leaves (a power of two) and ``L - 1`` gates in heap order (root: node 1; node ``m``
    has the children ``2m`` and ``2m + 1``; gate ``i`` is node ``i + 1``, leaf ``j`` is node
    ``L + j``), each window's cells ``x`` give
    ``f_m = sigmoid(w_m . x) f_{2m} + (1 - sigmoid(w_m . x)) f_{2m+1}`` at the gates and
    ``f_m = v_m . x`` at the leaves; the output is the root's ``f_1``. With every leaf filter equal
    to ``1 / (kh * kw)`` it is ``avg_pool2d(x, kernel_size, stride, padding)`` with
    ``count_include_pad=True``, whatever the gates.

    Args:
        x: input, batched or batch-less, floating point (float16 / bfloat16 computed in float32).
        leaf_weights: the leaf filters ``v``, ``(L, kh, kw)`` shared by every channel, or
            ``(C', L, kh, kw)`` with ``C'`` 1 (shared) or the input's ``C`` (one set per channel).
        gate_weights: the gating masks ``w``, ``(L - 1, kh, kw)`` or ``(C', L - 1, kh, kw)`` as
            ``leaf_weights`` (each of the two may be shared or per channel on its own).
        kernel_size: window size; the weights' last two sizes must equal it.
        stride: window step; ``None`` means ``kernel_size``.
        padding: implicit zero padding on both sides (zeros for the filters and the gates alike),
            at most half the window.

    Returns:
        The pooled tensor, in ``x``'s dtype (computed in the widest of the dtypes, at least float32).

    Raises:
        TypeError: if ``x`` or a weight is not a floating-point tensor.
        ValueError: if a weight's shape does not fit (the window, a power-of-two number of leaves,
            one gate fewer, the channels).

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``; ``leaf_weights`` ``([C',] L, kh, kw)``,
          ``gate_weights`` ``([C',] L - 1, kh, kw)``.
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``, as ``avg_pool2d``.

    Example:
        >>> x = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]]]])
        >>> leaves = torch.stack([torch.full((2, 2), 0.25), torch.eye(2)])  # the mean; the diagonal
        >>> tree_pool2d(x, leaves, torch.zeros(1, 2, 2), 2).item()  # gate 0.5: (4 + 8) / 2
        6.0
        >>> tree_pool2d(x, leaves, torch.full((1, 2, 2), -10.0), 2).item()  # gate ~0: the diagonal
        8.0
    """
    window = check_window(kernel_size, stride, padding, 2)
    batched, unbatched = check_input(x, 2, window=window)
    n, c, h, w = batched.shape
    leaf, gate = _check_weights(leaf_weights, gate_weights, window.kernel_size, c)
    k, s, p = window.kernel_size, window.stride, window.padding
    out = pool_output_size((h, w), k, s, p)
    dtype = torch.promote_types(torch.promote_types(x.dtype, leaf.dtype), gate.dtype)
    dtype = torch.promote_types(dtype, torch.float32)
    leaves = leaf.shape[1]
    if c == 0:  # no channels: the empty result (a convolution with 0 groups is refused)
        keep = ((leaf.sum() + gate.sum()).to(x.dtype) + batched.sum()) * 0  # keeps the graph (no values)
        return restore_batch(batched.new_empty(n, 0, *out) + keep, unbatched)
    # every node's filter, heap order: node m at index m - 1 (the gates, then the leaves), per channel
    weight = torch.cat([gate.to(dtype).expand(c, -1, -1, -1), leaf.to(dtype).expand(c, -1, -1, -1)], 1)
    nodes = 2 * leaves - 1
    # one grouped convolution: `nodes` maps per channel (faster on the CPU than folding shared filters'
    # channels into the batch, whose single input channel the convolution kernels handle slowly)
    resp = F.conv2d(batched.to(dtype), weight.reshape(c * nodes, 1, *k), None, s, p, groups=c)
    resp = resp.reshape(n, c, nodes, *out)
    return restore_batch(_fold(resp, leaves).to(x.dtype), unbatched)


def _fold(resp: Tensor, leaves: int) -> Tensor:
    """The root's value from every node's response ``(N, C, 2L - 1, H_out, W_out)`` (heap order).

    The maps are taken apart with ``unbind`` (its backward stacks the maps' gradients into one
    buffer; slicing would zero-fill and add a full-size gradient per slice).
    """
    maps = resp.unbind(2)  # node m is maps[m - 1]
    values = list(maps[leaves - 1 :])  # the leaves: nodes L .. 2L - 1
    width = leaves
    while width > 1:  # the nodes half .. width - 1 over their children width .. 2 width - 1
        half = width // 2
        # node m = half + i: the children 2m (values[2i], left) and 2m + 1 (values[2i + 1], right)
        values = [
            torch.lerp(values[2 * i + 1], values[2 * i], torch.sigmoid(maps[half + i - 1]))
            for i in range(half)
        ]
        width = half
    return values[0]


def _as_rows(t: object, name: str, k: tuple[int, ...], channels: int) -> Tensor:
    """A weight as ``(C', nodes, kh, kw)``, ``C'`` 1 or ``channels``."""
    if not isinstance(t, Tensor) or not t.is_floating_point():
        got = t.dtype if isinstance(t, Tensor) else type(t).__name__
        raise TypeError(f"{name} must be a floating-point torch.Tensor, got {got}")
    if t.dim() not in (3, 4) or tuple(t.shape[-2:]) != k:
        raise ValueError(
            f"{name} must have shape (nodes, {k[0]}, {k[1]}) or (C, nodes, {k[0]}, {k[1]}) for "
            f"kernel_size={k}, got shape {tuple(t.shape)}"
        )
    if t.dim() == 3:
        return t.unsqueeze(0)
    if t.shape[0] not in (1, channels):
        raise ValueError(
            f"{name} has {t.shape[0]} rows of filters, but the input has {channels} channels "
            "(expected 1 row, shared, or one per channel)"
        )
    return t


def _check_weights(
    leaf_weights: object, gate_weights: object, k: tuple[int, ...], c: int
) -> tuple[Tensor, Tensor]:
    leaf = _as_rows(leaf_weights, "leaf_weights", k, c)
    gate = _as_rows(gate_weights, "gate_weights", k, c)
    leaves = leaf.shape[1]
    if leaves < 1 or leaves & (leaves - 1):
        raise ValueError(
            f"leaf_weights must hold a power of two of leaf filters (1, 2, 4, ...), got {leaves}"
        )
    if gate.shape[1] != leaves - 1:
        raise ValueError(
            f"gate_weights must hold one gating mask fewer than the {leaves} leaf filters "
            f"({leaves - 1}), got {gate.shape[1]}"
        )
    return leaf, gate


def _check_depth(depth: object) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise TypeError(f"depth must be an int, got {type(depth).__name__}")
    if depth < 1:
        raise ValueError(f"depth must be at least 1 (a single leaf), got {depth}")
    return depth


def _check_channels(channels: object, per_channel: bool) -> int | None:
    if channels is None:
        if per_channel:
            raise ValueError("per_channel=True needs channels (the input's channel count), got channels=None")
        return None
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be None or a positive int, got {channels!r}")
    if not per_channel:
        raise ValueError(
            f"channels is only used with per_channel=True (one set of filters per channel), got "
            f"channels={channels} with per_channel=False"
        )
    return channels


class TreePool2d(WindowPool):
    """Tree pooling (Lee et al. 2016) with learned leaf filters and gating masks.

    A binary tree of ``depth`` levels: ``L = 2 ** (depth - 1)`` leaf pooling filters
    (``leaf_weight``) and ``L - 1`` gating masks (``gate_weight``), each ``k x k``, shared by all
    channels or one set per channel (``per_channel=True``, with ``channels``); see
    :func:`tree_pool2d` for the recursion. Parameters: ``leaf_weight`` ``(C', L, kh, kw)`` and
    ``gate_weight`` ``(C', L - 1, kh, kw)`` with ``C'`` 1 or ``channels``.

    Args:
        kernel_size: window size.
        stride: window step; ``None`` means ``kernel_size``.
        padding: implicit zero padding on both sides, at most half the window.
        depth: levels of the tree, at least 1 (1: a single learned filter; 2: two leaves, one gate).
        per_channel: one set of filters and masks per channel instead of one shared set.
        channels: the input's channel count, needed (only) with ``per_channel=True``.
        init: ``"normal"``: every filter and mask from ``N(0, 0.1^2)``, as the authors' code;
            ``"average"``: leaves ``1 / (kh * kw)`` and masks zero, so the fresh pool is
            ``avg_pool2d`` (``count_include_pad=True``).

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``, as ``avg_pool2d``.

    Example:
        >>> pool = TreePool2d(2, init="average")
        >>> pool(torch.tensor([[[[1.0, 3.0], [5.0, 7.0]]]])).item()
        4.0
        >>> TreePool2d(3, 2, 1, depth=3).leaf_weight.shape  # 4 leaves, shared by the channels
        torch.Size([1, 4, 3, 3])
    """

    _repr_options = ("depth", "per_channel", "channels", "init")

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        *,
        depth: int = 2,
        per_channel: bool = False,
        channels: int | None = None,
        init: str = "normal",
    ) -> None:
        window = check_window(kernel_size, stride, padding, 2)
        super().__init__(kernel_size, stride, padding)
        self.depth = _check_depth(depth)
        self.per_channel = check_bool(per_channel, "per_channel")
        self.channels = _check_channels(channels, self.per_channel)
        self.init = check_choice(init, "init", INITS)
        rows = 1 if self.channels is None else self.channels
        leaves = 2 ** (self.depth - 1)
        self.leaf_weight = nn.Parameter(torch.empty(rows, leaves, *window.kernel_size))
        self.gate_weight = nn.Parameter(torch.empty(rows, leaves - 1, *window.kernel_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draws (``init="normal"``) or sets (``init="average"``) the filters and masks again."""
        with torch.no_grad():
            if self.init == "normal":
                nn.init.normal_(self.leaf_weight, 0.0, INIT_STD)
                nn.init.normal_(self.gate_weight, 0.0, INIT_STD)
            else:
                cells = self.leaf_weight.shape[-1] * self.leaf_weight.shape[-2]
                self.leaf_weight.fill_(1.0 / cells)
                self.gate_weight.zero_()

    def forward(self, x: Tensor) -> Tensor:
        if self.channels is not None and isinstance(x, Tensor) and x.dim() in (3, 4):
            c = x.shape[-3]
            if c != self.channels:
                raise ValueError(
                    f"input has {c} channels, but the pool was built with channels={self.channels}"
                )
        return tree_pool2d(x, self.leaf_weight, self.gate_weight, self.kernel_size, self.stride, self.padding)


register_pool(
    "tree2d",
    TreePool2d,
    family="tree",
    dims=(2,),
    trainable=True,
    description="learned pooling filters fused by a tree of sigmoid gates (Lee et al. 2016)",
    example_kwargs={"kernel_size": 2, "init": "average"},
)
