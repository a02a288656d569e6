"""Runs every benchmark and writes ``results.json`` and ``results.md``.

``python -m benchmarks.run_all [--quick] [--threads 2] [--out bench-results]`` from the
repository root. Ratios: ``speedup_*`` = naive time / our time (higher is better);
``x_clone_floor`` = our forward time / ``x.clone()`` time (1.0 is the memory-bandwidth floor).

Each script runs in a fresh Python process, as ``python -m benchmarks.<script>`` would: in one
process the allocator and oneDNN state left by earlier scripts moved later ones by up to 2.5x
(SoftPool's forward 5.6 ms alone, 13.9 ms after the other scripts; kornia's depthwise
convolution backward 6 or 25 ms), for ours and for the baselines alike; see :data:`CHILD_ENV`
for the environment the scripts run in.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.common import Row

SCRIPTS = (
    "bench_median", "bench_stochastic", "bench_pyramid", "bench_netvlad", "bench_bilinear", "bench_memory",
    "bench_global", "bench_unpool", "bench_blur", "bench_soft", "bench_attention",
    "bench_tree", "bench_s3_spectral", "bench_roi_pyramid", "bench_heads",
)  # fmt: skip
COLUMNS = (
    "op", "impl", "params", "shape", "dtype", "device", "threads", "fwd_ms", "fwdbwd_ms",
    "speedup_fwd", "speedup_fwdbwd", "x_clone_floor", "peak_extra_mb",
)  # fmt: skip


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` only says "x86_64")."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """A one-line description of where the numbers come from."""
    if os.environ.get("TORCHPOOL_BENCH_DEVICE", "cpu").startswith("cuda"):
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{cpu_model()} CPU ({capability}), {torch.get_num_threads()} threads, torch {torch.__version__}"


def markdown(rows: list[Row]) -> str:
    """The rows as a Markdown table."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return "—" if math.isnan(value) else f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


#: The child processes' environment (the caller's own settings win):
#:
#: * glibc malloc keeps freed memory below its largest mmap threshold (32 MiB) for reuse (never
#:   handed back to the system between calls), the steady state of a long-running process and what
#:   an allocator such as jemalloc or tcmalloc gives (PyTorch's CPU performance guide recommends
#:   one): without it, a fresh process faults in new pages for every large tensor of every call,
#:   ours and the baselines' alike;
#: * OpenMP threads bound one per CPU (``OMP_PROC_BIND``, ``OMP_PLACES``, as PyTorch's
#:   ``torch.backends.xeon.run_cpu`` launcher does): unbound, about one process in three on the
#:   2-core development machine ran its many short parallel regions slower on two threads than
#:   on one (SoftPool 2x2 forward 13.7 ms instead of 5.1 ms; 9-10 ms on one thread).
CHILD_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(2**40),
    "OMP_PROC_BIND": "true",
    "OMP_PLACES": "threads",
}


def run_script(name: str, quick: bool, threads: int) -> list[Row]:
    """``benchmarks.<name>.run(quick)`` in a fresh process with ``threads`` threads (its rows back
    through a JSON file; the child's output passes through)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        code = (
            "import json, sys, torch\n"
            f"torch.set_num_threads({threads})\n"
            f"from benchmarks import {name} as script\n"
            f"rows = script.run({quick!r})\n"
            f"open({str(out)!r}, 'w').write(json.dumps(rows))\n"
        )
        env = {**CHILD_ENV, **os.environ}  # the caller's settings win
        root = Path(__file__).resolve().parent.parent
        subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env=env)
        rows: list[Row] = json.loads(out.read_text())
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and configurations")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=list(SCRIPTS), choices=SCRIPTS)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--device", default="cpu", help="cpu or cuda (sets TORCHPOOL_BENCH_DEVICE)")
    args = parser.parse_args()
    os.environ["TORCHPOOL_BENCH_DEVICE"] = args.device
    torch.set_num_threads(args.threads)
    rows: list[Row] = []
    for name in args.only:
        rows += run_script(name, args.quick, args.threads)
        print(f"{name}: done", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    table = f"Machine: {machine()}\n\n{markdown(rows)}\n"
    (args.out / "results.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
