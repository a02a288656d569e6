"""Bilinear pooling: full bilinear vs compact (Tensor Sketch, Random Maclaurin), d = 8192.

Shape (8, 512, 28, 28) float32 (a VGG conv5 map). Rows:

* ``bilinear``: ours vs the survey's PyTorch snippet (the same ops: ratio ~1);
* ``compact_ts``: ours (``path="auto"``, which picks the matrix / signed-scatter path here) and
  ours forced onto the per-location FFT path, vs the naive prototype: count-sketch each
  position, FFT, multiply, inverse FFT per position, then average;
* ``compact_rm``: ours (``auto`` = via the bilinear matrix) vs projecting every position.

``vs_full_fwd`` is the forward time over the full bilinear forward time (target for the
compact Tensor Sketch: <= 3). Run ``python -m benchmarks.bench_bilinear [--quick]`` from the
repository root.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor

from benchmarks.common import Row, clone_ms, device, forward_backward, peak_memory_mb, row, time_ms
from torchpool.ops.bilinear import (
    _sketch_buffers,
    bilinear_pool,
    compact_bilinear_path,
    compact_bilinear_pool,
)

OUT_DIM = 8192


def seed_snippet(x: Tensor) -> Tensor:
    """The survey's code (its first line fixed to reshape ``x``)."""
    n, d, h, w = x.shape
    y = torch.reshape(x, (n, d, h * w))
    y = torch.bmm(y, torch.transpose(y, 1, 2)) / (h * w)
    y = torch.reshape(y, (n, d * d))
    y = torch.sign(y) * torch.sqrt(torch.abs(y) + 1e-5)
    return torch.nn.functional.normalize(y)


def naive_tensor_sketch(x: Tensor, out_dim: int = OUT_DIM, seed: int = 0) -> Tensor:
    """The straightforward prototype: per-position count sketches and FFTs, inverse per position."""
    n, d = x.shape[:2]
    p = {k: v.to(x.device) for k, v in _sketch_buffers(d, d, out_dim, "tensor_sketch", seed).items()}
    f = x.reshape(n, d, -1).transpose(1, 2)  # (N, L, D)
    psi_a = f.new_zeros(*f.shape[:2], out_dim).index_add(2, p["hash_a"], f * p["sign_a"])
    psi_b = f.new_zeros(*f.shape[:2], out_dim).index_add(2, p["hash_b"], f * p["sign_b"])
    phi = torch.fft.irfft(torch.fft.rfft(psi_a) * torch.fft.rfft(psi_b), n=out_dim).mean(1)
    phi = torch.sign(phi) * torch.sqrt(torch.abs(phi) + 1e-5)
    return torch.nn.functional.normalize(phi)


def naive_random_maclaurin(x: Tensor, out_dim: int = OUT_DIM, seed: int = 0) -> Tensor:
    """Project every position with both +-1 matrices, multiply, average."""
    n, d = x.shape[:2]
    p = {k: v.to(x.device) for k, v in _sketch_buffers(d, d, out_dim, "random_maclaurin", seed).items()}
    f = x.reshape(n, d, -1)
    phi = (torch.matmul(p["weight_a"], f) * torch.matmul(p["weight_b"], f)).mean(2) / math.sqrt(out_dim)
    phi = torch.sign(phi) * torch.sqrt(torch.abs(phi) + 1e-5)
    return torch.nn.functional.normalize(phi)


def run(quick: bool) -> list[Row]:
    """Forward (and forward+backward) times; the slowest naive backward passes only without ``quick``."""
    shape = (8, 512, 28, 28)
    min_time = 0.2 if quick else 0.5
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).relu_().to(device())
    floor = clone_ms(x, min_time)
    nan = math.nan

    def ts(path: str) -> Callable[[Tensor], Tensor]:
        return partial(compact_bilinear_pool, out_dim=OUT_DIM, path=path)

    rm = partial(compact_bilinear_pool, out_dim=OUT_DIM, method="random_maclaurin")
    auto_ts = compact_bilinear_path("tensor_sketch", 512, 512, 28 * 28, OUT_DIM)
    auto_rm = compact_bilinear_path("random_maclaurin", 512, 512, 28 * 28, OUT_DIM)
    # (op, impl, params, ours, naive, time naive fwd+bwd, time ours fwd+bwd)
    configs: list[
        tuple[str, str, str, Callable[[Tensor], Tensor], Callable[[Tensor], Tensor], bool, bool]
    ] = [
        ("bilinear", "ours", "D*D=262144 out", bilinear_pool, seed_snippet, True, True),
        (
            "compact_ts",
            "ours",
            f"d={OUT_DIM} auto={auto_ts}",
            ts("auto"),
            naive_tensor_sketch,
            not quick,
            True,
        ),
        (
            "compact_ts",
            "ours_fft",
            f"d={OUT_DIM} path=location",
            ts("location"),
            naive_tensor_sketch,
            False,
            False,
        ),
        ("compact_rm", "ours", f"d={OUT_DIM} auto={auto_rm}", rm, naive_random_maclaurin, False, not quick),
    ]
    naive_cache: dict[str, tuple[float, float]] = {}
    rows: list[Row] = []
    full_fwd = nan
    for op, impl, params, ours, naive, naive_bwd, ours_bwd in configs:
        if op not in naive_cache:
            naive_f = time_ms(partial(naive, x), min_time)
            naive_fb = time_ms(forward_backward(naive, x), min_time) if naive_bwd else nan
            naive_cache[op] = (naive_f, naive_fb)
            naive_row = row(
                op,
                "naive",
                x,
                params.split(" auto")[0],
                naive_f,
                naive_fb,
                naive_fwd_ms=naive_f,
                naive_fwdbwd_ms=naive_fb,
                clone_ms=floor,
                peak_mb=nan if quick else peak_memory_mb(partial(naive, x)),
            )
        else:
            naive_row = None
        naive_f, naive_fb = naive_cache[op]
        ours_f = time_ms(partial(ours, x), min_time)
        ours_fb = time_ms(forward_backward(ours, x), min_time) if ours_bwd else nan
        if op == "bilinear":
            full_fwd = ours_f
        r = row(
            op,
            impl,
            x,
            params,
            ours_f,
            ours_fb,
            naive_fwd_ms=naive_f,
            naive_fwdbwd_ms=naive_fb,
            clone_ms=floor,
            peak_mb=peak_memory_mb(partial(ours, x)),
        )
        for entry in (r, naive_row):
            if entry is not None:
                entry["out_features"] = ours(x[:1]).shape[1]
                entry["vs_full_fwd"] = entry["fwd_ms"] / full_fwd
        rows += [r] if naive_row is None else [r, naive_row]
    return rows


if __name__ == "__main__":
    for r in run("--quick" in sys.argv):
        print(
            f"{r['op']:11s} {r['impl']:8s} {r['params']:26s} out {r['out_features']:6d}  "
            f"fwd {r['fwd_ms']:8.1f} ms  fwd+bwd {r['fwdbwd_ms']:8.1f} ms  "
            f"vs full fwd {r['vs_full_fwd']:5.2f}x  speedup vs naive {r['speedup_fwd']:6.2f}x / "
            f"{r['speedup_fwdbwd']:6.2f}x  peak {r['peak_extra_mb']:7.1f} MB"
        )
