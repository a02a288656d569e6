"""Spectral pooling (Rippel, Snoek & Adams, NeurIPS 2015): keep the lowest frequencies of the DFT.

Per spatial axis of length ``n`` and output length ``m <= n``: take the DFT ``X[k]``, keep the
frequencies ``|k| < m / 2`` and, for even ``m``, the output's Nyquist frequency ``m / 2``, then
take the inverse DFT of length ``m``. Conventions:

* **Scaling**: the kept coefficients are multiplied by ``m / n``, so a constant map stays the
  same constant (the DC coefficient is the mean) and a map sampled from a band-limited signal (all
  frequencies ``|k| < m / 2``) is returned exactly as that signal sampled on the coarser grid.
* **Nyquist**: for even ``m < n`` the input bins ``+m/2`` and ``-m/2`` both land on the output's
  Nyquist bin, whose two halves are the same frequency on the coarser grid: they are added
  (``Y[m/2] = X[m/2] + X[-m/2]``, a real number times ``m / n`` for real input), so the result is
  real and a cosine at that frequency is sampled exactly (the convention of
  ``scipy.signal.resample``). Rippel et al. instead keep one half and drop its imaginary part,
  which halves such a cosine. Each axis is treated alike, so in 2-d the bins fold separably.
* ``m == n`` returns the input; ``m > n`` is an error (no upsampling).

The whole operation is linear and separable: ``y = A_h x A_w^T`` with a real ``m x n`` matrix
``A[t', t] = (1/n) sum_k cos(2 pi k (t'/m - t/n))`` over the kept band. It is computed as two
matrix products (no complex numbers: it compiles, exports to ONNX and runs in any real dtype);
the matrices are built in float64 and cached per size, device and dtype in eager mode.
Half-precision input is computed in float32 and rounded once.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._checks import check_input, is_traced, restore_batch
from .._shape import IntOrTuple, ntuple
from ..registry import register_pool

__all__ = ["SpectralPool2d", "spectral_pool2d"]

_CACHE: dict[tuple[int, int, torch.device, torch.dtype], Tensor] = {}
_CACHE_LIMIT = 64


def _check_output_size(output_size: IntOrTuple) -> tuple[int, ...]:
    size = ntuple(output_size, 2, "output_size")
    if any(v < 1 for v in size):
        raise ValueError(f"output_size must be positive, got {size}")
    return size


def _band_matrix(n: int, m: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The ``(m, n)`` real matrix of one axis: DFT, keep the band of ``m``, scaled inverse DFT."""
    key = (n, m, device, dtype)
    cached = None if is_traced() else _CACHE.get(key)
    if cached is not None:
        return cached
    if m == n:
        matrix = torch.eye(n, dtype=torch.float64, device=device)
    else:
        half = m // 2  # the band: |k| <= half; for even m, +half and -half are the output's Nyquist
        k = torch.arange(-half, half + 1, dtype=torch.float64, device=device)
        out = torch.arange(m, dtype=torch.float64, device=device)[:, None, None] / m
        inp = torch.arange(n, dtype=torch.float64, device=device)[None, :, None] / n
        matrix = torch.cos(2 * math.pi * k * (out - inp)).sum(dim=-1) / n
    matrix = matrix.to(dtype)
    if not is_traced():
        if len(_CACHE) >= _CACHE_LIMIT:
            _CACHE.clear()
        _CACHE[key] = matrix
    return matrix


def spectral_pool2d(x: Tensor, output_size: IntOrTuple) -> Tensor:
    """Spectral pooling (Rippel et al. 2015): the lowest frequencies of the 2-D DFT, as a real map.

    Each spatial axis keeps the frequencies of an ``output_size``-long DFT (``|k| < m/2``, and the
    Nyquist bin ``m/2`` for even ``m``, its two halves added), scaled by ``m / n`` so that a
    constant map stays the same constant; a map sampled from a band-limited signal comes back
    exactly at the coarser sampling. See :mod:`torchpool.ops.spectral` for the conventions.

    Args:
        x: input, batched or batch-less, floating point (float16 / bfloat16 computed in float32).
        output_size: the output's spatial size (int or pair), at most the input's.

    Returns:
        The pooled tensor, real, in the input's dtype.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)`` with ``(H_out, W_out) = output_size``.

    Example:
        >>> x = torch.full((1, 1, 5, 6), 2.0)
        >>> spectral_pool2d(x, 3).allclose(torch.full((1, 1, 3, 3), 2.0))
        True
        >>> t = torch.arange(8.0)
        >>> wave = torch.cos(2 * torch.pi * t / 8)  # one period over 8 samples
        >>> y = spectral_pool2d(wave.expand(1, 1, 8, 8), 4)  # the same period over 4 samples
        >>> [round(v, 4) + 0.0 for v in y[0, 0, 0].tolist()]
        [1.0, 0.0, -1.0, 0.0]
    """
    size = _check_output_size(output_size)
    batched, unbatched = check_input(x, 2)
    spatial = tuple(batched.shape[-2:])
    if any(m > n for m, n in zip(size, spatial)):
        raise ValueError(
            f"output_size {size} is larger than the input's spatial size {spatial} (input of shape "
            f"{tuple(x.shape)}): spectral pooling only downsamples"
        )
    compute = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    a_h = _band_matrix(spatial[0], size[0], x.device, compute)
    a_w = _band_matrix(spatial[1], size[1], x.device, compute)
    y = torch.matmul(a_h, torch.matmul(batched.to(compute), a_w.t()))  # W first: one large GEMM
    return restore_batch(y.to(x.dtype), unbatched)


class SpectralPool2d(nn.Module):
    """Module form of :func:`spectral_pool2d` (spectral pooling); arguments as for the function.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``.

    Example:
        >>> SpectralPool2d(3)(torch.ones(1, 2, 8, 8)).shape
        torch.Size([1, 2, 3, 3])
    """

    def __init__(self, output_size: IntOrTuple) -> None:
        super().__init__()
        _check_output_size(output_size)
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return spectral_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


register_pool(
    "spectral2d",
    SpectralPool2d,
    family="spectral",
    dims=(2,),
    description="the lowest frequencies of the 2-D DFT, as a real map (spectral pooling, "
    "Rippel, Snoek & Adams 2015)",
    example_kwargs={"output_size": 4},
)
