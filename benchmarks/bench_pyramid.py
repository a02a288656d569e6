"""Spatial pyramid pooling: YoloSPP / SPPF vs three parallel ``nn.MaxPool2d`` + cat, SPP vs a loop.

Run ``python -m benchmarks.bench_pyramid [--quick]`` from the repository root.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from benchmarks.common import Row, clone_ms, device, forward_backward, peak_memory_mb, row, time_ms
from torchpool.ops.pyramid import spatial_pyramid_pool2d, sppf, yolo_spp


def naive_spp(x: torch.Tensor) -> torch.Tensor:
    """Ultralytics' SPP: ``cat([x] + [MaxPool2d(k, 1, k // 2)(x) for k in (5, 9, 13)])``."""
    return torch.cat([x] + [F.max_pool2d(x, k, 1, k // 2) for k in (5, 9, 13)], 1)


def naive_pyramid(x: torch.Tensor, levels: tuple[int, ...]) -> torch.Tensor:
    """A loop of ``adaptive_max_pool2d``, flattened and concatenated."""
    return torch.cat([F.adaptive_max_pool2d(x, n).flatten(1) for n in levels], 1)


def _rows(
    op: str,
    x: torch.Tensor,
    params: str,
    candidates: list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]],
    naive: Callable[[torch.Tensor], torch.Tensor],
    min_time: float,
) -> list[Row]:
    floor = clone_ms(x, min_time)
    naive_f = time_ms(partial(naive, x), min_time)
    naive_fb = time_ms(forward_backward(naive, x), min_time)
    common = {"naive_fwd_ms": naive_f, "naive_fwdbwd_ms": naive_fb, "clone_ms": floor}
    rows = []
    for impl, fn in candidates:
        fwd = time_ms(partial(fn, x), min_time)
        fwdbwd = time_ms(forward_backward(fn, x), min_time)
        rows.append(row(op, impl, x, params, fwd, fwdbwd, peak_mb=peak_memory_mb(partial(fn, x)), **common))
    rows.append(
        row(op, "naive", x, params, naive_f, naive_fb, peak_mb=peak_memory_mb(partial(naive, x)), **common)
    )
    return rows


def run(quick: bool) -> list[Row]:
    """YoloSPP/SPPF on (8, 512, 19, 19) NCHW and channels_last; SPP on (8, 512, 13, 13)."""
    min_time = 0.2 if quick else 0.5
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 512, 19, 19, generator=g).to(device())
    rows: list[Row] = []
    for layout, xx in (("nchw", x), ("channels_last", x.contiguous(memory_format=torch.channels_last))):
        rows += _rows(
            "yolo_spp",
            xx,
            f"k=5,9,13 {layout}",
            [("ours yolo_spp", partial(yolo_spp, order="ultralytics")), ("ours sppf", sppf)],
            naive_spp,
            min_time,
        )
    small = torch.randn(8, 512, 13, 13, generator=g).to(device())
    for levels in ((1, 2, 4), (6, 3, 2, 1)):
        rows += _rows(
            "spp",
            small,
            f"levels={levels}",
            [("ours", partial(spatial_pyramid_pool2d, levels=levels))],
            partial(naive_pyramid, levels=levels),
            min_time,
        )
    return rows


if __name__ == "__main__":
    torch.set_num_threads(int(torch.get_num_threads()))
    for r in run("--quick" in sys.argv):
        print(
            f"{r['op']:9s} {r['impl']:14s} {r['params']:26s} fwd {r['fwd_ms']:8.2f} ms  "
            f"fwd+bwd {r['fwdbwd_ms']:8.2f} ms  speedup {r['speedup_fwd']:6.2f}x / "
            f"{r['speedup_fwdbwd']:6.2f}x  clone-floor {r['x_clone_floor']:6.1f}x  "
            f"peak {r['peak_extra_mb']:7.1f} MB"
        )
