"""The C kernel of BlurPool (``csrc/blur.c``, CPU float32): values and gradients against a float64
reference built from per-axis matrices (Pascal's row and the padding's source cells: no code
shared with the kernel or the PyTorch paths), every mode, kernel 1-7, stride 1-3, odd, even and
the smallest sizes, 1-d to 3-d, layouts, threads, double backward, the operator checks, kornia,
MaxBlurPool, and the fallback without the kernel."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator

import pytest
import torch
from records.blur import source_index
from torch import Tensor

import torchpool as tp
import torchpool._native as native
import torchpool.ops._blur_native as N

pytestmark = pytest.mark.skipif(
    not N.available(torch.zeros(1)), reason=f"the C kernel is not built: {native.build_error('blur')}"
)

MODES = ("zeros", "reflect", "replicate", "circular")
POOLS: dict[int, Callable[..., Tensor]] = {1: tp.blur_pool1d, 2: tp.blur_pool2d, 3: tp.blur_pool3d}


def _axis_matrix(size: int, k: int, stride: int, mode: str) -> Tensor:
    """One axis's blur as a dense float64 ``(outputs, size)`` matrix."""
    taps = [math.comb(k - 1, t) / 2 ** (k - 1) for t in range(k)]
    outputs = -(-size // stride)
    matrix = torch.zeros(outputs, size, dtype=torch.float64)
    for o in range(outputs):
        for t in range(k):
            i = source_index(o * stride - (k - 1) // 2 + t, size, mode)
            if i is not None:
                matrix[o, i] += taps[t]
    return matrix


def _reference(x: Tensor, k: tuple[int, ...], s: tuple[int, ...], mode: str) -> Tensor:
    """The blur of the last ``len(k)`` axes by their matrices (differentiable, float64)."""
    first = x.dim() - len(k)
    for axis, (kk, ss) in enumerate(zip(k, s)):
        dim = first + axis
        x = torch.tensordot(x, _axis_matrix(x.shape[dim], kk, ss, mode), dims=([dim], [1])).movedim(-1, dim)
    return x


def _smallest(k: int, mode: str) -> int:
    """The smallest size the mode allows with ``k`` taps."""
    return {"reflect": k // 2 + 1, "circular": max(1, k // 2)}.get(mode, 1)


def _check(x: Tensor, k: tuple[int, ...], s: tuple[int, ...], mode: str, seed: int = 0) -> None:
    """Values (float32 rounding of a float64 sum) and the input gradient against the reference."""
    leaf = x.clone().requires_grad_(True)
    y = POOLS[len(k)](leaf, k, s, padding_mode=mode)
    x64 = x.double().requires_grad_(True)
    expected = _reference(x64, k, s, mode)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double(), expected.detach(), rtol=1e-6, atol=1e-6)
    upstream = torch.randn(expected.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    (grad,) = torch.autograd.grad(y, leaf, upstream.float())
    (expected_grad,) = torch.autograd.grad(expected, x64, upstream)
    torch.testing.assert_close(grad.double(), expected_grad, rtol=1e-5, atol=1e-5)


def test_kernel_builds_where_a_compiler_exists() -> None:
    assert native.load("blur") is not None, native.build_error("blur")


def test_the_eager_float32_path_is_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """blur_pool on CPU float32 calls the kernel (and only there): a spy on the operator."""
    calls: list[str] = []
    real = N._forward

    def spy(x: Tensor, k: list[int], s: list[int], mode: str) -> Tensor:
        calls.append(mode)
        y: Tensor = real(x, k, s, mode)
        return y

    monkeypatch.setattr(N, "_forward", spy)
    tp.blur_pool2d(torch.randn(1, 2, 8, 8), padding_mode="circular")
    tp.max_blur_pool2d(torch.randn(1, 2, 8, 8))
    tp.blur_pool2d(torch.randn(1, 2, 8, 8, dtype=torch.float64))
    tp.blur_pool2d(torch.randn(1, 2, 8, 8, dtype=torch.bfloat16))
    assert calls == ["circular", "reflect"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k", range(1, 8))
def test_2d_every_kernel_stride_and_size(k: int, mode: str) -> None:
    """Odd and even sizes, a row of more than one vector block (40: 20 and 14 outputs), and the
    smallest size the mode allows, on either axis."""
    g = torch.Generator().manual_seed(k)
    small = _smallest(k, mode)
    shapes = [(8, 9), (9, 40), (small, 9), (8, small), (small, small), (small + 1, 37)]
    for stride, (h, w) in itertools.product((1, 2, 3), shapes):
        _check(torch.randn(2, 3, h, w, generator=g), (k, k), (stride, stride), mode, seed=stride)


@pytest.mark.parametrize("mode", MODES)
def test_1d_and_3d(mode: str) -> None:
    g = torch.Generator().manual_seed(1)
    for k, stride in [(1, 2), (2, 2), (3, 1), (4, 3), (5, 2), (6, 1), (7, 3)]:
        small = _smallest(k, mode)
        for size in (small, small + 1, 17, 50):
            _check(torch.randn(2, 3, size, generator=g), (k,), (stride,), mode)
        for sizes in [(small,) * 3, (small + 1, 6, 19), (5, small, 8)]:
            _check(torch.randn(2, 2, *sizes, generator=g), (k,) * 3, (stride,) * 3, mode)


def test_mixed_kernels_and_strides_per_axis() -> None:
    g = torch.Generator().manual_seed(2)
    for mode in MODES:
        _check(torch.randn(2, 3, 11, 35, generator=g), (5, 2), (1, 3), mode)
        _check(torch.randn(2, 3, 7, 35, generator=g), (1, 7), (2, 4), mode)
        _check(torch.randn(1, 2, 6, 9, 33, generator=g), (3, 4, 5), (2, 1, 2), mode)


def test_large_strides_and_a_wide_row() -> None:
    g = torch.Generator().manual_seed(3)
    for mode in MODES:
        _check(torch.randn(1, 2, 9, 300, generator=g), (3, 3), (2, 2), mode)
        _check(torch.randn(1, 2, 9, 100, generator=g), (7, 7), (5, 9), mode)


def test_special_values_stay_in_their_windows() -> None:
    """inf and NaN reach exactly the outputs whose window holds them (zero padding)."""
    x = torch.zeros(1, 1, 9, 40)
    x[0, 0, 4, 20] = float("nan")
    y = tp.blur_pool2d(x, 3, 2, padding_mode="zeros")
    nan = y.isnan()
    assert nan[0, 0, 2, 10] and nan.sum() == 1
    x[0, 0, 4, 20] = float("inf")
    y = tp.blur_pool2d(x, 3, 1, padding_mode="zeros")
    assert (y[0, 0, 3:6, 19:22] == float("inf")).all() and y.isinf().sum() == 9


def test_batchless_and_layouts() -> None:
    x = torch.randn(2, 4, 13, 22)
    y = tp.blur_pool2d(x)
    assert torch.equal(tp.blur_pool2d(x[1]), y[1])
    last = tp.blur_pool2d(x.contiguous(memory_format=torch.channels_last))
    assert last.is_contiguous(memory_format=torch.channels_last) and torch.equal(last, y)
    strided = tp.blur_pool2d(x.transpose(2, 3).contiguous().transpose(2, 3))
    assert torch.equal(strided, y)
    x3 = torch.randn(2, 3, 5, 6, 7)
    last3 = tp.blur_pool3d(x3.contiguous(memory_format=torch.channels_last_3d))
    assert last3.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(last3, tp.blur_pool3d(x3))


def test_channels_last_gradient() -> None:
    x = torch.randn(2, 4, 13, 22).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    y = tp.blur_pool2d(x, 5, 2, padding_mode="replicate")
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    x64 = x.detach().double().requires_grad_(True)
    expected = _reference(x64, (5, 5), (2, 2), "replicate")
    (grad64,) = torch.autograd.grad(expected, x64, torch.ones_like(expected))
    torch.testing.assert_close(grad.double(), grad64, rtol=1e-5, atol=1e-5)


@pytest.fixture
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_threads_give_the_same_bits(one_thread: None) -> None:
    x = torch.randn(3, 5, 31, 45).requires_grad_(True)
    results = []
    for threads in (1, 2, 3):
        torch.set_num_threads(threads)
        y = tp.blur_pool2d(x, 5, 2)
        (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
        results.append((y, grad))
    for y, grad in results[1:]:
        assert torch.equal(y, results[0][0]) and torch.equal(grad, results[0][1])


@pytest.mark.parametrize("mode", MODES)
def test_double_backward(mode: str) -> None:
    """The gradient's gradient (the blur again: the operator is linear) against float64."""
    x = torch.randn(2, 3, 9, 20, requires_grad=True)
    y = tp.blur_pool2d(x, 3, 2, padding_mode=mode)
    upstream = torch.randn(y.shape, requires_grad=True)
    (grad,) = torch.autograd.grad(y, x, upstream, create_graph=True)
    weight = torch.randn(grad.shape)
    (second,) = torch.autograd.grad((grad * weight).sum(), upstream)
    u64 = upstream.detach().double().requires_grad_(True)
    x64 = x.detach().double().requires_grad_(True)
    (grad64,) = torch.autograd.grad(_reference(x64, (3, 3), (2, 2), mode), x64, u64, create_graph=True)
    (second64,) = torch.autograd.grad((grad64 * weight.double()).sum(), u64)
    torch.testing.assert_close(grad.double(), grad64.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(second.double(), second64, rtol=1e-5, atol=1e-5)


def test_operators_pass_opcheck() -> None:
    x = torch.randn(2, 3, 7, 19, requires_grad=True)
    torch.library.opcheck(N._forward, (x, [3, 3], [2, 2], "reflect"))
    torch.library.opcheck(N._forward, (x.detach()[0], [5], [3], "circular"))
    grad = torch.randn(2, 3, 4, 10, requires_grad=True)
    torch.library.opcheck(N._backward, (grad, [7, 19], [3, 3], [2, 2], "replicate"))


def test_empty_and_batchless() -> None:
    x = torch.randn(0, 3, 8, 8, requires_grad=True)
    y = tp.blur_pool2d(x)
    assert y.shape == (0, 3, 4, 4)
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert grad.shape == x.shape


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("k", range(1, 8))
def test_kornia_within_float32_rounding(k: int, stride: int) -> None:
    """kornia's zero-padded depthwise convolution sums in another order: the same values within
    float32 rounding (not bit for bit), and the same gradients."""
    kornia = pytest.importorskip("kornia")
    x = torch.randn(2, 8, 15, 38, generator=torch.Generator().manual_seed(k), requires_grad=True)
    ours = tp.blur_pool2d(x, k, stride, padding_mode="zeros")
    theirs = kornia.filters.blur_pool2d(x, k, stride)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(
        tp.BlurPool2d(k, stride, padding_mode="zeros")(x), theirs, rtol=1e-6, atol=1e-6
    )
    upstream = torch.randn(ours.shape)
    grads = [torch.autograd.grad(y, x, upstream)[0] for y in (ours, theirs)]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


def test_kornia_max_blur_within_float32_rounding() -> None:
    kornia = pytest.importorskip("kornia")
    x = torch.randn(2, 8, 15, 38, generator=torch.Generator().manual_seed(9), requires_grad=True)
    for k, stride, m in [(3, 2, 2), (5, 2, 3), (4, 3, 2)]:
        ours = tp.max_blur_pool2d(x, k, stride, m, padding_mode="zeros")
        theirs = kornia.filters.max_blur_pool2d(x, k, stride, m)
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
        upstream = torch.randn(ours.shape)
        grads = [torch.autograd.grad(y, x, upstream)[0] for y in (ours, theirs)]
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_max_blur_equals_max_then_blur(mode: str) -> None:
    """MaxBlurPool's blur step runs on the kernel too (the dense max is PyTorch's): values and
    gradients of the float64 dense max followed by the reference blur; the layout kept."""
    x = torch.randn(2, 3, 12, 21, generator=torch.Generator().manual_seed(10))
    for t in (x, x.contiguous(memory_format=torch.channels_last)):
        leaf = t.clone().requires_grad_(True)
        y = tp.max_blur_pool2d(leaf, 3, 2, 2, padding_mode=mode)
        assert y.is_contiguous(
            memory_format=torch.contiguous_format if t.is_contiguous() else torch.channels_last
        )
        x64 = t.double().requires_grad_(True)
        expected = _reference(torch.nn.functional.max_pool2d(x64, 2, 1), (3, 3), (2, 2), mode)
        torch.testing.assert_close(y.double(), expected.detach(), rtol=1e-6, atol=1e-6)
        (grad,) = torch.autograd.grad(y, leaf, torch.ones_like(y))
        (grad64,) = torch.autograd.grad(expected, x64, torch.ones_like(expected))
        torch.testing.assert_close(grad.double(), grad64, rtol=1e-5, atol=1e-5)


@pytest.fixture
def fresh_loader(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Iterator[None]:
    monkeypatch.setenv("TORCHPOOL_CACHE_DIR", str(tmp_path))
    native.load.cache_clear()
    yield
    native.load.cache_clear()


@pytest.mark.parametrize(("variable", "value"), [("CC", "no-such-compiler-xyz"), ("TORCHPOOL_NATIVE", "0")])
def test_without_the_kernel_the_pytorch_path_answers(
    fresh_loader: None, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert native.load("blur") is None and not N.available(torch.zeros(1))
    for mode in MODES:
        _check(torch.randn(2, 3, 9, 12), (3, 3), (2, 2), mode)
        _check(torch.randn(2, 3, 9, 12), (4, 4), (2, 2), mode)
