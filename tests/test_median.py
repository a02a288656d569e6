"""Tests for median pooling (torchpool.ops.median) against a slow float64 reference."""

from __future__ import annotations

import doctest
import inspect
import itertools
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from reference_median import median_pool_reference, median_pool_reference_grad
from torch import Tensor

import torchpool.ops.median as median_module
import torchpool.ops.median._kernels as median_kernels
from torchpool.ops.median import (
    MedianPool1d,
    MedianPool2d,
    MedianPool3d,
    _api,
    _kernels,
    _network,
    _ops,
    _pool,
    median_pool1d,
    median_pool1d_with_indices,
    median_pool2d,
    median_pool2d_with_indices,
    median_pool3d,
    median_pool3d_with_indices,
)

Size = int | tuple[int, ...]
FUNCTIONS: dict[int, Callable[..., Tensor]] = {1: median_pool1d, 2: median_pool2d, 3: median_pool3d}
WITH_INDICES: dict[int, Callable[..., tuple[Tensor, Tensor]]] = {
    1: median_pool1d_with_indices,
    2: median_pool2d_with_indices,
    3: median_pool3d_with_indices,
}
MODULES: dict[int, Callable[..., torch.nn.Module]] = {1: MedianPool1d, 2: MedianPool2d, 3: MedianPool3d}


def _grad(x: Tensor) -> Tensor:
    """``x.grad``, which the test has just computed."""
    assert x.grad is not None
    return x.grad


MODES = ("zeros", "reflect", "replicate", "valid")


def _configs() -> list[tuple[int, Size, Size, Size, str]]:
    """(nd, kernel, stride, padding, mode): every kernel 1..5 (even, odd, non-square), strides 1..3."""
    cases: list[tuple[int, Size, Size, Size, str]] = []
    for k, s in itertools.product((1, 2, 3, 4, 5), (1, 2, 3)):
        for p in sorted({0, k // 2}):
            for mode in MODES:
                cases.append((1, k, s, p, mode))
    for k, s in itertools.product((1, 2, 3, 4, 5), (1, 2, 3)):
        for mode in MODES:
            cases.append((2, k, s, k // 2, mode))
        cases.append((2, k, s, 0, "reflect"))
    shapes: list[tuple[Size, Size, Size]] = [
        ((2, 3), 1, (1, 1)),
        ((3, 5), (1, 2), (1, 2)),
        ((1, 4), (2, 1), (0, 2)),
        ((5, 2), 3, (2, 1)),
    ]
    for kk, ss, pp in shapes:
        for mode in MODES:
            cases.append((2, kk, ss, pp, mode))
    shapes3: list[tuple[Size, Size, Size]] = [
        (3, 1, 1),
        (2, 1, 1),
        ((2, 3, 1), (1, 2, 1), (1, 1, 0)),
        (3, 2, 0),
        ((1, 2, 3), 1, (0, 1, 1)),
    ]
    for kk, ss, pp in shapes3:
        for mode in MODES:
            cases.append((3, kk, ss, pp, mode))
    return cases


CONFIGS = _configs()


def _input(nd: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = {1: (2, 3, 11), 2: (1, 2, 7, 8), 3: (1, 1, 5, 6, 5)}[nd]
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)


def _distinct(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Tie-free float64 input."""
    generator = torch.Generator().manual_seed(seed)
    n = 1
    for size in shape:
        n *= size
    return ((torch.randperm(n, generator=generator).double() + 0.5) / n - 0.5).reshape(shape)  # never 0


@pytest.mark.parametrize("nd, kernel, stride, padding, mode", CONFIGS)
def test_matches_reference(nd: int, kernel: Size, stride: Size, padding: Size, mode: str) -> None:
    x = _input(nd)
    expected = median_pool_reference(x, kernel, stride, padding, mode)
    y = FUNCTIONS[nd](x, kernel, stride, padding, padding_mode=mode)
    assert y.dtype == torch.float64
    assert torch.equal(y, expected)
    y32 = FUNCTIONS[nd](x.float(), kernel, stride, padding, padding_mode=mode)
    assert y32.dtype == torch.float32
    assert torch.equal(y32.double(), median_pool_reference(x.float(), kernel, stride, padding, mode))


@pytest.mark.parametrize("mode", MODES)
def test_large_window_fallback(mode: str) -> None:
    # 9x9 = 81 cells exceeds the network limit: unfold + median path (and the sort path for "valid")
    x = _input(2, seed=3)[:, :, :, :7].repeat(1, 1, 2, 2)
    windows: list[tuple[Size, Size, Size]] = [(9, 1, 4), ((9, 8), (2, 3), (3, 4))]
    for kernel, stride, padding in windows:
        expected = median_pool_reference(x, kernel, stride, padding, mode)
        assert torch.equal(median_pool2d(x, kernel, stride, padding, padding_mode=mode), expected)
    xr = _distinct((1, 2, 12, 11)).requires_grad_()
    y = median_pool2d(xr, 9, 2, 4, padding_mode=mode)
    g = torch.randn_like(y)
    torch.autograd.backward(y, g)
    assert torch.allclose(_grad(xr), median_pool_reference_grad(xr, 9, 2, 4, mode, g))


@pytest.mark.parametrize("mode", MODES)
def test_gradient_matches_reference(mode: str) -> None:
    cases: list[tuple[int, Size, Size, Size]] = [
        (2, 3, 1, 1),
        (2, (2, 3), (2, 1), (1, 1)),
        (1, 4, 1, 2),
        (3, 3, 2, 1),
    ]
    for nd, kernel, stride, padding in cases:
        x = _input(nd, seed=1).requires_grad_()
        y = FUNCTIONS[nd](x, kernel, stride, padding, padding_mode=mode)
        g = torch.randn_like(y)
        torch.autograd.backward(y, g)
        expected = median_pool_reference_grad(x, kernel, stride, padding, mode, g)
        assert torch.allclose(_grad(x), expected, atol=1e-12)


@pytest.mark.parametrize(
    "nd, kernel, stride, padding, mode",
    [
        (2, 3, 1, 1, "reflect"),
        (2, 3, 2, 1, "replicate"),
        (2, (2, 3), 1, (1, 1), "zeros"),
        (2, 4, 1, 2, "valid"),
        (1, 5, 2, 2, "reflect"),
        (3, 3, 1, 1, "reflect"),
    ],
)
def test_gradcheck(nd: int, kernel: Size, stride: Size, padding: Size, mode: str) -> None:
    shape = {1: (2, 2, 9), 2: (1, 2, 6, 5), 3: (1, 1, 4, 4, 3)}[nd]
    x = _distinct(shape).requires_grad_()

    def fn(t: torch.Tensor) -> torch.Tensor:
        return FUNCTIONS[nd](t, kernel, stride, padding, padding_mode=mode)

    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6)


def test_gradgradcheck() -> None:
    x = _distinct((1, 1, 4, 4)).requires_grad_()
    assert torch.autograd.gradgradcheck(lambda t: median_pool2d(t, 3, 1, 1), (x,), eps=1e-6, atol=1e-6)


def test_ties_send_gradient_to_first_cell() -> None:
    x = torch.ones(1, 1, 5, 6, requires_grad=True)
    torch.autograd.backward(median_pool2d(x, 3, 1).sum())
    expected = torch.zeros(1, 1, 5, 6)
    expected[..., :3, :4] = 1.0  # the top-left cell of each of the 3x4 windows
    assert torch.equal(_grad(x), expected)
    # overlapping windows with reflect padding: one unit of gradient per window, in total
    x.grad = None
    y = median_pool2d(x, (3, 2), 1, (1, 1))
    torch.autograd.backward(y.sum())
    assert _grad(x).sum().item() == y.numel()
    # zeros padding: the selected cell of a corner window is a padded zero, the gradient is dropped
    z = torch.zeros(1, 1, 3, 3, requires_grad=True)
    torch.autograd.backward(median_pool2d(z, 3, 1, 1, padding_mode="zeros").sum())
    assert _grad(z).sum().item() == 4.0  # only windows whose first cell is in bounds


def test_even_window_is_lower_median() -> None:
    x = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    assert median_pool1d(x, 4).item() == 2.0
    assert torch.median(x).item() == 2.0
    x2 = torch.tensor([[[[4.0, 1.0], [3.0, 2.0]]]])
    assert median_pool2d(x2, 2).item() == 2.0


def test_nan_propagates() -> None:
    x = _input(2, torch.float32)
    x[0, 0, 3, 3] = float("nan")
    for mode in MODES:
        y = median_pool2d(x, 3, 1, 1, padding_mode=mode)
        nan = torch.isnan(y)
        expected = torch.zeros_like(nan)
        expected[0, 0, 2:5, 2:5] = True
        assert torch.equal(nan, expected)
        assert torch.equal(y.nan_to_num(9.0), median_pool_reference(x, 3, 1, 1, mode).float().nan_to_num(9.0))
    _, indices = median_pool2d_with_indices(x, 3, 1, 1)
    assert (indices[0, 0, 2:5, 2:5] == 3 * 8 + 3).all()
    xr = x.clone().requires_grad_()
    torch.autograd.backward(median_pool2d(xr, 3, 1, 1).sum())
    assert _grad(xr)[0, 0, 3, 3].item() == 9.0  # selected by the nine windows that contain it


def test_batchless() -> None:
    for nd in (1, 2, 3):
        x = _input(nd)
        batched = FUNCTIONS[nd](x, 3, 1, 1)
        single = FUNCTIONS[nd](x[0], 3, 1, 1)
        assert single.shape == batched.shape[1:]
        assert torch.equal(single, batched[0])
        values, indices = WITH_INDICES[nd](x[0], 2, 1, 1)
        assert indices.shape == values.shape == FUNCTIONS[nd](x[0], 2, 1, 1).shape


def test_channels_last_and_noncontiguous() -> None:
    x = _input(2, torch.float32)
    expected = median_pool2d(x, 3, 1, 1)
    y = median_pool2d(x.to(memory_format=torch.channels_last), 3, 1, 1)
    assert torch.equal(y, expected)
    assert y.is_contiguous(memory_format=torch.channels_last)
    x3 = _input(3, torch.float32)
    y3 = median_pool3d(x3.to(memory_format=torch.channels_last_3d), 3, 1, 1, padding_mode="zeros")
    assert torch.equal(y3, median_pool3d(x3, 3, 1, 1, padding_mode="zeros"))
    assert y3.is_contiguous(memory_format=torch.channels_last_3d)
    base = _input(2, torch.float32, seed=5)
    transposed = base.transpose(2, 3)
    assert not transposed.is_contiguous()
    assert torch.equal(median_pool2d(transposed, 3, 2, 1), median_pool2d(transposed.contiguous(), 3, 2, 1))
    sliced = base[:, :, ::2, 1:]
    assert torch.equal(median_pool2d(sliced, 2, 1), median_pool2d(sliced.contiguous(), 2, 1))
    xr = transposed.clone().requires_grad_()
    torch.autograd.backward(median_pool2d(xr.transpose(2, 3).transpose(2, 3), 3).sum())
    assert _grad(xr).sum().item() == median_pool2d(transposed, 3).numel()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(dtype: torch.dtype) -> None:
    for nd, kernel, stride, padding, mode in [
        (2, 3, 1, 1, "reflect"),
        (2, 4, 2, 2, "valid"),
        (1, 5, 1, 2, "zeros"),
    ]:
        x = _input(nd, dtype)
        y = FUNCTIONS[nd](x, kernel, stride, padding, padding_mode=mode)
        assert y.dtype == dtype
        assert torch.equal(y.double(), median_pool_reference(x, kernel, stride, padding, mode))
    xr = _input(2, dtype).requires_grad_()
    torch.autograd.backward(median_pool2d(xr, 3, 1, 1).sum())
    assert _grad(xr).dtype == dtype


@pytest.mark.parametrize("mode", MODES)
def test_indices(mode: str) -> None:
    for nd, kernel, stride, padding in [
        (1, 3, 1, 1),
        (2, 3, 1, 1),
        (2, (2, 3), (2, 1), (1, 1)),
        (3, 3, 2, 1),
    ]:
        x = _distinct(_input(nd).shape, seed=2)
        values, indices = WITH_INDICES[nd](x, kernel, stride, padding, padding_mode=mode)
        assert indices.dtype == torch.int64
        assert torch.equal(values, FUNCTIONS[nd](x, kernel, stride, padding, padding_mode=mode))
        gathered = x.flatten(2).gather(2, indices.flatten(2)).reshape(values.shape)
        if mode != "zeros":
            assert torch.equal(gathered, values)
        else:
            # mismatches only where the median is a padded zero; the index is then in bounds
            differ = gathered != values
            assert (values[differ] == 0).all()
        # gradient of the output sum = how often each cell was picked (tie-free: same as indices)
        xr = x.clone().requires_grad_()
        torch.autograd.backward(FUNCTIONS[nd](xr, kernel, stride, padding, padding_mode=mode).sum())
        counts = (
            torch.zeros_like(x)
            .flatten(2)
            .scatter_add_(2, indices.flatten(2), torch.ones_like(values).flatten(2))
        )
        if mode != "zeros":
            assert torch.equal(_grad(xr).flatten(2), counts)


def test_indices_zeros_rule() -> None:
    # all inputs positive: a corner window of 3x3 with padding 1 has 5 padded zeros, so its median is
    # a padded zero; the index is then the first in-bounds cell of the window
    x = torch.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    values, indices = median_pool2d_with_indices(x, 3, 1, 1, padding_mode="zeros")
    assert values[0, 0, 0, 0].item() == 0.0
    assert indices[0, 0, 0, 0].item() == 0
    assert indices[0, 0, 3, 3].item() == 2 * 4 + 2
    x[0, 0, 0, 1] = 0.0  # now an in-bounds zero exists: the index points at it
    values, indices = median_pool2d_with_indices(x, 3, 1, 1, padding_mode="zeros")
    assert indices[0, 0, 0, 0].item() == 1


def test_max_unpool_roundtrip() -> None:
    x = _distinct((2, 3, 8, 6))
    values, indices = median_pool2d_with_indices(x, 2, 2)
    unpooled = F.max_unpool2d(values, indices, (2, 2), (2, 2), output_size=x.shape[2:])
    assert torch.equal(unpooled.flatten(2).gather(2, indices.flatten(2)).reshape(values.shape), values)
    assert (unpooled != 0).sum().item() == values.numel()
    kept = unpooled != 0
    assert torch.equal(unpooled[kept], x[kept])


def test_module_equals_function() -> None:
    x = _input(2)
    module = MedianPool2d((3, 2), stride=(1, 2), padding=(1, 1), padding_mode="replicate", compiled=False)
    expected = median_pool2d(x, (3, 2), (1, 2), (1, 1), padding_mode="replicate", compiled=False)
    assert torch.equal(module(x), expected)
    text = repr(module)
    assert "kernel_size=(3, 2)" in text and "stride=(1, 2)" in text and "padding=(1, 1)" in text
    assert "padding_mode='replicate'" in text and "compiled=False" in text
    assert MedianPool2d(3).stride == 3
    for nd in (1, 3):
        xi = _input(nd)
        module_nd = MODULES[nd](2, 1, 1, padding_mode="valid")
        assert torch.equal(module_nd(xi), FUNCTIONS[nd](xi, 2, 1, 1, padding_mode="valid"))
        assert "padding_mode='valid'" in module_nd.extra_repr()


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: median_pool2d(torch.zeros(1, 1, 4, 4), 3, padding_mode="wrap"), ValueError, "padding_mode"),
        (lambda: median_pool2d(torch.zeros(1, 1, 4, 4), 3, padding_mode=1), TypeError, "padding_mode"),  # type: ignore[call-overload]
        (lambda: median_pool2d([[1.0]], 3), TypeError, "input"),  # type: ignore[call-overload]
        (lambda: median_pool2d(torch.zeros(1, 1, 4, 4, dtype=torch.complex64), 3), TypeError, "input"),
        (lambda: median_pool2d(torch.zeros(1, 1, 4, 4), 3, 1, 1, 0), ValueError, "dilation"),
        (lambda: median_pool2d(torch.zeros(1, 1, 4, 4), 3, 1, 1, 1.5), TypeError, "dilation"),  # type: ignore[call-overload]
        (lambda: median_pool2d(torch.zeros(1, 1, 4, 4), 3, 1, 1, 3), ValueError, "input"),
        (lambda: median_pool2d(torch.zeros(1, 1, 4, 4), 3, ceil_mode=1), TypeError, "ceil_mode"),  # type: ignore[call-overload]
        (lambda: MedianPool2d(3, ceil_mode="yes"), TypeError, "ceil_mode"),  # type: ignore[arg-type]
        (lambda: median_pool1d(torch.zeros(1, 1, 2), 2, 1, 1, 3, padding_mode="valid"), ValueError, "valid"),
        (
            lambda: median_pool1d(torch.zeros(1, 1, 1), 4, 1, 2, padding_mode="circular"),
            ValueError,
            "circular",
        ),
        (lambda: median_pool2d(torch.zeros(4, 4), 3), ValueError, "input"),
        (lambda: median_pool2d(torch.zeros(1, 1, 4, 4), 0), ValueError, "kernel_size"),
        (lambda: median_pool2d(torch.zeros(1, 1, 4, 4), -2), ValueError, "kernel_size"),
        (lambda: median_pool2d(torch.zeros(1, 1, 4, 4), 2.0), TypeError, "kernel_size"),  # type: ignore[call-overload]
        (lambda: median_pool2d(torch.zeros(1, 1, 4, 4), (2, 2, 2)), ValueError, "kernel_size"),
        (lambda: median_pool2d(torch.zeros(1, 1, 4, 4), 3, 0), ValueError, "stride"),
        (lambda: median_pool2d(torch.zeros(1, 1, 4, 4), 3, 1, 2), ValueError, "padding"),
        (lambda: median_pool2d(torch.zeros(1, 1, 1, 4), 3, 1, 1), ValueError, "padding"),
        (lambda: median_pool2d(torch.zeros(1, 1, 2, 2), 3), ValueError, "input"),
        (lambda: median_pool2d(torch.zeros(1, 1, 4, 4), 3, compiled="yes"), TypeError, "compiled"),  # type: ignore[call-overload]
        (lambda: MedianPool1d(3, padding_mode="mirror"), ValueError, "padding_mode"),
        (lambda: median_pool3d(torch.zeros(1, 1, 4, 4), 3), ValueError, "input"),
    ],
)
def test_bad_arguments(call: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()  # type: ignore[operator]


def test_sorting_networks_sort() -> None:
    # 0-1 principle: a comparator network sorts every input iff it sorts every 0/1 input
    for n in range(2, 14):
        pairs, width = _network._sorting_network(n)
        for bits in range(1 << n):
            wires = [(bits >> i) & 1 for i in range(n)] + [2] * (width - n)
            for a, b in pairs:
                if wires[a] > wires[b]:
                    wires[a], wires[b] = wires[b], wires[a]
            assert wires[:n] == sorted(wires[:n]), n


def test_network_sizes() -> None:
    # 3x3: 3 comparators per sorted column (shared) + 12 min/max per window = the classic 18
    plan = _network._plan((3, 3), (0, 1))
    assert plan.ops_per_stage == (6, 12)
    assert _network._choose_plan((15, 15), (1, 1), (10, 10), (24, 24)) is None


def test_peer_kornia() -> None:
    kornia = pytest.importorskip("kornia")
    x = _input(2, torch.float32)
    if "border_type" not in inspect.signature(kornia.filters.median_blur).parameters:
        # older kornia: zero padding only
        expected = kornia.filters.median_blur(x, (3, 3))
        assert torch.allclose(median_pool2d(x, 3, 1, 1, padding_mode="zeros"), expected)
        return
    for ours, theirs in (("zeros", "constant"), ("reflect", "reflect"), ("replicate", "replicate")):
        expected = kornia.filters.median_blur(x, (3, 3), border_type=theirs)
        assert torch.equal(median_pool2d(x, 3, 1, 1, padding_mode=ours), expected), ours


def test_doctests() -> None:
    attempted = 0
    for module in (median_module, _network, _kernels, _ops, _pool, _api):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, module.__name__
        attempted += result.attempted
    assert attempted > 5


def test_public_api() -> None:
    assert set(median_module.__all__) >= {
        "median_pool1d",
        "median_pool2d",
        "median_pool3d",
        "median_pool1d_with_indices",
        "median_pool2d_with_indices",
        "median_pool3d_with_indices",
        "MedianPool1d",
        "MedianPool2d",
        "MedianPool3d",
    }
    for name in median_module.__all__:
        assert hasattr(median_module, name)


@pytest.mark.parametrize(
    "nd, kernel, stride, padding, mode",
    [(2, (3, 2), 2, (1, 1), "reflect"), (2, 3, 1, 1, "zeros"), (1, 5, 1, 2, "valid")],
)
def test_compiled_matches_eager(nd: int, kernel: Size, stride: Size, padding: Size, mode: str) -> None:
    x = _input(nd, torch.float32, seed=4)
    x.view(-1)[::7] = x.view(-1)[1::7][: x.view(-1)[::7].numel()]  # some ties
    x.view(-1)[5] = float("nan")
    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    ya = FUNCTIONS[nd](xa, kernel, stride, padding, padding_mode=mode, compiled=True)
    yb = FUNCTIONS[nd](xb, kernel, stride, padding, padding_mode=mode)
    assert torch.equal(ya.isnan(), yb.isnan())
    assert torch.equal(ya.nan_to_num(7.0), yb.nan_to_num(7.0))
    g = torch.randn_like(ya)
    torch.autograd.backward(ya, g)
    torch.autograd.backward(yb, g)
    assert torch.allclose(_grad(xa), _grad(xb), atol=1e-6)


KEY_CASES: dict[int, list[tuple[Size, Size, Size, Size]]] = {
    1: [(3, 1, 1, 1), (4, 2, 2, 1)],
    2: [(3, 1, 1, 1), ((3, 2), (2, 1), (1, 1), (1, 2))],
    3: [((2, 3, 3), (1, 2, 1), 1, 1)],
}


def _spy_keys(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records, for every call of the compiled key path, whether it computed the result."""
    used: list[bool] = []
    original = median_kernels._forward_keys

    def spy(x: Tensor, cfg: median_kernels._Config) -> Tensor | None:
        result = original(x, cfg)
        used.append(result is not None)
        return result

    monkeypatch.setattr(median_kernels, "_forward_keys", spy)
    return used


@pytest.mark.slow
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_compiled_key_path_matches_eager_and_reference(nd: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled forward on integer keys (padding written into the key buffer, no padded float copy)
    gives the eager forward's values and the float64 reference's, in every padding mode, with ties,
    infinities, signed zeros and negative values; the backward on its output is the eager one."""
    used = _spy_keys(monkeypatch)
    for mode in ("zeros", "reflect", "replicate", "circular"):
        for kernel, stride, padding, dilation in KEY_CASES[nd]:
            for dtype in (torch.float32, torch.float64):
                x = _input(nd, dtype, seed=21)
                flat = x.view(-1)
                flat[::7] = flat[1::7][: flat[::7].numel()]  # ties
                flat[3], flat[4], flat[9], flat[10] = float("inf"), -float("inf"), 0.0, -0.0
                xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
                args = (kernel, stride, padding, dilation)
                ya = FUNCTIONS[nd](xa, *args, padding_mode=mode, compiled=True)
                yb = FUNCTIONS[nd](xb, *args, padding_mode=mode)
                assert used.pop() is True
                assert torch.equal(ya, yb), (mode, kernel, stride, padding, dilation, dtype)
                expected = median_pool_reference(x.double(), kernel, stride, padding, mode, dilation)
                assert torch.equal(ya.double(), expected)
                g = torch.randn_like(ya)
                torch.autograd.backward(ya, g)
                torch.autograd.backward(yb, g)
                assert torch.equal(_grad(xa), _grad(xb))
    assert not used


@pytest.mark.slow
def test_compiled_key_path_by_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of planes (here 4 + 3 of 7 planes) give the same bits as one chunk; a NaN in the last
    chunk hands the whole input to the float network."""
    used = _spy_keys(monkeypatch)
    mode = "circular"
    x = torch.randn(1, 7, 9, 10, generator=torch.Generator().manual_seed(23))
    whole = median_pool2d(x, 3, (1, 2), 1, padding_mode=mode, compiled=True)
    assert used.pop() is True
    plane = 11 * 12 * x.element_size()
    monkeypatch.setattr(median_kernels, "_KEY_CHUNK_BYTES", 4 * plane)
    y = median_pool2d(x, 3, (1, 2), 1, padding_mode=mode, compiled=True)
    assert used.pop() is True
    assert torch.equal(y, whole)
    assert torch.equal(y, median_pool2d(x, 3, (1, 2), 1, padding_mode=mode))
    late = x.clone()
    late[0, 6, 4, 4] = float("nan")
    y = median_pool2d(late, 3, (1, 2), 1, padding_mode=mode, compiled=True)
    assert used.pop() is False
    assert torch.isnan(y[0, 6, 3:6, 2]).all() and not torch.isnan(y[0, :6]).any()


def test_compiled_key_path_leaves_nan_and_valid_to_the_float_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """A NaN in the input, ``"valid"`` padding, ceil-mode overhang and other dtypes take the float
    network (a NaN's key would not propagate); the results are the eager ones."""
    used = _spy_keys(monkeypatch)
    x = _input(2, torch.float32, seed=22)
    x[0, 1, 6, 7] = float("nan")
    cases: list[tuple[Tensor, dict[str, Any]]] = [
        (x, {"padding_mode": "reflect"}),
        (x.nan_to_num(0.5), {"padding_mode": "valid"}),
        (x.nan_to_num(0.5), {"padding_mode": "zeros", "ceil_mode": True, "stride": 2}),
        (x.nan_to_num(0.5).to(torch.bfloat16), {"padding_mode": "reflect"}),
    ]
    for t, options in cases:
        ya = median_pool2d(t, 3, padding=1, compiled=True, **options)
        yb = median_pool2d(t, 3, padding=1, **options)
        assert used.pop() is False
        assert torch.equal(ya.isnan(), yb.isnan())
        assert torch.equal(ya.nan_to_num(7.0), yb.nan_to_num(7.0))
    assert torch.isnan(median_pool2d(x, 3, 1, 1, compiled=True)[0, 1, 5:8, 6:9]).all()


def test_key_compile_options_pick_a_vector_width_without_remainder(monkeypatch: pytest.MonkeyPatch) -> None:
    """On an AVX-512 CPU the key kernels of an inner loop that AVX-512 vectors do not divide but 256-bit
    vectors do are compiled with 256-bit vectors; every other case keeps inductor's default width."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    options = median_kernels._key_compile_options
    assert options(56, 4) == {"cpp.simdlen": 256}  # 3.5 vectors of 16 int32, 7 of 8
    assert options(12, 8) == {"cpp.simdlen": 256}  # 1.5 vectors of 8 int64, 3 of 4
    assert options(64, 4) == {} and options(16, 8) == {}  # whole AVX-512 vectors
    assert options(57, 4) == {} and options(6, 8) == {}  # a remainder at either width
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert options(56, 4) == {}


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_key_pass_pads_as_f_pad(mode: str) -> None:
    """The key path's first pass (run eagerly here) and its padding copies write the keys of
    :func:`F.pad`'s padded input, in
    1d, 2d and 3d, with padding up to the input size; the key map is its own inverse."""
    for sizes, padding in (((9,), (4,)), ((5, 7), (2, 3)), ((4, 3, 5), (1, 2, 2))):
        x = torch.randn(2, *sizes, dtype=torch.float64)
        x.view(-1)[::5] *= -1
        cfg = median_kernels._Config(
            tuple(2 * p + 1 for p in padding), (1,) * len(sizes), padding, sizes, mode, True,
            (1,) * len(sizes), False,
        )  # fmt: skip
        _, shift, mask = median_kernels._KEY_DTYPES[torch.float64]
        namespace: dict[str, object] = {"torch": torch}
        exec(median_kernels._keys_source(cfg, shift, mask), namespace)
        kp = torch.zeros((2, *(s + 2 * p for s, p in zip(sizes, padding))), dtype=torch.int64) - 7
        namespace["keys"](x.view(torch.int64), kp)  # type: ignore[operator]
        median_kernels._fill_border(kp, cfg)
        pads = [q for p in reversed(padding) for q in (p, p)]
        padded = F.pad(x.unsqueeze(1), pads, mode="constant" if mode == "zeros" else mode).squeeze(1)
        assert torch.equal((kp ^ ((kp >> shift) & mask)).view(torch.float64), padded), (mode, sizes, padding)
        order = torch.argsort(padded.flatten(), stable=True)
        assert torch.equal(torch.argsort(kp.flatten(), stable=True), order)


# ------------------------------------------------------------------ torch.compile / export / ONNX


def _compile_case(nd: int) -> tuple[torch.nn.Module, torch.Tensor]:
    module = {
        1: MedianPool1d(4, 2, 2, padding_mode="valid"),
        2: MedianPool2d(3, 1, 1),
        3: MedianPool3d((2, 3, 3), (1, 2, 1), 1, padding_mode="zeros"),
    }[nd]
    x = _input(nd, torch.float32, seed=6)
    x.view(-1)[::5] = 0.25  # ties
    return module, x


@pytest.mark.slow
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_fullgraph_compile_matches_eager(nd: int) -> None:
    import warnings

    import torch._inductor.compile_fx  # imported first: its own import warns (torch.jit)

    module, x = _compile_case(nd)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(module)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    for train in (True, False):
        module.train(train)
        torch._dynamo.reset()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            compiled = torch.compile(module, fullgraph=True)
            xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
            ya, yb = compiled(xa), module(xb)
            g = torch.randn_like(ya)
            torch.autograd.backward(ya, g)
            torch.autograd.backward(yb, g)
        assert torch.equal(ya, yb)
        assert torch.equal(_grad(xa), _grad(xb))
    torch._dynamo.reset()


@pytest.mark.slow
def test_fullgraph_functional_and_compiled_option() -> None:
    def fn(t: torch.Tensor) -> torch.Tensor:
        values, indices = median_pool2d_with_indices(t, 3, 2, 1, padding_mode="replicate")
        return median_pool2d(t, (2, 3), 1, (1, 1), compiled=True).sum() + values.sum() + indices.sum()

    x = _input(2, torch.float32, seed=7)
    torch._dynamo.reset()
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya = torch.compile(fn, fullgraph=True, backend="aot_eager")(xa)
    yb = fn(xb)
    torch.autograd.backward(ya)
    torch.autograd.backward(yb)
    assert torch.equal(ya, yb) and torch.equal(_grad(xa), _grad(xb))
    torch._dynamo.reset()


def test_export_is_one_op() -> None:
    module = MedianPool2d(3, 2, 1, padding_mode="reflect")
    x = _input(2, torch.float32)
    program = torch.export.export(module, (x,))
    targets = [str(node.target) for node in program.graph.nodes if node.op == "call_function"]
    assert targets.count("torchpool.median_pool.default") == 1
    assert not any("minimum" in t or "maximum" in t for t in targets)
    assert torch.equal(program.module()(x), module(x))


def test_custom_op_checks() -> None:
    # schema, fake (meta) and autograd registrations agree with the real kernels
    x = _distinct((1, 2, 6, 5))
    for args in (
        ([3, 3], [1, 1], [1, 1], "reflect", False, [1, 1], False),
        ([3, 2], [2, 2], [1, 1], "valid", False, [2, 1], True),
    ):
        kernel, stride, padding, mode, _, dilation, ceil_mode = args
        y = median_pool2d(x, kernel, stride, padding, dilation, ceil_mode=ceil_mode, padding_mode=mode)
        flat, y = x.reshape(2, 6, 5), y.reshape(2, *y.shape[2:])
        torch.library.opcheck(torch.ops.torchpool.median_pool, (flat.clone().requires_grad_(), *args))
        g = torch.randn_like(y)
        torch.library.opcheck(torch.ops.torchpool.median_pool_backward, (flat, y, g, *args))
        torch.library.opcheck(torch.ops.torchpool.median_pool_indices, (flat, y, *args))


def test_gradgradcheck_modes() -> None:
    for mode in MODES:
        x = _distinct((1, 1, 5, 4)).requires_grad_()
        assert torch.autograd.gradgradcheck(
            lambda t, m=mode: median_pool2d(t, (3, 2), 1, (1, 1), padding_mode=m), (x,), eps=1e-6, atol=1e-6
        )


@pytest.mark.parametrize("mode", MODES)
def test_onnx_torchscript_exporter(mode: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import io
    import warnings

    x = _input(2, torch.float32, seed=8)
    for module in (
        MedianPool2d((3, 2), (2, 1), (1, 1), padding_mode=mode),
        MedianPool2d(9, 1, 4, padding_mode=mode),
    ):
        if mode == "reflect" and module.kernel_size == 9:
            continue  # padding 4 >= size 7
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=17)  # type: ignore[arg-type]
        session = ort.InferenceSession(buffer.getvalue())
        (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        assert torch.equal(torch.from_numpy(out), module(x))


# ------------------------------------------------------------------ dilation, ceil_mode, circular, integers

OPTION_CASES = [
    # nd, kernel, stride, padding, dilation, ceil_mode
    (1, 3, 2, 1, 1, True),
    (1, 4, 3, 2, 2, True),
    (1, 3, 1, 1, 3, False),
    (1, 2, 2, 0, 1, True),
    (2, 3, 2, 0, 1, True),
    (2, 3, 2, 1, 2, False),
    (2, (2, 3), (3, 2), (1, 1), (2, 1), True),
    (2, 3, 1, 1, (1, 2), True),
    (2, 9, 2, 4, 1, True),  # too large for the network: unfold fallback
    (3, 3, 2, 1, 1, True),
    (3, (2, 3, 2), (1, 2, 2), (1, 1, 0), (2, 1, 2), True),
]
OPTION_MODES = ("reflect", "replicate", "circular", "zeros", "valid")


def _option_input(nd: int, seed: int) -> torch.Tensor:
    shape = {1: (2, 2, 11), 2: (1, 2, 10, 9), 3: (1, 1, 6, 7, 5)}[nd]
    return _distinct(shape, seed=seed)


@pytest.mark.parametrize("mode", OPTION_MODES)
@pytest.mark.parametrize("nd, kernel, stride, padding, dilation, ceil_mode", OPTION_CASES)
def test_options_match_reference(
    nd: int, kernel: Size, stride: Size, padding: Size, dilation: Size, ceil_mode: bool, mode: str
) -> None:
    x = _option_input(nd, seed=9)
    if mode == "reflect" and kernel == 9:
        x = x.repeat(1, 1, 2, 2)  # reflect needs padding < size
    x.view(-1)[::6] = x.view(-1)[3]  # ties
    kwargs = {"ceil_mode": ceil_mode, "padding_mode": mode}
    expected = median_pool_reference(x, kernel, stride, padding, mode, dilation, ceil_mode)
    y = FUNCTIONS[nd](x, kernel, stride, padding, dilation, **kwargs)
    assert torch.equal(y, expected)
    module = MODULES[nd](kernel, stride, padding, dilation, **kwargs)
    assert torch.equal(
        module(x.float()).double(),
        median_pool_reference(x.float(), kernel, stride, padding, mode, dilation, ceil_mode),
    )
    # the output size is max pooling's
    max_pool = getattr(F, f"max_pool{nd}d")
    assert y.shape == max_pool(x, kernel, stride, padding, dilation, ceil_mode=ceil_mode).shape
    # gradient to the selected cell, and indices that point at it
    xr = x.clone().requires_grad_()
    yr = FUNCTIONS[nd](xr, kernel, stride, padding, dilation, **kwargs)
    g = torch.randn_like(yr)
    torch.autograd.backward(yr, g)
    grad = median_pool_reference_grad(x, kernel, stride, padding, mode, g, dilation, ceil_mode)
    assert torch.allclose(_grad(xr), grad, atol=1e-12)
    values, indices = WITH_INDICES[nd](x, kernel, stride, padding, dilation, **kwargs)
    assert torch.equal(values, y)
    gathered = x.flatten(2).gather(2, indices.flatten(2)).reshape(values.shape)
    if mode == "zeros":
        assert torch.equal(gathered[values != 0], values[values != 0])
    else:
        assert torch.equal(gathered, values)


@pytest.mark.parametrize(
    "nd, kernel, stride, padding, dilation, ceil_mode, mode",
    [
        (2, 3, 2, 1, 2, True, "circular"),
        (2, (2, 3), 2, (1, 1), 1, True, "valid"),
        (1, 3, 2, 1, 2, True, "reflect"),
        (3, 2, 2, 1, (1, 2, 1), True, "replicate"),
    ],
)
def test_options_gradcheck(
    nd: int, kernel: Size, stride: Size, padding: Size, dilation: Size, ceil_mode: bool, mode: str
) -> None:
    x = _option_input(nd, seed=10).requires_grad_()

    def fn(t: torch.Tensor) -> torch.Tensor:
        return FUNCTIONS[nd](t, kernel, stride, padding, dilation, ceil_mode=ceil_mode, padding_mode=mode)

    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6)
    assert torch.autograd.gradgradcheck(fn, (x,), eps=1e-6, atol=1e-6)


def test_squeezenet_max_pool_shape() -> None:
    x = torch.rand(1, 96, 109, 109)  # squeezenet1_0 after its first conv (224 input)
    expected = torch.nn.MaxPool2d(3, 2, ceil_mode=True)(x).shape
    assert expected == (1, 96, 54, 54)
    assert MedianPool2d(3, 2, ceil_mode=True)(x).shape == expected
    assert "ceil_mode=True" in repr(MedianPool2d(3, 2, ceil_mode=True))
    for size in range(3, 15):
        for k, s, p, d in [(3, 2, 0, 1), (3, 2, 1, 1), (2, 2, 0, 1), (3, 3, 1, 2), (4, 3, 2, 1)]:
            if d * (k - 1) + 1 > size + 2 * p:
                continue
            t = torch.rand(1, 1, size)
            for ceil_mode in (False, True):
                shape = F.max_pool1d(t, k, s, p, d, ceil_mode=ceil_mode).shape
                assert median_pool1d(t, k, s, p, d, ceil_mode=ceil_mode, padding_mode="zeros").shape == shape


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64])
def test_integer_input_is_exact(dtype: torch.dtype) -> None:
    info = torch.iinfo(dtype)
    generator = torch.Generator().manual_seed(11)
    for nd, kernel, stride, padding, dilation, ceil_mode, mode in [
        (2, 3, 1, 1, 1, False, "reflect"),
        (2, 3, 2, 1, 2, True, "valid"),
        (2, 4, 2, 2, 1, True, "circular"),
        (1, 5, 1, 2, 1, False, "zeros"),
        (3, 2, 1, 1, 1, True, "replicate"),
        (2, 9, 1, 4, 1, False, "zeros"),  # unfold fallback
    ]:
        shape = {1: (2, 3, 12), 2: (1, 2, 10, 9), 3: (1, 1, 5, 6, 5)}[nd]
        x = torch.randint(info.min, info.max, shape, generator=generator, dtype=torch.int64).to(dtype)
        y = FUNCTIONS[nd](x, kernel, stride, padding, dilation, ceil_mode=ceil_mode, padding_mode=mode)
        assert y.dtype == dtype
        if dtype == torch.int64:  # beyond float64's 2^53: compare with torch.median of the windows
            reference = median_pool_reference(x.double(), kernel, stride, padding, mode, dilation, ceil_mode)
            assert torch.allclose(y.double(), reference, rtol=1e-15, atol=0)
            small = x // 2**12  # exact in float64
            y_small = FUNCTIONS[nd](
                small, kernel, stride, padding, dilation, ceil_mode=ceil_mode, padding_mode=mode
            )
            assert torch.equal(
                y_small.double(),
                median_pool_reference(small, kernel, stride, padding, mode, dilation, ceil_mode),
            )
            # every output is one of its window's values, bit for bit
            values, indices = WITH_INDICES[nd](
                x, kernel, stride, padding, dilation, ceil_mode=ceil_mode, padding_mode=mode
            )
            gathered = x.flatten(2).gather(2, indices.flatten(2)).reshape(values.shape)
            assert torch.equal(gathered[values != 0], values[values != 0])
        else:
            expected = median_pool_reference(x, kernel, stride, padding, mode, dilation, ceil_mode)
            assert torch.equal(y.double(), expected)
    x = torch.randint(0, 255, (1, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(
        MedianPool2d(3, 1, 1, compiled=False)(x), median_pool2d(x.float(), 3, 1, 1).to(torch.uint8)
    )


def test_bool_input() -> None:
    x = torch.rand(2, 3, 9, 8, generator=torch.Generator().manual_seed(12)) > 0.5
    for mode in OPTION_MODES:
        y = median_pool2d(x, 3, 2, 1, ceil_mode=True, padding_mode=mode)
        assert y.dtype == torch.bool
        assert torch.equal(y.double(), median_pool_reference(x.double(), 3, 2, 1, mode, 1, True))


@pytest.mark.slow
def test_fullgraph_compile_options() -> None:
    module = MedianPool2d(3, 2, 1, 2, ceil_mode=True, padding_mode="circular")
    x = _option_input(2, seed=13).float()
    torch._dynamo.reset()
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya = torch.compile(module, fullgraph=True, backend="aot_eager")(xa)
    yb = module(xb)
    g = torch.randn_like(ya)
    torch.autograd.backward(ya, g)
    torch.autograd.backward(yb, g)
    assert torch.equal(ya, yb) and torch.equal(_grad(xa), _grad(xb))
    xi = (x * 100).to(torch.int16)
    assert torch.equal(torch.compile(module, fullgraph=True, backend="aot_eager")(xi), module(xi))
    torch._dynamo.reset()


@pytest.mark.parametrize("dilation, ceil_mode", [(2, False), (1, True), (2, True)])
def test_compiled_option_with_dilation_and_ceil(dilation: int, ceil_mode: bool) -> None:
    x = _option_input(2, seed=14).float()
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya = median_pool2d(xa, 3, 2, 1, dilation, ceil_mode=ceil_mode, compiled=True)
    yb = median_pool2d(xb, 3, 2, 1, dilation, ceil_mode=ceil_mode)
    assert torch.equal(ya, yb)
    g = torch.randn_like(ya)
    torch.autograd.backward(ya, g)
    torch.autograd.backward(yb, g)
    assert torch.equal(_grad(xa), _grad(xb))


@pytest.mark.parametrize("dynamo", [False, True])
def test_onnx_options(dynamo: bool) -> None:
    # circular padding once aborted the process in the TorchScript exporter (F.pad circular)
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript" if dynamo else "onnx")
    import io
    import warnings

    x = _input(2, torch.float32, seed=15)
    cases = [
        (MedianPool2d(3, 2, 1, padding_mode="circular"), x),
        (MedianPool2d(3, 2, 1, 2, ceil_mode=True), x),
        (MedianPool2d((2, 3), 2, 1, ceil_mode=True, padding_mode="valid"), (x * 50).to(torch.uint8)),
    ]
    for module, inp in cases if not dynamo else cases[:1]:
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (inp,),
                buffer,  # type: ignore[arg-type]
                dynamo=dynamo,
                opset_version=18 if dynamo else 17,
            )
        session = ort.InferenceSession(buffer.getvalue())
        (out,) = session.run(None, {session.get_inputs()[0].name: inp.numpy()})
        assert torch.equal(torch.from_numpy(out), module(inp))


# ------------------------------------------------------------------ return_indices, positional ceil_mode


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_return_indices_equals_with_indices(nd: int) -> None:
    x = _distinct(_input(nd).shape, seed=16)
    for mode in OPTION_MODES:
        expected = WITH_INDICES[nd](x, 3, 2, 1, 1, True, padding_mode=mode)
        got = FUNCTIONS[nd](x, 3, 2, 1, 1, True, padding_mode=mode, return_indices=True)
        assert isinstance(got, tuple) and len(got) == 2
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
        module_out = MODULES[nd](3, 2, 1, 1, True, padding_mode=mode, return_indices=True)(x)
        assert torch.equal(module_out[0], expected[0]) and torch.equal(module_out[1], expected[1])
        plain = FUNCTIONS[nd](x, 3, 2, 1, 1, True, padding_mode=mode, return_indices=False)
        assert isinstance(plain, Tensor) and torch.equal(plain, expected[0])
    # the values keep their gradient; the indices have none
    xr = x.clone().requires_grad_()
    values, indices = FUNCTIONS[nd](xr, 3, 1, 1, return_indices=True)
    assert values.requires_grad and not indices.requires_grad and indices.dtype == torch.int64
    torch.autograd.backward(values.sum())
    reference = x.clone().requires_grad_()
    torch.autograd.backward(FUNCTIONS[nd](reference, 3, 1, 1).sum())
    assert torch.equal(_grad(xr), _grad(reference))


def test_return_indices_typed_and_max_unpool() -> None:
    x = _distinct((2, 3, 8, 6))
    values, indices = median_pool2d(x, 2, return_indices=True)  # the Literal[True] overload: a tuple
    assert torch.equal(
        F.max_unpool2d(values, indices, (2, 2)), F.max_unpool2d(*median_pool2d_with_indices(x, 2), (2, 2))
    )
    y: Tensor = median_pool2d(x, 2)  # the default overload: a tensor
    assert torch.equal(y, values)
    assert "return_indices=True" in repr(MedianPool2d(2, return_indices=True))


def test_ceil_mode_is_positional_after_dilation() -> None:
    x = _input(2, seed=17)
    expected = median_pool2d(x, 3, 2, 1, 2, ceil_mode=True)
    assert torch.equal(median_pool2d(x, 3, 2, 1, 2, True), expected)
    assert torch.equal(MedianPool2d(3, 2, 1, 2, True)(x), expected)
    assert MedianPool2d(3, 2, 1, 2, True).ceil_mode is True
    values, _ = median_pool2d_with_indices(x, 3, 2, 1, 2, True)
    assert torch.equal(values, expected)
    assert median_pool2d(x, 3, 2, 0, 1, True).shape == F.max_pool2d(x, 3, 2, 0, 1, True).shape


@pytest.mark.parametrize(
    "call",
    [
        lambda: median_pool2d(torch.zeros(1, 1, 4, 4), 3, return_indices=1),  # type: ignore[call-overload]
        lambda: median_pool1d(torch.zeros(1, 1, 4), 3, return_indices="yes"),  # type: ignore[call-overload]
        lambda: MedianPool3d(3, return_indices=None),  # type: ignore[arg-type]
    ],
)
def test_bad_return_indices(call: Callable[[], object]) -> None:
    with pytest.raises(TypeError, match="return_indices"):
        call()


_GENERAL_GRAD_CASES = [
    (1, 5, 2, 2, "zeros", 1),
    (2, 3, 1, 1, "reflect", 1),
    (2, 3, 2, 1, "replicate", 1),
    (2, 4, 1, 0, "valid", 1),
    (2, 3, 1, 1, "circular", 2),
    (3, 3, 1, 1, "reflect", 1),
    (3, 2, 1, 0, "zeros", 1),
]


@pytest.mark.parametrize(("nd", "kernel", "stride", "padding", "mode", "dilation"), _GENERAL_GRAD_CASES)
def test_cpu_backward_equals_the_general_loop_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch, nd: int, kernel: int, stride: int, padding: int, mode: str, dilation: int
) -> None:
    """The CPU eager backward (one ordered ``index_add_``) gives the bits of the per-offset loop
    that other devices run: ties (small integers), NaN windows, gradients from 1e-8 to 1e8."""
    generator = torch.Generator().manual_seed(nd * 100 + kernel)
    x = torch.randint(0, 4, (2, 3, *[9] * nd), generator=generator).double()  # many ties
    x.view(-1)[::17] = float("nan")
    pad_mode = "zeros" if mode == "valid" else mode
    pool = getattr(median_module, f"median_pool{nd}d")

    def gradient() -> Tensor:
        leaf = x.clone().requires_grad_(True)
        y = pool(leaf, kernel, stride, padding, dilation, padding_mode=pad_mode)
        weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(5), dtype=y.dtype)
        weights = weights * torch.logspace(-8, 8, y.numel(), dtype=y.dtype).reshape(y.shape)
        (y.nan_to_num(0.0) * weights).sum().backward()
        assert leaf.grad is not None
        return leaf.grad

    fast = gradient()
    monkeypatch.setattr(_ops, "_grad_scatter", _ops._grad_loop)
    slow = gradient()
    assert fast.abs().sum() > 0
    assert torch.equal(fast.view(torch.int64), slow.view(torch.int64))
