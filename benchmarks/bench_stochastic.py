"""Stochastic pooling: ours vs the naive ``unfold`` + ``torch.multinomial`` sampler / ``unfold`` eval.

Run ``python -m benchmarks.bench_stochastic [--quick]`` from the repository root.
"""

from __future__ import annotations

import sys
from functools import partial

import torch

from benchmarks.common import Row, clone_ms, device, forward_backward, peak_memory_mb, row, time_ms
from tests.reference_stochastic import naive_stochastic_eval2d, naive_stochastic_pool2d
from torchpool.ops.stochastic import stochastic_pool2d

CONFIGS = [(3, 2, 0), (3, 2, 1), (2, 2, 0)]  # (kernel_size, stride, padding)


def run(quick: bool) -> list[Row]:
    """Times training and eval, forward and forward+backward, on (32, 64, 56, 56) float32."""
    shape = (8, 64, 56, 56) if quick else (32, 64, 56, 56)
    configs = CONFIGS[:1] + CONFIGS[2:] if quick else CONFIGS
    min_time = 0.2 if quick else 0.5
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).relu_().to(device())
    floor = clone_ms(x, min_time)
    rows: list[Row] = []
    for k, s, p in configs:
        params = f"k={k} s={s} p={p}"
        gen = torch.Generator(device()).manual_seed(1)

        def ours_train(
            t: torch.Tensor, k: int = k, s: int = s, p: int = p, gen: torch.Generator = gen
        ) -> torch.Tensor:
            return stochastic_pool2d(t, k, s, p, generator=gen)

        def naive_train(
            t: torch.Tensor, k: int = k, s: int = s, p: int = p, gen: torch.Generator = gen
        ) -> torch.Tensor:
            # mypy does not follow tests.* (see pyproject.toml), so the naive results are Any until typed
            values: torch.Tensor = naive_stochastic_pool2d(t, k, s, p, gen)[0]
            return values

        def ours_eval(t: torch.Tensor, k: int = k, s: int = s, p: int = p) -> torch.Tensor:
            return stochastic_pool2d(t, k, s, p, training=False)

        def naive_eval(t: torch.Tensor, k: int = k, s: int = s, p: int = p) -> torch.Tensor:
            out: torch.Tensor = naive_stochastic_eval2d(t, k, s, p)
            return out

        for op, ours, naive in (
            ("stochastic_train", ours_train, naive_train),
            ("stochastic_eval", ours_eval, naive_eval),
        ):
            naive_f = time_ms(partial(naive, x), min_time)
            naive_fb = time_ms(forward_backward(naive, x), min_time)
            ours_f = time_ms(partial(ours, x), min_time)
            ours_fb = time_ms(forward_backward(ours, x), min_time)
            common = {"naive_fwd_ms": naive_f, "naive_fwdbwd_ms": naive_fb, "clone_ms": floor}
            rows.append(
                row(
                    op,
                    "ours",
                    x,
                    params,
                    ours_f,
                    ours_fb,
                    peak_mb=peak_memory_mb(partial(ours, x)),
                    **common,
                )
            )
            rows.append(
                row(
                    op,
                    "naive",
                    x,
                    params,
                    naive_f,
                    naive_fb,
                    peak_mb=peak_memory_mb(partial(naive, x)),
                    **common,
                )
            )
    return rows


if __name__ == "__main__":
    torch.set_num_threads(int(torch.get_num_threads()))
    for r in run("--quick" in sys.argv):
        print(
            f"{r['op']:17s} {r['impl']:5s} {r['params']:11s} fwd {r['fwd_ms']:8.2f} ms  "
            f"fwd+bwd {r['fwdbwd_ms']:8.2f} ms  speedup {r['speedup_fwd']:6.2f}x / "
            f"{r['speedup_fwdbwd']:6.2f}x  clone-floor {r['x_clone_floor']:6.1f}x  "
            f"peak {r['peak_extra_mb']:7.1f} MB"
        )
