"""S3Pool and spectral pooling: ours vs the naive formulations, at ``(32, 64, 56, 56)`` float32.

* S3Pool (``s3_pool2d``, stride 2, training, the draw shared by the batch): against the formulation
  of the authors' code and its PyTorch ports: the dense ``max_pool2d`` (2x2, stride 1, the far edge
  padded) of the whole map, then ``index_select`` of the rows and columns drawn in a Python loop
  over the grids. Ours gathers only the kept 2x2 windows (one advanced-indexing gather) and max-pools
  them. The eval rule (``training=False``) against ``max_pool2d`` stride 1 + ``avg_pool2d``.
* Spectral pooling (``spectral_pool2d``, 56 -> 28): against ``fft2``, ``fftshift``, crop, ``ifft2``
  and the real part. Ours is two real matrix products. (The two differ only in the Nyquist bin's
  convention at even output sizes, checked equal at an odd one.)

``speedup_*`` = naive time / ours; ``x_clone_floor`` = our forward time / ``x.clone()``.
Run ``python -m benchmarks.bench_s3_spectral [--quick]`` from the repository root.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.common import Row, clone_ms, device, paired_rows, time_against_peer
from torchpool.ops.s3 import s3_pool2d
from torchpool.ops.spectral import spectral_pool2d

SHAPE = (32, 64, 56, 56)


def s3_naive(x: Tensor, stride: int = 2, grid_size: int = 2) -> Tensor:
    """The dense max of the whole map, then the rows and columns drawn grid by grid in Python."""
    dense = F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 2, 1)
    h, w = x.shape[-2:]
    keep = grid_size // stride
    rows = [torch.randperm(grid_size)[:keep].sort().values + q * grid_size for q in range(h // grid_size)]
    cols = [torch.randperm(grid_size)[:keep].sort().values + q * grid_size for q in range(w // grid_size)]
    return dense.index_select(2, torch.cat(rows).to(x.device)).index_select(3, torch.cat(cols).to(x.device))


def s3_eval_naive(x: Tensor, stride: int = 2) -> Tensor:
    """The eval rule as written: dense ``max_pool2d`` (padded), ``avg_pool2d``, cut."""
    h, w = x.shape[-2:]
    dense = F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 2, 1)
    mean = F.avg_pool2d(dense, stride, stride, stride // 2, count_include_pad=False)
    return mean[..., : h // stride, : w // stride]


def spectral_fft(x: Tensor, output_size: int) -> Tensor:
    """``fft2``, centre crop of the shifted spectrum, ``ifft2``, real part (scaled: constants kept)."""
    h, w = x.shape[-2:]
    spectrum = torch.fft.fftshift(torch.fft.fft2(x), dim=(-2, -1))
    top, left = h // 2 - output_size // 2, w // 2 - output_size // 2
    crop = spectrum[..., top : top + output_size, left : left + output_size]
    y: Tensor = torch.fft.ifft2(torch.fft.ifftshift(crop, dim=(-2, -1))).real
    return y * (output_size * output_size) / (h * w)


def run(quick: bool) -> list[Row]:
    """Forward and forward+backward of S3Pool (train, eval) and spectral pooling vs the naive forms."""
    min_time = 0.1 if quick else 0.2
    rounds = 3 if quick else 7
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)).to(device())
    floor = clone_ms(x, min_time)
    rows: list[Row] = []
    with torch.no_grad():  # the same shapes; the eval rule the same values
        assert s3_pool2d(x).shape == s3_naive(x).shape
        torch.testing.assert_close(s3_pool2d(x, training=False), s3_eval_naive(x), rtol=1e-6, atol=1e-6)
        small = x[:2]
        torch.testing.assert_close(spectral_pool2d(small, 27), spectral_fft(small, 27), rtol=1e-4, atol=1e-4)
    train: Callable[[Tensor], Tensor] = partial(s3_pool2d, stride=2)
    times = time_against_peer(train, s3_naive, x, rounds, min_time)
    rows += paired_rows("s3_pool2d", "dense max + index_select loop", x, "s=2 g=2 train", times, floor)
    evaluate: Callable[[Tensor], Tensor] = partial(s3_pool2d, stride=2, training=False)
    times = time_against_peer(evaluate, s3_eval_naive, x, rounds, min_time)
    rows += paired_rows("s3_pool2d", "max_pool2d + avg_pool2d", x, "s=2 eval", times, floor)
    ours: Callable[[Tensor], Tensor] = partial(spectral_pool2d, output_size=28)
    peer: Callable[[Tensor], Tensor] = partial(spectral_fft, output_size=28)
    times = time_against_peer(ours, peer, x, rounds, min_time)
    rows += paired_rows("spectral_pool2d", "fft2 + crop + ifft2", x, "56 -> 28", times, floor)
    return rows


if __name__ == "__main__":
    for r in run("--quick" in sys.argv):
        print(
            f"{r['op']:15s} {r['impl']:30s} {r['params']:14s} fwd {r['fwd_ms']:8.2f} ms  "
            f"fwd+bwd {r['fwdbwd_ms']:8.2f} ms  speedup {r['speedup_fwd']:5.2f}x / "
            f"{r['speedup_fwdbwd']:5.2f}x  clone-floor {r['x_clone_floor']:6.1f}x"
        )
