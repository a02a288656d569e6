"""NetVLAD: ours (two batched matmuls) vs the popular per-cluster loop and the full-broadcast residual.

Shape of the paper's setting: K=64 clusters, D=512 channels, 30x40 positions, batch 8, float32.

- ``loop``: the popular public implementation's pattern: for each cluster ``k``, the residual
  ``x - c_k`` over all positions ``(N, D, HW)``, weighted by the soft-assignment, summed.
- ``broadcast``: one ``(N, K, D, HW)`` residual tensor (the other popular variant); timed forward
  only, and reported mainly for its peak memory (1.2 GB at this shape).

Run ``python -m benchmarks.bench_netvlad [--quick]`` from the repository root.
"""

from __future__ import annotations

import math
import sys
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.common import Row, clone_ms, device, forward_backward, peak_memory_mb, row, time_ms
from torchpool.ops.netvlad import netvlad

K, D, H, W, N = 64, 512, 30, 40, 8


def _soft_assign(x: Tensor, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """Normalised descriptors ``(N, D, L)`` and the softmax assignment ``(N, K, L)`` (a 1x1 conv)."""
    x = F.normalize(x, p=2, dim=1)
    logits = F.conv2d(x, weight[:, :, None, None], bias).flatten(2)
    return x.flatten(2), torch.softmax(logits, dim=1)


def _finish(vlad: Tensor) -> Tensor:
    vlad = F.normalize(vlad, p=2, dim=2)
    return F.normalize(vlad.flatten(1), p=2, dim=1)


def netvlad_loop(x: Tensor, centroids: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Per-cluster loop: ``residual = x - c_k`` of shape ``(N, D, HW)`` for each ``k``."""
    xf, a = _soft_assign(x, weight, bias)
    blocks = []
    for k in range(centroids.shape[0]):
        residual = xf - centroids[k].view(1, -1, 1)
        residual = residual * a[:, k : k + 1, :]
        blocks.append(residual.sum(dim=-1))
    return _finish(torch.stack(blocks, dim=1))


def netvlad_broadcast(x: Tensor, centroids: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Full broadcast: an ``(N, K, D, HW)`` residual tensor, weighted and summed over positions."""
    xf, a = _soft_assign(x, weight, bias)
    residual = xf.unsqueeze(1) - centroids.unsqueeze(0).unsqueeze(-1)
    residual = residual * a.unsqueeze(2)
    return _finish(residual.sum(dim=-1))


def run(quick: bool) -> list[Row]:
    """Forward and forward+backward at (8, 512, 30, 40), K=64; peak forward memory of all three."""
    min_time = 0.2 if quick else 0.5
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, H, W, generator=g).relu_().to(device())
    centroids = F.normalize(torch.randn(K, D, generator=g), dim=1).to(device())
    alpha = 30.0
    weight = (2 * alpha * centroids).requires_grad_(True)
    bias = (-alpha * centroids.square().sum(1)).requires_grad_(True)
    centroids.requires_grad_(True)
    params = f"K={K} D={D}"

    def ours(t: Tensor) -> Tensor:
        return netvlad(t, centroids, weight, bias)

    def loop(t: Tensor) -> Tensor:
        return netvlad_loop(t, centroids, weight, bias)

    def broadcast(t: Tensor) -> Tensor:
        return netvlad_broadcast(t, centroids, weight, bias)

    with torch.no_grad():  # the three agree (every norm here is far above sqrt(eps))
        expected = ours(x)
        torch.testing.assert_close(loop(x), expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(broadcast(x), expected, rtol=1e-4, atol=1e-5)

    floor = clone_ms(x, min_time)
    loop_f = time_ms(partial(loop, x), min_time)
    loop_fb = time_ms(forward_backward(loop, x), min_time)
    common = {"naive_fwd_ms": loop_f, "naive_fwdbwd_ms": loop_fb, "clone_ms": floor}
    with torch.no_grad():
        peaks = {name: peak_memory_mb(partial(fn, x)) for name, fn in (("ours", ours), ("loop", loop))}
        peaks["broadcast"] = peak_memory_mb(partial(broadcast, x))
    rows = [
        row(
            "netvlad",
            "ours",
            x,
            params,
            time_ms(partial(ours, x), min_time),
            time_ms(forward_backward(ours, x), min_time),
            peak_mb=peaks["ours"],
            **common,
        ),
        row("netvlad", "loop", x, params, loop_f, loop_fb, peak_mb=peaks["loop"], **common),
        row(
            "netvlad",
            "broadcast",
            x,
            params,
            time_ms(partial(broadcast, x), min_time),
            math.nan,  # its backward holds several 1.2 GB tensors; not timed
            peak_mb=peaks["broadcast"],
            **common,
        ),
    ]
    return rows


if __name__ == "__main__":
    for r in run("--quick" in sys.argv):
        print(
            f"{r['op']:8s} {r['impl']:9s} {r['params']:11s} fwd {r['fwd_ms']:8.2f} ms  "
            f"fwd+bwd {r['fwdbwd_ms']:8.2f} ms  speedup {r['speedup_fwd']:6.2f}x / "
            f"{r['speedup_fwdbwd']:6.2f}x  clone-floor {r['x_clone_floor']:6.1f}x  "
            f"peak {r['peak_extra_mb']:7.1f} MB"
        )
