"""Bilinear family: seed snippet, multimodal, gradients at zero, compact sketches (paths, state
dict, unbiasedness with negative controls), low-rank head, iSQRT-COV, bad arguments.

The generic tests (float64 references, gradcheck, layouts, Module == function, fp16/bf16)
run over ``records.bilinear.OPS`` in ``test_ops.py``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from exactness import assert_same_computation
from records.bilinear import drawn_buffers
from torch import Tensor

import torchpool as tp
from torchpool.ops.bilinear import (
    BilinearPool,
    CompactBilinearPool,
    LowRankBilinearPool,
    MatrixSqrtPool,
    bilinear_pool,
    compact_bilinear_path,
    compact_bilinear_pool,
    low_rank_bilinear_pool,
    matrix_sqrt_pool,
)


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --------------------------------------------------------------------------- full bilinear


def seed_snippet(X: Tensor) -> Tensor:
    """The survey's code, verbatim except its first line (``torch.reshape(N, D, H * W)`` is a
    typo for reshaping ``X``)."""
    N, D, H, W = X.shape
    X = torch.reshape(X, (N, D, H * W))  # Assume X has shape N*D*H*W
    X = torch.bmm(X, torch.transpose(X, 1, 2)) / (H * W)  # Bilinear pooling
    assert X.size() == (N, D, D)
    X = torch.reshape(X, (N, D * D))
    X = torch.sign(X) * torch.sqrt(torch.abs(X) + 1e-5)  # Signed-sqrt normalization
    X = torch.nn.functional.normalize(X)  # L2 normalization
    return X


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 8, 7, 7), (3, 16, 5, 9), (1, 64, 14, 14)])
def test_equals_seed_snippet_bit_for_bit(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    x = _randn(*shape, dtype=dtype).relu()
    expected = seed_snippet(x)
    assert torch.equal(bilinear_pool(x), expected)
    assert torch.equal(BilinearPool(shape[1])(x), expected)
    assert torch.equal(tp.create_pool("bilinear", dim_a=shape[1])(x), expected)


def test_multimodal_is_the_cross_block_of_homogeneous_pooling() -> None:
    x_a, x_b = _randn(2, 3, 5, 4, dtype=torch.float64), _randn(2, 4, 5, 4, seed=1, dtype=torch.float64)
    cross = bilinear_pool(x_a, x_b, signed_sqrt=False, l2_normalize=False).reshape(2, 3, 4)
    full = bilinear_pool(torch.cat([x_a, x_b], 1), signed_sqrt=False, l2_normalize=False).reshape(2, 7, 7)
    torch.testing.assert_close(cross, full[:, :3, 3:], rtol=1e-12, atol=1e-12)
    assert_same_computation(bilinear_pool(x_a, x_a), bilinear_pool(x_a))
    pool = BilinearPool(3, 4)
    assert pool(x_a, x_b).shape == (2, 12) and pool.out_features == 12


def test_half_precision_is_computed_in_float32() -> None:
    # B entries ~ 9e4 overflow float16 (max 65504); computed in float32 the result is finite
    x = torch.full((2, 3, 4, 4), 300.0)
    x[:, 1] = -200.0
    for dtype in (torch.float16, torch.bfloat16):
        y = bilinear_pool(x.to(dtype), signed_sqrt=False)
        assert y.dtype == dtype and torch.isfinite(y).all()
        torch.testing.assert_close(y.float(), bilinear_pool(x, signed_sqrt=False), rtol=1e-2, atol=1e-3)


POOLS_AT_ZERO: list[tuple[str, Callable[[Tensor], Tensor]]] = [
    ("bilinear", lambda x: bilinear_pool(x)),
    ("bilinear_multimodal", lambda x: bilinear_pool(x, x.flip(1))),
    ("ts_matrix", lambda x: compact_bilinear_pool(x, out_dim=64, path="matrix")),
    ("ts_location", lambda x: compact_bilinear_pool(x, out_dim=64, path="location")),
    ("rm_matrix", lambda x: compact_bilinear_pool(x, out_dim=64, method="random_maclaurin", path="matrix")),
    (
        "rm_location",
        lambda x: compact_bilinear_pool(x, out_dim=64, method="random_maclaurin", path="location"),
    ),
    ("matrix_sqrt", lambda x: matrix_sqrt_pool(x)),
    ("low_rank", lambda x: LowRankBilinearPool(4, 3, 2)(x)),
]


@pytest.mark.parametrize(("name", "pool"), POOLS_AT_ZERO, ids=[n for n, _ in POOLS_AT_ZERO])
def test_finite_output_and_gradient_at_zero(name: str, pool: Callable[[Tensor], Tensor]) -> None:
    x = torch.zeros(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    y = pool(x)
    assert torch.isfinite(y).all()
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(grad).all(), name


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_matrix_sqrt_of_a_zero_covariance_is_zero_with_finite_gradient(dtype: torch.dtype) -> None:
    """Constant features: tr Sigma = 0, no division by zero, no NaN forward or backward."""
    x = torch.full((2, 4, 3, 3), 1.5, dtype=dtype, requires_grad=True)
    y = matrix_sqrt_pool(x)
    assert torch.equal(y, torch.zeros_like(y))
    (grad,) = torch.autograd.grad(y.float().sum(), x)
    assert torch.isfinite(grad).all()


def test_eps_is_required_for_a_finite_gradient_at_zero() -> None:
    """``d sqrt(|y|)/dy`` is infinite at 0; the chain rule (``* d|y|/dy = 0``) gives NaN."""
    x = torch.zeros(1, 3, 2, 2, requires_grad=True)
    (grad,) = torch.autograd.grad(bilinear_pool(x, eps=0.0).sum(), x)
    assert torch.isnan(grad).all()
    # also where only some entries of B are 0: orthogonal channels
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], requires_grad=True)
    (grad,) = torch.autograd.grad(bilinear_pool(x, eps=0.0, l2_normalize=False).sum(), x)
    assert torch.isnan(grad).any()
    (grad,) = torch.autograd.grad(bilinear_pool(x, l2_normalize=False).sum(), x)
    assert torch.isfinite(grad).all()


# --------------------------------------------------------------------------- compact bilinear


@pytest.mark.parametrize("method", ["tensor_sketch", "random_maclaurin"])
def test_state_dict_round_trip_reproduces_outputs(method: str) -> None:
    x = _randn(2, 6, 4, 4).relu()
    pool = CompactBilinearPool(6, out_dim=128, method=method, seed=3)
    expected = pool(x)
    assert not list(pool.parameters())
    assert set(pool.state_dict()) == set(drawn_buffers(6, 6, 128, method, 3))
    buffer = io.BytesIO()
    torch.save(pool.state_dict(), buffer)
    other = CompactBilinearPool(6, out_dim=128, method=method, seed=99)
    assert not torch.allclose(other(x), expected)
    buffer.seek(0)
    other.load_state_dict(torch.load(buffer))
    assert_same_computation(other(x), expected)
    assert_same_computation(compact_bilinear_pool(x, out_dim=128, method=method, seed=3), expected)


@pytest.mark.parametrize("method", ["tensor_sketch", "random_maclaurin"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_both_paths_give_the_same_sketch(method: str, dtype: torch.dtype) -> None:
    x = _randn(3, 24, 7, 7, dtype=dtype).relu()
    kw: dict[str, Any] = {"out_dim": 512, "method": method, "signed_sqrt": False, "l2_normalize": False}
    matrix = compact_bilinear_pool(x, path="matrix", **kw)
    location = compact_bilinear_pool(x, path="location", **kw)
    rel = ((matrix - location).norm() / matrix.norm()).item()
    assert rel < (1e-5 if dtype == torch.float32 else 1e-12), rel
    # with the default normalisation too: unreachable Tensor Sketch bins are exactly 0 on both paths
    kw = {"out_dim": 2048, "method": method}
    torch.testing.assert_close(
        compact_bilinear_pool(x, path="matrix", **kw), compact_bilinear_pool(x, path="location", **kw)
    )


def test_tensor_sketch_is_the_fft_of_count_sketches() -> None:
    """The definition, literally: count sketch loops and numpy's FFT, per position, averaged."""
    x_a, x_b = _randn(2, 5, 3, 2, dtype=torch.float64), _randn(2, 3, 3, 2, seed=1, dtype=torch.float64)
    d = 16
    p = drawn_buffers(5, 3, d, "tensor_sketch", 4)

    def count_sketch(v: np.ndarray, h: Tensor, s: Tensor) -> np.ndarray:
        out = np.zeros(d)
        for i in range(len(v)):
            out[int(h[i])] += float(s[i]) * v[i]
        return out

    a, b = x_a.reshape(2, 5, -1).numpy(), x_b.reshape(2, 3, -1).numpy()
    expected = np.zeros((2, d))
    for n in range(2):
        for pos in range(a.shape[2]):
            psi_a = count_sketch(a[n, :, pos], p["hash_a"], p["sign_a"])
            psi_b = count_sketch(b[n, :, pos], p["hash_b"], p["sign_b"])
            expected[n] += np.fft.ifft(np.fft.fft(psi_a) * np.fft.fft(psi_b)).real / a.shape[2]
    for path in ("matrix", "location"):
        actual = compact_bilinear_pool(
            x_a, x_b, d, seed=4, signed_sqrt=False, l2_normalize=False, path=path
        ).numpy()
        np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-12)


def test_auto_path_follows_the_cost_estimate() -> None:
    assert compact_bilinear_path("tensor_sketch", 512, 512, 28 * 28, 8192) == "matrix"
    assert compact_bilinear_path("tensor_sketch", 4096, 4096, 7 * 7, 8192) == "location"
    assert compact_bilinear_path("tensor_sketch", 512, 512, 1, 8192) == "location"
    assert compact_bilinear_path("random_maclaurin", 512, 512, 28 * 28, 8192) == "matrix"
    assert compact_bilinear_path("random_maclaurin", 512, 512, 4, 8192) == "location"


def _sign_free(pool: CompactBilinearPool) -> None:
    names = ("sign_a", "sign_b") if pool.method == "tensor_sketch" else ("weight_a", "weight_b")
    for name in names:
        getattr(pool, name).abs_()


def _shared(pool: CompactBilinearPool) -> None:
    names = ("hash", "sign") if pool.method == "tensor_sketch" else ("weight",)
    for name in names:
        getattr(pool, f"{name}_b").copy_(getattr(pool, f"{name}_a"))


def _mean_ratio(
    method: str, pairs: int, tamper: Callable[[CompactBilinearPool], None] | None = None, positions: int = 1
) -> tuple[float, float]:
    """Mean and standard error over pairs of ``<phi(X), phi(Y)> / <B_X, B_Y>`` (raw sketches).

    ``<B_X, B_Y> = <x, y>^2`` for one position. Every pair gets its own seed: unbiasedness is
    an expectation over the random hashes / projections, and with fresh ones the pair
    estimates are independent, so the mean has a plain standard error. (With one seed for all
    pairs the average would be over the data for one fixed sketch, which carries a fixed
    offset of order 1/sqrt(d): a different, weaker statement.) The data are non-negative
    (post-ReLU-like) and correlated, where dropping the signs gives a visible bias.
    """
    dim, out_dim = 64, 8192
    ratios = []
    for i in range(pairs):
        g = torch.Generator().manual_seed(10_000 + i)
        x = torch.rand(dim, positions, generator=g, dtype=torch.float64)
        y = 0.5 * x + torch.rand(dim, positions, generator=g, dtype=torch.float64)
        pool = CompactBilinearPool(
            dim, out_dim=out_dim, method=method, seed=i, signed_sqrt=False, l2_normalize=False
        ).double()
        if tamper is not None:
            tamper(pool)
        phi = pool(torch.stack([x, y]))
        truth = ((x @ x.T) * (y @ y.T)).sum() / positions**2
        ratios.append(float((phi[0] * phi[1]).sum() / truth))
    r = torch.tensor(ratios)
    return float(r.mean()), float(r.std() / math.sqrt(pairs))


@pytest.mark.parametrize(("method", "pairs"), [("tensor_sketch", 100), ("random_maclaurin", 30)])
def test_sketch_inner_products_are_unbiased(method: str, pairs: int) -> None:
    mean, stderr = _mean_ratio(method, pairs)
    assert abs(mean - 1) < 0.05, (mean, stderr)
    assert abs(mean - 1) < 4 * stderr + 1e-3, (mean, stderr)
    # negative controls: the same test fails without the random signs, or with one hash /
    # projection shared by both factors
    for tamper in (_sign_free, _shared):
        bad_mean, bad_stderr = _mean_ratio(method, pairs // 2, tamper)
        assert abs(bad_mean - 1) > 0.05 and abs(bad_mean - 1) > 4 * bad_stderr, (tamper, bad_mean)


def test_pooled_tensor_sketch_estimates_the_bilinear_inner_product() -> None:
    mean, stderr = _mean_ratio("tensor_sketch", 50, positions=4)
    assert abs(mean - 1) < 0.05 and abs(mean - 1) < 4 * stderr + 1e-3, (mean, stderr)


def test_compact_homogeneous_equals_multimodal_with_itself() -> None:
    x = _randn(2, 5, 3, 3)
    for method in ("tensor_sketch", "random_maclaurin"):
        pool = CompactBilinearPool(5, out_dim=64, method=method)
        assert_same_computation(pool(x), pool(x, x))
    assert CompactBilinearPool(5, 3, out_dim=64)(x, _randn(2, 3, 3, 3)).shape == (2, 64)


# --------------------------------------------------------------------------- low rank


def test_low_rank_equals_full_bilinear_weights() -> None:
    """score_k = <U_k U_k^T - V_k V_k^T, B> + b_k with B the (un-normalised) bilinear pool."""
    torch.manual_seed(0)
    head = LowRankBilinearPool(6, num_classes=4, rank=3).double()
    bias = head.bias
    assert bias is not None
    with torch.no_grad():
        bias.copy_(torch.arange(4.0))
    x = _randn(2, 6, 5, 4, dtype=torch.float64)
    b = bilinear_pool(x, signed_sqrt=False, l2_normalize=False).reshape(2, 6, 6)
    w = head.u @ head.u.transpose(1, 2) - head.v @ head.v.transpose(1, 2)
    expected = torch.einsum("kij,nij->nk", w, b) + bias
    torch.testing.assert_close(head(x), expected, rtol=1e-12, atol=1e-12)
    head(x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    assert "rank=3" in repr(head)


# --------------------------------------------------------------------------- matrix square root


def _exact_sqrt(x: Tensor) -> Tensor:
    f = x.reshape(x.shape[0], x.shape[1], -1)
    f = f - f.mean(2, keepdim=True)
    sigma = f @ f.transpose(1, 2) / f.shape[2]
    values, vectors = torch.linalg.eigh(sigma)
    root: Tensor = vectors @ torch.diag_embed(values.clamp_min(0).sqrt()) @ vectors.transpose(1, 2)
    return root


def test_many_newton_schulz_steps_give_the_exact_square_root() -> None:
    x = _randn(3, 6, 10, 20, dtype=torch.float64)  # Sigma ~ I: well conditioned
    exact = _exact_sqrt(x)
    torch.testing.assert_close(matrix_sqrt_pool(x, 30, triu=False), exact, rtol=1e-10, atol=1e-10)
    # five steps (the default) are not the exact root: the reference test is against the recurrence
    assert (matrix_sqrt_pool(x, triu=False) - exact).abs().max() > 1e-3
    y = matrix_sqrt_pool(x, 30, triu=False)
    torch.testing.assert_close(y @ y, _exact_sqrt(x) @ _exact_sqrt(x), rtol=1e-9, atol=1e-9)


def test_triu_output_is_the_upper_triangle() -> None:
    x = _randn(2, 5, 6, 6, dtype=torch.float64)
    full = matrix_sqrt_pool(x, triu=False)
    torch.testing.assert_close(full, full.transpose(1, 2), rtol=1e-10, atol=1e-10)
    rows, cols = torch.triu_indices(5, 5)
    assert torch.equal(matrix_sqrt_pool(x), full[:, rows, cols])
    assert MatrixSqrtPool()(x).shape == (2, 15)


# --------------------------------------------------------------------------- factory and errors


@pytest.mark.parametrize("name", ["bilinear", "compact_bilinear", "low_rank_bilinear", "matrix_sqrt"])
def test_registered(name: str) -> None:
    info = tp.get_pool_info(name)
    assert info.family == "bilinear" and info.dims == (1, 2, 3) and info.channel_multiplier is None
    module = tp.create_pool(name, **info.example_kwargs)
    assert info.trainable == any(p.requires_grad for p in module.parameters())
    for dims in (1, 2, 3):
        x = torch.rand(2, 4, *[8] * dims, requires_grad=True)
        module(x).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
    assert "(" in repr(module)


X = torch.rand(2, 4, 3, 3)
BAD: list[tuple[Callable[[], object], type[Exception], str]] = [
    (lambda: BilinearPool(4)(torch.rand(2, 5, 3, 3)), ValueError, "dim_a"),
    (lambda: BilinearPool(4, 3)(X, torch.rand(2, 2, 3, 3)), ValueError, "dim_b"),
    (lambda: BilinearPool(4, 3)(X), ValueError, "x_b is required"),
    (lambda: bilinear_pool(X, torch.rand(2, 4, 3, 4)), ValueError, "x_b must have the spatial size"),
    (lambda: bilinear_pool(X, torch.rand(3, 4, 3, 3)), ValueError, "x_b must have the batch size"),
    (lambda: bilinear_pool(X, X.double()), TypeError, "x_b must have the dtype"),
    (lambda: bilinear_pool(X.numpy()), TypeError, "x_a must be a torch.Tensor"),  # type: ignore[arg-type]
    (lambda: bilinear_pool(torch.rand(2, 4)), ValueError, "x_a must have shape"),
    (lambda: bilinear_pool(torch.ones(2, 4, 3, dtype=torch.long)), TypeError, "floating-point"),
    (lambda: bilinear_pool(torch.rand(2, 4, 0)), ValueError, "non-zero spatial"),
    (lambda: bilinear_pool(X, eps=-1.0), ValueError, "eps"),
    (lambda: BilinearPool(0), ValueError, "dim_a"),
    (lambda: BilinearPool(4, 2.0), TypeError, "dim_b"),  # type: ignore[arg-type]
    (lambda: BilinearPool(4, signed_sqrt=1), TypeError, "signed_sqrt"),  # type: ignore[arg-type]
    (lambda: CompactBilinearPool(4, out_dim=0), ValueError, "out_dim"),
    (lambda: CompactBilinearPool(4, method="fft"), ValueError, "method"),
    (lambda: CompactBilinearPool(4, path="fast"), ValueError, "path"),
    (lambda: CompactBilinearPool(4, seed=1.5), TypeError, "seed"),  # type: ignore[arg-type]
    (lambda: compact_bilinear_pool(X, out_dim=-3), ValueError, "out_dim"),
    (lambda: compact_bilinear_pool(X, method="sketch"), ValueError, "method"),
    (lambda: CompactBilinearPool(3, out_dim=8)(X), ValueError, "dim_a"),
    (lambda: LowRankBilinearPool(4, 3, 0), ValueError, "rank"),
    (lambda: LowRankBilinearPool(4, 0, 2), ValueError, "num_classes"),
    (lambda: LowRankBilinearPool(4, 3, 2)(torch.rand(2, 5, 3, 3)), ValueError, "dim"),
    (lambda: low_rank_bilinear_pool(X, torch.rand(3, 5, 2), torch.rand(3, 5, 2)), ValueError, "u must"),
    (lambda: low_rank_bilinear_pool(X, torch.rand(3, 4, 2), torch.rand(3, 4, 1)), ValueError, "v must"),
    (lambda: MatrixSqrtPool(num_iters=0), ValueError, "num_iters"),
    (lambda: MatrixSqrtPool(num_iters=True), TypeError, "num_iters"),
    (lambda: matrix_sqrt_pool([[1.0]]), TypeError, "x must be a torch.Tensor"),  # type: ignore[arg-type]
    (lambda: matrix_sqrt_pool(X, triu="yes"), TypeError, "triu"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("call", "error", "match"), BAD, ids=[m for _, _, m in BAD])
def test_bad_arguments_raise_naming_the_parameter(
    call: Callable[[], object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        call()


def test_functional_normalisation_matches_torch() -> None:
    x = _randn(2, 4, 3, 3, dtype=torch.float64)
    raw = bilinear_pool(x, signed_sqrt=False, l2_normalize=False)
    torch.testing.assert_close(bilinear_pool(x, signed_sqrt=False), F.normalize(raw))
