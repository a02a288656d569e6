"""Regression tests for issue 10's silent results and unclear errors, one group per op family.

Each test failed on the code before its fix: a wrong result returned without a word, or an
error that did not say what was wrong.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from reference import gem_reference

import torchpool as tp

# --------------------------------------------------------------------------- 1. GeM's p


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_gem_refuses_tensor_p_that_is_not_finite_and_positive(bad: float) -> None:
    x = torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match="p must be finite and positive"):
        tp.gem(x, p=torch.tensor(bad))  # p = 0 returned the per-channel max
    with pytest.raises(ValueError, match="p must be finite and positive"):
        tp.gem(x, p=torch.tensor([3.0, bad, 2.0]))  # one bad value per channel


@pytest.mark.parametrize("bad", [0.0, -2.0, math.nan, math.inf])
def test_gem_refuses_float_p_like_tensor_p(bad: float) -> None:
    with pytest.raises(ValueError, match="p"):
        tp.gem(torch.rand(2, 3, 4, 4), p=bad)
    with pytest.raises(ValueError, match="p"):
        tp.GeM(p=bad)


def test_gem_refuses_complex_or_bool_p() -> None:
    with pytest.raises(TypeError, match="p must be a real"):
        tp.gem(torch.rand(2, 3, 4, 4), p=torch.tensor(True))


def test_gem_module_checks_p_at_forward() -> None:
    pool = tp.GeM(p=3.0)
    x = torch.rand(2, 3, 4, 4)
    pool.load_state_dict({"p": torch.tensor([0.0])})  # a bad state dict
    with pytest.raises(ValueError, match=r"p must be finite and positive, got 0\.0"):
        pool(x)
    pool = tp.GeM(p=0.5)
    optimizer = torch.optim.SGD(pool.parameters(), lr=10.0)
    pool(x).sum().backward()  # a step that drives p below 0 (the mean grows with p)
    optimizer.step()
    assert float(pool.p.detach()) < 0
    with pytest.raises(ValueError, match="p must be finite and positive"):
        pool(x)


def test_gem_unchecked_only_where_values_cannot_be_read() -> None:
    """meta tensors (shape inference) run without the data-dependent checks."""
    pool = tp.GeM(p=3.0, channels=3).to("meta")
    y = pool(torch.empty(2, 3, 4, 4, device="meta"))
    assert y.shape == (2, 3) and y.device.type == "meta"


@pytest.mark.parametrize("p", [1.0, 3.0, 13.0, torch.tensor([2.5, 10.0, 13.0])])
def test_gem_direct_and_scaled_paths_match_the_reference(p: float | torch.Tensor) -> None:
    """Ordinary planes take the direct powers, planes whose powers overflow (1000^13 = 1e39)
    or underflow (a dead channel: 1e-6^13 = 0) the max-scaled path: all match float64."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 5, 5) * 2
    x[0, 1] *= 1000.0  # overflows float32 for p = 13
    x[1, 2] = 0.0  # dead: clamped to eps
    y = tp.gem(x, p=p)
    exponents = p.tolist() if isinstance(p, torch.Tensor) else [p] * 3
    for c, e in enumerate(exponents):
        torch.testing.assert_close(
            y[:, c].double(), gem_reference(x[:, c : c + 1], e, 1e-6)[:, 0], rtol=2e-5, atol=0
        )
    ordinary = torch.rand(2, 3, 5, 5)
    torch.testing.assert_close(
        tp.gem(ordinary, p=3.0).double(), gem_reference(ordinary, 3.0, 1e-6), rtol=2e-6, atol=0
    )


# --------------------------------------------------------------------------- 6. helpers


@pytest.mark.parametrize("size", [8.0, "8", None, b"8"])
def test_pool_output_size_refuses_a_size_that_is_no_int_or_sequence(size: object) -> None:
    with pytest.raises(TypeError, match="size must be an int or a sequence of ints"):
        tp.pool_output_size(size, 2)  # type: ignore[call-overload]  # float: "has no len()"


@pytest.mark.parametrize("x", [3, "cuda", [torch.zeros(1)]])
def test_is_deterministic_refuses_a_non_tensor(x: object) -> None:
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor or None"):
        tp.is_deterministic(x)  # type: ignore[arg-type]  # returned False


# --------------------------------------------------------------------------- 3. max unpooling


@pytest.mark.parametrize("n", [1, 2, 3])
def test_unpool_empty_batch_gives_the_empty_result(n: int) -> None:
    x = torch.randn(0, 3, *[4] * n)
    y, idx = getattr(F, f"max_pool{n}d")(x, 2, return_indices=True)
    out = getattr(tp, f"max_unpool{n}d")(y, idx, 2)  # "cannot reshape tensor of 0 elements"
    assert out.shape == getattr(F, f"max_unpool{n}d")(y, idx, 2).shape == (0, 3, *[4] * n)


def test_unpool_refuses_indices_on_another_device() -> None:
    y, idx = F.max_pool2d(torch.randn(1, 2, 4, 4), 2, return_indices=True)
    with pytest.raises(ValueError, match="indices must be on the input's device meta, got cpu"):
        tp.max_unpool2d(y.to("meta"), idx, 2)  # returned a meta tensor


@pytest.mark.parametrize(("kernel", "stride"), [(2, 2), (3, 1)])
def test_unpool_infers_shapes_on_meta_and_fake_tensors(kernel: int, stride: int) -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    y, idx = F.max_pool2d(torch.randn(2, 3, 8, 8), kernel, stride, return_indices=True)
    out = tp.max_unpool2d(y.to("meta"), idx.to("meta"), kernel, stride, output_size=(8, 8))
    assert out.shape == (2, 3, 8, 8) and out.device.type == "meta"
    with FakeTensorMode() as mode:
        fake = tp.max_unpool2d(mode.from_tensor(y), mode.from_tensor(idx), kernel, stride, output_size=(8, 8))
    assert fake.shape == (2, 3, 8, 8)


def test_unpool_refuses_output_size_with_wrong_batch_or_channels() -> None:
    y, idx = F.max_pool2d(torch.randn(2, 3, 4, 4), 2, return_indices=True)
    assert tp.max_unpool2d(y, idx, 2, output_size=(2, 3, 4, 4)).shape == (2, 3, 4, 4)
    assert tp.max_unpool2d(y, idx, 2, output_size=(3, 4, 4)).shape == (2, 3, 4, 4)
    for wrong in [(5, 3, 4, 4), (2, 7, 4, 4), (7, 4, 4)]:  # silently ignored before
        with pytest.raises(ValueError, match="output_size"):
            tp.max_unpool2d(y, idx, 2, output_size=wrong)
    with pytest.raises(ValueError, match="output_size"):
        tp.max_unpool2d(y[0], idx[0], 2, output_size=(1, 3, 4, 4))  # batch-less input: no N


def test_unpool_mean_reproduces_overlapping_pooling_exactly_and_gradchecks() -> None:
    """3x3 stride-1 windows: the duplicates' sum / count was 1 ulp off in ~3.6% of the cells."""
    torch.manual_seed(0)
    x = torch.randn(8, 16, 32, 32)
    y, idx = F.max_pool2d(x, 3, 1, padding=1, return_indices=True)
    out = tp.max_unpool2d(y, idx, 3, 1, padding=1, output_size=(32, 32))
    assert torch.equal(out.flatten(2).gather(2, idx.flatten(2)), y.flatten(2))
    xd = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    yd, idd = F.max_pool2d(xd, 3, 1, return_indices=True)
    yd.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: tp.max_unpool2d(v, idd, 3, 1, output_size=(6, 6)), (yd,))
    # values that differ at a duplicated position still get their mean
    v = torch.tensor([[[1.0, 2.0, 4.0]]], requires_grad=True)
    i = torch.tensor([[[0, 0, 1]]])
    torch.testing.assert_close(tp.max_unpool1d(v, i, 3, 1), torch.tensor([[[1.5, 4.0, 0.0, 0.0, 0.0]]]))


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_unpool_non_overlapping_equals_pytorch_forward_and_backward(n: int, reduce: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, *[6] * n)
    y, idx = getattr(F, f"max_pool{n}d")(x, 2, return_indices=True)
    ours = y.clone().requires_grad_(True)
    theirs = y.clone().requires_grad_(True)
    out = getattr(tp, f"max_unpool{n}d")(ours, idx, 2, reduce=reduce)
    expected = getattr(F, f"max_unpool{n}d")(theirs, idx, 2)
    assert torch.equal(out, expected)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    assert ours.grad is not None and theirs.grad is not None and torch.equal(ours.grad, theirs.grad)


# --------------------------------------------------------------------------- 2. 3d average / LP pools


@pytest.mark.parametrize("name", ["avg3d", "lp3d", "max3d"])
@pytest.mark.parametrize("shape", [(3, 8, 8), (1, 1, 2, 4, 4, 4)])
def test_3d_pools_refuse_a_wrong_number_of_dims(name: str, shape: tuple[int, ...]) -> None:
    """(C, H, W) was read as one (D, H, W) sample (garbage); 6-d gave "too many values to unpack"."""
    kwargs = {"norm_type": 2.0} if name == "lp3d" else {}
    pool = tp.create_pool(name, kernel_size=2, **kwargs)
    with pytest.raises(ValueError, match=r"input must have 4 \(C, \*spatial\) or 5"):
        pool(torch.rand(shape))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
@pytest.mark.parametrize("batched", [True, False])
def test_lp3d_on_integer_input_returns_float_like_pytorch(dtype: torch.dtype, batched: bool) -> None:
    x = torch.randint(0, 5, (2, 3, 4, 4, 4)).to(dtype)
    x = x if batched else x[0]
    y = tp.create_pool("lp3d", norm_type=2.0, kernel_size=2)(x)
    expected = torch.nn.LPPool3d(2.0, 2)(x)  # float32, not the input dtype truncated
    assert y.dtype == expected.dtype == torch.float32
    reference = torch.nn.LPPool3d(2.0, 2)(x.double())
    torch.testing.assert_close(y.double(), reference, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- 4. compact bilinear pooling


@pytest.mark.parametrize("path", ["matrix", "location"])
@pytest.mark.parametrize("bad", [-1, 32, 100])
def test_compact_bilinear_refuses_hashes_out_of_range(path: str, bad: int) -> None:
    """Out-of-range hashes wrapped modulo out_dim (matrix path) or raised an IndexError (location)."""
    pool = tp.CompactBilinearPool(8, out_dim=32, path=path)
    state = pool.state_dict()
    state["hash_a"] = state["hash_a"].clone()
    state["hash_a"][3] = bad
    with pytest.raises(ValueError, match=r"hash_a in the state dict must lie in \[0, out_dim=32\)"):
        pool.load_state_dict(state)
    assert int(pool.get_buffer("hash_a").max()) < 32  # nothing was loaded
    with torch.no_grad():
        pool.get_buffer("hash_b")[0] = bad  # set directly: caught at forward
    with pytest.raises(ValueError, match=r"hash_b \(a buffer\) must lie in \[0, out_dim=32\)"):
        pool(torch.rand(2, 8, 3, 3))


def test_compact_bilinear_refuses_buffers_of_a_wrong_shape_or_dtype() -> None:
    pool = tp.CompactBilinearPool(8, out_dim=32)
    state = pool.state_dict()
    with pytest.raises(TypeError, match=r"hash_a in the state dict must have dtype torch\.int64"):
        pool.load_state_dict({**state, "hash_a": state["hash_a"].float()})
    with pytest.raises(ValueError, match=r"sign_b in the state dict must hold only -1 and \+1"):
        pool.load_state_dict({**state, "sign_b": torch.full((8,), math.nan)})
    rm = tp.CompactBilinearPool(8, out_dim=32, method="random_maclaurin")
    with pytest.raises(ValueError, match=r"weight_a in the state dict must have shape \(32, 8\)"):
        rm.load_state_dict({**rm.state_dict(), "weight_a": torch.ones(32, 9)})
    assert rm(torch.rand(2, 8, 3, 3)).shape == (2, 32)


@pytest.mark.parametrize("name", ["dim_a", "dim_b", "positions", "out_dim"])
@pytest.mark.parametrize("bad", [0, -1])
def test_compact_bilinear_path_refuses_non_positive_sizes(name: str, bad: int) -> None:
    args = {"dim_a": 8, "dim_b": 8, "positions": 9, "out_dim": 32, name: bad}
    with pytest.raises(ValueError, match=f"{name} must be a positive int"):
        tp.compact_bilinear_path("tensor_sketch", **args)


# --------------------------------------------------------------------------- 5. NetVLAD


def test_kmeans_refuses_non_finite_descriptors_and_zero_iterations() -> None:
    points = torch.rand(20, 3)
    points[4, 1] = math.nan  # gave NaN centroids
    with pytest.raises(ValueError, match="descriptors must be finite"):
        tp.kmeans(points, 2)
    points[4, 1] = math.inf
    with pytest.raises(ValueError, match="descriptors must be finite"):
        tp.kmeans(points, 2)
    with pytest.raises(ValueError, match="iters must be positive, got 0"):
        tp.kmeans(torch.rand(20, 3), 2, iters=0)
    with pytest.raises(ValueError, match="iters must be positive"):
        tp.NetVLAD(2, 3).init_from_descriptors(torch.rand(20, 3), iters=0)


def test_ghostvlad_refuses_zero_ghost_clusters() -> None:
    with pytest.raises(ValueError, match="ghost_clusters must be positive, got 0"):
        tp.GhostVLAD(8, 4, ghost_clusters=0)
    c = torch.eye(2)
    with pytest.raises(ValueError, match="ghost_clusters must be positive, got 0"):
        tp.ghostvlad(torch.ones(3, 2, 5), c, 2 * c, None, ghost_clusters=0)


def test_netvlad_says_batchless_input_is_refused() -> None:
    with pytest.raises(ValueError, match=r"batch-less input is refused .* use x\.unsqueeze\(0\)"):
        tp.NetVLAD(8, 4)(torch.rand(4, 5, 5))  # talked about "5 channels" only


@pytest.mark.parametrize("cls", [tp.NetVLAD, tp.GhostVLAD])
@pytest.mark.parametrize("normalize_input", [True, False])
def test_netvlad_does_not_overflow_at_1e30(cls: type, normalize_input: bool) -> None:
    """||x||^2 overflowed float32 and gave the all-zero answer; the result is scale-invariant."""
    torch.manual_seed(0)
    pool = cls(8, 3, normalize_input=normalize_input)
    x = torch.rand(2, 3, 4, 5) + 0.1
    huge = pool(x * 1e30)
    assert torch.isfinite(huge).all() and bool((huge.norm(dim=1) > 0.99).all())
    torch.testing.assert_close(huge, pool(x * 1e10), rtol=1e-5, atol=1e-6)
    leaf = (x * 1e30).requires_grad_(True)
    pool(leaf).square().sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()


# --------------------------------------------------------------------------- 7. no channels

_EMPTY_CHANNEL_POOLS = [
    info
    for info in tp.list_pools()
    if info.family == "combined" or info.name.startswith(("adaptive_avg", "adaptive_max"))
]


@pytest.mark.parametrize(
    ("name", "d"),
    [(info.name, d) for info in _EMPTY_CHANNEL_POOLS for d in info.dims],
)
@pytest.mark.parametrize("batched", [True, False])
def test_zero_channels_give_the_empty_result(name: str, d: int, batched: bool) -> None:
    """C = 0 raised a PyTorch RuntimeError quoting an internal shape; the shape of the empty
    result is the one of the same input with channels, minus the channels."""
    info = next(i for i in _EMPTY_CHANNEL_POOLS if i.name == name)
    pool = tp.create_pool(name, **(info.example_kwargs or {}))
    shape = (2, 0, *[6] * d) if batched else (0, *[6] * d)
    x = torch.rand(shape, requires_grad=True)
    y = pool(x)
    with torch.no_grad():
        full = pool(torch.rand(*shape[: -d - 1], 1, *shape[-d:]))
    assert y.shape == (*full.shape[: -d - 1], 0, *full.shape[-d:])
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


@pytest.mark.parametrize("n", [1, 2, 3])
def test_zero_channels_adaptive_max_with_indices(n: int) -> None:
    y, idx = getattr(tp, f"adaptive_max_pool{n}d")(torch.rand(2, 0, *[5] * n), 2, return_indices=True)
    assert y.shape == idx.shape == (2, 0, *[2] * n) and idx.dtype == torch.int64


def test_zero_channels_with_per_channel_parameters_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="input has 0 channels, but the pool was built with channels=3"):
        tp.LearnedMixedPool2d(2, channels=3)(torch.rand(2, 0, 4, 4))
    with pytest.raises(ValueError, match="input has 0 channels, but the pool was built with channels=3"):
        tp.GatedPool2d(2, channels=3)(torch.rand(2, 0, 4, 4))


def test_compact_bilinear_refuses_signs_other_than_plus_minus_one() -> None:
    """A sign of 0.5 silently scaled the sketch."""
    pool = tp.CompactBilinearPool(8, out_dim=32)
    with pytest.raises(ValueError, match=r"sign_a in the state dict must hold only -1 and \+1"):
        pool.load_state_dict({**pool.state_dict(), "sign_a": torch.full((8,), 0.5)})
    with torch.no_grad():
        pool.get_buffer("sign_b")[2] = 0.5
    with pytest.raises(ValueError, match=r"sign_b \(a buffer\) must hold only -1 and \+1"):
        pool(torch.rand(2, 8, 3, 3))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_unpool_refuses_an_empty_spatial_size_naming_the_input(n: int) -> None:
    x = torch.rand(2, 3, *[4] * (n - 1), 0)
    with pytest.raises(ValueError, match=r"input must have non-zero spatial sizes"):
        getattr(tp, f"max_unpool{n}d")(x, torch.zeros(x.shape, dtype=torch.int64), 2)
