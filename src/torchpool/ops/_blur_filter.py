"""BlurPool's filters (:mod:`.blur`): the normalised binomial taps and the depthwise weight built from
them, cached per kernel, channels, dtype and device (built afresh in traced graphs).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import is_traced

__all__ = ["MAX_KERNEL", "binomial_filter"]

#: the largest binomial filter (the paper's sizes 1 to 7).
MAX_KERNEL = 7

_CONV: dict[int, Callable[..., Tensor]] = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def binomial_filter(kernel_size: int) -> list[float]:
    """The normalised 1-d binomial filter ``C(k - 1, i) / 2**(k - 1)``.

    Args:
        kernel_size: the number of taps, 1 to 7.

    Returns:
        The taps (they sum to 1 exactly).

    Example:
        >>> binomial_filter(3)
        [0.25, 0.5, 0.25]
    """
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int):
        raise TypeError(f"kernel_size must be an int, got {type(kernel_size).__name__}")
    if not 1 <= kernel_size <= MAX_KERNEL:
        raise ValueError(f"kernel_size must be in [1, {MAX_KERNEL}], got {kernel_size}")
    return [math.comb(kernel_size - 1, i) / 2 ** (kernel_size - 1) for i in range(kernel_size)]


def _build_weight(k: tuple[int, ...], channels: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    taps = [torch.tensor(binomial_filter(size), dtype=torch.float64) for size in k]
    weight = taps[0]
    for axis_taps in taps[1:]:
        weight = weight[..., None] * axis_taps  # outer product: exact (dyadic taps)
    return weight.to(dtype=dtype, device=device).expand(channels, 1, *k).contiguous()


@functools.lru_cache(maxsize=64)
def _cached_weight(k: tuple[int, ...], channels: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    with torch.inference_mode(False):  # a normal tensor even if first built under inference_mode
        return _build_weight(k, channels, dtype, device)


def _weight(k: tuple[int, ...], channels: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The depthwise blur weight ``(C, 1, *k)``: cached in eager mode, built in traced graphs."""
    if is_traced():
        return _build_weight(k, channels, dtype, device)
    return _cached_weight(k, channels, dtype, device)
