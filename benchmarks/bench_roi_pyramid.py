"""SPP on regions: ``roi_spatial_pyramid_pool`` vs a per-box loop and vs torchvision's ``roi_pool``.

Levels ``(1, 2, 4)``, ``K = 256`` boxes on an ``(8, 256, 38, 50)`` float32 map (a stride-16
backbone on 608 x 800 images, ``spatial_scale=1/16``); the boxes are proposals inside the images,
16 to 512 pixels a side.

* **per-box loop**: the direct formulation, for each box its crop of the map (the rounded,
  clipped corners) and ``F.adaptive_max_pool2d`` per level (adaptive bins of the crop: not
  torchvision's bins, so the numbers differ; the work is the same).
* **torchvision**: ``torchvision.ops.roi_pool`` run once per level, flattened and concatenated
  (equal to ours bit for bit; only where torchvision is installed, e.g. the zoo environment).

``speedup_*`` = the other's time / ours; ``x_clone_floor`` = our forward time / ``x.clone()``.
Run ``python -m benchmarks.bench_roi_pyramid [--quick]`` from the repository root.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.common import Row, clone_ms, device, paired_rows, time_against_peer
from torchpool.ops.roi_pyramid import roi_spatial_pyramid_pool

SHAPE = (8, 256, 38, 50)
BOXES = 256
LEVELS = (1, 2, 4)
SCALE = 1 / 16


def proposals(n: int, height: int, width: int, count: int, generator: torch.Generator) -> Tensor:
    """``(count, 5)`` boxes inside ``n`` images of the map's size times 16, 16 to 512 pixels a side."""
    image = torch.tensor([width / SCALE, height / SCALE])
    size = 16 + torch.rand(count, 2, generator=generator) * (torch.minimum(image, torch.tensor(512.0)) - 16)
    start = torch.rand(count, 2, generator=generator) * (image - size)
    index = torch.randint(0, n, (count, 1), generator=generator).float()
    return torch.cat([index, start, start + size], dim=1)


def per_box_loop(x: Tensor, boxes: Tensor) -> Tensor:
    """For each box: its crop (rounded, clipped corners), ``adaptive_max_pool2d`` per level."""
    height, width = x.shape[2:]
    rows = []
    for box in boxes.tolist():
        image, x1, y1, x2, y2 = (int(v) for v in (box[0], *(round(c * SCALE) for c in box[1:])))
        crop = x[
            image,
            :,
            max(y1, 0) : max(min(y2 + 1, height), y1 + 1),
            max(x1, 0) : max(min(x2 + 1, width), x1 + 1),
        ]
        rows.append(torch.cat([F.adaptive_max_pool2d(crop, n).flatten() for n in LEVELS]))
    return torch.stack(rows)


def roi_pool_per_level(x: Tensor, boxes: Tensor) -> Tensor:
    """``torchvision.ops.roi_pool`` once per level, flattened and concatenated."""
    from torchvision.ops import roi_pool  # type: ignore[import-not-found, unused-ignore]

    return torch.cat([roi_pool(x, boxes, (n, n), SCALE).flatten(1) for n in LEVELS], dim=1)


def run(quick: bool) -> list[Row]:
    """Ours vs the per-box loop and (where installed) vs torchvision, forward and forward+backward."""
    min_time = 0.2 if quick else 0.5
    rounds = 3 if quick else 5
    g = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=g).to(device())
    boxes = proposals(SHAPE[0], SHAPE[2], SHAPE[3], BOXES, g).to(device())
    ours: Callable[[Tensor], Tensor] = partial(
        roi_spatial_pyramid_pool, boxes=boxes, levels=LEVELS, spatial_scale=SCALE
    )
    params = f"K={BOXES} levels={LEVELS}"
    floor = clone_ms(x, min_time)
    with torch.no_grad():
        assert ours(x).shape == per_box_loop(x, boxes).shape
    # the loop's backward (one slice and one pool per box) is slow on a busy machine: a round fewer
    times = time_against_peer(ours, partial(per_box_loop, boxes=boxes), x, max(1, rounds - 1), min_time)
    rows = paired_rows("roi_spatial_pyramid_pool", "per-box adaptive_max_pool2d", x, params, times, floor)
    if importlib.util.find_spec("torchvision") is None:
        return rows
    peer: Callable[[Tensor], Tensor] = partial(roi_pool_per_level, boxes=boxes)
    with torch.no_grad():
        assert torch.equal(ours(x), peer(x))
    times = time_against_peer(ours, peer, x, rounds, min_time)
    return rows + paired_rows("roi_spatial_pyramid_pool", "torchvision roi_pool x3", x, params, times, floor)


if __name__ == "__main__":
    torch.set_num_threads(2)
    for r in run("--quick" in sys.argv):
        print(
            f"{r['impl']:30s} {r['params']:26s} fwd {r['fwd_ms']:8.2f} ms  fwd+bwd {r['fwdbwd_ms']:8.2f} ms"
            f"  speedup {r['speedup_fwd']:6.2f}x / {r['speedup_fwdbwd']:6.2f}x"
            f"  clone-floor {r['x_clone_floor']:6.1f}x"
        )
