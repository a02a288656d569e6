"""Peak extra memory of median and stochastic pooling on a large input, as a ratio of the input's size.

Run ``python -m benchmarks.bench_memory [--quick]`` from the repository root. The issue's bound is
2x for every row (``tests/test_memory.py`` asserts it).

Each case runs in a fresh subprocess (a clean heap): a warm-up call on a small input of the same op
and mode (lazy initialisation, thread pools, code pages), then the input is created in place
(``torch.empty`` + ``uniform_``, no temporary) and the call is measured twice:

* ``alloc`` (the ``peak_extra_mb`` / ``peak_extra_ratio`` columns): the peak of the bytes held by
  PyTorch's CPU allocator that were allocated during the call, from ``torch.profiler``'s memory
  events (each allocation and free with its address and size), so it is exact and does not depend
  on the C heap. For ``fwd+bwd`` the input's gradient (recognised by its address) does not count
  from the moment it is allocated, nor does the output's gradient ``g`` (allocated before the
  call); the output and what autograd saves count. Same definition as ``tests/test_memory.py``.
* ``rss`` (``rss_extra_ratio``): peak RSS minus the RSS just before the call (the kernel's peak
  counter is reset with ``/proc/self/clear_refs`` = 5, else ``getrusage(RUSAGE_SELF).ru_maxrss``).
  For ``fwd+bwd`` the forward and the backward are measured separately and the input's gradient is
  subtracted from the backward's peak: this assumes that it is alive at that peak (true for the
  chunked ops, which allocate it first; code that allocates it last is under-counted, e.g. the
  median before chunking: 2.1x by RSS, 3.1x by the allocator). Otherwise RSS also counts freed
  blocks that the heap keeps, so it is an upper bound: a cross-check that the profiler missed no
  allocation.

``fwd`` runs under ``torch.no_grad()``; ``fwd+bwd`` is ``y = fn(x); y.backward(g)``.
"""

from __future__ import annotations

import gc
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import Row, row

# Three shapes that stress the chunking differently: many small planes, fewer larger planes (a
# smaller input), few large planes (a chunk is one plane or a band of one). The chunks are a
# fixed fraction of the input, so the quick shapes (N or C smaller, the same planes) give about
# the same ratios. Then the small inputs, where the chunk floors and single planes used to break
# the 2x bound: a mid-size input, a tiny one, an RGB image and one large plane.
SMALL_SHAPES = ((8, 64, 56, 56), (4, 16, 32, 32), (1, 3, 224, 224), (1, 1, 512, 512))
SHAPES = ((64, 256, 112, 112), (8, 64, 224, 224), (2, 16, 512, 512), *SMALL_SHAPES)
QUICK_SHAPES = ((16, 256, 112, 112), (8, 64, 224, 224), (2, 16, 512, 512), *SMALL_SHAPES)
MODES = ("fwd", "fwd+bwd")
# name -> (op, params, function, (kernel_size, stride, padding), keyword arguments)
CASES: dict[str, tuple[str, str, str, tuple[int, int, int], dict[str, object]]] = {
    "median-s1": ("median_pool2d", "k=3 s=1 p=1 reflect", "median_pool2d", (3, 1, 1), {}),
    "median-s2": ("median_pool2d", "k=3 s=2 p=1 reflect", "median_pool2d", (3, 2, 1), {}),
    "train-k3": ("stochastic_train", "k=3 s=2 p=0", "stochastic_pool2d", (3, 2, 0), {"training": True}),
    "train-k2": ("stochastic_train", "k=2 s=2 p=0", "stochastic_pool2d", (2, 2, 0), {"training": True}),
    "eval-k3": ("stochastic_eval", "k=3 s=2 p=0", "stochastic_pool2d", (3, 2, 0), {"training": False}),
    "eval-k2": ("stochastic_eval", "k=2 s=2 p=0", "stochastic_pool2d", (2, 2, 0), {"training": False}),
}


def _function(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    import torchpool

    _, _, function_name, window, kwargs = CASES[name]
    function = getattr(torchpool, function_name)
    if function_name == "stochastic_pool2d" and kwargs.get("training"):
        generator = torch.Generator().manual_seed(0)
        return lambda t: function(t, *window, generator=generator, **kwargs)
    return lambda t: function(t, *window, **kwargs)


def allocation_peak(run: Callable[[], object], exclude: Callable[[], Sequence[int]] = tuple) -> int:
    """Peak bytes held by the CPU allocator from allocations made during ``run()``.

    ``exclude()`` (called after the run) gives addresses whose last allocation does not count.
    """
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            trace = json.load(f)
    finally:
        os.remove(path)
    events = sorted(
        (e["ts"], e["args"].get("Ev Idx", 0), e["args"]["Bytes"], e["args"]["Addr"])
        for e in trace["traceEvents"]
        if e.get("name") == "[memory]" and e["args"].get("Device Type", 0) == 0
    )
    skip = set()
    for address in exclude():
        allocations = [i for i, e in enumerate(events) if e[3] == address and e[2] > 0]
        if allocations:
            skip.add(allocations[-1])
    held = peak = 0
    for i, (_, _, nbytes, _) in enumerate(events):
        if i not in skip:
            held += nbytes
            peak = max(peak, held)
    return peak


def _status_kb(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) if match else -1


class _PeakRss:
    """Peak RSS since the last :meth:`reset` (``VmHWM`` after ``clear_refs``, else ``ru_maxrss``)."""

    def reset(self) -> int:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.exact = True
        except OSError:
            self.exact = False
        return _status_kb("VmRSS") * 1024

    def peak(self) -> int:
        kb = _status_kb("VmHWM") if self.exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb * 1024


def child(name: str, mode: str, shape: tuple[int, ...]) -> dict[str, float]:
    """Runs one case in this process (meant to be a fresh one) and returns its measurements."""
    fn = _function(name)
    backward = mode == "fwd+bwd"
    small = torch.rand(2, 4, 16, 16, requires_grad=backward)
    y = fn(small)
    if backward:
        torch.autograd.backward(y, torch.ones_like(y))  # y.backward(...), typed
    x = torch.empty(shape)
    x.uniform_(generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out_shape = (*shape[:2], *fn(x[:1, :1]).shape[2:])
    g = torch.ones(out_shape) if backward else None
    x.requires_grad_(backward)
    gc.collect()
    # peak RSS, fresh heap
    rss = _PeakRss()
    before = rss.reset()
    start = time.perf_counter()
    if g is None:
        with torch.no_grad():
            y = fn(x)
        rss_extra = rss.peak() - before
    else:
        y = fn(x)
        forward_peak = rss.peak()
        rss.reset()
        torch.autograd.backward(y, g)
        assert x.grad is not None
        rss_extra = max(forward_peak, rss.peak() - x.grad.nbytes) - before
    seconds = time.perf_counter() - start
    del y
    x.grad = None
    gc.collect()

    # allocator timeline (independent of the heap's state)
    def run() -> None:
        if g is None:
            with torch.no_grad():
                fn(x)
        else:
            torch.autograd.backward(fn(x), g)

    alloc_extra = allocation_peak(run, lambda: [x.grad.data_ptr()] if x.grad is not None else [])
    return {
        "extra_bytes": alloc_extra,
        "ratio": alloc_extra / x.nbytes,
        "rss_ratio": rss_extra / x.nbytes,
        "input_bytes": x.nbytes,
        "seconds": seconds,
    }


def measure(name: str, mode: str, shape: tuple[int, ...], threads: int = 2) -> dict[str, float]:
    """:func:`child` in a fresh subprocess."""
    root = Path(__file__).resolve().parents[1]
    command = [
        sys.executable, "-m", "benchmarks.bench_memory", "--child", name, mode,
        ",".join(map(str, shape)), str(threads),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, check=True)
    data: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def run(quick: bool) -> list[Row]:
    """Peak extra memory for every case and mode at :data:`SHAPES` float32 (:data:`QUICK_SHAPES` if quick)."""
    rows: list[Row] = []
    cases = [
        (shape, name, mode)
        for shape in (QUICK_SHAPES if quick else SHAPES)
        for name in CASES
        for mode in MODES
    ]
    for shape, name, mode in cases:
        op, params, *_ = CASES[name]
        x = torch.empty(shape, device="meta")
        m = measure(name, mode, shape, torch.get_num_threads())
        ms = m["seconds"] * 1e3
        result = row(
            op, mode, x, params, ms if mode == "fwd" else math.nan, ms if mode == "fwd+bwd" else math.nan,
            naive_fwd_ms=math.nan, naive_fwdbwd_ms=math.nan, clone_ms=math.nan,
            peak_mb=m["extra_bytes"] / 2**20,
        )  # fmt: skip
        result["device"] = "cpu"
        result["peak_extra_ratio"] = m["ratio"]
        result["rss_extra_ratio"] = m["rss_ratio"]
        rows.append(result)
    return rows


if __name__ == "__main__":
    if "--child" in sys.argv:
        i = sys.argv.index("--child")
        case, case_mode, dims, n_threads = sys.argv[i + 1 : i + 5]
        torch.set_num_threads(int(n_threads))
        print(json.dumps(child(case, case_mode, tuple(int(d) for d in dims.split(",")))))
        sys.exit(0)
    torch.set_num_threads(2)
    for r in run("--quick" in sys.argv):
        ms = r["fwd_ms"] if r["impl"] == "fwd" else r["fwdbwd_ms"]
        print(
            f"{r['op']:16s} {r['params']:19s} {r['impl']:7s} shape {r['shape']:15s} "
            f"peak extra {r['peak_extra_mb']:7.1f} MB = {r['peak_extra_ratio']:4.2f}x input "
            f"(rss {r['rss_extra_ratio']:4.2f}x)  {ms:7.0f} ms"
        )
