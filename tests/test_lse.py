"""LSE pooling beyond the generic walks: both limits, no overflow, small r, timm's LsePlus2d.

The timm comparisons need timm (>= 1.0.20 has ``LsePlus2d`` / ``LsePlus1d`` in ``timm.layers``):
CI runs them in the zoo environment.
"""

from __future__ import annotations

import math

import pytest
import torch
from records.lse import lse_reference

import torchpool as tp
import torchpool.ops.lse as L


def _x(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("r", [1e4, 1e3, 100.0])
def test_tends_to_the_max_as_r_grows(r: float, dtype: torch.dtype) -> None:
    """``max - log(n) / r <= lse <= max`` (one cell has weight at least 1/n): the gap shrinks as 1/r."""
    x = _x(2, 3, 7, 7, dtype=dtype)
    top = x.double().amax(dim=(2, 3))
    y = tp.lse_pool(x, r).double()
    slack = 1e-12 if dtype == torch.float64 else 1e-6
    assert bool((y <= top + slack).all())
    assert bool((y >= top - math.log(49) / r - slack).all())
    torch.testing.assert_close(y, lse_reference(x, r), rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("r", [1e-2, 1e-3, 1e-4, 1e-6])
def test_tends_to_the_mean_as_r_shrinks(r: float, dtype: torch.dtype) -> None:
    """``lse = mean + (r/2) var + O(r^2)``, held to the second term in float64 and to eps in float32."""
    x = _x(2, 3, 7, 7, seed=1, dtype=dtype)
    flat = x.double().flatten(2)
    mean, var = flat.mean(2), flat.var(2, unbiased=False)
    y = tp.lse_pool(x, r).double()
    third = (flat - mean[..., None]).abs().pow(3).amax(2)
    if dtype == torch.float64:
        assert bool(((y - mean - r / 2 * var).abs() <= r * r * third + 1e-14).all())
    else:  # float32: the mean to a few ulp, plus the second term
        assert bool(((y - mean - r / 2 * var).abs() <= 1e-6 + r * r * third).all())
    # the textbook float32 formula loses this: exp(r (x - max)) rounds to ~1 and log to ~0
    if dtype == torch.float32 and r <= 1e-4:
        xf = x.float()
        top = xf.amax(dim=(2, 3), keepdim=True)
        naive = (top + torch.log(torch.exp(r * (xf - top)).mean(dim=(2, 3), keepdim=True)) / r).flatten(1)
        assert float((naive.double() - mean).abs().max()) > 1e-4  # 100 times the bound held above


@pytest.mark.parametrize("scale", [1e4, 1e30, -1e30])
def test_no_overflow_at_large_magnitudes(scale: float) -> None:
    x = _x(2, 3, 5, 6, seed=2, dtype=torch.float32) * scale
    y = tp.lse_pool(x, 10.0)
    assert bool(y.isfinite().all())
    torch.testing.assert_close(y.double(), lse_reference(x.double(), 10.0), rtol=1e-5, atol=0)
    assert not bool(torch.exp(10.0 * x).isfinite().all())
    x16 = (torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(3)) * 6e4).half()
    y16 = tp.lse_pool(x16, 10.0)
    assert y16.dtype == torch.float16 and bool(y16.isfinite().all())
    torch.testing.assert_close(y16.double(), lse_reference(x16.double(), 10.0), rtol=1e-3, atol=0)


def test_tiny_values_give_the_mean() -> None:
    """At 1e-30 (r * spread ~ 1e-29) LSE is the mean: kept by expm1 / log1p (the textbook formula,
    float64 included, rounds exp to 1 there and returns the max)."""
    x = _x(2, 3, 5, 6, seed=2, dtype=torch.float32) * 1e-30
    mean = x.double().mean(dim=(2, 3))
    torch.testing.assert_close(tp.lse_pool(x, 10.0).double(), mean, rtol=1e-5, atol=0)
    torch.testing.assert_close(tp.lse_pool(x.double(), 10.0), mean, rtol=1e-12, atol=0)
    assert float((lse_reference(x.double(), 10.0) - mean).abs().max()) > 1e-31


def test_planes_take_their_own_branch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small-spread planes (expm1 / log1p) next to large-spread ones (exp / log), and the traced path."""
    x = _x(2, 4, 5, 5, seed=4)
    x[0, 1] *= 1e-4  # r * spread << 1
    x[1, 2] *= 1e3
    expected = lse_reference(x, 10.0)
    torch.testing.assert_close(tp.lse_pool(x, 10.0), expected, rtol=1e-12, atol=1e-14)
    monkeypatch.setattr(L, "_no_values", lambda *tensors: True)
    torch.testing.assert_close(tp.lse_pool(x, 10.0), expected, rtol=1e-12, atol=1e-14)
    xg = x.clone().requires_grad_(True)
    rg = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, r: tp.lse_pool(t, r), (xg, rg))


def test_gradient_is_the_softmax_and_r_gets_one() -> None:
    x = _x(2, 3, 4, 4, seed=5).requires_grad_(True)
    r = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, s: tp.lse_pool(t, s), (x, r))
    y = tp.lse_pool(x, 3.0)
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, torch.softmax(3.0 * x.detach().flatten(2), 2).reshape(x.shape))


def test_nonfinite_planes() -> None:
    x = _x(1, 3, 4, 4, seed=6, dtype=torch.float32)
    x[0, 0, 1, 1] = math.inf
    x[0, 1] = -math.inf
    x[0, 2, 0, 0] = math.nan
    y = tp.lse_pool(x)
    assert y[0, 0].item() == math.inf and y[0, 1].item() == -math.inf and math.isnan(y[0, 2].item())


def test_dim_and_flatten() -> None:
    x = _x(2, 3, 5, 6, seed=7)
    y = tp.lse_pool(x, 2.0)
    torch.testing.assert_close(tp.lse_pool(x.permute(0, 2, 3, 1), 2.0, dim=(1, 2)), y)
    assert tp.lse_pool(x, 2.0, flatten=False).shape == (2, 3, 1, 1)
    assert tp.lse_pool(x, 2.0, dim=-1).shape == (2, 3, 5)
    assert tp.lse_pool(x, 2.0, dim=(1, 3), flatten=False).shape == (2, 1, 5, 1)
    torch.testing.assert_close(
        tp.lse_pool(x, 2.0, dim=3), lse_reference(x.reshape(2, 15, 6, 1), 2.0).reshape(2, 3, 5)
    )


def test_errors_name_the_parameter() -> None:
    x = _x(2, 3, 4, 4)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="r must be"):
            tp.lse_pool(x, bad)
        with pytest.raises(ValueError, match="r must be finite and positive"):
            tp.lse_pool(x, torch.tensor(bad))
    with pytest.raises(ValueError, match="r must have exactly 1 element"):
        tp.lse_pool(x, torch.ones(3))
    with pytest.raises(ValueError, match="dim must not include the batch dimension"):
        tp.lse_pool(x, dim=(0, 2))
    with pytest.raises(ValueError, match="dim must not repeat"):
        tp.lse_pool(x, dim=(2, -2))
    with pytest.raises(ValueError, match="dim must be in"):
        tp.lse_pool(x, dim=4)
    with pytest.raises(TypeError, match="dim must be None"):
        tp.lse_pool(x, dim=())
    with pytest.raises(ValueError, match="input must have shape"):
        tp.lse_pool(x[0, 0])
    with pytest.raises(ValueError, match="r must be in"):
        tp.LSEPool(r=0.0)


def test_learnable_r_stays_positive() -> None:
    pool = tp.LSEPool(r=2.0)
    assert [name for name, _ in pool.named_parameters()] == ["log_r"]
    assert tp.LSEPool(r=2.0, learnable=False).state_dict().keys() == {"log_r"}
    x = _x(2, 3, 4, 4, seed=8, dtype=torch.float32)
    pool(x).sum().backward()
    assert pool.log_r.grad is not None and pool.log_r.grad.item() != 0.0
    with torch.no_grad():
        pool.log_r -= 50.0  # a huge step: r = 2 e^-50 > 0, about the mean
    torch.testing.assert_close(pool(x), x.mean(dim=(2, 3)), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        pool.log_r.fill_(math.nan)
    with pytest.raises(ValueError, match="log_r must be finite"):
        pool(x)


# ------------------------------------------------------------------ timm (zoo environment)


def _timm_lse() -> tuple[type[torch.nn.Module], type[torch.nn.Module]]:
    layers = pytest.importorskip("timm.layers")
    if not hasattr(layers, "LsePlus2d"):
        pytest.skip("this timm has no LsePlus2d (timm >= 1.0.20 has it)")
    return layers.LsePlus2d, layers.LsePlus1d


@pytest.mark.parametrize("r", [0.5, 10.0, 60.0])
def test_equals_timm_lseplus2d(r: float) -> None:
    lse2d, _ = _timm_lse()
    x = _x(4, 8, 7, 7, seed=9, dtype=torch.float32).requires_grad_(True)
    theirs = lse2d(r=r, r_learnable=True)
    ours = tp.LSEPool(r=r)
    y_theirs, y_ours = theirs(x), ours(x)
    torch.testing.assert_close(y_ours, y_theirs, rtol=2e-6, atol=2e-6)
    w = torch.randn(y_ours.shape, generator=torch.Generator().manual_seed(10))
    r_theirs = theirs.r
    assert isinstance(r_theirs, torch.Tensor)
    g_theirs = torch.autograd.grad(y_theirs, (x, r_theirs), w)
    g_ours = torch.autograd.grad(y_ours, (x, ours.log_r), w)
    torch.testing.assert_close(g_ours[0], g_theirs[0], rtol=1e-5, atol=1e-6)
    # d/d log_r = r d/dr
    torch.testing.assert_close(g_ours[1], r * g_theirs[1], rtol=1e-4, atol=1e-5)
    flat = lse2d(r=r, flatten=False)(x)
    torch.testing.assert_close(tp.LSEPool(r=r, flatten=False)(x), flat, rtol=2e-6, atol=2e-6)


def test_equals_timm_lseplus1d_on_tokens() -> None:
    _, lse1d = _timm_lse()
    tokens = _x(3, 50, 16, seed=11, dtype=torch.float32)  # (N, L, C)
    torch.testing.assert_close(tp.lse_pool(tokens, 10.0, dim=1), lse1d(r=10.0)(tokens), rtol=2e-6, atol=2e-6)
