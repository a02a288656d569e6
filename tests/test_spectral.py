"""Spectral pooling beyond the generic walks: what the paper promises (a constant stays the
constant, a band-limited map is returned exactly at the coarser grid), the Nyquist convention,
the peers (``scipy.signal.resample``, the FFT formulation) and the refused sizes."""

from __future__ import annotations

import math

import pytest
import torch
from records.spectral import spectral_reference

import torchpool as tp
import torchpool.ops.spectral as SP

SIZES = [(8, 4), (9, 4), (8, 5), (7, 3), (12, 7), (10, 10), (6, 1), (16, 6)]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _band_limited(
    n: tuple[int, int], m: tuple[int, int], seed: int, nyquist: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random real trigonometric polynomial of the unit torus with frequencies ``|f| < m / 2`` per
    axis (plus, with ``nyquist``, a cosine at exactly ``m / 2`` along each even axis), sampled on the
    ``n`` grid and on the ``m`` grid."""
    g = _gen(seed)
    terms = []
    for a in range(-((m[0] - 1) // 2), (m[0] - 1) // 2 + 1):
        for b in range(-((m[1] - 1) // 2), (m[1] - 1) // 2 + 1):
            amp, phase = float(torch.rand(1, generator=g)), 2 * math.pi * float(torch.rand(1, generator=g))
            terms.append((a, b, amp, phase))
    if nyquist:
        for axis in (0, 1):
            if m[axis] % 2 == 0 and m[axis] < n[axis]:
                f = (m[0] // 2, 0) if axis == 0 else (0, m[1] // 2)
                terms.append((*f, 0.7, 0.0))  # a cosine: its phase is 0 on both grids

    def sample(size: tuple[int, int]) -> torch.Tensor:
        u = torch.arange(size[0], dtype=torch.float64)[:, None] / size[0]
        v = torch.arange(size[1], dtype=torch.float64)[None, :] / size[1]
        out = torch.zeros(size, dtype=torch.float64)
        for a, b, amp, phase in terms:
            out = out + amp * torch.cos(2 * math.pi * (a * u + b * v) + phase)
        return out

    return sample(n), sample(m)


@pytest.mark.parametrize(("n", "m"), SIZES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_constant_map_stays_the_constant(n: int, m: int, dtype: torch.dtype) -> None:
    x = torch.full((2, 3, n, n + 1), -2.5, dtype=dtype)
    y = SP.spectral_pool2d(x, (m, m))
    assert y.dtype == dtype and y.shape == (2, 3, m, m)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    torch.testing.assert_close(y, torch.full_like(y, -2.5), rtol=tol, atol=tol)


@pytest.mark.parametrize(("n", "m"), SIZES)
@pytest.mark.parametrize("nyquist", [False, True])
def test_band_limited_map_is_returned_exactly_at_the_coarser_grid(n: int, m: int, nyquist: bool) -> None:
    sizes_in, sizes_out = (n, n + 3), (m, max(1, m - 1))
    fine, coarse = _band_limited(sizes_in, sizes_out, seed=n * 31 + m, nyquist=nyquist)
    y = SP.spectral_pool2d(fine[None, None], sizes_out)[0, 0]
    torch.testing.assert_close(y, coarse, rtol=1e-10, atol=1e-10)


def test_nyquist_sine_vanishes_and_cosine_keeps_its_amplitude() -> None:
    """On the coarse grid of 4, frequency 2 is (-1)^t for a cosine and 0 for a sine."""
    t = torch.arange(8, dtype=torch.float64)
    cosine = torch.cos(2 * math.pi * 2 * t / 8).expand(1, 1, 8, 8)
    sine = torch.sin(2 * math.pi * 2 * t / 8).expand(1, 1, 8, 8)
    y_cos = SP.spectral_pool2d(cosine, (8, 4))[0, 0, 0]
    y_sin = SP.spectral_pool2d(sine, (8, 4))[0, 0, 0]
    torch.testing.assert_close(y_cos, torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64))
    torch.testing.assert_close(y_sin, torch.zeros(4, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("n", "m"), SIZES)
def test_matches_scipy_resample(n: int, m: int) -> None:
    signal = pytest.importorskip("scipy.signal")
    x = torch.randn(2, 2, n, n + 2, generator=_gen(n), dtype=torch.float64)
    out = (m, max(1, m - 2))
    expected = signal.resample(signal.resample(x.numpy(), out[0], axis=2), out[1], axis=3)
    torch.testing.assert_close(SP.spectral_pool2d(x, out), torch.from_numpy(expected), rtol=1e-10, atol=1e-10)


def fft_formulation(x: torch.Tensor, output_size: tuple[int, int]) -> torch.Tensor:
    """The naive form: fft2, fftshift, crop the centred block, ifftshift, ifft2, real part, scaled."""
    h, w = x.shape[-2:]
    mh, mw = output_size
    spectrum = torch.fft.fftshift(torch.fft.fft2(x), dim=(-2, -1))
    top, left = h // 2 - mh // 2, w // 2 - mw // 2
    crop = spectrum[..., top : top + mh, left : left + mw]
    y: torch.Tensor = torch.fft.ifft2(torch.fft.ifftshift(crop, dim=(-2, -1))).real
    return y * (mh * mw) / (h * w)


@pytest.mark.parametrize(("n", "m"), [(8, 5), (9, 3), (12, 7), (7, 7), (10, 1)])
def test_matches_the_fft_formulation_for_odd_output_sizes(n: int, m: int) -> None:
    """Odd output sizes have no Nyquist bin: the FFT crop is the same operation. (For even sizes the
    crop keeps one half of the Nyquist pair and ``.real`` halves a cosine there, Rippel et al.'s
    convention; ours adds both halves, as ``test_nyquist_...`` checks.)"""
    x = torch.randn(2, 3, n, n + 2, generator=_gen(m), dtype=torch.float64)
    torch.testing.assert_close(SP.spectral_pool2d(x, m), fft_formulation(x, (m, m)), rtol=1e-10, atol=1e-10)


def test_reference_agrees_with_the_fft_on_odd_sizes() -> None:
    """The record's explicit-DFT reference checked against torch.fft (the reference must be right)."""
    x = torch.randn(1, 2, 9, 8, generator=_gen(3), dtype=torch.float64)
    torch.testing.assert_close(
        spectral_reference(x, (5, 3)), fft_formulation(x, (5, 3)), rtol=1e-10, atol=1e-10
    )


def test_same_size_is_the_identity_and_half_precision_is_computed_in_float32() -> None:
    x = torch.randn(2, 3, 6, 7, generator=_gen(0))
    assert torch.equal(SP.spectral_pool2d(x, (6, 7)), x)
    half = x.half()
    y = SP.spectral_pool2d(half, 3)
    assert y.dtype == torch.float16
    torch.testing.assert_close(y, SP.spectral_pool2d(half.float(), 3).half(), rtol=0, atol=0)


def test_gradient_is_the_transposed_operation() -> None:
    x = torch.randn(1, 2, 7, 6, dtype=torch.float64, generator=_gen(5), requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: SP.spectral_pool2d(t, (4, 3)), (x,))


@pytest.mark.parametrize(
    ("output_size", "error", "match"),
    [
        (9, ValueError, r"output_size \(9, 9\) is larger than the input's spatial size \(8, 8\)"),
        ((4, 9), ValueError, r"output_size \(4, 9\) is larger"),
        (0, ValueError, "output_size must be positive"),
        (2.5, TypeError, "output_size"),
    ],
)
def test_bad_output_size(output_size: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        SP.spectral_pool2d(torch.zeros(1, 1, 8, 8), output_size)  # type: ignore[arg-type]
    if error is not ValueError or "larger" not in match:
        with pytest.raises(error, match=match):
            tp.SpectralPool2d(output_size)  # type: ignore[arg-type]
