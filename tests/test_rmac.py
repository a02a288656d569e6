"""R-MAC beyond the generic walks: the region grid, maps of every aspect ratio, the public code's formulation.

The peer is a straight re-implementation of the public retrieval code's formulation
(``cirtorch.layers.functional.rmac`` of Radenovic et al.: a loop over the regions, each cut out by
list indexing and max-pooled with ``F.max_pool2d``, ``v / (||v|| + eps)``, the sum; then the
network's final L2 normalisation), written here; the float64 loop reference is the op record's.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from records.rmac import reference_regions, rmac_reference

import torchpool as tp
from torchpool.ops.rmac import rmac_regions


def public_rmac(x: torch.Tensor, levels: int = 3, overlap: float = 0.4, eps: float = 1e-6) -> torch.Tensor:
    """The public code's formulation, then the final ``l2n``: ``(N, C, H, W) -> (N, C)``."""
    steps = torch.Tensor([2, 3, 4, 5, 6, 7])
    height, width = x.size(2), x.size(3)
    w = min(width, height)
    spacing = (max(height, width) - w) / (steps - 1)
    _, idx = torch.min(torch.abs(((w**2 - w * spacing) / w**2) - overlap), 0)
    wd = int(idx.item()) + 1 if height < width else 0
    hd = int(idx.item()) + 1 if height > width else 0
    v = F.max_pool2d(x, (x.size(-2), x.size(-1)))
    v = v / (torch.norm(v, p=2, dim=1, keepdim=True) + eps).expand_as(v)
    for level in range(1, levels + 1):
        wl = math.floor(2 * w / (level + 1))
        wl2 = math.floor(wl / 2 - 1)
        b = 0 if level + wd == 1 else (width - wl) / (level + wd - 1)
        cen_w = torch.floor(wl2 + torch.Tensor(range(level - 1 + wd + 1)) * b) - wl2
        b = 0 if level + hd == 1 else (height - wl) / (level + hd - 1)
        cen_h = torch.floor(wl2 + torch.Tensor(range(level - 1 + hd + 1)) * b) - wl2
        for i_ in cen_h.tolist():
            for j_ in cen_w.tolist():
                if wl == 0:
                    continue
                region = x[:, :, (int(i_) + torch.Tensor(range(wl)).long()).tolist(), :]
                region = region[:, :, :, (int(j_) + torch.Tensor(range(wl)).long()).tolist()]
                vt = F.max_pool2d(region, (region.size(-2), region.size(-1)))
                vt = vt / (torch.norm(vt, p=2, dim=1, keepdim=True) + eps).expand_as(vt)
                v = v + vt
    v = v.flatten(1)
    out: torch.Tensor = v / (torch.norm(v, p=2, dim=1, keepdim=True) + eps)
    return out


SHAPES = [
    (7, 7),  # square (ResNet-50 at 224)
    (5, 12),  # wide
    (12, 5),  # tall
    (4, 15),  # very wide
    (15, 4),
    (9, 16),  # 16:9
    (10, 13),
    *itertools.product((1, 2, 3), (1, 2, 3)),  # tiny
    (1, 7),
    (7, 1),
]


@pytest.mark.parametrize(("height", "width"), SHAPES)
@pytest.mark.parametrize("levels", [1, 3, 4])
def test_against_the_float64_reference_and_the_public_formulation(
    height: int, width: int, levels: int
) -> None:
    x = torch.randn(
        2, 5, height, width, dtype=torch.float64, generator=torch.Generator().manual_seed(height * width)
    )
    expected = rmac_reference(x, levels)
    torch.testing.assert_close(tp.rmac(x, levels), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(public_rmac(x, levels), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(tp.rmac(x.float(), levels).double(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("overlap", [0.4, 0.3, 0.5, 0.2])
def test_grid_equals_the_public_grid_for_every_size(overlap: float) -> None:
    """Every map up to 40 x 40 (and 1 .. 5 levels): the same regions, in float32 as the public code."""
    for height, width in itertools.product(range(1, 41), repeat=2):
        for levels in (1, 3, 5):
            whole = (0, 0, height, width)
            expected = (
                whole,
                *((t, left, s, s) for t, left, s in reference_regions(height, width, levels, overlap)),
            )
            assert rmac_regions(height, width, levels, overlap) == expected, (height, width, levels)


@pytest.mark.parametrize(("height", "width"), [(11, 47), (47, 11), (22, 94), (5, 9), (24, 88), (12, 44)])
def test_grid_at_float32_ties(height: int, width: int) -> None:
    """Sizes where the overlap choice ties exactly or a start is an integer: float32 decides, as there."""
    expected = (
        (0, 0, height, width),
        *((t, left, s, s) for t, left, s in reference_regions(height, width, 3, 0.4)),
    )
    assert rmac_regions(height, width, 3, 0.4) == expected


def test_documented_grids() -> None:
    # 7 x 7, levels 3: the map, level 1 (7 x 7), 2 x 2 of side 4 at 0 / 3, 3 x 3 of side 3 at 0 / 2 / 4
    regions = rmac_regions(7, 7, 3)
    assert len(regions) == 15
    assert regions[:6] == ((0, 0, 7, 7), (0, 0, 7, 7), (0, 0, 4, 4), (0, 3, 4, 4), (3, 0, 4, 4), (3, 3, 4, 4))
    assert [r[:2] for r in regions[6:]] == list(itertools.product((0, 2, 4), repeat=2))
    # 1 x 1: the map and level 1 (later levels have side floor(2 / (l + 1)) = 0)
    assert rmac_regions(1, 1, 3) == ((0, 0, 1, 1), (0, 0, 1, 1))
    # wide maps: level 1 covers the short side, extra regions along the long one
    assert rmac_regions(3, 5, 1) == ((0, 0, 3, 5), (0, 0, 3, 3), (0, 2, 3, 3))
    assert rmac_regions(5, 3, 1) == ((0, 0, 5, 3), (0, 0, 3, 3), (2, 0, 3, 3))


def test_gradcheck_on_a_wide_map_and_batchless_input() -> None:
    x = torch.randn(
        2, 3, 4, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True
    )
    assert torch.autograd.gradcheck(lambda t: tp.rmac(t, 3), (x,))
    torch.testing.assert_close(tp.rmac(x[1], 3), tp.rmac(x, 3)[1])


@pytest.mark.parametrize("scale", [1e30, 1e-30, 1e-40])
def test_magnitudes(scale: float) -> None:
    """Huge values do not overflow the norms, tiny ones do not underflow them (each divided by its max)."""
    u = torch.rand(2, 4, 7, 7, generator=torch.Generator().manual_seed(2)) + 0.5
    x = (u.double() * scale).float()
    y = tp.rmac(x)
    assert bool(y.isfinite().all()) and bool((y > 0).all())
    torch.testing.assert_close(y.double(), rmac_reference(x.double()), rtol=1e-5, atol=0)


def test_half_precision_and_module() -> None:
    x = torch.rand(2, 8, 7, 7, generator=torch.Generator().manual_seed(3)) * 100
    for dtype in (torch.float16, torch.bfloat16):
        y = tp.rmac(x.to(dtype))
        assert y.dtype == dtype
        torch.testing.assert_close(y.float(), tp.rmac(x.to(dtype).float()), rtol=1e-2, atol=1e-3)
    pool = tp.create_pool("rmac", levels=2, overlap=0.3, eps=1e-5)
    assert isinstance(pool, tp.RMAC) and repr(pool) == "RMAC(levels=2, overlap=0.3, eps=1e-05, flatten=True)"
    assert torch.equal(pool(x), tp.rmac(x, 2, overlap=0.3, eps=1e-5))


def test_flatten_false_keeps_the_pooled_axes() -> None:
    x = torch.rand(2, 8, 7, 5, generator=torch.Generator().manual_seed(4))
    kept = tp.RMAC(flatten=False)
    assert repr(kept) == "RMAC(levels=3, overlap=0.4, eps=1e-06, flatten=False)"
    assert kept(x).shape == (2, 8, 1, 1) and torch.equal(kept(x).flatten(1), tp.rmac(x))
    assert tp.rmac(x[0], flatten=False).shape == (8, 1, 1)
    assert tp.rmac(x[:, :0], flatten=False).shape == (2, 0, 1, 1)
    with pytest.raises(TypeError, match="flatten must be a bool, got int"):
        tp.rmac(x, flatten=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="flatten must be a bool, got str"):
        tp.RMAC(flatten="no")  # type: ignore[arg-type]


def test_errors_name_the_parameter() -> None:
    x = torch.rand(2, 3, 5, 5)
    with pytest.raises(ValueError, match="levels must be a positive int"):
        tp.rmac(x, 0)
    with pytest.raises(TypeError, match="levels must be a positive int"):
        tp.rmac(x, (1, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="overlap must be in"):
        tp.rmac(x, overlap=1.0)
    with pytest.raises(ValueError, match="eps must be in"):
        tp.rmac(x, eps=0.0)
    with pytest.raises(ValueError, match="input must have 3"):
        tp.rmac(torch.rand(2, 3, 4, 4, 4))
    with pytest.raises(ValueError, match="input must have non-zero spatial sizes"):
        tp.rmac(torch.rand(2, 3, 0, 4))
    with pytest.raises(TypeError, match="input must have a floating-point dtype"):
        tp.rmac(torch.ones(2, 3, 4, 4, dtype=torch.long))
