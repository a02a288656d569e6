"""NetVLAD / GhostVLAD: shapes, normalisation, k-means + alpha init, ghosts, safety, memory, errors.

The generic tests (reference, gradcheck w.r.t. the input, layouts, Module == function, low
precision, meta-test) run over the records in ``records/netvlad.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
from exactness import assert_same_computation
from records.netvlad import netvlad_loop_reference, vlad_module
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

import torchpool.registry as registry
from torchpool.ops.netvlad import GhostVLAD, NetVLAD, ghostvlad, kmeans, netvlad, netvlad_alpha


def _seeded(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _blobs(
    k: int = 5, d: int = 8, per: int = 60, spread: float = 0.05, seed: int = 0, scales: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Well-separated Gaussian blobs: (descriptors (k*per, d), true centres (k, d))."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g, dtype=torch.float64)
    centres = centres / centres.norm(dim=1, keepdim=True)
    if scales is not None:
        centres = centres * scales.double().unsqueeze(1)
    points = centres.repeat_interleave(per, 0) + spread * torch.randn(
        k * per, d, generator=g, dtype=torch.float64
    )
    perm = torch.randperm(k * per, generator=g)
    return points[perm], centres


def _match_error(found: Tensor, true: Tensor) -> float:
    """Largest distance from each true centre to its nearest found centre (and a bijection check)."""
    d = torch.cdist(true.double(), found.double())
    assert sorted(d.argmin(1).tolist()) == list(range(true.shape[0])), "two true centres share a centroid"
    return float(d.min(1).values.max())


# ---------------------------------------------------------------- shapes and normalisation


def test_paper_size_output_shape() -> None:
    torch.manual_seed(0)
    pool = NetVLAD(64, 512)
    y = pool(torch.randn(2, 512, 3, 4))
    assert y.shape == (2, 32768)
    assert pool.centroids.shape == (64, 512)
    assert pool.assign_weight.shape == (64, 512) and pool.assign_bias.shape == (64,)


@pytest.mark.parametrize("shape", [(3, 6, 5, 4), (3, 6, 7), (3, 6, 2, 3, 2)])
@pytest.mark.parametrize("normalize_input", [True, False])
def test_rows_have_unit_norm(shape: tuple[int, ...], normalize_input: bool) -> None:
    pool = vlad_module(5, 6, normalize_input=normalize_input)
    y = pool(_seeded(*shape))
    assert y.shape == (3, 30)
    torch.testing.assert_close(y.norm(dim=1), torch.ones(3), rtol=0, atol=1e-5)


def test_each_cluster_is_intra_normalised_before_the_final_l2() -> None:
    """Checks the math directly: block k is (A^T X - c sum a)_k / ||.||, then divided by sqrt(K)."""
    k, d = 4, 6
    pool = vlad_module(k, d)
    x = _seeded(2, d, 5, 5, dtype=torch.float64)
    y = pool.double()(x).view(2, k, d)
    xs = x.flatten(2)
    xs = xs / xs.norm(dim=1, keepdim=True)
    a = torch.softmax(torch.einsum("kd,ndl->nkl", pool.assign_weight, xs) + pool.assign_bias[:, None], 1)
    v = torch.einsum("nkl,ndl->nkd", a, xs) - pool.centroids * a.sum(2, keepdim=True)
    intra = v / v.norm(dim=2, keepdim=True)
    # every cluster has mass here, so each block ends with norm 1/sqrt(K) and direction v_k/||v_k||
    torch.testing.assert_close(y.norm(dim=2), torch.full((2, k), k**-0.5, dtype=torch.float64))
    torch.testing.assert_close(y, intra / math.sqrt(k), rtol=1e-5, atol=1e-6)
    # without intra-normalisation the result would differ (the blocks have unequal raw norms)
    raw = v.flatten(1) / v.flatten(1).norm(dim=1, keepdim=True)
    assert not torch.allclose(y.flatten(1), raw, atol=1e-3)


def test_sequence_equals_flattened_map_and_is_orderless() -> None:
    """(N, D, H, W) pools like its (N, D, H*W) sequence (ActionVLAD over time); order does not matter."""
    pool = vlad_module(3, 4)
    x = _seeded(2, 4, 3, 5)
    y = pool(x)
    torch.testing.assert_close(pool(x.flatten(2)), y, rtol=0, atol=1e-6)
    perm = torch.randperm(15, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(pool(x.flatten(2)[:, :, perm]), y, rtol=1e-5, atol=1e-6)


def test_low_precision_is_computed_in_float32() -> None:
    """Large half inputs: ||x||^2 would overflow float16 (65504) if the norms were taken in it."""
    pool = vlad_module(3, 8)
    x = _seeded(2, 8, 4, 4) * 300
    for dtype in (torch.float16, torch.bfloat16):
        y = pool(x.to(dtype))
        assert y.dtype == dtype and torch.isfinite(y).all()
        torch.testing.assert_close(y.float(), pool(x.to(dtype).float()), rtol=0, atol=4e-3)


# ---------------------------------------------------------------- ghosts


def test_ghostvlad_drops_ghosts_after_the_softmax() -> None:
    pool = vlad_module(3, 4, ghost_clusters=2)
    x = _seeded(2, 4, 3, 3, dtype=torch.float64)
    y = pool.double()(x)
    assert y.shape == (2, 12)
    expected = netvlad_loop_reference(
        x, pool.centroids.detach(), pool.assign_weight.detach(), pool.assign_bias.detach(), True, 2
    )
    torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-10)
    # the ghosts matter: dropping their rows *before* the softmax gives a different result
    no_ghost = netvlad(x, pool.centroids, pool.assign_weight[:3], pool.assign_bias[:3])
    assert not torch.allclose(y, no_ghost, atol=1e-3)
    # ... unless they get no mass at all
    with torch.no_grad():
        pool.assign_bias[3:] = -1e4
    torch.testing.assert_close(pool(x), no_ghost, rtol=1e-10, atol=1e-10)


def test_ghostvlad_class_and_function() -> None:
    torch.manual_seed(0)
    pool = GhostVLAD(8, 4)
    assert pool.ghost_clusters == 1 and pool.assign_weight.shape == (9, 4)
    assert (pool.assign_weight[8] == 0).all() and pool.assign_bias[8] == 0  # documented ghost init
    x = torch.randn(2, 4, 5, 5)
    y = ghostvlad(x, pool.centroids, pool.assign_weight, pool.assign_bias)
    assert_same_computation(pool(x), y)
    assert "ghost_clusters=1" in repr(pool)


def test_registered_in_the_factory() -> None:
    for name, cls in (("netvlad", NetVLAD), ("ghostvlad", GhostVLAD)):
        info = registry.get_pool_info(name)
        assert info.family == "netvlad" and info.dims == (1, 2, 3) and info.trainable
        assert info.channel_multiplier is None
        module = registry.create_pool(name, **info.example_kwargs)
        assert type(module) is cls
        for dims in info.dims:
            x = torch.rand(2, 4, *[5] * dims, requires_grad=True)
            y = module(x)
            assert y.shape == (2, 32)
            y.sum().backward()
            assert x.grad is not None and torch.isfinite(x.grad).all()


# ---------------------------------------------------------------- k-means and the alpha rule


def test_kmeans_is_deterministic_and_finds_the_blobs() -> None:
    points, centres = _blobs()
    a = kmeans(points, 5, seed=3)
    b = kmeans(points, 5, seed=3)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert _match_error(a, centres) < 0.03
    assert _match_error(kmeans(points, 5, seed=4), centres) < 0.03


def test_kmeans_reseeds_empty_clusters_and_handles_duplicates() -> None:
    points = torch.tensor([[0.0, 0.0]] * 5 + [[1.0, 1.0]] * 5)
    c = kmeans(points, 3, seed=0)
    assert torch.isfinite(c).all() and c.shape == (3, 2)
    assert {tuple(p) for p in c.tolist()} >= {(0.0, 0.0), (1.0, 1.0)}


def test_init_from_descriptors_is_deterministic_and_centred() -> None:
    points, centres = _blobs()
    pools = []
    for _ in range(2):
        pool = NetVLAD(5, 8)
        alpha = pool.init_from_descriptors(points.float(), seed=7)
        pools.append((pool, alpha))
    (p1, a1), (p2, a2) = pools
    assert a1 == a2
    for name in ("centroids", "assign_weight", "assign_bias"):
        torch.testing.assert_close(getattr(p1, name), getattr(p2, name), rtol=0, atol=0)
    # the descriptors are L2-normalised first (normalize_input): the blob centres are unit vectors
    assert _match_error(p1.centroids.detach(), centres) < 0.03


def test_alpha_formula_against_a_direct_computation() -> None:
    points, _ = _blobs(k=4, d=6, spread=0.3, seed=1)
    pool = NetVLAD(4, 6, normalize_input=False)
    alpha = pool.init_from_descriptors(points.float(), seed=0)
    c = pool.centroids.detach().double()
    d2 = torch.cdist(points, c).square().sort(dim=1).values
    expected = -math.log(0.01) / (d2[:, 1] - d2[:, 0]).mean().item()
    assert alpha == pytest.approx(expected, rel=1e-4)
    assert netvlad_alpha(points, c) == pytest.approx(expected, rel=1e-9)
    torch.testing.assert_close(pool.assign_weight.detach().double(), 2 * alpha * c)
    torch.testing.assert_close(pool.assign_bias.detach().double(), -alpha * c.square().sum(1))


def test_explicit_alpha_is_used() -> None:
    points, _ = _blobs()
    pool = NetVLAD(5, 8, alpha=12.5)
    assert pool.init_from_descriptors(points.float()) == 12.5
    c = pool.centroids.detach()
    torch.testing.assert_close(pool.assign_weight.detach(), 25.0 * c)
    torch.testing.assert_close(pool.assign_bias.detach(), -12.5 * c.square().sum(1))


def test_bias_uses_squared_norm_so_assignment_follows_distance() -> None:
    """With b = -alpha ||c||^2 the top assignment is the nearest centre; the ||c|| variant fails this."""
    scales = torch.tensor([0.5, 1.0, 2.0, 3.0, 4.5])
    points, _ = _blobs(k=5, d=4, spread=0.4, seed=2, scales=scales)
    points = points.float()
    pool = NetVLAD(5, 4, normalize_input=False)
    alpha = pool.init_from_descriptors(points, seed=0)
    c = pool.centroids.detach()
    nearest = torch.cdist(points, c).argmin(1)
    logits = points @ pool.assign_weight.detach().T + pool.assign_bias.detach()
    assert (logits.argmax(1) == nearest).all()
    buggy = points @ (2 * alpha * c).T - alpha * c.norm(dim=1)
    assert (buggy.argmax(1) != nearest).float().mean() > 0.05  # the check has power


@pytest.mark.parametrize("normalize_input", [True, False])
def test_top_assignment_is_about_100x_the_second(normalize_input: bool) -> None:
    points, _ = _blobs(k=6, d=8, spread=0.25, seed=5)
    pool = NetVLAD(6, 8, normalize_input=normalize_input)
    pool.init_from_descriptors(points.float(), seed=0)
    x = points.float().T.unsqueeze(0)  # every descriptor is one position: (1, D, M)
    if normalize_input:
        x = x / x.norm(dim=1, keepdim=True)
    logits = torch.einsum("kd,ndl->nkl", pool.assign_weight, x) + pool.assign_bias[:, None]
    top2 = torch.softmax(logits, 1).topk(2, dim=1).values[0]
    ratio = top2[0] / top2[1]
    # log(ratio) = alpha (d2_2 - d2_1), so its mean is log(100) exactly by the choice of alpha
    assert ratio.log().mean().item() == pytest.approx(math.log(100.0), rel=1e-3)
    assert ratio.median().item() > 20


# ---------------------------------------------------------------- safety: zeros, empty clusters


@pytest.mark.parametrize("normalize_input", [True, False])
@pytest.mark.parametrize("ghost_clusters", [0, 1])
def test_zero_input_is_finite_with_small_gradients(normalize_input: bool, ghost_clusters: int) -> None:
    pool = vlad_module(3, 4, normalize_input=normalize_input, ghost_clusters=ghost_clusters)
    x = torch.zeros(2, 4, 3, 3, requires_grad=True)
    y = pool(x)
    assert torch.isfinite(y).all()
    (y * _seeded(*y.shape)).sum().backward()
    grads = [x.grad, *(p.grad for p in pool.parameters())]
    for g in grads:
        assert g is not None and torch.isfinite(g).all()
        assert g.abs().max() < 1e4  # bounded by 1/sqrt(eps) = 1e3 times O(1) factors


def test_empty_cluster_gives_no_nan_and_no_huge_gradients() -> None:
    """One centre far away with a very peaked assignment: its block has (almost) no mass."""
    torch.manual_seed(0)
    pool = NetVLAD(4, 6, alpha=1000.0)
    with torch.no_grad():
        pool.centroids[0] = 50.0
        pool._set_assignment(1000.0)
    x = torch.randn(2, 6, 4, 4, requires_grad=True)
    y = pool(x)
    mass = torch.softmax(
        torch.einsum("kd,ndl->nkl", pool.assign_weight, (x / x.norm(dim=1, keepdim=True)).flatten(2))
        + pool.assign_bias[:, None],
        1,
    )
    assert mass[:, 0].sum() == 0  # the cluster is genuinely empty
    assert torch.isfinite(y).all() and y.view(2, 4, 6)[:, 0].abs().max() == 0
    y.pow(2).mul(torch.arange(y.numel()).view_as(y)).sum().backward()
    for g in (x.grad, pool.centroids.grad, pool.assign_weight.grad, pool.assign_bias.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().max() < 1e4


def test_nearly_empty_cluster_is_damped_not_blown_up() -> None:
    """Mass ~1e-9: v / sqrt(eps + ||v||^2) keeps the block near zero; v / max(||v||, 1e-12) would not."""
    pool = vlad_module(3, 4).double()
    with torch.no_grad():
        pool.assign_bias[0] = -25.0  # ~1e-11 relative mass on cluster 0
    x = _seeded(1, 4, 3, 3, dtype=torch.float64).requires_grad_(True)
    y = pool(x)
    assert y.view(3, 4)[0].norm() < 1e-3
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().max() < 1e3
    assert pool.assign_bias.grad is not None and pool.assign_bias.grad.abs().max() < 1e3


# ---------------------------------------------------------------- gradients of the parameters


@pytest.mark.parametrize(
    ("normalize_input", "ghost_clusters", "shape"),
    [(True, 0, (2, 4, 3, 3)), (False, 0, (2, 4, 5)), (True, 2, (1, 4, 2, 3))],
)
def test_gradcheck_parameters(normalize_input: bool, ghost_clusters: int, shape: tuple[int, ...]) -> None:
    pool = vlad_module(3, 4, normalize_input=normalize_input, ghost_clusters=ghost_clusters).double()
    x = _seeded(*shape, dtype=torch.float64).requires_grad_(True)
    params = tuple(p.detach().clone().requires_grad_(True) for p in pool.parameters())

    def fn(x: Tensor, c: Tensor, w: Tensor, b: Tensor) -> Tensor:
        return netvlad(x, c, w, b, normalize_input=normalize_input, ghost_clusters=ghost_clusters)

    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-6)
    if x.numel() <= 24:  # second order on the smallest case only (it is slow)
        assert torch.autograd.gradgradcheck(fn, (x, *params), eps=1e-6, atol=1e-5)


# ---------------------------------------------------------------- memory


# TorchDispatchMode's __init__ and __init_subclass__ are unannotated in torch: ignored for that reason
class _LargestTensor(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Records the largest tensor any ATen op produces (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_never_materialises_the_residual_tensor() -> None:
    n, k, g, d, h, w = 2, 16, 2, 32, 10, 12
    pool = GhostVLAD(k, d, ghost_clusters=g)
    x = torch.randn(n, d, h, w, requires_grad=True)
    with _LargestTensor() as mode:
        pool(x).sum().backward()
    residual = n * k * d * h * w
    assert mode.largest <= max(n * d * h * w, n * (k + g) * h * w, n * k * d)
    assert mode.largest * k // 2 < residual


# ---------------------------------------------------------------- bad arguments


def test_bad_arguments_name_the_parameter() -> None:
    pool = NetVLAD(3, 4)
    c, w, b = pool.centroids, pool.assign_weight, pool.assign_bias
    x = torch.randn(2, 4, 3, 3)
    cases: list[tuple[type[Exception], str, object]] = [
        (ValueError, "num_clusters", lambda: NetVLAD(0, 4)),
        (TypeError, "num_clusters", lambda: NetVLAD(2.0, 4)),  # type: ignore[arg-type]
        (ValueError, "dim", lambda: NetVLAD(3, 0)),
        (ValueError, "ghost_clusters", lambda: NetVLAD(3, 4, ghost_clusters=-1)),
        (ValueError, "ghost_clusters", lambda: GhostVLAD(3, 4, ghost_clusters=-2)),
        (ValueError, "alpha", lambda: NetVLAD(3, 4, alpha=-1.0)),
        (ValueError, "eps", lambda: NetVLAD(3, 4, eps=0.0)),
        (TypeError, "normalize_input", lambda: NetVLAD(3, 4, normalize_input=1)),  # type: ignore[arg-type]
        (ValueError, "channels but centroids have dim 4", lambda: pool(torch.randn(2, 5, 3, 3))),
        (ValueError, "input must have shape", lambda: pool(torch.randn(4, 9))),
        (ValueError, "batch-less", lambda: pool(torch.randn(4))),
        (TypeError, "input must be a torch.Tensor", lambda: pool([[1.0]])),
        (TypeError, "floating-point", lambda: pool(torch.ones(2, 4, 3, dtype=torch.long))),
        (ValueError, "non-zero spatial", lambda: pool(torch.randn(2, 4, 0, 3))),
        (ValueError, "assign_weight", lambda: netvlad(x, c, w[:2], b)),
        (ValueError, "assign_weight", lambda: netvlad(x, c, w, b, ghost_clusters=1)),
        (ValueError, "assign_bias", lambda: netvlad(x, c, w, b[:2])),
        (TypeError, "centroids", lambda: netvlad(x, c.tolist(), w, b)),  # type: ignore[arg-type]
        (ValueError, "descriptors", lambda: pool.init_from_descriptors(torch.randn(20, 5))),
        (ValueError, "descriptors", lambda: pool.init_from_descriptors(torch.randn(20, 4, 1))),
        (TypeError, "descriptors", lambda: pool.init_from_descriptors("nope")),  # type: ignore[arg-type]
        (ValueError, "at least k=3", lambda: pool.init_from_descriptors(torch.randn(2, 4))),
        (ValueError, "alpha must be given", lambda: NetVLAD(1, 4).init_from_descriptors(torch.randn(9, 4))),
        (ValueError, "k must be positive", lambda: kmeans(torch.randn(5, 2), 0)),
        (ValueError, "K >= 2", lambda: netvlad_alpha(torch.randn(5, 2), torch.randn(1, 2))),
    ]
    for error, match, call in cases:
        assert callable(call)
        with pytest.raises(error, match=match):
            call()


def test_extra_repr_and_state_dict_round_trip() -> None:
    pool = NetVLAD(4, 6, alpha=3.0, normalize_input=False)
    assert repr(pool) == (
        "NetVLAD(num_clusters=4, dim=6, alpha=3.0, normalize_input=False, ghost_clusters=0, eps=1e-06)"
    )
    other = NetVLAD(4, 6, alpha=3.0, normalize_input=False)
    other.load_state_dict(pool.state_dict())
    x = _seeded(2, 6, 7)
    assert_same_computation(other(x), pool(x))
    assert set(pool.state_dict()) == {"centroids", "assign_weight", "assign_bias"}
