"""The float32 fallbacks for CPU kernels that older PyTorch releases lack in half precision.

On torch 2.4.1 (CI's lowest release) ``adaptive_max_pool3d`` and reflection/replication padding
have no float16 CPU kernel; :mod:`torchpool._compat` probes for them at import. Here the probe's
answer is forced, so the fallback runs on any PyTorch and must give what the native half kernels
give (these ops only select or copy values).
"""

from __future__ import annotations

import pytest
import torch

import torchpool as tp
from torchpool import _compat

HALF = [torch.float16, torch.bfloat16]


def _force_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    names = [*_compat._probes()]
    monkeypatch.setattr(_compat, "_MISSING", frozenset((n, d) for n in names for d in HALF))


def _input(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=g).to(dtype)


def test_probe_sees_this_torch() -> None:
    # every probe runs; float32 kernels exist on every supported release
    for name, probe in _compat._probes().items():
        probe(torch.float32)
        assert not _compat.cpu_kernel_missing(name, torch.zeros(1))


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_adaptive_max3d_fallback_equals_native(dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    x = _input((2, 3, 5, 6, 7), dtype)
    native = tp.adaptive_max_pool3d(x, (2, 3, 2), return_indices=True)
    native_pyramid = tp.spatial_pyramid_pool3d(x, (1, 2))
    _force_missing(monkeypatch)
    assert _compat.cpu_kernel_missing("adaptive_max_pool3d", x)
    fallback = tp.adaptive_max_pool3d(x, (2, 3, 2), return_indices=True)
    assert fallback[0].dtype == dtype
    assert torch.equal(fallback[0], native[0])
    assert torch.equal(fallback[1], native[1])
    assert torch.equal(tp.spatial_pyramid_pool3d(x, (1, 2)), native_pyramid)
    assert torch.equal(
        tp.adaptive_catavgmax_pool3d(x, 2)[:, 3:], tp.adaptive_max_pool3d(x.float(), 2).to(dtype)
    )


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular", "zeros"])
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_median_padding_fallback_equals_native(
    dtype: torch.dtype, mode: str, ndim: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = _input((2, 3) + (6,) * ndim, dtype)
    pool = {1: tp.median_pool1d, 2: tp.median_pool2d, 3: tp.median_pool3d}[ndim]
    native = pool(x, 3, 1, 1, padding_mode=mode)
    _force_missing(monkeypatch)
    fallback = pool(x, 3, 1, 1, padding_mode=mode)
    assert fallback.dtype == dtype
    assert torch.equal(fallback, native)


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_blur_padding_fallback_equals_native(
    dtype: torch.dtype, mode: str, ndim: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = _input((2, 3) + (7,) * ndim, dtype).requires_grad_(True)  # autograd: the F.pad path
    pool = {1: tp.blur_pool1d, 2: tp.blur_pool2d, 3: tp.blur_pool3d}[ndim]
    native = pool(x, 3, 2, padding_mode=mode)
    _force_missing(monkeypatch)
    fallback = pool(x, 3, 2, padding_mode=mode)
    assert fallback.dtype == dtype
    assert torch.equal(fallback, native)
