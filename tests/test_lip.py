"""LIP beyond the generic walks: constant logit = avg_pool, gradients of x and logit, overflow, the module."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from records.lip import lip_loops

import torchpool as tp
import torchpool.ops._soft_native as N
import torchpool.ops.soft as S


@pytest.fixture(autouse=True)
def _pytorch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pure-PyTorch paths (float64 and machines without a C compiler take them); the C
    kernel's tests are in test_soft_native.py."""
    monkeypatch.setattr(N, "_library", lambda: None)


def _inputs(seed: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 7, 6, generator=g, dtype=dtype), torch.randn(
        2, 3, 7, 6, generator=g, dtype=dtype
    )


@pytest.mark.parametrize("value", [0.0, 5.0, -300.0, 1e4])
def test_constant_logit_is_avg_pool(value: float) -> None:
    x, _ = _inputs(0, torch.float32)
    y = tp.lip_pool2d(x, torch.full_like(x, value))
    torch.testing.assert_close(y, F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), rtol=1e-6, atol=1e-6)


def test_fresh_module_is_avg_pool() -> None:
    x, _ = _inputs(1, torch.float32)
    y = tp.LIPPool2d(3)(x)
    torch.testing.assert_close(y, F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), rtol=1e-6, atol=1e-6)


def test_gradcheck_x_and_logit() -> None:
    x, logit = _inputs(2)
    x.requires_grad_()
    logit.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: tp.lip_pool2d(a, b), (x, logit))
    assert torch.autograd.gradcheck(lambda a, b: tp.lip_pool2d(a, b, 2, 2, 0), (x, logit))
    one = logit[:, :1].detach().clone().requires_grad_()  # a logit shared by the channels
    assert torch.autograd.gradcheck(lambda a, b: tp.lip_pool2d(a, b), (x, one))


def test_gradcheck_learned_module() -> None:
    pool = tp.LIPPool2d(3).double()
    with torch.no_grad():
        pool.get_parameter("logit.conv.weight").normal_(0.0, 0.3, generator=torch.Generator().manual_seed(3))
    x, _ = _inputs(4)
    x.requires_grad_()
    assert torch.autograd.gradcheck(pool, (x,))


def test_no_overflow() -> None:
    x, logit = _inputs(5, torch.float32)
    y = tp.lip_pool2d(x, 1e4 * logit)
    assert bool(y.isfinite().all())
    torch.testing.assert_close(y.double(), lip_loops(x, 1e4 * logit.double(), 3, 2, 1), rtol=1e-6, atol=1e-6)
    naive = F.avg_pool2d(x * (1e4 * logit).exp(), 3, 2, 1) / F.avg_pool2d((1e4 * logit).exp(), 3, 2, 1)
    assert not bool(naive.isfinite().all())  # the paper's formula overflows there
    x16, l16 = x.half(), (80 * logit.clamp(-1, 1)).half()
    y16 = tp.lip_pool2d(x16, l16)
    assert y16.dtype == torch.float16 and bool(y16.isfinite().all())
    torch.testing.assert_close(y16.double(), lip_loops(x16, l16.double(), 3, 2, 1), rtol=1e-3, atol=2e-3)


def test_underflowing_windows_are_recomputed() -> None:
    """Windows whose logits all lie far below their plane's max (0 / 0 with a per-plane shift)."""
    x, logit = _inputs(6, torch.float32)
    logit[:, :, 0, 0] = 1000.0
    y = tp.lip_pool2d(x, logit)
    assert bool(y.isfinite().all())
    torch.testing.assert_close(y.double(), lip_loops(x, logit.double(), 3, 2, 1), rtol=1e-5, atol=1e-5)
    x.requires_grad_()
    (grad,) = torch.autograd.grad(tp.lip_pool2d(x, logit).sum(), x)
    assert bool(grad.isfinite().all())


def test_module_layout_and_errors() -> None:
    pool = tp.LIPPool2d(4)
    assert set(pool.state_dict()) == {"logit.conv.weight", "logit.norm.weight", "logit.norm.bias"}
    assert pool.get_parameter("logit.conv.weight").shape == (4, 4, 3, 3) and not bool(
        pool.get_parameter("logit.conv.weight").any()
    )
    assert "kernel_size=3, stride=2, padding=1, channels=4" in repr(pool)
    with pytest.raises(ValueError, match="channels"):
        pool(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="channels"):
        tp.LIPPool2d(0)
    with pytest.raises(ValueError, match="logit"):
        tp.lip_pool2d(torch.rand(1, 2, 6, 6), torch.rand(1, 2, 6, 5))
    with pytest.raises(TypeError, match="logit"):
        tp.lip_pool2d(torch.rand(1, 2, 6, 6), torch.ones(1, 2, 6, 6, dtype=torch.long))


def test_batchless_and_one_by_one() -> None:
    pool = tp.LIPPool2d(2)
    with torch.no_grad():
        pool.get_parameter("logit.conv.weight").normal_(generator=torch.Generator().manual_seed(8))
    x = torch.rand(2, 2, 6, 6)
    torch.testing.assert_close(pool(x[0]), pool(x)[0])
    cell = torch.rand(2, 2, 1, 1)
    torch.testing.assert_close(pool(cell), cell)


def _lip_unfold64(x: torch.Tensor, logit: torch.Tensor, k: int, s: int, p: int) -> torch.Tensor:
    """Differentiable float64 LIP: each window's softmax of the logit (padding: -inf, no weight)
    times its cells of ``x``, over unfolded windows."""
    pads = (p, p, p, p)
    xs = F.pad(x.double(), pads).unfold(2, k, s).unfold(3, k, s).flatten(-2)
    ls = F.pad(logit.double().expand_as(x), pads, value=-math.inf).unfold(2, k, s).unfold(3, k, s).flatten(-2)
    return (torch.softmax(ls, -1) * xs).sum(-1)


@pytest.mark.parametrize("window", [(3, 2, 1), (2, 2, 0), (3, 1, 0)])
@pytest.mark.parametrize("logit_grad", [True, False])
def test_chunks_and_gradients_match_float64(
    monkeypatch: pytest.MonkeyPatch, window: tuple[int, int, int], logit_grad: bool
) -> None:
    """Values and gradients (of ``x`` alone: its own one-pass backward; of both) against a float64
    reference, with one chunk and with one batch item per chunk; also a logit shared by the channels."""
    k, s, p = window
    g = torch.Generator().manual_seed(10)
    for channels in (3, 1):
        x = (torch.randn(3, 3, 9, 8, generator=g) * 2).requires_grad_()
        logit = (torch.randn(3, channels, 9, 8, generator=g) * 4).requires_grad_(logit_grad)
        inputs = (x, logit) if logit_grad else (x,)
        x64, l64 = (t.detach().double().requires_grad_() for t in (x, logit))
        expected = _lip_unfold64(x64, l64, k, s, p)
        upstream = torch.randn(expected.shape, generator=g, dtype=torch.float64)
        grads64 = torch.autograd.grad(expected, (x64, l64) if logit_grad else (x64,), upstream)
        for chunk in (S._CHUNK, 1):
            monkeypatch.setattr(S, "_CHUNK", chunk)
            y = tp.lip_pool2d(x, logit, k, s, p)
            grads = torch.autograd.grad(y, inputs, upstream.float())
            torch.testing.assert_close(y.double(), expected, rtol=1e-5, atol=1e-5)
            for got, want in zip(grads, grads64):
                torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_gradients_at_huge_logits() -> None:
    """Logits up to 1e4 (float32): finite gradients of ``x`` and the logit equal to the float64 reference."""
    x, logit = _inputs(11, torch.float32)
    x.requires_grad_()
    big = (1e4 * logit).requires_grad_()
    y = tp.lip_pool2d(x, big)
    upstream = torch.randn(y.shape, generator=torch.Generator().manual_seed(12))
    grads = torch.autograd.grad(y, (x, big), upstream)
    x64, l64 = x.detach().double().requires_grad_(), big.detach().double().requires_grad_()
    expected = _lip_unfold64(x64, l64, 3, 2, 1)
    grads64 = torch.autograd.grad(expected, (x64, l64), upstream.double())
    torch.testing.assert_close(y.double(), expected, rtol=1e-6, atol=1e-6)
    for got, want in zip(grads, grads64):
        assert bool(got.isfinite().all())
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
