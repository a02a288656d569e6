"""SoftPool and LIP: ours vs the naive formulations, at ``(32, 64, 56, 56)`` float32.

* SoftPool (``soft_pool2d``, 2x2 stride 2 and 3x3 stride 2): against the ``F.unfold`` + softmax
  formulation (each window's cells unfolded, ``softmax`` over them, weighted sum; no padding, so
  the two agree). The authors' CUDA code is not installable here.
* LIP (``lip_pool2d``, 3x3 stride 2 padding 1, a given logit): against the paper code's formula
  ``avg_pool2d(x * logit.exp()) / avg_pool2d(logit.exp())`` (unstabilised: it overflows for
  logits above 88.7; here the logits are in the soft gate's range (0, 12), where it is finite).

``speedup_*`` = naive time / ours; ``x_clone_floor`` = our forward time / ``x.clone()``.
Run ``python -m benchmarks.bench_soft [--quick]`` from the repository root.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.common import Row, clone_ms, device, paired_rows, time_against_peer
from torchpool.ops.lip import lip_pool2d
from torchpool.ops.soft import soft_pool2d

SHAPE = (32, 64, 56, 56)


def soft_unfold(x: Tensor, kernel_size: int, stride: int) -> Tensor:
    """SoftPool as ``F.unfold`` + softmax over each window (no padding)."""
    n, c, h, w = x.shape
    cells = F.unfold(x, kernel_size, stride=stride).view(n, c, kernel_size * kernel_size, -1)
    out = ((torch.softmax(cells, dim=2) * cells).sum(dim=2)).view(
        n, c, (h - kernel_size) // stride + 1, (w - kernel_size) // stride + 1
    )
    return out


def lip_naive(x: Tensor, logit: Tensor) -> Tensor:
    """The paper code's ``lip2d``: two average pools of ``exp(logit)``-weighted maps."""
    weight = logit.exp()
    return F.avg_pool2d(x * weight, 3, 2, 1) / F.avg_pool2d(weight, 3, 2, 1)


def run(quick: bool) -> list[Row]:
    """Forward and forward+backward of SoftPool (two windows) and LIP vs their naive formulations."""
    min_time = 0.1 if quick else 0.2
    rounds = 3 if quick else 7
    g = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=g).to(device())
    floor = clone_ms(x, min_time)
    rows: list[Row] = []
    for k, s in ((2, 2), (3, 2)):
        ours: Callable[[Tensor], Tensor] = partial(soft_pool2d, kernel_size=k, stride=s)
        peer: Callable[[Tensor], Tensor] = partial(soft_unfold, kernel_size=k, stride=s)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), peer(x), rtol=1e-5, atol=1e-5)
        times = time_against_peer(ours, peer, x, rounds, min_time)
        rows += paired_rows("soft_pool2d", "unfold + softmax", x, f"k={k} s={s}", times, floor)
    logit = 12 * torch.sigmoid(torch.randn(SHAPE, generator=g)).to(device())  # the soft gate's range
    lip_ours: Callable[[Tensor], Tensor] = partial(lip_pool2d, logit=logit)
    lip_peer: Callable[[Tensor], Tensor] = partial(lip_naive, logit=logit)
    with torch.no_grad():
        torch.testing.assert_close(lip_ours(x), lip_peer(x), rtol=1e-5, atol=1e-5)
    times = time_against_peer(lip_ours, lip_peer, x, rounds, min_time)
    rows += paired_rows("lip_pool2d", "naive (avg_pool of exp)", x, "k=3 s=2 p=1", times, floor)
    return rows


if __name__ == "__main__":
    for r in run("--quick" in sys.argv):
        print(
            f"{r['op']:11s} {r['impl']:24s} {r['params']:12s} fwd {r['fwd_ms']:8.2f} ms  "
            f"fwd+bwd {r['fwdbwd_ms']:8.2f} ms  speedup {r['speedup_fwd']:5.2f}x / "
            f"{r['speedup_fwdbwd']:5.2f}x  clone-floor {r['x_clone_floor']:6.1f}x"
        )
