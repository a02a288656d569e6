"""The C kernel of SPP on regions, max mode (``csrc/roi_spp.c``, CPU float32): values and each max's
cell against a float64 loop reference of its own (first cell in row-major order among ties, the
first NaN where a bin holds one), every level against torchvision's ``roi_pool`` bit for bit and
its gradient (zoo environment), gradients against float64, special values, ties, empty bins,
boxes outside the map, no boxes, threads, layouts, the operators' checks, ``torch.compile``, and
the pure-PyTorch path where the kernel is not built."""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence

import pytest
import torch
from records.roi_pyramid import _edges
from torch import Tensor

import torchpool as tp
import torchpool._native as native
import torchpool.ops._roi_native as N
import torchpool.ops.roi_pyramid as roi

pytestmark = pytest.mark.skipif(
    not N.available(torch.zeros(1, 1, 1, 1), torch.zeros(0, 5)),
    reason=f"the C kernel is not built: {native.build_error('roi_spp')}",
)

Level = int | tuple[int, int]


def _pairs(levels: Sequence[Level]) -> list[tuple[int, int]]:
    return [(lv, lv) if isinstance(lv, int) else lv for lv in levels]


def _boxes(n: int, height: int, width: int, count: int, scale: float, seed: int) -> Tensor:
    """Boxes in image coordinates, from 4 cells before the map to 4 after, sizes from negative
    (malformed) to larger than the map, an eighth of them one cell, some wholly outside."""
    g = torch.Generator().manual_seed(seed)
    size = torch.tensor([width, height], dtype=torch.float64) / scale
    start = (torch.rand(count, 2, generator=g, dtype=torch.float64) * 1.4 - 0.2) * size
    extent = (torch.rand(count, 2, generator=g, dtype=torch.float64) * 1.2 - 0.1) * size
    extent[: count // 8] = 0.0
    index = torch.randint(0, n, (count, 1), generator=g).double()
    return torch.cat([index, start, start + extent], dim=1)


def _loops(
    x: Tensor, boxes: Tensor, levels: Sequence[Level], scale: float
) -> tuple[list[Tensor], list[Tensor]]:
    """Each level's ``(K, C, nh, nw)`` float64 maxima (0 in empty bins) and the flat cell
    ``((n * C + c) * H + h) * W + w`` of each: the first in row-major order holding the max, or the
    first NaN; ``x.numel()`` for an empty bin. Loops over boxes, levels and bins (bins: the records'
    torchvision-style edges)."""
    x = x.double()
    _, channels, height, width = x.shape
    values, cells = [], []
    for bh, bw in _pairs(levels):
        value = torch.zeros(boxes.shape[0], channels, bh, bw, dtype=torch.float64)
        cell = torch.full(value.shape, x.numel(), dtype=torch.int64)
        for k, (image, x1, y1, x2, y2) in enumerate(boxes.double().tolist()):
            for i, (h0, h1) in enumerate(_edges(y1, y2, bh, height, scale)):
                for j, (w0, w1) in enumerate(_edges(x1, x2, bw, width, scale)):
                    if h1 <= h0 or w1 <= w0:
                        continue
                    part = x[int(image), :, h0:h1, w0:w1].reshape(channels, -1)
                    best = part.max(dim=1).values
                    nan = part.isnan()
                    hit = torch.where(nan.any(dim=1, keepdim=True), nan, part == best[:, None])
                    first = hit.to(torch.int64).argmax(dim=1)  # the first True
                    where = (h0 + first // (w1 - w0)) * width + w0 + first % (w1 - w0)
                    value[k, :, i, j] = part.gather(1, first[:, None])[:, 0]
                    cell[k, :, i, j] = (
                        int(image) * channels + torch.arange(channels)
                    ) * height * width + where
        values.append(value)
        cells.append(cell)
    return values, cells


def _kernel(
    x: Tensor, boxes: Tensor, levels: Sequence[Level], scale: float
) -> tuple[list[Tensor], list[Tensor]]:
    """The operator's values and cells (the C kernel inside)."""
    pairs = _pairs(levels)
    out = roi._MAX_OP(x, boxes, [s for p in pairs for s in p], scale, True)
    return out[: len(pairs)], out[len(pairs) :]


def _same(ours: Sequence[Tensor], want: Sequence[Tensor]) -> bool:
    return all(
        torch.equal(a.double(), b.double()) or torch.equal(a.double().nan_to_num(7.0), b.nan_to_num(7.0))
        for a, b in zip(ours, want)
    )


def test_kernel_builds_where_a_compiler_exists() -> None:
    """On a machine with a C compiler the fast path must not fall back silently."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    assert native.load("roi_spp") is not None, native.build_error("roi_spp")


LEVELS = [(1, 2, 4), (1, 3, 6), (6, 3, 2, 1), (2, 4, 8), (5,), ((1, 2), (2, 4), 3), (2, 2, 4, 1), (4, 2, 1)]


@pytest.mark.parametrize("levels", LEVELS, ids=str)
@pytest.mark.parametrize("scale", [1 / 16, 0.5, 1.0])
def test_values_and_cells_match_the_loops(levels: tuple[Level, ...], scale: float) -> None:
    """37 channels (blocks of 16, 16 and 5 lanes); distinct values, then many ties (integers 0-2):
    each max and its cell, the first in row-major order, derived levels included."""
    g = torch.Generator().manual_seed(1)
    boxes = _boxes(3, 11, 14, 60, scale, seed=2)
    for x in (
        torch.randn(3, 37, 11, 14, generator=g),
        torch.randint(0, 3, (3, 37, 11, 14), generator=g).float(),
    ):
        values, cells = _kernel(x, boxes, levels, scale)
        want_values, want_cells = _loops(x, boxes, levels, scale)
        assert _same(values, want_values)
        assert all(torch.equal(a, b) for a, b in zip(cells, want_cells))
        flat = tp.roi_spatial_pyramid_pool(x, boxes, levels, spatial_scale=scale)
        assert torch.equal(flat, torch.cat([v.flatten(1) for v in values], dim=1))


def test_the_benchmark_shape_matches_the_loops() -> None:
    """A stride-16 map with 256 channels, boxes of proposals' sizes, levels (1, 2, 4): 16 bins per
    level 4 and full blocks (the transposed writes); random values with ties (multiples of 1/4)."""
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(2, 256, 19, 25, generator=g) * 4).round() / 4
    boxes = _boxes(2, 19, 25, 24, 1 / 16, seed=4)
    values, cells = _kernel(x, boxes, (1, 2, 4), 1 / 16)
    want_values, want_cells = _loops(x, boxes, (1, 2, 4), 1 / 16)
    assert _same(values, want_values) and all(torch.equal(a, b) for a, b in zip(cells, want_cells))


@pytest.mark.parametrize("scale", [1 / 16, 1.0, 0.3, 0.5])
def test_each_level_equals_torchvision_roi_pool(scale: float) -> None:
    """Bit for bit at every level, with and without a gradient (regions of 57 x 29 cells too, whose 7
    bins end a cell after the region in float32; float64 boxes, which both round to float32 first),
    and the gradient to the same cells (a map of ties included: torchvision's cell is the first in
    row-major order too)."""
    tv = pytest.importorskip("torchvision")
    g = torch.Generator().manual_seed(5)
    odd = torch.tensor([[1, 0.0, 0.0, 56 / scale, 28 / scale]], dtype=torch.float64)
    boxes64 = torch.cat([_boxes(3, 30, 45, 150, scale, seed=6), odd])
    boxes = boxes64.float()
    levels: tuple[Level, ...] = (1, 2, 4, 3, 6, 7, 5, (2, 3), (4, 6), 20)
    pairs = _pairs(levels)
    for x in (
        torch.randn(3, 20, 30, 45, generator=g),
        torch.randint(0, 4, (3, 20, 30, 45), generator=g).float(),
    ):
        with torch.no_grad():
            peers = [tv.ops.roi_pool(x, boxes, size, scale) for size in pairs]
            fast = tp.roi_spatial_pyramid_pool(x, boxes64, levels, spatial_scale=scale)
        assert torch.equal(fast, torch.cat([p.flatten(1) for p in peers], dim=1))
        x.requires_grad_(True)
        outs = tp.roi_spatial_pyramid_pool(x, boxes, levels, spatial_scale=scale, flatten=False)
        assert isinstance(outs, list) and all(torch.equal(a, b) for a, b in zip(outs, peers))
        outs, peers = outs[:3], [tv.ops.roi_pool(x, boxes, n, scale) for n in (1, 2, 4)]
        weights = [torch.randn(o.shape, generator=g) for o in outs]
        (ours,) = torch.autograd.grad(torch.stack([(o * w).sum() for o, w in zip(outs, weights)]).sum(), x)
        (want,) = torch.autograd.grad(torch.stack([(p * w).sum() for p, w in zip(peers, weights)]).sum(), x)
        assert bool(((ours != 0) == (want != 0)).all()) and float(want.abs().sum()) > 0
        torch.testing.assert_close(ours, want, rtol=1e-5, atol=1e-5)


def test_gradient_matches_float64_and_the_pytorch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each bin's gradient to its max's cell, summed where boxes overlap (float64 reference)."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 21, 13, 17, generator=g, requires_grad=True)
    boxes = _boxes(2, 13, 17, 70, 0.5, seed=8)
    levels = (1, 2, 4, 3)
    outs = tp.roi_spatial_pyramid_pool(x, boxes, levels, spatial_scale=0.5, flatten=False)
    assert isinstance(outs, list)
    weights = [torch.randn(o.shape, generator=g, dtype=torch.float64) for o in outs]
    (ours,) = torch.autograd.grad(
        torch.stack([(o * w.float()).sum() for o, w in zip(outs, weights)]).sum(), x
    )
    _, cells = _loops(x.detach(), boxes, levels, 0.5)
    want = torch.zeros(x.numel() + 1, dtype=torch.float64)
    for cell, w in zip(cells, weights):
        want.index_add_(0, cell.flatten(), w.flatten())
    torch.testing.assert_close(ours.double(), want[:-1].view(x.shape), rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(N, "_library", lambda: None)  # the pure-PyTorch path: the same (distinct values)
    plain = tp.roi_spatial_pyramid_pool(x, boxes, levels, spatial_scale=0.5, flatten=False)
    assert isinstance(plain, list) and all(torch.equal(a, b) for a, b in zip(outs, plain))
    (grad,) = torch.autograd.grad(
        torch.stack([(o * w.float()).sum() for o, w in zip(plain, weights)]).sum(), x
    )
    torch.testing.assert_close(grad, ours, rtol=1e-5, atol=1e-5)


def test_nan_and_infinities() -> None:
    """A NaN gives NaN and the gradient to the first NaN; +inf is a max like any other; a bin of
    -inf gives -inf (its first cell takes the gradient). One image with them, one without."""
    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 18, 9, 12, generator=g)
    x[0, 3, 2, 5] = math.nan
    x[0, 3, 2, 7] = math.nan
    x[0, 4, 6, 6] = math.inf
    x[0, 5] = -math.inf
    x[0, 17, 4, 4] = math.nan
    boxes = _boxes(2, 9, 12, 50, 0.5, seed=10)
    boxes[:4] = torch.tensor(
        [
            [0, 0.0, 0.0, 23.0, 17.0],
            [0, 8.0, 2.0, 17.0, 9.0],
            [1, 0.0, 0.0, 23.0, 17.0],
            [0, 10.0, 4.0, 10.0, 4.0],
        ]
    )
    for levels in ((1, 2, 4), (3, 1)):
        values, cells = _kernel(x, boxes, levels, 0.5)
        want_values, want_cells = _loops(x, boxes, levels, 0.5)
        assert _same(values, want_values) and all(torch.equal(a, b) for a, b in zip(cells, want_cells))
        one = values[levels.index(1)]
        assert bool(one[:2, 3].isnan().all()) and bool((one[:2, 5] == -math.inf).all())
        leaf = x.clone().requires_grad_(True)
        out = tp.roi_spatial_pyramid_pool(leaf, boxes, levels, spatial_scale=0.5)
        with torch.no_grad():
            assert torch.equal(
                out.nan_to_num(7.0),
                tp.roi_spatial_pyramid_pool(x, boxes, levels, spatial_scale=0.5).nan_to_num(7.0),
            )
        (grad,) = torch.autograd.grad(out, leaf, torch.ones_like(out))  # (NaN and inf maxima too)
        want = torch.zeros(x.numel() + 1).index_add_(
            0, torch.cat([c.flatten() for c in want_cells]), torch.ones(sum(c.numel() for c in want_cells))
        )
        assert torch.equal(grad, want[:-1].view(x.shape))


def test_signed_zeros_and_constant_maps() -> None:
    """Ties everywhere: each bin's value and gradient go to its first cell (torchvision's rule), a
    zero keeps its sign."""
    boxes = torch.tensor([[0, 0.0, 0.0, 6.0, 5.0], [0, 2.0, 1.0, 9.0, 9.0], [0, 20.0, 20.0, 30.0, 30.0]])
    for fill in (0.5, 0.0, -0.0, -3.0):
        x = torch.full((1, 17, 6, 7), fill)
        values, cells = _kernel(x, boxes, (1, 2, 4), 1.0)
        want_values, want_cells = _loops(x, boxes, (1, 2, 4), 1.0)
        assert all(torch.equal(a, b) for a, b in zip(cells, want_cells))
        assert all(torch.equal(a.double(), b) for a, b in zip(values, want_values))
    x = torch.zeros(1, 16, 6, 7)
    x[:, :, ::2] = -0.0  # rows of -0 and +0: the first row's sign wins
    values, _ = _kernel(x, boxes[:1], (1, 2), 1.0)
    assert bool(values[0].signbit().all())


def test_boxes_outside_the_map_and_empty_bins() -> None:
    x = torch.randn(2, 19, 8, 9, generator=torch.Generator().manual_seed(11), requires_grad=True)
    boxes = torch.tensor(
        [[0, 100.0, 100.0, 200.0, 200.0], [1, -50.0, -50.0, -10.0, -10.0], [1, 7.0, 6.0, 30.0, 30.0]]
    )
    out = tp.roi_spatial_pyramid_pool(x, boxes, (1, 2, 4))
    want, _ = _loops(x.detach(), boxes, (1, 2, 4), 1.0)
    assert torch.equal(out.double(), torch.cat([w.flatten(1) for w in want], dim=1))
    assert bool((out[:2] == 0).all()) and bool((out[2] != 0).any())
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert float(grad.sum()) == float((out != 0).sum())  # the corner box: its empty bins give nothing


def test_no_boxes_and_no_channels() -> None:
    x = torch.randn(2, 5, 8, 9, requires_grad=True)
    empty = tp.roi_spatial_pyramid_pool(x, torch.zeros(0, 5), (1, 2, 4))
    assert empty.shape == (0, 5 * 21)
    (grad,) = torch.autograd.grad(empty.sum(), x)
    assert bool((grad == 0).all())
    values, cells = _kernel(x.detach(), torch.zeros(0, 5), (1, 2), 1.0)
    assert values[1].shape == (0, 5, 2, 2) and cells[1].shape == (0, 5, 2, 2)
    none = tp.roi_spatial_pyramid_pool(torch.randn(2, 0, 8, 9), torch.tensor([[1, 0.0, 0.0, 4.0, 4.0]]))
    assert none.shape == (1, 0)


def test_threads_give_the_same_bits(one_thread: None) -> None:
    g = torch.Generator().manual_seed(12)
    x = torch.randint(0, 5, (3, 70, 15, 20), generator=g).float().requires_grad_(True)
    boxes = _boxes(3, 15, 20, 90, 0.5, seed=13)
    single = tp.roi_spatial_pyramid_pool(x, boxes, (1, 2, 4), spatial_scale=0.5)
    upstream = torch.randn(single.shape, generator=g)
    (single_grad,) = torch.autograd.grad(single, x, upstream)
    torch.set_num_threads(2)
    many = tp.roi_spatial_pyramid_pool(x, boxes, (1, 2, 4), spatial_scale=0.5)
    (many_grad,) = torch.autograd.grad(many, x, upstream)
    assert torch.equal(single, many) and torch.equal(single_grad, many_grad)


def test_layouts() -> None:
    """NCHW, channels-last (read in place), a transposed and a sliced map: the same bits."""
    g = torch.Generator().manual_seed(14)
    x = torch.randn(2, 35, 12, 13, generator=g)
    boxes = _boxes(2, 12, 13, 40, 1.0, seed=15)
    want = tp.roi_spatial_pyramid_pool(x, boxes, (1, 2, 4))
    for y in (
        x.to(memory_format=torch.channels_last),
        x.transpose(2, 3).contiguous().transpose(2, 3),
        torch.cat([x, x], dim=1)[:, :35],
    ):
        assert torch.equal(tp.roi_spatial_pyramid_pool(y, boxes, (1, 2, 4)), want)
        leaf = y.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(tp.roi_spatial_pyramid_pool(leaf, boxes, (1, 2, 4)).sum(), leaf)
        assert grad.shape == x.shape and float(grad.sum()) == float((want != 0).sum())


def test_double_backward_takes_the_scatter() -> None:
    """With ``create_graph`` the backward is PyTorch's ``scatter_add`` (differentiable again): the same
    gradient as the kernel's, and its derivative in the upstream gradient reads each bin's cell."""
    g = torch.Generator().manual_seed(16)
    x = torch.randn(2, 17, 9, 10, generator=g, requires_grad=True)
    boxes = _boxes(2, 9, 10, 30, 1.0, seed=17)
    out = tp.roi_spatial_pyramid_pool(x, boxes, (1, 2, 4))
    upstream = torch.randn(out.shape, generator=g, requires_grad=True)
    (first,) = torch.autograd.grad(out, x, upstream, create_graph=True)
    (plain,) = torch.autograd.grad(tp.roi_spatial_pyramid_pool(x, boxes, (1, 2, 4)), x, upstream.detach())
    assert first.requires_grad
    torch.testing.assert_close(first.detach(), plain, rtol=1e-5, atol=1e-5)  # (other sums' order)
    probe = torch.randn(x.shape, generator=g)
    (second,) = torch.autograd.grad((first * probe).sum(), upstream)
    _, cells = _kernel(x.detach(), boxes, (1, 2, 4), 1.0)
    padded = torch.cat([probe.flatten(), torch.zeros(1)])
    assert torch.equal(second, torch.cat([padded[c].flatten(1) for c in cells], dim=1))


def test_operators_pass_opcheck() -> None:
    x = torch.randn(2, 18, 7, 9, generator=torch.Generator().manual_seed(18), requires_grad=True)
    boxes = _boxes(2, 7, 9, 12, 1.0, seed=19)
    torch.library.opcheck(roi._MAX_OP, (x, boxes, [1, 1, 2, 2, 4, 4], 1.0, True))
    values, cells = _kernel(x.detach(), boxes, (1, 2, 4), 1.0)
    grads = [torch.randn(v.shape) for v in values]
    torch.library.opcheck(N.max_backward, (grads, list(cells), list(x.shape)))


@pytest.mark.slow
def test_compiled_fullgraph_equals_eager() -> None:
    x = torch.randn(2, 18, 10, 12, generator=torch.Generator().manual_seed(20), requires_grad=True)
    boxes = _boxes(2, 10, 12, 30, 0.5, seed=21)

    def pool(x: Tensor, boxes: Tensor) -> Tensor:
        return tp.roi_spatial_pyramid_pool(x, boxes, (1, 2, 4), spatial_scale=0.5)

    compiled = torch.compile(pool, fullgraph=True, backend="aot_eager")
    out = compiled(x, boxes)
    assert torch.equal(out, pool(x, boxes))
    (grad,) = torch.autograd.grad(out.sum(), x)
    (want,) = torch.autograd.grad(pool(x, boxes).sum(), x)
    assert torch.equal(grad, want)


@pytest.mark.slow
def test_exported_with_a_dynamic_number_of_boxes() -> None:
    """``torch.export``: the operator, the kernel inside it on real values, for any number of boxes."""
    module = tp.RoISpatialPyramidPool((1, 2, 4), 0.5)
    x = torch.randn(2, 18, 10, 13, generator=torch.Generator().manual_seed(24))
    count = torch.export.Dim("count")
    program = torch.export.export(
        module, (x, _boxes(2, 10, 13, 8, 0.5, seed=25).float()), dynamic_shapes=({}, {0: count})
    )
    assert "torchpool.roi_spp_max" in program.graph_module.code
    for boxes in (_boxes(2, 10, 13, 5, 0.5, seed=26).float(), _boxes(2, 10, 13, 40, 0.5, seed=27).float()):
        want, _ = _loops(x, boxes, (1, 2, 4), 0.5)
        assert torch.equal(
            program.module()(x, boxes).double(), torch.cat([w.flatten(1) for w in want], dim=1)
        )


def test_without_the_kernel_the_pytorch_path_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHPOOL_NATIVE", "0")
    native.load.cache_clear()
    try:
        assert native.load("roi_spp") is None and not N.available(torch.zeros(1, 1, 1, 1), torch.zeros(0, 5))
        x = torch.randn(2, 19, 9, 11, generator=torch.Generator().manual_seed(22))
        boxes = _boxes(2, 9, 11, 30, 0.5, seed=23)
        want, _ = _loops(x, boxes, (1, 2, 4), 0.5)
        out = tp.roi_spatial_pyramid_pool(x, boxes, (1, 2, 4), spatial_scale=0.5)
        assert torch.equal(out.double(), torch.cat([w.flatten(1) for w in want], dim=1))
    finally:
        monkeypatch.delenv("TORCHPOOL_NATIVE")
        native.load.cache_clear()
