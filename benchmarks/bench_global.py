"""GeM: ours (direct powers, max-scaled only when they overflow or underflow) vs the public retrieval code.

The peer is the formula of the public image-retrieval code (Radenovic et al.'s ``cirtorch``):
``F.avg_pool2d(x.clamp(min=eps).pow(p), (H, W)).pow(1. / p)``, at ResNet-50's last stage
``(32, 2048, 7, 7)``, float32, ``p = 3``: as a Python float (``gem``) and as a learnable
``nn.Parameter`` (the ``GeM`` layer, which both codes train). ``speedup_*`` = peer time / ours.

Run ``python -m benchmarks.bench_global [--quick]`` from the repository root.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.common import Row, clone_ms, device, paired_rows, time_against_peer
from torchpool.ops.global_ import gem

SHAPE = (32, 2048, 7, 7)
EPS = 1e-6


def gem_peer(x: Tensor, p: float | Tensor) -> Tensor:
    """The public retrieval code's GeM, ``(N, C, 1, 1)``."""
    return F.avg_pool2d(x.clamp(min=EPS).pow(p), (x.size(-2), x.size(-1))).pow(1.0 / p)


def run(quick: bool) -> list[Row]:
    """Forward and forward+backward of ``gem`` (float ``p``) and ``GeM`` (learned ``p``) vs the peer."""
    min_time = 0.1 if quick else 0.2  # per round; each side's best round counts (robust to a busy machine)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=g).relu_().to(device())  # post-ReLU features: many zeros
    floor = clone_ms(x, min_time)
    rows: list[Row] = []
    learned = nn.Parameter(torch.tensor([3.0], device=device()))
    cases: list[tuple[str, float | Tensor]] = [("p=3.0 float", 3.0), ("p=3 learned", learned)]
    for params, p in cases:
        ours: Callable[[Tensor], Tensor] = partial(gem, p=p, eps=EPS, flatten=False)
        peer: Callable[[Tensor], Tensor] = partial(gem_peer, p=p)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), peer(x), rtol=1e-5, atol=1e-7)
        times = time_against_peer(ours, peer, x, 3 if quick else 7, min_time)
        rows += paired_rows("gem", "peer (avg_pool of clamp.pow)", x, params, times, floor)
    return rows


if __name__ == "__main__":
    for r in run("--quick" in sys.argv):
        print(
            f"{r['op']:5s} {r['impl']:29s} {r['params']:12s} fwd {r['fwd_ms']:8.2f} ms  "
            f"fwd+bwd {r['fwdbwd_ms']:8.2f} ms  speedup {r['speedup_fwd']:5.2f}x / "
            f"{r['speedup_fwdbwd']:5.2f}x  clone-floor {r['x_clone_floor']:6.1f}x"
        )
