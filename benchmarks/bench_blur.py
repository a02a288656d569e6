"""BlurPool / MaxBlurPool: ours vs kornia, vs the padded convolution, and vs two 1-d convolutions.

At ResNet's first pooled stage ``(32, 64, 56, 56)``, float32, ``kernel_size=3, stride=2`` (and
MaxBlurPool's ``max_pool_size=2``). Each row names its baseline in ``impl`` and again in
``params`` (``vs ...``), so two rows of one op and padding never read as the same comparison.

* ``vs kornia``: kornia's ``blur_pool2d`` / ``max_blur_pool2d`` as its users call them (zero
  padding: one strided depthwise convolution). Our ``zeros`` row is the like-for-like one (the
  same values within float32 rounding); our ``reflect`` row is our default (the paper's padding)
  against kornia's zeros. On the CPU in float32 ours is the C kernel ``csrc/blur.c`` (the
  separable blur in row buffers; MaxBlurPool's dense max fused in front of it).
* ``vs F.pad+conv``: reflection written the way timm and the paper's ``antialiased-cnns`` write it,
  ``F.pad(mode="reflect")`` then the depthwise convolution (the same values).
* ``vs separable``: two 1-d depthwise convolutions (the first strided) against ours for zeros.

``speedup_*`` = baseline time / ours. Run ``python -m benchmarks.bench_blur [--quick]`` from the
repository root.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.common import Row, clone_ms, device, paired_rows, time_against_peer
from torchpool.ops.blur import binomial_filter, blur_pool2d, max_blur_pool2d

SHAPE = (32, 64, 56, 56)
KERNEL, STRIDE = 3, 2


def separable_blur(x: Tensor, padding_mode: str = "zeros") -> Tensor:
    """The 1-d binomial filter along H (strided), then along W (strided): two depthwise convolutions."""
    c = x.shape[1]
    taps = torch.tensor(binomial_filter(KERNEL), dtype=x.dtype, device=x.device)
    pad = [(KERNEL - 1) // 2, KERNEL // 2] * 2
    x = F.pad(x, pad, mode="constant" if padding_mode == "zeros" else padding_mode)
    y = F.conv2d(x, taps.view(1, 1, -1, 1).expand(c, 1, KERNEL, 1), stride=(STRIDE, 1), groups=c)
    return F.conv2d(y, taps.view(1, 1, 1, -1).expand(c, 1, 1, KERNEL), stride=(1, STRIDE), groups=c)


def padded_blur(x: Tensor, padding_mode: str = "reflect") -> Tensor:
    """``F.pad`` with ``padding_mode``, then the 3x3 binomial filter as one depthwise convolution
    (timm's ``BlurPool2d`` for odd kernels, the paper's ``Downsample``)."""
    c = x.shape[1]
    taps = torch.tensor(binomial_filter(KERNEL), dtype=x.dtype, device=x.device)
    weight = (taps[:, None] * taps[None, :]).expand(c, 1, KERNEL, KERNEL)
    pad = [(KERNEL - 1) // 2, KERNEL // 2] * 2
    return F.conv2d(F.pad(x, pad, mode=padding_mode), weight, stride=STRIDE, groups=c)


def _cases() -> list[tuple[str, str, str, Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]]:
    """(op, peer name, params, ours, peer)."""
    cases: list[tuple[str, str, str, Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = [
        (
            "blur_pool2d",
            "separable (two 1-d depthwise convs)",
            "k=3 s=2 zeros vs separable",
            partial(blur_pool2d, kernel_size=KERNEL, stride=STRIDE, padding_mode="zeros"),
            separable_blur,
        ),
        (
            "blur_pool2d",
            "F.pad reflect + depthwise conv",
            "k=3 s=2 reflect vs F.pad+conv",
            partial(blur_pool2d, kernel_size=KERNEL, stride=STRIDE, padding_mode="reflect"),
            padded_blur,
        ),
    ]
    try:
        import kornia.filters as K
    except ImportError:  # kornia is a test extra
        return cases
    for mode in ("zeros", "reflect"):
        cases += [
            (
                "blur_pool2d",
                "kornia blur_pool2d (zeros)",
                f"k=3 s=2 {mode} vs kornia",
                partial(blur_pool2d, kernel_size=KERNEL, stride=STRIDE, padding_mode=mode),
                partial(K.blur_pool2d, kernel_size=KERNEL, stride=STRIDE),
            ),
            (
                "max_blur_pool2d",
                "kornia max_blur_pool2d (zeros)",
                f"k=3 s=2 m=2 {mode} vs kornia",
                partial(max_blur_pool2d, kernel_size=KERNEL, stride=STRIDE, padding_mode=mode),
                partial(K.max_blur_pool2d, kernel_size=KERNEL, stride=STRIDE, max_pool_size=2),
            ),
        ]
    return cases


def run(quick: bool) -> list[Row]:
    """Forward and forward+backward of each case, ours and the peer timed in interleaved rounds."""
    min_time = 0.1 if quick else 0.2
    g = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=g).to(device())
    floor = clone_ms(x, min_time)
    rows: list[Row] = []
    for op, peer_name, params, ours, peer in _cases():
        if " zeros " in params or not peer_name.startswith("kornia"):  # the same values
            with torch.no_grad():
                torch.testing.assert_close(ours(x), peer(x), rtol=1e-5, atol=1e-6)
        times = time_against_peer(ours, peer, x, 3 if quick else 7, min_time)
        rows += paired_rows(op, peer_name, x, params, times, floor)
    return rows


if __name__ == "__main__":
    for r in run("--quick" in sys.argv):
        print(
            f"{r['op']:16s} {r['impl']:36s} {r['params']:18s} fwd {r['fwd_ms']:8.2f} ms  "
            f"fwd+bwd {r['fwdbwd_ms']:8.2f} ms  speedup {r['speedup_fwd']:5.2f}x / "
            f"{r['speedup_fwdbwd']:5.2f}x  clone-floor {r['x_clone_floor']:6.1f}x"
        )
