"""Median pooling: naive ``F.pad`` + ``unfold`` + ``median`` against the min/max network (eager, compiled).

Run ``python -m benchmarks.bench_median [--quick]``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from benchmarks.common import Row, clone_ms, device, forward_backward, peak_memory_mb, row, time_ms
from torchpool.ops.median import median_pool2d

SHAPE = (32, 64, 56, 56)
CONFIGS = ((3, 1, 1), (5, 1, 2), (3, 2, 1))


def naive_median_pool2d(x: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """Reflect pad, unfold every window (a ``kernel**2``-fold copy) and take ``median(dim=-1)``."""
    xp = F.pad(x, (padding,) * 4, mode="reflect")
    windows = xp.unfold(2, kernel, stride).unfold(3, kernel, stride)
    return windows.reshape(*windows.shape[:4], kernel * kernel).median(dim=-1).values


def _once_ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def run(quick: bool) -> list[Row]:
    """Rows for (32, 64, 56, 56) float32 on the current thread count: naive, eager and compiled.

    Every time is the best of a few interleaved rounds (naive, eager and compiled back to back in
    each round, as in ``common.time_against_peer``): on a busy machine the ratio of one run is what
    counts, and the best round of each side is the least disturbed one. The ``x.clone()`` floor is
    timed the same way, in the same rounds, right before the forwards it is compared with.
    """
    min_run_time = 0.2 if quick else 0.5
    rounds = 2 if quick else 3
    torch.manual_seed(0)
    x = torch.randn(SHAPE).to(device())
    rows: list[Row] = []
    for kernel, stride, padding in CONFIGS:
        params = f"k={kernel} s={stride} p={padding} reflect"

        def naive(t: torch.Tensor, k: int = kernel, s: int = stride, p: int = padding) -> torch.Tensor:
            return naive_median_pool2d(t, k, s, p)

        # naive forward+backward: measured on the full batch when one step is cheap enough, else on a
        # quarter of the batch and scaled by 4 (said in the params column)
        step = forward_backward(naive, x[:8])
        quarter = _once_ms(step)
        scale, naive_params = 1, params
        if quarter * 4 > 10_000 or (quick and quarter * 4 > 3_000):
            scale, naive_params = 4, params + " (fwd+bwd measured on N=8, x4)"
        else:
            step = forward_backward(naive, x)
        window = {"kernel_size": kernel, "stride": stride, "padding": padding}
        impls = {
            impl: partial(median_pool2d, **window, compiled=compiled)
            for impl, compiled in (("eager", False), ("compiled", True))
        }
        steps = {impl: forward_backward(fn, x) for impl, fn in impls.items()}
        fwd: dict[str, list[float]] = {name: [] for name in ("naive", *impls)}
        fwdbwd: dict[str, list[float]] = {name: [] for name in ("naive", *impls)}
        floors: list[float] = []
        for _ in range(rounds):
            floors.append(clone_ms(x, min_run_time))
            fwd["naive"].append(time_ms(partial(naive, x), min_run_time))
            for impl, fn in impls.items():
                fwd[impl].append(time_ms(partial(fn, x), min_run_time))
            fwdbwd["naive"].append(scale * time_ms(step, min_run_time))
            for impl, impl_step in steps.items():
                fwdbwd[impl].append(time_ms(impl_step, min_run_time))
        naive_fwd, naive_fwdbwd, floor = min(fwd["naive"]), min(fwdbwd["naive"]), min(floors)
        rows.append(
            row(
                "median_pool2d", "naive", x, naive_params, naive_fwd, naive_fwdbwd,
                naive_fwd_ms=naive_fwd, naive_fwdbwd_ms=naive_fwdbwd, clone_ms=floor, peak_mb=math.nan,
            )
        )  # fmt: skip
        for impl, fn in impls.items():
            peak = peak_memory_mb(partial(fn, x))
            rows.append(
                row(
                    "median_pool2d", impl, x, params, min(fwd[impl]), min(fwdbwd[impl]),
                    naive_fwd_ms=naive_fwd, naive_fwdbwd_ms=naive_fwdbwd, clone_ms=floor, peak_mb=peak,
                )
            )  # fmt: skip
    return rows


if __name__ == "__main__":
    torch.set_num_threads(2)
    for result in run("--quick" in sys.argv):
        print(
            f"{result['impl']:9s} {result['params']:45s} fwd {result['fwd_ms']:9.2f} ms  "
            f"fwd+bwd {result['fwdbwd_ms']:9.2f} ms  "
            f"x{result['speedup_fwd']:7.1f} / x{result['speedup_fwdbwd']:6.1f}  "
            f"clone x{result['x_clone_floor']:6.2f}  peak {result['peak_extra_mb']:8.1f} MB"
        )
