"""R-MAC, LSE and k-max pooling against the formulations people use, float32.

* ``rmac`` at ``(32, 2048, 7, 7)`` (a ResNet-50 map at 224), levels 3 (15 regions): against the
  public retrieval code's formulation (Radenovic et al., ``cirtorch``: a Python loop over the
  regions, each cut out by list indexing and ``F.max_pool2d``-ed, ``v / (||v|| + eps)``, summed),
  then its final L2 normalisation. Also at ``(8, 512, 30, 40)`` (a VGG map at 480x640, 61 regions).
* ``lse_pool`` at ``(32, 2048, 7, 7)``, r = 10: against timm's formulation (``LsePlus2d.forward``:
  ``adaptive_max_pool2d``, ``exp(r (x - x_max))``, ``mean``, ``log``, ``x_max + log / r``).
* ``kmax_pool1d`` at ``(32, 300, 512)``, k = 8 along the last dim (a text CNN's feature rows):
  against ``topk`` + ``sort`` of the indices + ``gather`` (no tie rule: ``topk`` picks among ties
  in an unspecified way).

``speedup_*`` = peer time / ours; ``x_clone_floor`` = our forward time / ``x.clone()``.
Run ``python -m benchmarks.bench_heads [--quick]`` from the repository root.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.common import Row, clone_ms, device, paired_rows, time_against_peer
from torchpool.ops.kmax import kmax_pool1d
from torchpool.ops.lse import lse_pool
from torchpool.ops.rmac import rmac

HEAD = (32, 2048, 7, 7)
VGG = (8, 512, 30, 40)
TOKENS = (32, 300, 512)


def rmac_public(x: Tensor, levels: int = 3, eps: float = 1e-6) -> Tensor:
    """The public retrieval code's R-MAC (loop over regions), then the final L2 normalisation."""
    steps = torch.tensor([2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    height, width = x.size(2), x.size(3)
    w = min(width, height)
    spacing = (max(height, width) - w) / (steps - 1)
    _, idx = torch.min(torch.abs(((w**2 - w * spacing) / w**2) - 0.4), 0)
    wd = int(idx.item()) + 1 if height < width else 0
    hd = int(idx.item()) + 1 if height > width else 0
    v = F.max_pool2d(x, (height, width))
    v = v / (torch.norm(v, p=2, dim=1, keepdim=True) + eps)
    for level in range(1, levels + 1):
        wl = math.floor(2 * w / (level + 1))
        wl2 = math.floor(wl / 2 - 1)
        b = 0.0 if level + wd == 1 else (width - wl) / (level + wd - 1)
        cen_w = torch.floor(wl2 + torch.arange(level + wd).float() * b) - wl2
        b = 0.0 if level + hd == 1 else (height - wl) / (level + hd - 1)
        cen_h = torch.floor(wl2 + torch.arange(level + hd).float() * b) - wl2
        for i in cen_h.tolist():
            for j in cen_w.tolist():
                if wl == 0:
                    continue
                region = x[:, :, [int(i) + t for t in range(wl)], :][:, :, :, [int(j) + t for t in range(wl)]]
                vt = F.max_pool2d(region, (wl, wl))
                v = v + vt / (torch.norm(vt, p=2, dim=1, keepdim=True) + eps)
    v = v.flatten(1)
    out: Tensor = v / (torch.norm(v, p=2, dim=1, keepdim=True) + eps)
    return out


def lse_timm(x: Tensor, r: float = 10.0) -> Tensor:
    """timm's ``LsePlus2d.forward`` (``flatten=True``) with a fixed ``r``."""
    x_max = F.adaptive_max_pool2d(x, 1)
    out = x_max + (1.0 / r) * torch.log(torch.exp(r * (x - x_max)).mean(dim=(2, 3), keepdim=True))
    return out.flatten(1)


def kmax_topk(x: Tensor, k: int) -> Tensor:
    """``topk`` + ``sort`` of the indices + ``gather`` along the last dim."""
    positions = x.topk(k, dim=-1).indices.sort(dim=-1).values
    return x.gather(-1, positions)


def _pair(
    rows: list[Row],
    name: str,
    peer_name: str,
    ours: Callable[[Tensor], Tensor],
    peer: Callable[[Tensor], Tensor],
    x: Tensor,
    params: str,
    rounds: int,
    min_time: float,
) -> None:
    with torch.no_grad():
        torch.testing.assert_close(ours(x), peer(x), rtol=1e-5, atol=1e-6)
    times = time_against_peer(ours, peer, x, rounds, min_time)
    rows += paired_rows(name, peer_name, x, params, times, clone_ms(x, min_time))


def run(quick: bool) -> list[Row]:
    """Forward and forward+backward of the three heads against their usual formulations."""
    min_time = 0.1 if quick else 0.2
    rounds = 3 if quick else 7
    g = torch.Generator().manual_seed(0)
    rows: list[Row] = []
    head = torch.randn(HEAD, generator=g).relu().to(device())
    vgg = torch.randn(VGG, generator=g).relu().to(device())
    tokens = torch.randn(TOKENS, generator=g).to(device())
    _pair(rows, "rmac", "public code (loop)", rmac, rmac_public, head, "levels=3", rounds, min_time)
    _pair(rows, "rmac", "public code (loop)", rmac, rmac_public, vgg, "levels=3", rounds, min_time)
    ours_lse: Callable[[Tensor], Tensor] = partial(lse_pool, r=10.0)
    _pair(rows, "lse_pool", "timm LsePlus2d", ours_lse, lse_timm, head, "r=10", rounds, min_time)
    ours_kmax: Callable[[Tensor], Tensor] = partial(kmax_pool1d, k=8)
    peer_kmax: Callable[[Tensor], Tensor] = partial(kmax_topk, k=8)
    _pair(rows, "kmax_pool1d", "topk + sort + gather", ours_kmax, peer_kmax, tokens, "k=8", rounds, min_time)
    return rows


if __name__ == "__main__":
    torch.set_num_threads(2)
    for r in run("--quick" in sys.argv):
        print(
            f"{r['op']:11s} {r['impl']:22s} {r['params']:9s} fwd {r['fwd_ms']:8.2f} ms  "
            f"fwd+bwd {r['fwdbwd_ms']:8.2f} ms  speedup {r['speedup_fwd']:5.2f}x / "
            f"{r['speedup_fwdbwd']:5.2f}x  clone-floor {r['x_clone_floor']:6.1f}x"
        )
