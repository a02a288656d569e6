"""SPP on regions (``roi_spatial_pyramid_pool``): torchvision's ``roi_pool`` as the peer, the loop reference.

The op table (``tests/records/roi_pyramid.py``, run by ``test_ops.py``) covers the fixed box sets
in every dtype, gradcheck, layouts, Module equals function and ``state_dict``. Here: random boxes
(over the border, malformed, wholly outside, tiny) against torchvision at every single level,
exactly, in float32 and float64 (the peer tests skip where torchvision is not installed: CI runs
them in the zoo environment); many levels against the float64 loop reference (both the levels
derived from a finer one and those pooled directly); the order of the flattened features
(SpatialPyramidPool2d's, checked on whole-map boxes); the gradient; half precision; empty boxes;
the validation of ``boxes``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch
from records.roi_pyramid import boxes_for, roi_spp_reference
from torch import Tensor

import torchpool as tp
import torchpool.ops._roi_native as N
from torchpool.ops.roi_pyramid import _bins, _derived


@pytest.fixture(autouse=True)
def _pytorch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pure-PyTorch paths (float64, half precision and machines without a C compiler take them);
    the C kernel's tests are in test_roi_native.py."""
    monkeypatch.setattr(N, "_library", lambda: None)


def _random_boxes(n: int, height: int, width: int, count: int, scale: float, seed: int) -> Tensor:
    """Boxes in image coordinates: anywhere from 4 cells before the map to 4 after, sizes from
    negative (malformed) to larger than the map, some one-cell ones."""
    g = torch.Generator().manual_seed(seed)
    size = torch.tensor([width, height], dtype=torch.float64) / scale
    start = (torch.rand(count, 2, generator=g, dtype=torch.float64) * 1.3 - 0.15) * size
    extent = (torch.rand(count, 2, generator=g, dtype=torch.float64) * 1.2 - 0.1) * size
    extent[: count // 8] = 0.0  # one cell
    index = torch.randint(0, n, (count, 1), generator=g).double()
    return torch.cat([index, start, start + extent], dim=1)


def _features(shape: tuple[int, ...], dtype: torch.dtype = torch.float64, seed: int = 0) -> Tensor:
    """Distinct values (a unique max in every bin)."""
    g = torch.Generator().manual_seed(seed)
    numel = math.prod(shape)
    return (torch.randperm(numel, generator=g).double() / numel * 4 - 2).reshape(shape).to(dtype)


def _levels(out: Any) -> list[Tensor]:
    assert isinstance(out, list)
    return out


# ------------------------------------------------------------------ torchvision, the peer


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1 / 16, 1.0, 0.3, 0.5])
def test_each_level_equals_torchvision_roi_pool(dtype: torch.dtype, scale: float) -> None:
    tv = pytest.importorskip("torchvision")
    x = torch.randn(3, 4, 30, 60, generator=torch.Generator().manual_seed(1), dtype=dtype)
    # with regions of 57 x 29 cells, whose 7 bins end a cell after the region (float32 / float64)
    odd = torch.tensor([[1, 0.0, 0.0, 56 / scale, 28 / scale]], dtype=torch.float64)
    boxes = torch.cat([_random_boxes(3, 30, 60, 300, scale, seed=2), odd]).to(dtype)
    levels: tuple[int | tuple[int, int], ...] = (1, 2, 4, 3, 6, 7, 5, (2, 3), (4, 6), 20)
    for requires_grad in (False, True):  # the fast forward and the differentiable one
        x.requires_grad_(requires_grad)
        outs = _levels(tp.roi_spatial_pyramid_pool(x, boxes, levels, spatial_scale=scale, flatten=False))
        for level, out in zip(levels, outs):
            size = (level, level) if isinstance(level, int) else level
            want = tv.ops.roi_pool(x, boxes, size, scale)
            assert torch.equal(out, want), (level, (out - want).abs().max())
        one = tp.roi_spatial_pyramid_pool(x, boxes, (6,), spatial_scale=scale)  # a single level, flattened
        assert torch.equal(one, tv.ops.roi_pool(x, boxes, (6, 6), scale).flatten(1))


def test_list_of_boxes_equals_torchvision() -> None:
    tv = pytest.importorskip("torchvision")
    x = torch.randn(3, 5, 38, 50, generator=torch.Generator().manual_seed(3))
    boxes = _random_boxes(3, 38, 50, 60, 1 / 16, seed=4).float()
    per_image = [boxes[boxes[:, 0] == i, 1:] for i in range(3)]
    ours = tp.RoISpatialPyramidPool((1, 2, 4), spatial_scale=1 / 16, flatten=False)(x, per_image)
    for level, out in zip((1, 2, 4), _levels(ours)):
        assert torch.equal(out, tv.ops.roi_pool(x, per_image, (level, level), 1 / 16))


def test_gradient_equals_torchvision() -> None:
    tv = pytest.importorskip("torchvision")
    x = _features((2, 3, 11, 14)).requires_grad_(True)
    boxes = _random_boxes(2, 11, 14, 80, 0.5, seed=5)
    for level in (1, 3, 4):
        weight = torch.randn(
            80, 3, level, level, generator=torch.Generator().manual_seed(level), dtype=x.dtype
        )
        out = _levels(tp.roi_spatial_pyramid_pool(x, boxes, (level,), spatial_scale=0.5, flatten=False))[0]
        (ours,) = torch.autograd.grad((out * weight).sum(), x)
        (want,) = torch.autograd.grad((tv.ops.roi_pool(x, boxes, level, 0.5) * weight).sum(), x)
        torch.testing.assert_close(ours, want, rtol=0, atol=1e-12)


def test_derived_levels_gradient_equals_torchvision() -> None:
    """Levels (1, 2, 4), 2 derived from 4 and 1 from 2: the coarse levels' gradients, added to the
    finer bins that hold their maxima before one scatter into the map, give torchvision's gradient
    (the sum over the levels, each pooled on its own), boxes over the border and empty bins included."""
    tv = pytest.importorskip("torchvision")
    x = _features((2, 3, 11, 14)).requires_grad_(True)
    boxes = _random_boxes(2, 11, 14, 80, 0.5, seed=9)
    levels = [(4, 4), (2, 2), (1, 1)]
    assert _derived(levels, _bins(boxes, levels, 11, 14, 0.5, torch.float64)) == {
        (2, 2): (4, 4),
        (1, 1): (2, 2),
    }
    g = torch.Generator().manual_seed(3)
    weights = [torch.randn(80, 3, n, n, generator=g, dtype=x.dtype) for n in (1, 2, 4)]
    outs = _levels(tp.roi_spatial_pyramid_pool(x, boxes, (1, 2, 4), spatial_scale=0.5, flatten=False))
    (ours,) = torch.autograd.grad(torch.stack([(o * w).sum() for o, w in zip(outs, weights)]).sum(), x)
    peer = [(tv.ops.roi_pool(x, boxes, n, 0.5) * w).sum() for n, w in zip((1, 2, 4), weights)]
    (want,) = torch.autograd.grad(torch.stack(peer).sum(), x)
    assert float(want.abs().sum()) > 0
    torch.testing.assert_close(ours, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("levels", [(1, 2, 4), (3, 1)], ids=str)
def test_float32_gradient_rides_on_the_values(levels: tuple[int, ...]) -> None:
    """A finite float32 map pools float64 keys that carry each value's cell (no search for the cell
    afterwards): the gradient equals the searched one of the same values in float64 (each bin's to
    its max's cell; up to float32 sums) and, where installed, torchvision's, boxes over the border,
    malformed and empty bins included; the maxima equal the forward without a gradient."""
    import torchpool.ops.roi_pyramid as roi

    x = _features((2, 3, 11, 14), torch.float32, seed=4).requires_grad_(True)
    assert roi._keyed(x.detach(), True) == (True, False)
    boxes = _random_boxes(2, 11, 14, 80, 0.5, seed=12).float()
    g = torch.Generator().manual_seed(5)
    outs = _levels(tp.roi_spatial_pyramid_pool(x, boxes, levels, spatial_scale=0.5, flatten=False))
    weights = [torch.randn(o.shape, generator=g) for o in outs]
    (ours,) = torch.autograd.grad(torch.stack([(o * w).sum() for o, w in zip(outs, weights)]).sum(), x)
    with torch.no_grad():
        plain = _levels(tp.roi_spatial_pyramid_pool(x, boxes, levels, spatial_scale=0.5, flatten=False))
    assert all(torch.equal(a, b) for a, b in zip(outs, plain))
    x64 = x.detach().double().requires_grad_(True)
    outs64 = _levels(
        tp.roi_spatial_pyramid_pool(x64, boxes.double(), levels, spatial_scale=0.5, flatten=False)
    )
    assert all(torch.equal(a.double(), b) for a, b in zip(outs, outs64))
    total = torch.stack([(o * w.double()).sum() for o, w in zip(outs64, weights)]).sum()
    (want,) = torch.autograd.grad(total, x64)
    assert float(want.abs().sum()) > 0 and bool(((ours != 0) == (want != 0)).all())  # the same cells
    torch.testing.assert_close(ours.double(), want, rtol=1e-6, atol=1e-6)
    try:
        from torchvision.ops import roi_pool  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return
    peer = [(roi_pool(x, boxes, n, 0.5) * w).sum() for n, w in zip(levels, weights)]
    (tv_grad,) = torch.autograd.grad(torch.stack(peer).sum(), x)
    torch.testing.assert_close(ours, tv_grad, rtol=1e-6, atol=1e-6)


def test_float32_keys_ties_zeros_and_infinities() -> None:
    """Keys of tied values (a constant map, zeros of both signs) give each bin's gradient to one of its
    cells; a map with an infinity or a NaN searches for the cell instead (a key would be NaN / NaN
    must propagate), with the same results."""
    import torchpool.ops.roi_pyramid as roi

    boxes = torch.tensor([[0, 0.0, 0.0, 6.0, 5.0], [0, 2.0, 1.0, 9.0, 9.0], [0, 20.0, 20.0, 30.0, 30.0]])
    for fill in (0.5, 0.0, -0.0, -3.0):
        x = torch.full((1, 2, 6, 7), fill, requires_grad=True)
        out = tp.roi_spatial_pyramid_pool(x, boxes, (1, 2, 4))
        assert torch.equal(out, roi_spp_reference(x.detach(), boxes, (1, 2, 4)).float())
        (grad,) = torch.autograd.grad(out.sum(), x)
        nonempty = (roi_spp_reference(torch.ones_like(x), boxes, (1, 2, 4)) != 0).sum()
        assert float(grad.sum()) == float(nonempty) and bool((grad >= 0).all())
    x = _features((1, 2, 6, 7), torch.float32)
    x[0, 1, 2, 3] = -0.0
    x[0, 1, 2, 4] = 0.0
    x[0, 1] = torch.where(x[0, 1] > 0, -x[0, 1], x[0, 1])  # channel 1: its max is a zero, twice
    if torch.set_flush_denormal(True):  # the keys of zeros are denormal: no keys where they flush
        try:
            assert roi._keyed(x, True) == (False, False)
        finally:
            torch.set_flush_denormal(False)
    for special, keyed in ((None, True), (math.inf, False), (-math.inf, False), (math.nan, False)):
        y = x.clone()
        if special is not None:
            y[0, 0, 5, 6] = special
        assert roi._keyed(y, True)[0] is keyed
        y.requires_grad_(True)
        out = tp.roi_spatial_pyramid_pool(y, boxes, (1, 2, 4))
        want = roi_spp_reference(y.detach(), boxes, (1, 2, 4))
        torch.testing.assert_close(out.double(), want, rtol=0, atol=0, equal_nan=True)
        (grad,) = torch.autograd.grad(out.nan_to_num().sum(), y)
        assert float(grad[0, 1, 2, 3] + grad[0, 1, 2, 4]) > 0  # the zeros took channel 1's maxima
        y64 = y.detach().double().requires_grad_(True)
        (grad64,) = torch.autograd.grad(
            tp.roi_spatial_pyramid_pool(y64, boxes.double(), (1, 2, 4)).nan_to_num().sum(), y64
        )
        torch.testing.assert_close(grad[0, 0].double(), grad64[0, 0])  # channel 0: distinct values


# ------------------------------------------------------------------ the float64 loop reference


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize(
    "levels", [(1, 2, 4), (1, 3, 6), (6, 3, 2, 1), (2, 4, 8), (5,), ((1, 2), (2, 4), 3)], ids=str
)
def test_matches_the_loop_reference(mode: str, levels: tuple[int | tuple[int, int], ...]) -> None:
    x = _features((2, 3, 10, 13))
    boxes = _random_boxes(2, 10, 13, 64, 1 / 16, seed=6)
    out = tp.roi_spatial_pyramid_pool(x, boxes, levels, spatial_scale=1 / 16, mode=mode)
    torch.testing.assert_close(out, roi_spp_reference(x, boxes, levels, 1 / 16, mode), rtol=1e-12, atol=1e-12)


def test_both_kinds_of_level_are_exercised() -> None:
    """Levels (1, 2, 4): 2 is derived from 4 and 1 from 2 for every box (1 from 4 without 2); 7 bins
    of a 57-cell region in float32 end a cell after the region (``7 * fl(57 / 7)`` rounds up to
    57.000004), so there 1 is pooled directly."""
    boxes = _random_boxes(1, 40, 40, 200, 1.0, seed=7)
    levels = [(4, 4), (2, 2), (1, 1)]
    assert _derived(levels, _bins(boxes, levels, 40, 40, 1.0, torch.float32)) == {
        (2, 2): (4, 4),
        (1, 1): (2, 2),
    }
    assert _derived([(4, 4), (1, 1)], _bins(boxes, [(4, 4), (1, 1)], 40, 40, 1.0, torch.float32)) == {
        (1, 1): (4, 4)
    }
    odd = torch.tensor([[0.0, 0.0, 0.0, 56.0, 56.0]])
    seven = [(7, 7), (1, 1)]
    bins = _bins(odd, seven, 80, 80, 1.0, torch.float32)
    assert (int(bins[1][0, 6]), int(bins[1][0, 7])) == (58, 57)
    assert _derived(seven, bins) == {}
    assert _derived(seven, _bins(odd, seven, 80, 80, 1.0, torch.float64)) == {(1, 1): (7, 7)}


def test_flattened_order_is_spatial_pyramid_pool2d_s() -> None:
    """A box over the whole map at scale 1 has the adaptive bins: the flat vector is SPP's."""
    for height, width in ((7, 9), (13, 5), (16, 16)):
        x = _features((2, 3, height, width))
        boxes = torch.tensor([[i, 0.0, 0.0, width - 1.0, height - 1.0] for i in range(2)], dtype=x.dtype)
        for mode in ("max", "avg"):
            ours = tp.roi_spatial_pyramid_pool(x, boxes, (1, 2, 4), mode=mode)
            torch.testing.assert_close(
                ours, tp.spatial_pyramid_pool2d(x, (1, 2, 4), mode), rtol=1e-12, atol=1e-12
            )


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_gradcheck(mode: str) -> None:
    x = _features((2, 2, 7, 8)).requires_grad_(True)
    boxes = _random_boxes(2, 7, 8, 12, 0.5, seed=8)
    for levels in ((1, 2, 4), (1, 3)):
        assert torch.autograd.gradcheck(
            lambda t, lv=levels: tp.roi_spatial_pyramid_pool(t, boxes, lv, spatial_scale=0.5, mode=mode),
            (x,),
            eps=1e-6,
            atol=1e-5,
        )


def test_tied_maxima_give_the_gradient_to_one_cell() -> None:
    """A constant map: every non-empty bin's gradient goes to one of its cells, as torchvision's does."""
    x1 = torch.full((1, 3, 6, 7), 0.5, dtype=torch.float64, requires_grad=True)
    one = tp.roi_spatial_pyramid_pool(x1, torch.tensor([[0, 2.0, 1.0, 5.0, 4.0]], dtype=torch.float64), (1,))
    (grad1,) = torch.autograd.grad(one.sum(), x1)
    assert (grad1 != 0).sum() == 3 and bool((grad1[:, :, 1:5, 2:6].sum((2, 3)) == 1).all())
    x = torch.full((1, 2, 6, 7), 0.5, dtype=torch.float64, requires_grad=True)
    boxes = torch.tensor([[0, 0.0, 0.0, 6.0, 5.0], [0, 2.0, 1.0, 9.0, 9.0], [0, 20.0, 20.0, 30.0, 30.0]])
    out = tp.roi_spatial_pyramid_pool(x, boxes.double(), (1, 2, 4))
    (grad,) = torch.autograd.grad(out.sum(), x)
    nonempty = (roi_spp_reference(torch.ones_like(x), boxes, (1, 2, 4)) != 0).sum()
    torch.testing.assert_close(grad.sum(), nonempty.double())
    assert bool((grad >= 0).all())


# ------------------------------------------------------------------ dtypes, layouts, the Module


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_half_precision(dtype: torch.dtype, mode: str) -> None:
    x = _features((2, 3, 12, 15), dtype)
    boxes = _random_boxes(2, 12, 15, 40, 1 / 16, seed=9)
    out = tp.roi_spatial_pyramid_pool(x, boxes, (1, 2, 4), spatial_scale=1 / 16, mode=mode)
    assert out.dtype == dtype
    want = roi_spp_reference(x.double(), boxes, (1, 2, 4), 1 / 16, mode)
    if mode == "max":  # a selection: the exact values
        assert torch.equal(out.double(), want)
    else:  # the mean of the rounded values, rounded once
        torch.testing.assert_close(out.double(), want.to(dtype).double(), rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_layouts_and_module(mode: str) -> None:
    x = _features((2, 5, 9, 11), torch.float32)
    boxes = _random_boxes(2, 9, 11, 30, 0.25, seed=10).float()
    want = tp.roi_spatial_pyramid_pool(x, boxes, (1, 2, 4), spatial_scale=0.25, mode=mode)
    last = tp.roi_spatial_pyramid_pool(
        x.to(memory_format=torch.channels_last), boxes, (1, 2, 4), spatial_scale=0.25, mode=mode
    )
    wide = torch.zeros(2, 5, 9, 22)
    wide[..., ::2] = x
    strided = tp.roi_spatial_pyramid_pool(wide[..., ::2], boxes, (1, 2, 4), spatial_scale=0.25, mode=mode)
    assert torch.equal(last, want) and torch.equal(strided, want)
    module = tp.RoISpatialPyramidPool((1, 2, 4), 0.25, mode)
    assert torch.equal(module(x, boxes), want)
    assert module.output_features(5) == want.shape[1] == 5 * 21
    assert module.state_dict() == {}
    rebuilt = tp.RoISpatialPyramidPool((1, 2, 4), 0.25, mode)
    rebuilt.load_state_dict(module.state_dict())
    assert torch.equal(rebuilt(x, boxes), want)
    assert "spatial_scale=0.25" in repr(module)
    levels = _levels(tp.RoISpatialPyramidPool((1, 2, 4), 0.25, mode, flatten=False)(x, boxes))
    assert [t.shape for t in levels] == [(30, 5, n, n) for n in (1, 2, 4)]
    assert torch.equal(torch.cat([t.flatten(1) for t in levels], dim=1), want)


def test_empty_boxes_nan_and_meta() -> None:
    x = _features((2, 3, 8, 8), torch.float32)
    assert tp.roi_spatial_pyramid_pool(x, torch.zeros(0, 5)).shape == (0, 3 * 21)
    assert tp.roi_spatial_pyramid_pool(x, [torch.zeros(0, 4), torch.zeros(0, 4)]).shape == (0, 63)
    assert tp.roi_spatial_pyramid_pool(x, []).shape == (0, 63)
    empty = _levels(tp.roi_spatial_pyramid_pool(x, torch.zeros(0, 5), (1, 2), flatten=False))
    assert [t.shape for t in empty] == [(0, 3, 1, 1), (0, 3, 2, 2)]
    x[1, 2, 3, 4] = math.nan
    boxes = torch.tensor([[1, 0.0, 0.0, 7.0, 7.0], [0, 0.0, 0.0, 7.0, 7.0]])
    for mode in ("max", "avg"):
        out = tp.roi_spatial_pyramid_pool(x, boxes, (1,), mode=mode)
        assert (
            bool(out[0, 2].isnan()) and not bool(out[0, :2].isnan().any()) and not bool(out[1].isnan().any())
        )
    meta = tp.roi_spatial_pyramid_pool(x.to("meta"), boxes.to("meta"), (1, 2, 4))
    assert meta.device.type == "meta" and meta.shape == (2, 63)


@pytest.mark.parametrize("levels", [(1,), (1, 2, 4), (4,)], ids=str)
def test_a_nan_bin_gives_its_gradient_to_the_nan_cell(levels: tuple[int, ...]) -> None:
    """As PyTorch's max pools: the NaN is the max, so its cell takes the gradient (direct levels and
    the levels derived from them)."""
    x = _features((2, 3, 8, 8))
    x[1, 2, 3, 4] = math.nan
    x.requires_grad_(True)
    boxes = torch.tensor([[1, 0.0, 0.0, 7.0, 7.0], [0, 0.0, 0.0, 7.0, 7.0]], dtype=torch.float64)
    outs = _levels(tp.roi_spatial_pyramid_pool(x, boxes, levels, flatten=False))
    (grad,) = torch.autograd.grad(torch.cat([out[0].flatten() for out in outs]).sum(), x)
    nan_bins = sum(int(out[0, 2].isnan().sum()) for out in outs)
    assert nan_bins == len(levels)  # one NaN bin per level
    assert grad[1, 2, 3, 4] == nan_bins and float(grad[1, 2].sum()) == sum(n * n for n in levels)
    assert float(grad[0].abs().sum()) == 0


@pytest.mark.parametrize(
    ("boxes", "error", "match"),
    [
        (torch.zeros(3, 4), ValueError, r"boxes must be a Tensor\[K, 5\]"),
        (torch.zeros(3), ValueError, "boxes must be"),
        ([torch.zeros(2, 5)], ValueError, r"boxes\[0\] must be a Tensor\[L, 4\]"),
        ([torch.zeros(1, 4)] * 3, ValueError, "at most one tensor per image"),
        ([torch.zeros(1, 4), "box"], TypeError, r"boxes\[1\]"),
        (torch.zeros(3, 5, dtype=torch.long), TypeError, "boxes must have a floating-point dtype"),
        ([torch.zeros(1, 4, dtype=torch.int32)], TypeError, r"boxes\[0\] must have a floating-point dtype"),
        (torch.tensor([[2.0, 0, 0, 1, 1]]), ValueError, r"batch indices .* \[0, 2\)"),
        (torch.tensor([[-1.0, 0, 0, 1, 1]]), ValueError, "batch indices"),
        (torch.tensor([[0.5, 0, 0, 1, 1]]), ValueError, "batch indices"),
        (torch.tensor([[0.0, 0, math.nan, 1, 1]]), ValueError, "boxes must be finite"),
        (torch.tensor([[0.0, 0, 0, 1, math.inf]]), ValueError, "boxes must be finite"),
        (torch.tensor([[0.0, 0, 0, 1, 3e9]]), ValueError, "boxes' coordinates"),
        (torch.zeros(1, 5, device="meta"), ValueError, "boxes are on meta"),
        ("boxes", TypeError, "boxes must be"),
    ],
)
def test_bad_boxes(boxes: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        tp.roi_spatial_pyramid_pool(torch.zeros(2, 3, 8, 8), boxes)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda b: tp.roi_spatial_pyramid_pool(torch.zeros(3, 8, 8), b), ValueError, "features must have 4"),
        (lambda b: tp.roi_spatial_pyramid_pool(torch.zeros(1, 3, 8, 8).long(), b), TypeError, "features"),
        (lambda b: tp.roi_spatial_pyramid_pool(torch.zeros(1, 3, 0, 8), b), ValueError, "features"),
        (lambda b: tp.roi_spatial_pyramid_pool(torch.zeros(1, 3, 8, 8), b, ()), ValueError, "levels"),
        (lambda b: tp.roi_spatial_pyramid_pool(torch.zeros(1, 3, 8, 8), b, (0,)), ValueError, "levels"),
        (
            lambda b: tp.roi_spatial_pyramid_pool(torch.zeros(1, 3, 8, 8), b, spatial_scale=0),
            ValueError,
            "scale",
        ),
        (
            lambda b: tp.roi_spatial_pyramid_pool(torch.zeros(1, 3, 8, 8), b, spatial_scale=-1),
            ValueError,
            "scale",
        ),
        (lambda b: tp.roi_spatial_pyramid_pool(torch.zeros(1, 3, 8, 8), b, mode="sum"), ValueError, "mode"),
        (lambda b: tp.RoISpatialPyramidPool(spatial_scale=math.nan), ValueError, "spatial_scale"),
        (lambda b: tp.RoISpatialPyramidPool(levels=4), TypeError, "levels"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments(call: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call(torch.zeros(1, 5))


@pytest.mark.parametrize(
    ("chunk", "table", "groups", "slices"),
    [(500, 2**22, 4, [3]), (2**21, 1, 4, [1, 1, 1]), (500, 2500, 3, [2, 1]), (2**21, 2**22, 1, [3])],
    ids=["box-chunks", "one-channel-slices", "all-three", "one-group"],
)
def test_chunks_slices_and_groups_give_the_same_result(
    monkeypatch: pytest.MonkeyPatch, chunk: int, table: int, groups: int, slices: list[int]
) -> None:
    """Thousands of regions are gathered in chunks of boxes, the channels pooled in slices (bounded
    memory) and the boxes in groups of similar widths: same values, same gradient, whatever the split.
    (The row table here is 2 x 32 x 15 per channel; slices of one or two channels take the
    argmax's last step by a shift, three channels by a division.)"""
    import torchpool.ops.roi_pyramid as roi

    x = _features((2, 3, 12, 15)).requires_grad_(True)
    boxes = _random_boxes(2, 12, 15, 50, 0.5, seed=11)
    levels = (1, 2, 4, 3, (5, 7))
    whole = tp.roi_spatial_pyramid_pool(x, boxes, levels, spatial_scale=0.5)
    (grad,) = torch.autograd.grad(whole.sum(), x)
    for name, value in (("_CHUNK", chunk), ("_TABLE", table)):  # the forward's bounds and the argmax's
        monkeypatch.setattr(roi, name, value)
        monkeypatch.setattr(roi, f"{name}_ARGMAX", value)
    monkeypatch.setattr(roi, "_GROUPS", groups)
    widths: list[int] = []
    row_table = roi._row_table

    def spy(x: Tensor, depth: int, table: Tensor, cell: Tensor | None = None) -> Tensor:
        widths.append(table.shape[3])
        return row_table(x, depth, table, cell)

    monkeypatch.setattr(roi, "_row_table", spy)
    chunked = tp.roi_spatial_pyramid_pool(x, boxes, levels, spatial_scale=0.5)
    assert widths == slices
    (chunked_grad,) = torch.autograd.grad(chunked.sum(), x)
    assert torch.equal(chunked, whole) and torch.equal(chunked_grad, grad)
    with torch.no_grad():  # the forward without the argmax
        assert torch.equal(tp.roi_spatial_pyramid_pool(x, boxes, levels, spatial_scale=0.5), whole)
    assert widths == slices * 2
    torch.testing.assert_close(chunked, roi_spp_reference(x, boxes, levels, 0.5), rtol=0, atol=0)


# ------------------------------------------------------------ torch.compile, torch.export, the JIT tracer


def _edge_and_random_boxes(seed: int) -> Tensor:
    """64 boxes on a (2, C, 10, 13) map at scale 1/2: the records' edge cases (the whole map, over the
    border, wholly outside, malformed, one cell, half-integer corners) and random ones."""
    return torch.cat([boxes_for(2, 10, 13, 0.5), _random_boxes(2, 10, 13, 50, 0.5, seed)])


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_compiled_fullgraph_equals_eager(mode: str) -> None:
    """``torch.compile(fullgraph=True)`` (aot_eager: the graph dynamo and AOTAutograd trace, run
    eagerly): the max mode is one operator with the eager forward inside, the avg mode plain ops;
    values equal eager's bit for bit on several box sets (levels derived from finer ones and pooled
    directly), the gradient up to the order of its sums."""
    levels = (1, 2, 4, 3)

    def pool(x: Tensor, boxes: Tensor) -> Tensor:
        out: Tensor = tp.roi_spatial_pyramid_pool(x, boxes, levels, spatial_scale=0.5, mode=mode)
        return out

    compiled = torch.compile(pool, backend="aot_eager", fullgraph=True, dynamic=False)
    g = torch.Generator().manual_seed(12)
    for seed in (13, 14):
        boxes = _edge_and_random_boxes(seed)
        x = _features((2, 3, 10, 13), seed=seed).requires_grad_(True)
        want = pool(x, boxes)
        got = compiled(x, boxes)
        assert torch.equal(got, want)
        torch.testing.assert_close(
            got, roi_spp_reference(x, boxes, levels, 0.5, mode), rtol=1e-12, atol=1e-12
        )
        weight = torch.randn(want.shape, generator=g, dtype=x.dtype)
        (grad,) = torch.autograd.grad((got * weight).sum(), x)
        (grad_want,) = torch.autograd.grad((want * weight).sum(), x)
        assert float(grad_want.abs().sum()) > 0
        torch.testing.assert_close(grad, grad_want, rtol=0, atol=1e-12)
        with torch.no_grad():  # the forward without the argmax
            assert torch.equal(compiled(x, boxes.float().double()), want)


def test_compiled_list_of_boxes_no_boxes_and_checks() -> None:
    """The Module with a list of boxes per image (unflattened), no boxes at all, and the eager checks of
    the boxes' values, which run inside the compiled graph (both modes)."""
    x = _features((3, 4, 9, 11), torch.float32)
    boxes = _random_boxes(3, 9, 11, 30, 0.25, seed=15).float()
    per_image = [boxes[boxes[:, 0] == i, 1:] for i in range(3)]
    module = tp.RoISpatialPyramidPool((1, 2, 4), 0.25, flatten=False)
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True, dynamic=False)
    for got, want in zip(_levels(compiled(x, per_image)), _levels(module(x, per_image))):
        assert torch.equal(got, want)
    for mode in ("max", "avg"):

        def pool(x: Tensor, boxes: Tensor, mode: str = mode) -> Tensor:
            out: Tensor = tp.roi_spatial_pyramid_pool(x, boxes, (1, 2), mode=mode)
            return out

        fn = torch.compile(pool, backend="aot_eager", fullgraph=True, dynamic=False)
        assert fn(x, torch.zeros(0, 5)).shape == (0, 4 * 5)
        with pytest.raises(ValueError, match="batch indices"):
            fn(x, torch.tensor([[3.0, 0, 0, 1, 1]]))


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_export_with_a_dynamic_number_of_boxes(mode: str) -> None:
    """``torch.export``: the max mode exports as the ``torchpool::roi_spp_max`` operator (so the program
    needs torchpool imported to run), the avg mode as plain ops; the number of boxes may vary."""
    module = tp.RoISpatialPyramidPool((1, 2, 4), 0.5, mode)
    x = _features((2, 3, 10, 13), torch.float32)
    count = torch.export.Dim("count")
    program = torch.export.export(
        module, (x, _edge_and_random_boxes(16).float()), dynamic_shapes=({}, {0: count})
    )
    assert ("torchpool.roi_spp_max" in program.graph_module.code) == (mode == "max")
    for boxes in (_edge_and_random_boxes(17).float(), _random_boxes(2, 10, 13, 9, 0.5, seed=18).float()):
        assert torch.equal(program.module()(x, boxes), module(x, boxes))


def test_jit_trace_and_the_operator() -> None:
    """The JIT tracer records the operator; the operator's schema, fake (meta) function and autograd
    pass ``torch.library.opcheck``, and its gradient (to each bin's max cell) passes gradcheck."""
    from torchpool.ops.roi_pyramid import _MAX_OP

    x = _features((2, 3, 7, 8))
    boxes = _random_boxes(2, 7, 8, 12, 0.5, seed=19)
    with warnings.catch_warnings():  # deprecated; it warns of the (constant) shape checks
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace` is deprecated")
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
        traced = torch.jit.trace(  # type: ignore[no-untyped-call]
            lambda t: tp.roi_spatial_pyramid_pool(t, boxes, spatial_scale=0.5), (x,)
        )
    other = _features((2, 3, 7, 8), seed=1)
    assert torch.equal(traced(other), tp.roi_spatial_pyramid_pool(other, boxes, spatial_scale=0.5))
    for argmax in (False, True):
        torch.library.opcheck(
            _MAX_OP, (x.clone().requires_grad_(argmax), boxes, [1, 1, 2, 2, 3, 3], 0.5, argmax)
        )

    def op(t: Tensor) -> Tensor:
        return torch.cat([v.flatten(1) for v in _MAX_OP(t, boxes, [1, 1, 2, 2, 4, 4], 0.5, True)[:3]], 1)

    assert torch.autograd.gradcheck(op, (x.requires_grad_(True),), eps=1e-6, atol=1e-5)
    x32 = _features((2, 3, 7, 8), torch.float32).requires_grad_(True)  # float32: the cells from the keys
    weight = torch.randn(12, 3 * 21, generator=torch.Generator().manual_seed(2))
    flat = torch.cat([v.flatten(1) for v in _MAX_OP(x32, boxes, [1, 1, 2, 2, 4, 4], 0.5, True)[:3]], 1)
    eager = tp.roi_spatial_pyramid_pool(x32, boxes, spatial_scale=0.5)
    assert torch.equal(flat, eager)
    (got,) = torch.autograd.grad((flat * weight).sum(), x32)
    (want,) = torch.autograd.grad((eager * weight).sum(), x32)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
