"""The C kernel of BlurPool (``csrc/blur.c``, CPU float32): values and gradients against a float64
reference built from per-axis matrices (Pascal's row and the padding's source cells: no code
shared with the kernel or the PyTorch paths), every mode, kernel 1-7, stride 1-3, odd, even and
the smallest sizes, 1-d to 3-d, layouts, threads, double backward, the operator checks, kornia,
MaxBlurPool, and the fallback without the kernel."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from records.blur import axis_matrix
from torch import Tensor

import torchpool as tp
import torchpool._native as native
import torchpool.ops._blur_native as N

pytestmark = pytest.mark.skipif(
    not N.available(torch.zeros(1)), reason=f"the C kernel is not built: {native.build_error('blur')}"
)

MODES = ("zeros", "reflect", "replicate", "circular")
POOLS: dict[int, Callable[..., Tensor]] = {1: tp.blur_pool1d, 2: tp.blur_pool2d, 3: tp.blur_pool3d}


def _reference(x: Tensor, k: tuple[int, ...], s: tuple[int, ...], mode: str) -> Tensor:
    """The blur of the last ``len(k)`` axes by their matrices (differentiable, float64)."""
    first = x.dim() - len(k)
    for axis, (kk, ss) in enumerate(zip(k, s)):
        dim = first + axis
        x = torch.tensordot(x, axis_matrix(x.shape[dim], kk, ss, mode), dims=([dim], [1])).movedim(-1, dim)
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
    """blur_pool and max_blur_pool on CPU float32 call the kernel (and only there): spies on the
    operators."""
    calls: list[str] = []
    blur, max_blur = N._forward, N._max_forward

    def spy(x: Tensor, k: list[int], s: list[int], mode: str) -> Tensor:
        calls.append(f"blur {mode}")
        y: Tensor = blur(x, k, s, mode)
        return y

    def max_spy(x: Tensor, m: list[int], k: list[int], s: list[int], mode: str) -> Tensor:
        calls.append(f"max_blur {mode}")
        y: Tensor = max_blur(x, m, k, s, mode)
        return y

    monkeypatch.setattr(N, "_forward", spy)
    monkeypatch.setattr(N, "_max_forward", max_spy)
    tp.blur_pool2d(torch.randn(1, 2, 8, 8), padding_mode="circular")
    tp.max_blur_pool2d(torch.randn(1, 2, 8, 8))
    for dtype in (torch.float64, torch.bfloat16):
        tp.blur_pool2d(torch.randn(1, 2, 8, 8, dtype=dtype))
        tp.max_blur_pool2d(torch.randn(1, 2, 8, 8, dtype=dtype))
    assert calls == ["blur circular", "max_blur reflect"]


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


def test_empty_batch() -> None:
    x = torch.randn(0, 3, 8, 8, requires_grad=True)
    for y in (tp.blur_pool2d(x), tp.max_blur_pool2d(x)):
        assert y.shape[:2] == (0, 3)
        (grad,) = torch.autograd.grad(y.sum(), x)
        assert grad.shape == x.shape


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("k", range(1, 8))
def test_kornia_within_float32_rounding(k: int, stride: int) -> None:
    """kornia's zero-padded depthwise convolution sums in another order: the same values within
    float32 rounding (not bit for bit), and the same gradients."""
    kornia = pytest.importorskip("kornia")
    if k % 2 == 0 and tuple(int(v) for v in kornia.__version__.split(".")[:2]) < (0, 9):
        pytest.skip("kornia before 0.9 pads even kernels (k - 1) // 2 on both sides: other output sizes")
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
    for k, stride, m in [(3, 2, 2), (5, 2, 3), (7, 3, 2)]:
        ours = tp.max_blur_pool2d(x, k, stride, m, padding_mode="zeros")
        theirs = kornia.filters.max_blur_pool2d(x, k, stride, m)
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
        upstream = torch.randn(ours.shape)
        grads = [torch.autograd.grad(y, x, upstream)[0] for y in (ours, theirs)]
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


def _max_reference(
    x: Tensor, m: tuple[int, ...], k: tuple[int, ...], s: tuple[int, ...], mode: str
) -> Tensor:
    """PyTorch's float64 dense max pool (its choice among ties and NaN), then the reference blur."""
    dense = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[len(m)](x, m, 1)
    return _reference(dense, k, s, mode)


def _check_max(x: Tensor, m: tuple[int, ...], k: tuple[int, ...], s: tuple[int, ...], mode: str) -> None:
    leaf = x.clone().requires_grad_(True)
    fn = {1: tp.max_blur_pool1d, 2: tp.max_blur_pool2d, 3: tp.max_blur_pool3d}[len(m)]
    y = fn(leaf, k, s, m, padding_mode=mode)
    x64 = x.double().requires_grad_(True)
    expected = _max_reference(x64, m, k, s, mode)
    # the matrices' zeros would spread a NaN over a whole axis: NaN where a window holds one
    dense = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[len(m)](x.double(), m, 1)
    values = _reference(dense.nan_to_num(0.0), k, s, mode)
    values[_reference(dense.isnan().double(), k, s, mode) > 0] = float("nan")
    torch.testing.assert_close(y.double(), values, rtol=1e-6, atol=1e-6, equal_nan=True)
    upstream = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (grad,) = torch.autograd.grad(y, leaf, upstream.float())
    (expected_grad,) = torch.autograd.grad(expected, x64, upstream)
    torch.testing.assert_close(grad.double(), expected_grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_max_blur_2d(m: int, mode: str) -> None:
    """The fused dense max and blur: values and gradients of PyTorch's float64 max pool and the
    reference blur, on small integers (many ties: the first largest cell takes the gradient, as
    PyTorch's) and with NaN (the window's last NaN), rows shorter and longer than a vector block."""
    g = torch.Generator().manual_seed(m)
    for k, stride in [(3, 2), (1, 1), (4, 3), (7, 2), (2, 1)]:
        small = _smallest(k, mode) + m - 1
        for h, w in [(9, 40), (small, 21), (small + 1, small), (12, 17)]:
            x = torch.randint(-3, 4, (2, 3, h, w), generator=g).float()
            _check_max(x, (m, m), (k, k), (stride, stride), mode)
            x[0, 0, h // 2, w // 3] = x[1, 2, 0, w - 1] = x[1, 2, 0, w - 2] = float("nan")
            _check_max(x, (m, m), (k, k), (stride, stride), mode)


@pytest.mark.parametrize("mode", MODES)
def test_max_blur_1d_3d_and_mixed_windows(mode: str) -> None:
    g = torch.Generator().manual_seed(5)
    for size in (40, 9):
        _check_max(torch.randint(-3, 4, (2, 3, size), generator=g).float(), (2,), (3,), (2,), mode)
        _check_max(torch.randn(2, 3, size, generator=g), (3,), (5,), (1,), mode)
    _check_max(
        torch.randint(-3, 4, (2, 2, 6, 7, 20), generator=g).float(), (2, 2, 2), (3, 3, 3), (2, 2, 2), mode
    )
    _check_max(torch.randn(1, 2, 5, 9, 33, generator=g), (2, 3, 1), (3, 2, 5), (1, 2, 3), mode)
    _check_max(torch.randn(2, 3, 11, 37, generator=g), (1, 3), (5, 3), (2, 1), mode)


@pytest.mark.parametrize("mode", MODES)
def test_max_blur_layouts(mode: str) -> None:
    """The layout kept (channels-last in, channels-last out), the same values; batch-less input."""
    x = torch.randn(2, 3, 12, 21, generator=torch.Generator().manual_seed(10))
    y = tp.max_blur_pool2d(x, padding_mode=mode)
    assert y.is_contiguous()
    last = tp.max_blur_pool2d(x.contiguous(memory_format=torch.channels_last), padding_mode=mode)
    assert last.is_contiguous(memory_format=torch.channels_last) and torch.equal(last, y)
    assert torch.equal(tp.max_blur_pool2d(x[1], padding_mode=mode), y[1])
    _check_max(x.contiguous(memory_format=torch.channels_last), (2, 2), (3, 3), (2, 2), mode)


def test_max_blur_threads_give_the_same_bits(one_thread: None) -> None:
    x = torch.randint(-3, 4, (3, 5, 31, 45)).float().requires_grad_(True)
    results = []
    for threads in (1, 2, 3):
        torch.set_num_threads(threads)
        y = tp.max_blur_pool2d(x, 5, 2, 3)
        (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
        results.append((y, grad))
    for y, grad in results[1:]:
        assert torch.equal(y, results[0][0]) and torch.equal(grad, results[0][1])


def test_max_blur_double_backward() -> None:
    """Under double backward the gradient is PyTorch's max pool's and the blur operator's."""
    x = torch.randn(2, 3, 9, 20, requires_grad=True)
    y = tp.max_blur_pool2d(x, 3, 2, 2)
    upstream = torch.randn(y.shape, requires_grad=True)
    (grad,) = torch.autograd.grad(y, x, upstream, create_graph=True)
    weight = torch.randn(grad.shape)
    (second,) = torch.autograd.grad((grad * weight).sum(), upstream)
    u64 = upstream.detach().double().requires_grad_(True)
    x64 = x.detach().double().requires_grad_(True)
    reference = _max_reference(x64, (2, 2), (3, 3), (2, 2), "reflect")
    (grad64,) = torch.autograd.grad(reference, x64, u64, create_graph=True)
    (second64,) = torch.autograd.grad((grad64 * weight.double()).sum(), u64)
    torch.testing.assert_close(grad.double(), grad64.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(second.double(), second64, rtol=1e-5, atol=1e-5)


def test_max_blur_operators_pass_opcheck() -> None:
    x = torch.randn(2, 3, 8, 19, requires_grad=True)
    torch.library.opcheck(N._max_forward, (x, [2, 2], [3, 3], [2, 2], "reflect"))
    torch.library.opcheck(N._max_forward, (x.detach()[0], [3], [5], [3], "circular"))
    grad = torch.randn(2, 3, 4, 9)
    torch.library.opcheck(N._max_backward, (x.detach(), grad, [2, 2], [3, 3], [2, 2], "zeros"))


@pytest.mark.parametrize(("variable", "value"), [("CC", "no-such-compiler-xyz"), ("TORCHPOOL_NATIVE", "0")])
def test_without_the_kernel_the_pytorch_path_answers(
    fresh_loader: None, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert native.load("blur") is None and not N.available(torch.zeros(1))
    for mode in MODES:
        _check(torch.randn(2, 3, 9, 12), (3, 3), (2, 2), mode)
        _check(torch.randn(2, 3, 9, 12), (4, 4), (2, 2), mode)
        _check_max(torch.randn(2, 3, 9, 12), (2, 2), (3, 3), (2, 2), mode)
