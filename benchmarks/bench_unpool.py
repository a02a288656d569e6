"""Max unpooling: ours vs ``F.max_unpool2d`` after pooling with indices.

SegNet's decoder unpools the encoder's ``MaxPool2d(2, 2, return_indices=True)``: non-overlapping
windows, so every index is unique and ours must be at least as fast as PyTorch's kernel, with the
same result. After overlapping 3x3 stride-2 windows (duplicates) ours combines duplicates by
``reduce="mean"`` in the forward and the backward alike (PyTorch keeps one value forward but
copies the gradient to each duplicate): that row shows the price. Pooled values ``(32, 64, 56,
56)`` float32 (input 112x112). ``speedup_*`` = PyTorch time / ours.

Run ``python -m benchmarks.bench_unpool [--quick]`` from the repository root.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.common import Row, clone_ms, device, paired_rows, time_against_peer
from torchpool.ops.unpool import max_unpool2d

SHAPE = (32, 64, 112, 112)


def run(quick: bool) -> list[Row]:
    """Forward and forward+backward after 2x2/2 (unique indices) and 3x3/2 (duplicates) pooling."""
    min_time = 0.1 if quick else 0.2  # per round; each side's best round counts (robust to a busy machine)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=g).to(device())
    rows: list[Row] = []
    for kernel, stride, padding in ((2, 2, 0), (3, 2, 1)):
        pooled, indices = F.max_pool2d(x, kernel, stride, padding, return_indices=True)
        size = x.shape[-2:]
        ours: Callable[[Tensor], Tensor] = partial(
            max_unpool2d,
            indices=indices,
            kernel_size=kernel,
            stride=stride,
            padding=padding,
            output_size=size,
        )
        peer: Callable[[Tensor], Tensor] = partial(
            F.max_unpool2d,
            indices=indices,
            kernel_size=(kernel, kernel),  # F.max_unpool2d takes an int too, but is typed for pairs
            stride=(stride, stride),
            padding=(padding, padding),
            output_size=size,
        )
        if kernel <= stride:
            torch.testing.assert_close(ours(pooled), peer(pooled), rtol=0, atol=0)
        floor = clone_ms(pooled, min_time)
        times = time_against_peer(ours, peer, pooled, 3 if quick else 7, min_time)
        params = f"after k={kernel} s={stride} p={padding}" + (" (unique)" if kernel <= stride else " (dups)")
        rows += paired_rows("max_unpool2d", "F.max_unpool2d", pooled, params, times, floor)
    return rows


if __name__ == "__main__":
    for r in run("--quick" in sys.argv):
        print(
            f"{r['op']:12s} {r['impl']:14s} {r['params']:28s} fwd {r['fwd_ms']:8.2f} ms  "
            f"fwd+bwd {r['fwdbwd_ms']:8.2f} ms  speedup {r['speedup_fwd']:5.2f}x / "
            f"{r['speedup_fwdbwd']:5.2f}x"
        )
