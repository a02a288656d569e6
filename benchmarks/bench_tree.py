"""Tree pooling (Lee et al. 2016): ours vs the naive formulation, at ``(32, 64, 56, 56)`` float32.

``tree_pool2d`` (depth 2: two leaf filters and one gating mask, shared by the channels, as the
authors' ``TreepoolKernel1L`` layer) with 3x3 stride 2 and 2x2 stride 2 windows, against the
naive formulation: the windows unfolded (``F.unfold``), each node's response a product of the
unfolded cells with its filter, and the paper's recursion node by node
(``f_m = sigmoid(w_m . x) f_2m + (1 - sigmoid(w_m . x)) f_2m+1``). Ours: one grouped convolution
for every node's response, then the tree folded one level at a time.

``speedup_*`` = naive time / ours; ``x_clone_floor`` = our forward time / ``x.clone()``.
Run ``python -m benchmarks.bench_tree [--quick]`` from the repository root.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.common import Row, clone_ms, device, paired_rows, time_against_peer
from torchpool.ops.tree import tree_pool2d

SHAPE = (32, 64, 56, 56)
DEPTH = 2


def tree_unfold(x: Tensor, leaf: Tensor, gate: Tensor, kernel_size: int, stride: int) -> Tensor:
    """Tree pooling as ``F.unfold`` + the recursion, one node at a time (shared filters, no padding)."""
    n, c, h, w = x.shape
    cells = F.unfold(x, kernel_size, stride=stride).view(n, c, kernel_size * kernel_size, -1)
    leaves = leaf.shape[0]

    def node(m: int) -> Tensor:
        if m >= leaves:  # a leaf: its filter's response
            return torch.einsum("ncil,i->ncl", cells, leaf[m - leaves].flatten())
        g = torch.sigmoid(torch.einsum("ncil,i->ncl", cells, gate[m - 1].flatten()))
        return g * node(2 * m) + (1 - g) * node(2 * m + 1)

    out = ((h - kernel_size) // stride + 1, (w - kernel_size) // stride + 1)
    return node(1).view(n, c, *out)


def run(quick: bool) -> list[Row]:
    """Forward and forward+backward of tree pooling (two windows) vs the naive formulation."""
    min_time = 0.1 if quick else 0.2
    rounds = 3 if quick else 7
    g = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=g).to(device())
    floor = clone_ms(x, min_time)
    rows: list[Row] = []
    leaves = 2 ** (DEPTH - 1)
    for k, s in ((3, 2), (2, 2)):
        leaf = (0.1 * torch.randn(leaves, k, k, generator=g)).to(device())
        gate = (0.1 * torch.randn(leaves - 1, k, k, generator=g)).to(device())
        ours: Callable[[Tensor], Tensor] = partial(
            tree_pool2d, leaf_weights=leaf, gate_weights=gate, kernel_size=k, stride=s
        )
        peer: Callable[[Tensor], Tensor] = partial(tree_unfold, leaf=leaf, gate=gate, kernel_size=k, stride=s)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), peer(x), rtol=1e-5, atol=1e-5)
        times = time_against_peer(ours, peer, x, rounds, min_time)
        rows += paired_rows("tree_pool2d", "unfold + per-node", x, f"k={k} s={s} depth={DEPTH}", times, floor)
    return rows


if __name__ == "__main__":
    for r in run("--quick" in sys.argv):
        print(
            f"{r['op']:11s} {r['impl']:18s} {r['params']:18s} fwd {r['fwd_ms']:8.2f} ms  "
            f"fwd+bwd {r['fwdbwd_ms']:8.2f} ms  speedup {r['speedup_fwd']:5.2f}x / "
            f"{r['speedup_fwdbwd']:5.2f}x  clone-floor {r['x_clone_floor']:6.1f}x"
        )
