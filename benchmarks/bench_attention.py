"""Attention pools: ours vs timm's modules at ResNet-50's last stage ``(32, 2048, 7, 7)``, float32.

* ``AttentionPool2d``: 32 heads (timm's default ``head_dim=64``), ``feat_size=7``, ``out_dim=2048``.
* ``AttentionPoolLatent``: 8 heads, one latent, ``mlp_ratio=4`` (timm's defaults).
* ``SimPool``: one head (timm's default).

Both sides hold the same weights (``from_timm``). The peer is timm's module where ``timm`` is
importable (the zoo environment); elsewhere it is the same formulation written here (every
token's query, key and value projected, then ``scaled_dot_product_attention``, as timm's
fused path computes it). ``speedup_*`` = peer time / ours; ``x_clone_floor`` = our forward time
/ ``x.clone()``. Parameter gradients are computed in the forward+backward rows on both sides.

Run ``python -m benchmarks.bench_attention [--quick]`` from the repository root.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.common import Row, clone_ms, device, paired_rows, time_against_peer
from torchpool.ops.attention import AttentionPool2d, AttentionPoolLatent, SimPool

SHAPE = (32, 2048, 7, 7)


def _timm_layers() -> Any:
    try:
        import timm.layers as layers  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    return layers


class _Tokens(nn.Module):
    """timm's AttentionPoolLatent takes ``(N, L, C)`` tokens: the maps flattened first."""

    def __init__(self, pool: nn.Module) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        y: Tensor = self.pool(x.flatten(2).transpose(1, 2))
        return y


class _TextbookAttentionPool2d(nn.Module):
    """timm's AttentionPool2d formulation (the peer where timm is missing), from our module's weights."""

    def __init__(self, ours: AttentionPool2d) -> None:
        super().__init__()
        self.ours = ours

    def forward(self, x: Tensor) -> Tensor:
        m = self.ours
        n, c = x.shape[:2]
        t = x.flatten(2).transpose(1, 2)
        t = torch.cat([t.mean(1, keepdim=True), t], dim=1) + m.pos_embed
        qkv = m.qkv(t).reshape(n, -1, 3, m.num_heads, c // m.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(n, -1, c)
        y: Tensor = m.proj(out)[:, 0]
        return y


class _TextbookLatent(nn.Module):
    def __init__(self, ours: AttentionPoolLatent) -> None:
        super().__init__()
        self.ours = ours

    def forward(self, x: Tensor) -> Tensor:
        m = self.ours
        t = x.flatten(2).transpose(1, 2)
        n, length, c = t.shape
        h = m.num_heads
        q = m.q(m.latent.expand(n, -1, -1)).reshape(n, m.num_latents, h, c // h).transpose(1, 2)
        kv = m.kv(t).reshape(n, length, 2, h, c // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1]).transpose(1, 2).reshape(n, m.num_latents, c)
        out = m.proj(out)
        out = out + m.mlp.fc2(m.mlp.act(m.mlp.fc1(m.norm(out))))
        y: Tensor = out[:, 0]
        return y


class _TextbookSimPool(nn.Module):
    def __init__(self, ours: SimPool) -> None:
        super().__init__()
        self.ours = ours

    def forward(self, x: Tensor) -> Tensor:
        m = self.ours
        t = x.flatten(2).transpose(1, 2)
        n, length, c = t.shape
        h = m.num_heads
        q = m.q(t.mean(1, keepdim=True)).reshape(n, 1, h, c // h).transpose(1, 2)
        normed = m.norm(t)
        k = m.k(normed).reshape(n, length, h, c // h).transpose(1, 2)
        v = normed.reshape(n, length, h, c // h).transpose(1, 2)
        y: Tensor = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, c)
        return y


def _pairs(c: int) -> tuple[str, list[tuple[str, str, nn.Module, nn.Module]]]:
    """(peer name, [(op, params, ours, peer)]) with the same weights on both sides."""
    layers = _timm_layers()
    if layers is not None:
        t2d = layers.AttentionPool2d(c, feat_size=7, num_heads=32)
        tlat = layers.AttentionPoolLatent(c, num_heads=8)
        tsim = layers.SimPool2d(c)
        with torch.no_grad():
            for m in (t2d, tlat, tsim):
                for p in m.parameters():
                    p.add_(0.01 * torch.randn_like(p))  # non-zero biases and latent
        return "timm", [
            ("attention2d", "heads=32", AttentionPool2d.from_timm(t2d), t2d),
            ("attention_latent", "heads=8 mlp=4", AttentionPoolLatent.from_timm(tlat), _Tokens(tlat)),
            ("simpool", "heads=1", SimPool.from_timm(tsim), tsim),
        ]
    a2d = AttentionPool2d(c, 32, 7)
    lat = AttentionPoolLatent(c, 8)
    sim = SimPool(c)
    return "textbook (timm's formula)", [
        ("attention2d", "heads=32", a2d, _TextbookAttentionPool2d(a2d)),
        ("attention_latent", "heads=8 mlp=4", lat, _TextbookLatent(lat)),
        ("simpool", "heads=1", sim, _TextbookSimPool(sim)),
    ]


def run(quick: bool) -> list[Row]:
    """Forward and forward+backward of the three attention pools vs timm (or timm's formula)."""
    min_time = 0.1 if quick else 0.2
    rounds = 3 if quick else 5
    torch.manual_seed(0)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)).relu_().to(device())
    floor = clone_ms(x, min_time)
    peer_name, pairs = _pairs(SHAPE[1])
    rows: list[Row] = []
    for op, params, ours_module, peer_module in pairs:
        ours_module.to(device()).eval()
        peer_module.to(device()).eval()
        ours: Callable[[Tensor], Tensor] = ours_module
        peer: Callable[[Tensor], Tensor] = peer_module
        with torch.no_grad():
            torch.testing.assert_close(ours(x), peer(x), rtol=1e-4, atol=1e-4)
        times = time_against_peer(ours, peer, x, rounds, min_time)
        rows += paired_rows(op, peer_name, x, params, times, floor)
    return rows


if __name__ == "__main__":
    for r in run("--quick" in sys.argv):
        print(
            f"{r['op']:16s} {r['impl']:26s} {r['params']:14s} fwd {r['fwd_ms']:8.2f} ms  "
            f"fwd+bwd {r['fwdbwd_ms']:8.2f} ms  speedup {r['speedup_fwd']:5.2f}x / "
            f"{r['speedup_fwdbwd']:5.2f}x  clone-floor {r['x_clone_floor']:6.1f}x"
        )
