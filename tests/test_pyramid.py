"""Family tests for spatial pyramid pooling, YOLOv3-SPP, SPPF and the darknet cfg parser."""

from __future__ import annotations

import math
import pickle
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from records.pyramid import bin_bounds, spp_reference
from torch import Tensor, nn

import torchpool as tp
from torchpool.ops.pyramid import (
    SPPF,
    SpatialPyramidPool,
    YoloSPP,
    from_darknet_cfg,
    spatial_pyramid_pool,
    spp_to_sppf,
    sppf,
    yolo_spp,
)

# the seed's yolov3-spp.cfg block, verbatim
SEED_CFG = """### SPP ###
[maxpool]
stride=1
size=5

[route]
layers=-2

[maxpool]
stride=1
size=9

[route]
layers=-4

[maxpool]
stride=1
size=13

[route]
layers=-1,-3,-5,-6

### End SPP ###
"""


class UltralyticsSPP(nn.Module):
    """The plain ultralytics (YOLOv5 ``SPP``) form: parallel ``nn.MaxPool2d`` and a cat."""

    def __init__(self, kernel_sizes: tuple[int, ...] = (5, 9, 13)) -> None:
        super().__init__()
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in kernel_sizes)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x] + [pool(x) for pool in self.pools], 1)


def tiefree(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    n = math.prod(shape)
    return (torch.randperm(n, generator=g).to(dtype) / n).reshape(shape)


@pytest.mark.parametrize(("a", "n", "paper_bins"), [(5, 3, 4), (7, 4, 6)])
def test_paper_rule_fails_but_adaptive_bins_give_n(a: int, n: int, paper_bins: int) -> None:
    win, stride = math.ceil(a / n), math.floor(a / n)
    assert (a - win) // stride + 1 == paper_bins  # the paper's rule gives the wrong count
    assert len(bin_bounds(a, n)) == n
    x = torch.randn(1, 2, a, a)
    assert spatial_pyramid_pool(x, (n,)).shape == (1, 2 * n * n)
    assert spatial_pyramid_pool(x, (n,), flatten=False).shape == (1, 2, n * n)
    # every bin is exactly [floor(i*a/n), ceil((i+1)*a/n)): compare with PyTorch's adaptive pool
    torch.testing.assert_close(spatial_pyramid_pool(x, (n,)), F.adaptive_max_pool2d(x, n).flatten(1))


@pytest.mark.parametrize("size", [(1, 1), (1, 7), (2, 3), (3, 3), (5, 5), (7, 4), (13, 13), (16, 31)])
@pytest.mark.parametrize("levels", [(1, 2, 4), (6, 3, 2, 1)])
def test_fixed_output_length(size: tuple[int, int], levels: tuple[int, ...]) -> None:
    x = torch.randn(2, 3, *size)
    expected = 3 * sum(n * n for n in levels)
    assert spatial_pyramid_pool(x, levels).shape == (2, expected)
    assert SpatialPyramidPool(levels, "avg")(x[0]).shape == (expected,)
    assert SpatialPyramidPool(levels).output_features(3) == expected
    y = spatial_pyramid_pool(x.double(), levels)
    torch.testing.assert_close(y, spp_reference(x.double(), levels))


def test_spp_flatten_false_and_rectangular_levels() -> None:
    x = torch.randn(2, 3, 6, 5)
    y = spatial_pyramid_pool(x, ((1, 2), 3), flatten=False)
    assert y.shape == (2, 3, 2 + 9)
    flat = spatial_pyramid_pool(x, ((1, 2), 3))
    torch.testing.assert_close(flat[:, : 3 * 2], y[:, :, :2].flatten(1))


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("order", ["darknet", "ultralytics"])
def test_sppf_equals_yolo_spp_bitwise(memory_format: torch.memory_format, order: str) -> None:
    x = torch.randn(2, 8, 19, 17).to(memory_format=memory_format)
    a = SPPF(order=order)(x)
    b = YoloSPP((5, 9, 13), order=order)(x)
    assert torch.equal(a, b)
    assert a.is_contiguous(memory_format=memory_format)


def test_darknet_and_ultralytics_orders() -> None:
    x = torch.randn(1, 2, 9, 9)
    pools = [F.max_pool2d(x, k, 1, k // 2) for k in (5, 9, 13)]
    assert torch.equal(yolo_spp(x, order="darknet"), torch.cat([pools[2], pools[1], pools[0], x], 1))
    assert torch.equal(yolo_spp(x, order="ultralytics"), torch.cat([x, *pools], 1))
    assert torch.equal(yolo_spp(x), torch.cat([x, *pools], 1))  # the default: ultralytics, as SPPF
    assert yolo_spp(x).shape == (1, 8, 9, 9)
    # unsorted kernels are a defined order: the given one (darknet: reversed, then x)
    assert torch.equal(yolo_spp(x, (9, 5)), torch.cat([x, pools[1], pools[0]], 1))
    assert torch.equal(yolo_spp(x, (9, 5), "darknet"), torch.cat([pools[0], pools[1], x], 1))


def test_registry_sppf_and_yolo_spp_give_the_same_output() -> None:
    """The registry says SPPF has the same output as yolo_spp: true with each one's defaults, in both
    orders when the order is given, for the Modules and the functions."""
    x = torch.randn(2, 3, 11, 10)
    assert YoloSPP().order == SPPF().order == "ultralytics"
    assert "same output as yolo_spp" in tp.get_pool_info("sppf").description
    assert torch.equal(tp.create_pool("sppf")(x), tp.create_pool("yolo_spp")(x))
    assert torch.equal(sppf(x), yolo_spp(x))
    for order in ("darknet", "ultralytics"):
        assert torch.equal(tp.create_pool("sppf", order=order)(x), tp.create_pool("yolo_spp", order=order)(x))
        assert torch.equal(SPPF(order=order)(x), spp_to_sppf(YoloSPP(order=order))(x))


@pytest.mark.parametrize("kernel_sizes", [(5, 5), (5, 9, 5), (3, 3, 3)])
def test_repeated_kernel_sizes_refused(kernel_sizes: tuple[int, ...]) -> None:
    x = torch.randn(1, 2, 6, 6)
    with pytest.raises(ValueError, match="kernel_sizes must not repeat a kernel size"):
        yolo_spp(x, kernel_sizes)
    with pytest.raises(ValueError, match="kernel_sizes must not repeat"):
        YoloSPP(kernel_sizes)
    with pytest.raises(ValueError, match="kernel_sizes"):
        tp.create_pool("yolo_spp", kernel_sizes=kernel_sizes)


@pytest.mark.parametrize(
    ("name", "kwargs", "spatial", "out_tail"),
    [
        ("spp2d", {"levels": (1, 2, 4)}, (5, 6), (0,)),
        ("spp2d", {"levels": (1, 2, 4), "flatten": False}, (5, 6), (0, 21)),
        ("spp1d", {"levels": (1, 3)}, (7,), (0,)),
        ("spp3d", {"levels": (1, 2), "mode": "avg"}, (3, 4, 5), (0,)),
        ("yolo_spp", {}, (5, 6), (0, 5, 6)),
        ("yolo_spp", {"kernel_sizes": (3, 7), "order": "darknet"}, (5, 6), (0, 5, 6)),
        ("sppf", {}, (5, 6), (0, 5, 6)),
    ],
)
@pytest.mark.parametrize("requires_grad", [False, True])
def test_zero_channels_give_the_empty_result(
    name: str,
    kwargs: dict[str, object],
    spatial: tuple[int, ...],
    out_tail: tuple[int, ...],
    requires_grad: bool,
) -> None:
    module = tp.create_pool(name, **kwargs)
    x = torch.randn(2, 0, *spatial, requires_grad=requires_grad)
    y = module(x)
    assert y.shape == (2, *out_tail) and y.dtype == x.dtype
    assert module(x[0].detach()).shape == out_tail  # batch-less (C=0, *spatial)
    if requires_grad:
        y.sum().backward()
        assert x.grad is not None and x.grad.shape == x.shape
    # and N = 0 as well
    assert module(torch.randn(0, 3, *spatial)).shape[0] == 0


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("name", ["yolo_spp", "sppf"])
def test_fullgraph_compile_matches_eager_with_ties(name: str, memory_format: torch.memory_format) -> None:
    """fullgraph=True (no graph break), no warning, forward and backward equal to eager, also on ties
    (the compiled graph runs the same max_pool2d cascade as the eager autograd path)."""

    torch._dynamo.reset()
    module = tp.create_pool(name)
    x = torch.randn(2, 3, 9, 8).round().to(memory_format=memory_format)  # many ties

    def run(fn: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
        leaf = x.clone().requires_grad_(True)
        y = fn(leaf)
        torch.autograd.backward(y, torch.linspace(0.5, 1.5, y.numel()).view_as(y))
        assert leaf.grad is not None
        return y.detach(), leaf.grad

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y_c, g_c = run(torch.compile(module, fullgraph=True, backend="aot_eager"))
        with torch.no_grad():
            y_nograd = torch.compile(module, fullgraph=True, backend="aot_eager")(x)
    y_e, g_e = run(module)
    assert torch.equal(y_c, y_e) and torch.equal(y_nograd, module(x)) and torch.equal(g_c, g_e)
    torch._dynamo.reset()


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_matches_ultralytics_values_and_gradients(memory_format: torch.memory_format) -> None:
    x = tiefree(2, 3, 11, 10).to(memory_format=memory_format)
    ours_in, peer_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, peer = yolo_spp(ours_in, order="ultralytics"), UltralyticsSPP()(peer_in)
    assert torch.equal(ours, peer)
    g = torch.randn_like(ours)
    torch.autograd.backward(ours, g)
    torch.autograd.backward(peer, g)
    torch.testing.assert_close(ours_in.grad, peer_in.grad)
    sppf_in = x.clone().requires_grad_()
    torch.autograd.backward(sppf(sppf_in), g)
    torch.testing.assert_close(sppf_in.grad, peer_in.grad)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_gradient_with_ties_routes_one_unit_per_output(memory_format: torch.memory_format) -> None:
    blocks: list[Callable[[Tensor], Tensor]] = [yolo_spp, sppf, lambda t: yolo_spp(t, (3, 1, 7))]
    for fn in blocks:
        x = torch.ones(2, 3, 7, 8).to(memory_format=memory_format).requires_grad_()
        y = fn(x)
        torch.autograd.backward(y.sum())
        grad = x.grad
        assert grad is not None
        assert torch.isfinite(grad).all()
        assert grad.sum().item() == y.numel()  # each output sends its whole gradient to one input
        assert torch.equal(grad, grad.round())  # no splitting between tied inputs


def test_spp_to_sppf_accepts_progressions() -> None:
    module = spp_to_sppf(YoloSPP((5, 9, 13), "ultralytics"))
    assert isinstance(module, SPPF)
    assert (module.kernel_size, module.repeats, module.order) == (5, 3, "ultralytics")
    assert module.equivalent_kernel_sizes == (5, 9, 13)
    assert spp_to_sppf(YoloSPP((3, 5, 7, 9))).repeats == 4
    x = torch.randn(1, 2, 8, 8)
    assert torch.equal(spp_to_sppf(YoloSPP())(x), YoloSPP()(x))


def test_sppf_n_is_a_deprecated_alias_of_repeats() -> None:
    x = torch.randn(1, 2, 7, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the positional third argument is repeats: no warning
        expected = sppf(x, 3, 2)
        module = SPPF(3, 2)
    assert torch.equal(sppf(x, 3, repeats=2), expected)
    assert repr(module) == "SPPF(kernel_size=3, repeats=2, order='ultralytics')"
    with pytest.warns(DeprecationWarning, match="use repeats"):
        assert torch.equal(sppf(x, 3, n=2), expected)
    with pytest.warns(DeprecationWarning, match="use repeats"):
        old = SPPF(3, n=2)
    assert old.repeats == 2 and repr(old) == repr(module)
    assert torch.equal(old(x), expected)
    with pytest.warns(DeprecationWarning, match=r"use SPPF\.repeats"):
        assert old.n == 2
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="pass repeats only"):
        sppf(x, 3, 4, n=2)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="n must be positive"):
        SPPF(n=0)  # errors name the parameter the caller passed
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="n must be an int"):
        SPPF(n=True)
    with pytest.warns(DeprecationWarning, match=r"use SPPF\.repeats"):
        old.n = 3
    assert old.repeats == 3


def test_sppf_pickled_before_the_rename_loads() -> None:
    """A whole SPPF pickled when its count was the attribute ``n`` unpickles with ``repeats``."""
    module = SPPF(3, 2, "darknet")
    state = {("n" if key == "repeats" else key): value for key, value in module.__dict__.items()}
    old = SPPF.__new__(SPPF)
    old.__setstate__(state)
    x = torch.randn(1, 2, 6, 5)
    assert old.repeats == 2 and repr(old) == repr(module) and torch.equal(old(x), module(x))
    assert torch.equal(pickle.loads(pickle.dumps(module))(x), module(x))


@pytest.mark.parametrize("kernel_sizes", [(3, 5, 9), (5, 9, 15), (9, 5, 13)])
def test_spp_to_sppf_refuses_with_reason(kernel_sizes: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"cannot rewrite.*\(i \+ 1\) \* \(k - 1\) \+ 1"):
        spp_to_sppf(YoloSPP(kernel_sizes))


def test_even_kernels_refused() -> None:
    with pytest.raises(ValueError, match="kernel_sizes must be positive odd"):
        YoloSPP((4, 8, 12))
    with pytest.raises(ValueError, match="kernel_size must be a positive odd"):
        SPPF(4)
    with pytest.raises(TypeError, match="module must be a YoloSPP"):
        spp_to_sppf(nn.MaxPool2d(5, 1, 2))  # type: ignore[arg-type]


def test_darknet_seed_cfg() -> None:
    module = from_darknet_cfg(SEED_CFG)
    assert isinstance(module, YoloSPP)
    assert module.kernel_sizes == (5, 9, 13)
    assert module.order == "darknet"
    x = torch.randn(1, 2, 10, 10)
    assert torch.equal(module(x), yolo_spp(x, (5, 9, 13), "darknet"))


def test_darknet_cascade_and_ultralytics_order() -> None:
    cascade = "[maxpool]\nsize=5\nstride=1\n[maxpool]\nsize=5\n[maxpool]\nsize=5\n[route]\nlayers=-4,-3,-2,-1"
    module = from_darknet_cfg(cascade)
    assert (module.kernel_sizes, module.order) == ((5, 9, 13), "ultralytics")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            SEED_CFG.replace("[maxpool]\nstride=1\nsize=9", "[convolutional]\nsize=9"),
            r"\[convolutional\] at line",
        ),
        (SEED_CFG.replace("size=9", "size=nine"), "line 11.*size must be an int"),
        (SEED_CFG.replace("size=13", "size 13"), "line 18: expected 'key=value'"),
        (SEED_CFG.replace("stride=1\nsize=5", "stride=2\nsize=5"), "stride=1, got stride=2"),
        (SEED_CFG.replace("size=9", "size=8"), "size must be a positive odd"),
        (SEED_CFG.replace("layers=-1,-3,-5,-6", "layers=-1,-5,-3,-6"), "not an SPP concatenation"),
        (SEED_CFG.replace("layers=-1,-3,-5,-6", "layers=-1,-3,-5,-9"), "points before the block's input"),
        (SEED_CFG.replace("layers=-2", "layers=3"), "absolute layer index"),
        (SEED_CFG.replace("stride=1\nsize=5", "stride=1\nsize=5\nfoo=1"), r"unknown option\(s\) \['foo'\]"),
        (SEED_CFG.replace("\n[route]\nlayers=-1,-3,-5,-6", ""), "must end with a \\[route\\]"),
        ("", "no \\[maxpool\\]"),
    ],
)
def test_darknet_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_darknet_cfg(text)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision(dtype: torch.dtype) -> None:
    x = torch.randn(1, 3, 9, 9).to(dtype)
    assert torch.equal(yolo_spp(x).float(), yolo_spp(x.float()))
    assert torch.equal(sppf(x), yolo_spp(x, order="ultralytics"))
    xg = x.clone().requires_grad_()
    torch.autograd.backward(sppf(xg).sum())
    assert xg.grad is not None and xg.grad.dtype == dtype
    torch.testing.assert_close(spatial_pyramid_pool(x).float(), spatial_pyramid_pool(x.float()))


def test_factory_and_repr() -> None:
    for name, channels in (("spp2d", 2 * 21), ("yolo_spp", 4 * 2), ("sppf", 4 * 2)):
        info = tp.get_pool_info(name)
        assert info.family == "pyramid"
        module = tp.create_pool(name, **info.example_kwargs)
        y = module(torch.randn(1, 2, 6, 6))
        assert y.shape[1] == channels
        assert "(" in repr(module) and module.extra_repr()


def test_registry_names_follow_the_rule() -> None:
    """The 2-d SPPNet is ``spp2d``; the suffix-less ``spp`` resolves to it (the same pool)."""
    names = {info.name for info in tp.list_pools("pyramid")}
    assert {"spp1d", "spp2d", "spp3d", "yolo_spp", "sppf"} <= names and "spp" not in names
    assert tp.get_pool_info("spp") is tp.get_pool_info("spp2d")
    old, new = tp.create_pool("spp", levels=(1, 2)), tp.create_pool("spp2d", levels=(1, 2))
    assert type(old) is type(new) is SpatialPyramidPool and repr(old) == repr(new)
    x = torch.randn(2, 3, 5, 6)
    assert torch.equal(old(x), new(x))


def _wrong(value: object) -> Any:
    """``value`` unchanged, typed ``Any``: a deliberately wrong argument the type checker must let through."""
    return value


@pytest.mark.parametrize(
    ("call", "error", "name"),
    [
        (lambda: spatial_pyramid_pool(torch.randn(1, 2, 4, 4), ()), ValueError, "levels"),
        (lambda: spatial_pyramid_pool(torch.randn(1, 2, 4, 4), (0, 2)), ValueError, "levels"),
        (lambda: spatial_pyramid_pool(torch.randn(1, 2, 4, 4), _wrong(4)), TypeError, "levels"),
        (lambda: spatial_pyramid_pool(torch.randn(1, 2, 4, 4), _wrong((1.5,))), TypeError, "levels"),
        (lambda: spatial_pyramid_pool(torch.randn(1, 2, 4, 4), mode="min"), ValueError, "mode"),
        (lambda: spatial_pyramid_pool(torch.randn(1, 2, 4, 4), flatten=_wrong(1)), TypeError, "flatten"),
        (lambda: spatial_pyramid_pool(torch.randn(2, 4), (1,)), ValueError, "input"),
        (lambda: spatial_pyramid_pool(torch.randn(1, 2, 0, 4), (1,)), ValueError, "input"),
        (lambda: spatial_pyramid_pool(torch.arange(16).reshape(1, 1, 4, 4), (1,)), TypeError, "input"),
        (lambda: yolo_spp(torch.randn(1, 2, 4, 4), (5, 6)), ValueError, "kernel_sizes"),
        (lambda: yolo_spp(torch.randn(1, 2, 4, 4), _wrong(5)), TypeError, "kernel_sizes"),
        (lambda: yolo_spp(torch.randn(1, 2, 4, 4), ()), ValueError, "kernel_sizes"),
        (lambda: yolo_spp(torch.randn(1, 2, 4, 4), (5, 5)), ValueError, "kernel_sizes must not repeat"),
        (lambda: yolo_spp(torch.randn(1, 2, 4, 4), order="yolo"), ValueError, "order"),
        (lambda: yolo_spp(torch.randn(2, 4, 4, 4, 4)), ValueError, "input"),
        (lambda: sppf(torch.randn(1, 2, 4, 4), 5, 0), ValueError, "repeats must"),
        (lambda: sppf(torch.randn(1, 2, 4, 4), _wrong(5.0)), TypeError, "kernel_size"),
        (lambda: SPPF(repeats=True), TypeError, "repeats must"),
        (lambda: from_darknet_cfg(_wrong(b"[maxpool]")), TypeError, "text"),
    ],
)
def test_bad_arguments(call: Callable[[], object], error: type[Exception], name: str) -> None:
    with pytest.raises(error, match=name):
        call()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_tie_gradients_go_to_a_window_maximum(dtype: torch.dtype) -> None:
    """Many ties (small integers, -inf): every output's gradient reaches one maximum of its window.

    On ties the cascade may pick another maximum than ``F.max_pool2d`` does, so compare what
    must hold for any max-pool subgradient: per kernel, the gradient is conserved and lands
    only on cells that are the maximum of a window containing them.
    """
    g = torch.Generator().manual_seed(3)
    x = torch.randint(-2, 2, (2, 3, 9, 8), generator=g).to(dtype)
    x[0, 0, :2] = float("-inf")
    for k in (5, 9, 13):
        ours_in = x.clone().requires_grad_()
        out = yolo_spp(ours_in, (k,), order="ultralytics")[:, 3:]
        assert torch.equal(out, F.max_pool2d(x, k, 1, k // 2))
        grad = torch.randint(1, 4, out.shape, generator=g).to(dtype)
        torch.autograd.backward(out, grad)
        assert ours_in.grad is not None
        assert ours_in.grad.double().sum() == grad.double().sum()
        # a cell is some window's maximum iff it equals the min over its windows of their maxima
        is_window_max = torch.eq(x, -F.max_pool2d(-F.max_pool2d(x, k, 1, k // 2), k, 1, k // 2))
        assert not (ours_in.grad != 0)[~is_window_max].any()


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_blocked_evaluation_matches(
    monkeypatch: pytest.MonkeyPatch, memory_format: torch.memory_format
) -> None:
    """Large inputs run in blocks of samples and channels (values path); force tiny blocks and compare."""
    import torchpool.ops._stride_one_max as pyramid

    x = tiefree(3, 5, 6, 7).to(memory_format=memory_format)
    expected = UltralyticsSPP()(x)
    monkeypatch.setattr(pyramid, "_BLOCK_ELEMENTS", 50)
    assert torch.equal(yolo_spp(x, order="ultralytics"), expected)
