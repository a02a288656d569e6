"""Shared timing helpers: ``torch.utils.benchmark`` timings, the ``x.clone()`` floor, peak memory.

Every benchmark script exposes ``run(quick: bool) -> list[dict]`` returning rows built by
:func:`row`; ``benchmarks.run_all`` collects them into JSON and a Markdown table.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import torch
from torch.utils import benchmark

Row = dict[str, Any]


def device() -> torch.device:
    """Where the benchmarks run: ``TORCHPOOL_BENCH_DEVICE`` (``run_all --device``), default CPU."""
    return torch.device(os.environ.get("TORCHPOOL_BENCH_DEVICE", "cpu"))


def time_ms(fn: Callable[[], object], min_run_time: float = 0.5) -> float:
    """Median wall time of ``fn()`` in milliseconds (``Timer.blocked_autorange``)."""
    fn()  # warm-up (and compilation for compiled paths)
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def forward_backward(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], None]:
    """A closure running ``fn(x)`` forward and backward with a fixed upstream gradient."""
    leaf = x.detach().requires_grad_(True)
    grad = None

    def step() -> None:
        nonlocal grad
        y = fn(leaf)
        if grad is None:
            grad = torch.ones_like(y)
        torch.autograd.backward(y, grad)  # y.backward(grad), typed
        leaf.grad = None

    return step


class PairedTimes(NamedTuple):
    """Each side's best forward and forward+backward time (ms) over interleaved rounds."""

    ours_fwd_ms: float
    ours_fwdbwd_ms: float
    peer_fwd_ms: float
    peer_fwdbwd_ms: float


def time_against_peer(
    ours: Callable[[torch.Tensor], torch.Tensor],
    peer: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    rounds: int,
    min_run_time: float,
) -> PairedTimes:
    """Times ``ours(x)`` and ``peer(x)`` forward (no grad) and forward+backward in interleaved rounds.

    Each round times the peer, then ours, back to back: the ratio of one run is what counts on a
    busy machine, so each side's best round is kept.
    """
    ours_f, ours_fb, peer_f, peer_fb = [], [], [], []
    for _ in range(rounds):
        with torch.no_grad():
            peer_f.append(time_ms(partial(peer, x), min_run_time))
            ours_f.append(time_ms(partial(ours, x), min_run_time))
        peer_fb.append(time_ms(forward_backward(peer, x), min_run_time))
        ours_fb.append(time_ms(forward_backward(ours, x), min_run_time))
    return PairedTimes(min(ours_f), min(ours_fb), min(peer_f), min(peer_fb))


def peak_memory_mb(fn: Callable[[], object]) -> float:
    """Peak extra memory (MiB) allocated by ``fn()``: CUDA's peak counter, or the CPU profiler's events.

    Returns NaN where the profiler records no memory events.
    """
    if device().type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # allocations are recorded as each op's *self* memory, frees as "[memory]" events
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    if not any(e.self_cpu_memory_usage for e in events):
        return math.nan
    current = peak = 0
    for event in events:
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak / 2**20


def row(
    op: str,
    impl: str,
    x: torch.Tensor,
    params: str,
    fwd_ms: float,
    fwdbwd_ms: float,
    *,
    naive_fwd_ms: float,
    naive_fwdbwd_ms: float,
    clone_ms: float,
    peak_mb: float,
) -> Row:
    """One result row; ratios > 1 mean faster than the naive implementation."""
    return {
        "op": op,
        "impl": impl,
        "shape": "x".join(map(str, x.shape)),
        "dtype": str(x.dtype).replace("torch.", ""),
        "device": x.device.type,
        "threads": torch.get_num_threads(),
        "params": params,
        "fwd_ms": fwd_ms,
        "fwdbwd_ms": fwdbwd_ms,
        "speedup_fwd": naive_fwd_ms / fwd_ms if fwd_ms == fwd_ms else math.nan,
        "speedup_fwdbwd": naive_fwdbwd_ms / fwdbwd_ms if fwdbwd_ms == fwdbwd_ms else math.nan,
        "x_clone_floor": fwd_ms / clone_ms,
        "peak_extra_mb": peak_mb,
    }


def paired_rows(
    op: str, peer_impl: str, x: torch.Tensor, params: str, times: PairedTimes, clone_ms: float
) -> list[Row]:
    """The rows of ours (``impl="ours"``) and of the peer, both against the peer, without peak memory."""
    naive = {
        "naive_fwd_ms": times.peer_fwd_ms,
        "naive_fwdbwd_ms": times.peer_fwdbwd_ms,
        "clone_ms": clone_ms,
        "peak_mb": float("nan"),
    }
    return [
        row(op, "ours", x, params, times.ours_fwd_ms, times.ours_fwdbwd_ms, **naive),
        row(op, peer_impl, x, params, times.peer_fwd_ms, times.peer_fwdbwd_ms, **naive),
    ]


def clone_ms(x: torch.Tensor, min_run_time: float = 0.5) -> float:
    """The memory-bandwidth floor: one read and one write of the input."""
    return time_ms(x.clone, min_run_time)
