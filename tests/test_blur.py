"""BlurPool / MaxBlurPool (Zhang 2019): peers, the paper's property, the filter, state dicts, errors.

The float64 reference, gradcheck and the generic walks come from the records
(``records/blur.py``); this file holds what they do not cover.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from records.blur import axis_matrix
from torch import Tensor

import torchpool as tp
import torchpool.ops._blur_native as N
from torchpool.ops.blur import binomial_filter

KERNELS = range(1, 8)


@pytest.fixture(autouse=True)
def _pytorch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pure-PyTorch paths (float64, half precision and machines without a C compiler take
    them); the C kernel's tests are in test_blur_native.py."""
    monkeypatch.setattr(N, "_library", lambda: None)


def _integer_input(shape: tuple[int, ...], seed: int = 0) -> Tensor:
    """Small integers in float64: every blur's sum is exact, whatever the order of the additions."""
    return torch.randint(-8, 9, shape, generator=torch.Generator().manual_seed(seed)).double()


# ------------------------------------------------------------------ the filter


@pytest.mark.parametrize("k", KERNELS)
def test_binomial_filter_is_pascals_row(k: int) -> None:
    taps = binomial_filter(k)
    assert [t * 2 ** (k - 1) for t in taps] == [math.comb(k - 1, i) for i in range(k)]
    assert sum(taps) == 1.0


@pytest.mark.parametrize("k", [0, 8, -1])
def test_binomial_filter_sizes(k: int) -> None:
    with pytest.raises(ValueError, match=r"kernel_size must be in \[1, 7\]"):
        binomial_filter(k)


def test_kernel_size_one_is_subsampling() -> None:
    x = torch.randn(2, 3, 7, 6)
    torch.testing.assert_close(tp.blur_pool2d(x, 1, 2), x[..., ::2, ::2], rtol=0, atol=0)


# ------------------------------------------------------------------ peers: kornia


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("k", KERNELS)
def test_kornia_blur_pool2d_is_zeros_padding(k: int, stride: int) -> None:
    """kornia pads with zeros, (k - 1) // 2 before and k // 2 after: our ``padding_mode="zeros"``."""
    kornia = pytest.importorskip("kornia")
    for shape in [(2, 3, 9, 8), (1, 2, 7, 11)]:
        x = _integer_input(shape)
        ours = tp.blur_pool2d(x, k, stride, padding_mode="zeros")
        assert torch.equal(ours, kornia.filters.blur_pool2d(x, k, stride))
        module = tp.BlurPool2d(k, stride, padding_mode="zeros")
        assert torch.equal(module(x), kornia.filters.BlurPool2D(k, stride)(x))


@pytest.mark.parametrize(("k", "stride", "m"), [(3, 2, 2), (5, 2, 3), (4, 3, 2), (7, 1, 2), (2, 2, 1)])
def test_kornia_max_blur_pool2d_is_zeros_padding(k: int, stride: int, m: int) -> None:
    kornia = pytest.importorskip("kornia")
    x = _integer_input((2, 3, 10, 9), seed=1)
    ours = tp.max_blur_pool2d(x, k, stride, m, padding_mode="zeros")
    assert torch.equal(ours, kornia.filters.max_blur_pool2d(x, k, stride, m))
    module = tp.MaxBlurPool2d(k, stride, m, padding_mode="zeros")
    assert torch.equal(module(x), kornia.filters.MaxBlurPool2D(k, stride, m)(x))


def test_kornia_float32_random() -> None:
    """On general float32 values the same convolution gives kornia's result bit for bit."""
    kornia = pytest.importorskip("kornia")
    x = torch.randn(2, 8, 15, 14, generator=torch.Generator().manual_seed(2))
    assert torch.equal(tp.blur_pool2d(x, 3, padding_mode="zeros"), kornia.filters.blur_pool2d(x, 3))
    assert torch.equal(tp.max_blur_pool2d(x, 3, padding_mode="zeros"), kornia.filters.max_blur_pool2d(x, 3))


# ------------------------------------------------------------------ peers: timm (zoo environment)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [3, 5, 7])
def test_timm_blur_pool2d_odd_kernels(k: int, stride: int) -> None:
    """timm pads ``(stride - 1 + k - 1) // 2`` on every side with reflection: ours for odd k, stride <= 2."""
    layers = pytest.importorskip("timm.layers")
    for shape in [(2, 3, 9, 8), (1, 2, 7, 11)]:
        x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        theirs = layers.BlurPool2d(channels=None, filt_size=k, stride=stride).double()(x)
        torch.testing.assert_close(tp.blur_pool2d(x, k, stride), theirs, rtol=0, atol=1e-14)
        with_channels = layers.BlurPool2d(channels=shape[1], filt_size=k, stride=stride).double()(x)
        torch.testing.assert_close(tp.BlurPool2d(k, stride)(x), with_channels, rtol=0, atol=1e-14)


def test_timm_differs_for_even_kernels() -> None:
    """timm's symmetric padding (4 // 2 = 2 per side) is not the paper's 1 before, 2 after."""
    layers = pytest.importorskip("timm.layers")
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    theirs = layers.BlurPool2d(channels=None, filt_size=4, stride=2).double()(x)
    assert theirs.shape[-2:] == (5, 5) and tp.blur_pool2d(x, 4).shape[-2:] == (4, 4)


# ------------------------------------------------------------------ the paper's property


def _shift_distance(pool: object, x: Tensor) -> float:
    """Relative L2 distance of the pooled maps of ``x`` and ``x`` shifted by one pixel (both axes).

    ``||f(a) - f(b)|| / ||f(a)||`` over the outputs away from the border, ``a = x[:64, :64]``,
    ``b = x[1:65, 1:65]``: 0 for a shift-invariant pool.
    """
    a, b = x[..., :64, :64], x[..., 1:, 1:]
    ya, yb = pool(a)[..., 1:-1, 1:-1], pool(b)[..., 1:-1, 1:-1]  # type: ignore[operator]
    return float((ya - yb).norm() / ya.norm())


def test_blur_is_closer_to_shift_invariant() -> None:
    """Measured on seeded uniform noise (1, 16, 65, 65), float64 (0.258, 0.341, 0.110, 0.071, 0.225)."""
    x = torch.rand(1, 16, 65, 65, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    max_pool = _shift_distance(lambda t: F.max_pool2d(t, 2), x)
    avg_pool = _shift_distance(lambda t: F.avg_pool2d(t, 2), x)
    max_blur3 = _shift_distance(lambda t: tp.max_blur_pool2d(t, 3), x)
    max_blur5 = _shift_distance(lambda t: tp.max_blur_pool2d(t, 5), x)
    blur3 = _shift_distance(tp.blur_pool2d, x)
    assert max_blur3 < 0.5 * max_pool
    assert max_blur5 < max_blur3
    assert blur3 < max_pool and blur3 < avg_pool


# ------------------------------------------------------------------ Modules: state dict, cache


@pytest.mark.parametrize("cls", [tp.BlurPool1d, tp.BlurPool2d, tp.BlurPool3d, tp.MaxBlurPool2d])
def test_state_dict_is_empty_and_round_trips(cls: type[torch.nn.Module]) -> None:
    pool = cls()
    assert pool.state_dict() == {} and list(pool.buffers()) == [] and list(pool.parameters()) == []
    net = torch.nn.Sequential(torch.nn.Conv1d(2, 2, 1), cls())
    fresh = torch.nn.Sequential(torch.nn.Conv1d(2, 2, 1), cls())
    assert set(net.state_dict()) == {"0.weight", "0.bias"}
    fresh.load_state_dict(net.state_dict(), strict=True)
    cls().load_state_dict({}, strict=True)


def test_any_channel_count_and_dtype() -> None:
    """No ``channels`` argument: one Module pools inputs of any channel count, dtype and layout."""
    pool = tp.BlurPool2d()
    for channels, dtype in [(1, torch.float32), (5, torch.float64), (3, torch.bfloat16)]:
        x = torch.randn(2, channels, 6, 6).to(dtype)
        y = pool(x)
        assert y.dtype == dtype and y.shape == (2, channels, 3, 3)
        torch.testing.assert_close(y, tp.blur_pool2d(x.double()).to(dtype), rtol=1e-2, atol=1e-2)


def test_cache_built_under_inference_mode_still_trains() -> None:
    """The cached filter is a normal tensor even when first built under ``torch.inference_mode``."""
    with torch.inference_mode():
        tp.blur_pool2d(torch.randn(1, 7, 6, 6))
    x = torch.randn(1, 7, 6, 6, requires_grad=True)
    torch.autograd.backward(tp.blur_pool2d(x).sum())
    assert x.grad is not None and bool(x.grad.isfinite().all())


def test_gradgradcheck() -> None:
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: tp.max_blur_pool2d(t, 3, padding_mode="circular"), (x,))


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"kernel_size": 8}, ValueError, r"kernel_size must be in \[1, 7\]"),
        ({"kernel_size": 0}, ValueError, r"kernel_size must be in \[1, 7\]"),
        ({"stride": 0}, ValueError, "stride must be positive"),
        ({"padding_mode": "mirror"}, ValueError, "padding_mode must be one of"),
        ({"padding_mode": 1}, TypeError, "padding_mode must be one of"),
        ({"kernel_size": 2.0}, TypeError, "kernel_size"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    x = torch.randn(1, 2, 6, 6)
    with pytest.raises(error, match=match):
        tp.blur_pool2d(x, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(error, match=match):
        tp.BlurPool2d(**kwargs)  # type: ignore[arg-type]


def test_max_blur_bad_arguments() -> None:
    x = torch.randn(1, 2, 6, 6)
    with pytest.raises(ValueError, match="max_pool_size must be positive"):
        tp.max_blur_pool2d(x, max_pool_size=0)
    with pytest.raises(TypeError, match="ceil_mode must be a bool"):
        tp.MaxBlurPool2d(ceil_mode=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="smaller than max_pool_size"):
        tp.max_blur_pool2d(torch.randn(1, 2, 6, 2), max_pool_size=3)


def test_reflect_needs_room() -> None:
    """Reflection of ``k // 2`` cells needs more than ``k // 2`` of them; replicate and zeros do not."""
    x = torch.randn(1, 2, 2, 9)
    with pytest.raises(ValueError, match=r"spatial size \(2, 9\) is too small for padding_mode='reflect'"):
        tp.blur_pool2d(x, 5)
    assert tp.blur_pool2d(x, 5, padding_mode="replicate").shape == (1, 2, 1, 5)
    with pytest.raises(ValueError, match="too small for padding_mode='circular'"):
        tp.blur_pool2d(torch.randn(1, 2, 2, 9), 7, padding_mode="circular")


def test_ceil_mode_changes_nothing() -> None:
    x = torch.randn(1, 2, 7, 8)
    assert torch.equal(tp.max_blur_pool2d(x, 3, 2, 2, True), tp.max_blur_pool2d(x, 3, 2, 2, False))


# ------------------------------------------------------------------ the fast paths


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
@pytest.mark.parametrize(("k", "stride"), [(3, 1), (3, 2), (5, 2), (5, 3), (7, 2), (7, 4)])
def test_border_fix_equals_padding_everything(k: int, stride: int, mode: str) -> None:
    """Odd kernels in eager mode without autograd recompute only the border outputs: the values of
    ``conv(F.pad(x, mode), stride)`` (the autograd and traced path), sizes down to the smallest allowed."""
    weight = torch.tensor(binomial_filter(k), dtype=torch.float64)
    weight = (weight[:, None] * weight[None, :]).expand(2, 1, k, k)
    for h, w in [(1, 1), (2, 5), (4, 4), (5, 8), (8, 7), (9, 3)]:
        if mode == "reflect" and min(h, w) <= k // 2:
            continue
        x = torch.randn(1, 2, h, w, dtype=torch.float64)
        ours = tp.blur_pool2d(x, k, stride, padding_mode=mode)  # no autograd: the border path
        padded = F.conv2d(F.pad(x, [k // 2] * 4, mode=mode), weight, stride=stride, groups=2)
        torch.testing.assert_close(ours, padded, rtol=0, atol=1e-13)
        with_grad = tp.blur_pool2d(x.clone().requires_grad_(True), k, stride, padding_mode=mode)
        torch.testing.assert_close(with_grad.detach(), padded, rtol=0, atol=1e-13)


def test_max_blur_keeps_the_layout() -> None:
    """The dense max runs channels-last on CPU; the result comes back in the input's layout."""
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    y = tp.max_blur_pool2d(x)
    assert y.is_contiguous()
    y_last = tp.max_blur_pool2d(x.contiguous(memory_format=torch.channels_last))
    assert y_last.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, y_last, rtol=0, atol=1e-14)
    dense = F.max_pool2d(x, 2, 1)
    torch.testing.assert_close(y, tp.blur_pool2d(dense), rtol=0, atol=1e-14)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_deterministic_padding_equals_f_pad(ndim: int, mode: str) -> None:
    """Deterministic mode pads by slices and ``cat`` (PyTorch's CUDA pad backwards are not
    deterministic): the same values and gradients as ``F.pad``."""
    from torchpool._deterministic import deterministic

    fn = {1: tp.blur_pool1d, 2: tp.blur_pool2d, 3: tp.blur_pool3d}[ndim]
    x = torch.randn(2, 3, *[7, 6, 5][:ndim], dtype=torch.float64)
    for k in (2, 3, 4, 5):
        outputs = []
        for on in (False, True):
            leaf = x.clone().requires_grad_(True)
            with deterministic(on):
                y = fn(leaf, k, 2, padding_mode=mode)
            (grad,) = torch.autograd.grad(y, leaf, torch.ones_like(y))
            outputs.append((y.detach(), grad))
        torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=1e-13)


# ------------------------------------------------------------------ the border-fixed convolution


def _reference(x: Tensor, k: int, stride: int, mode: str) -> Tensor:
    """The separable blur of every spatial axis by dense matrices (a float64 loop reference)."""
    for axis in range(2, x.dim()):
        matrix = axis_matrix(x.shape[axis], k, stride, mode)
        x = torch.tensordot(x, matrix, dims=([axis], [1])).movedim(-1, axis)
    return x


def _assert_reference_values_and_grad(
    fn: Callable[..., Tensor], x: Tensor, k: int, stride: int, mode: str
) -> None:
    """``fn(x, k, stride, padding_mode=mode)`` equals the float64 reference in value and gradient."""
    y = fn(x, k, stride, padding_mode=mode)
    expected = _reference(x.detach(), k, stride, mode)
    torch.testing.assert_close(y.detach(), expected, rtol=0, atol=1e-12)
    g = torch.randn_like(expected)
    (grad,) = torch.autograd.grad(y, x, g)
    (expected_grad,) = torch.autograd.grad(_reference(x, k, stride, mode), x, g)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_border_fixed_convolution_2d(k: int, mode: str) -> None:
    """Odd kernels (eager CPU float32 / float64) run the zero-padded convolution plus the border
    correction: values and gradients equal the reference for every stride, odd and even sizes, down
    to the smallest size the mode allows (reflection: ``k // 2 + 1``)."""
    smallest = {"reflect": k // 2 + 1, "replicate": 1, "circular": max(1, k // 2)}[mode]
    small, pairs = (smallest, smallest + 1), [(8, 9), (9, 8)]
    pairs += [(small[0], 9), (small[1], 8), (8, small[0]), (9, small[1]), small, small[::-1]]
    for stride in (1, 2, 3):
        for h, w in pairs:
            x = torch.randn(2, 3, h, w, dtype=torch.float64, requires_grad=True)
            _assert_reference_values_and_grad(tp.blur_pool2d, x, k, stride, mode)


@pytest.mark.parametrize("ndim", [1, 3])
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_border_fixed_convolution_1d_3d(ndim: int, mode: str) -> None:
    fn = {1: tp.blur_pool1d, 3: tp.blur_pool3d}[ndim]
    for k, stride in [(3, 2), (5, 1), (7, 3), (3, 1)]:
        smallest = {"reflect": k // 2 + 1, "replicate": 1, "circular": max(1, k // 2)}[mode]
        for sizes in [(smallest,) * ndim, (8, 9, 7)[:ndim], (smallest + 1, 9, smallest)[:ndim]]:
            x = torch.randn(2, 2, *sizes, dtype=torch.float64, requires_grad=True)
            _assert_reference_values_and_grad(fn, x, k, stride, mode)


def test_border_fixed_convolution_general_terms(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the size of the dense 2-d matrices the terms run as gathers and separable passes: the
    same values and gradients."""
    import torchpool.ops._blur_border as border

    monkeypatch.setattr(border, "_MAX_DENSE", 0)
    for k, stride, (h, w) in [(3, 2, (8, 7)), (5, 1, (3, 6)), (7, 2, (9, 4)), (7, 3, (5, 5))]:
        for mode in ("reflect", "replicate", "circular"):
            x = torch.randn(2, 3, h, w, dtype=torch.float64, requires_grad=True)
            _assert_reference_values_and_grad(tp.blur_pool2d, x, k, stride, mode)


def test_border_fixed_convolution_chunks_and_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of the batch (one sample each here) and channels-last input: the same result, the
    layout kept, float32 within rounding of the float64 reference; zero padding too (the chunked
    convolution alone)."""
    import torchpool.ops._blur_border as border

    monkeypatch.setattr(border, "_CONV_CHUNK", 1)
    assert len(border._conv_chunks(torch.empty(3, 4, 11, 10))) == 3
    x = torch.randn(3, 4, 11, 10)
    for mode in ("reflect", "zeros"):
        expected = _reference(x.double(), 3, 2, mode)
        for t in (x, x.contiguous(memory_format=torch.channels_last)):
            leaf = t.clone().requires_grad_(True)
            y = tp.blur_pool2d(leaf, padding_mode=mode)
            assert y.is_contiguous(memory_format=_layout(t))
            torch.testing.assert_close(y.double(), expected, rtol=1e-6, atol=1e-6)
            (grad,) = torch.autograd.grad(y, leaf, torch.ones_like(y))
            assert grad.is_contiguous(memory_format=_layout(t))
            expected_grad = torch.autograd.grad(
                _reference(leaf.double(), 3, 2, mode), leaf, torch.ones_like(expected)
            )[0]
            torch.testing.assert_close(grad, expected_grad, rtol=1e-6, atol=1e-6)


def _layout(t: Tensor) -> torch.memory_format:
    return torch.contiguous_format if t.is_contiguous() else torch.channels_last


def test_border_fixed_convolution_gradgradcheck() -> None:
    for mode in ("reflect", "replicate"):
        x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda t, m=mode: tp.blur_pool2d(t, 3, 2, padding_mode=m), (x,))
        assert torch.autograd.gradgradcheck(lambda t, m=mode: tp.blur_pool2d(t, 5, 1, padding_mode=m), (x,))
