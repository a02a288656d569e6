"""Adaptive pooling's export/deterministic route and the deterministic mode itself.

The default route is PyTorch's kernel; the other route (separable MatMul / Gather + amax, or
a plain max/avg pool when every size divides) runs while exporting and in deterministic mode.
Both are compared with the float64 loop reference and with each other, forward and backward.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from reference import adaptive_reference

import torchpool as tp
from torchpool import _deterministic
from torchpool.ops import adaptive

FUNCTIONS: dict[tuple[str, int], Callable[[torch.Tensor, Any], torch.Tensor]] = {
    ("avg", 1): tp.adaptive_avg_pool1d,
    ("avg", 2): tp.adaptive_avg_pool2d,
    ("avg", 3): tp.adaptive_avg_pool3d,
    ("max", 1): tp.adaptive_max_pool1d,
    ("max", 2): tp.adaptive_max_pool2d,
    ("max", 3): tp.adaptive_max_pool3d,
}
SPATIAL = {1: (11,), 2: (7, 10), 3: (5, 6, 7)}
OUTPUTS: dict[int, list[tuple[int, ...]]] = {
    1: [(1,), (3,), (4,), (11,), (13,)],
    2: [(3, 4), (7, 1), (2, 5), (9, 12)],
    3: [(2, 3, 4), (1, 1, 1)],
}
CASES = [(mode, n, out) for (mode, n) in FUNCTIONS for out in OUTPUTS[n]]


@pytest.fixture(autouse=True)
def _restore_mode() -> Iterator[None]:
    yield
    tp.use_deterministic(None)


def _distinct(shape: tuple[int, ...], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    numel = 1
    for size in shape:
        numel *= size
    g = torch.Generator().manual_seed(numel)
    return (torch.randperm(numel, generator=g).to(dtype) / numel).reshape(shape)


@pytest.mark.parametrize(("mode", "n", "out"), CASES, ids=[f"{m}{n}d-{o}" for m, n, o in CASES])
def test_both_routes_match_reference_and_each_other(mode: str, n: int, out: tuple[int, ...]) -> None:
    fn = FUNCTIONS[mode, n]
    x = _distinct((2, 3, *SPATIAL[n])).requires_grad_(True)
    weight = torch.rand(2, 3, *out, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y_native = fn(x, out)
    (g_native,) = torch.autograd.grad((y_native * weight).sum(), x)
    with tp.deterministic():
        y_det = fn(x, out)
        (g_det,) = torch.autograd.grad((y_det * weight).sum(), x)
    torch.testing.assert_close(y_native, adaptive_reference(x.detach(), out, mode))
    torch.testing.assert_close(y_det, y_native, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_det, g_native, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("mode", "n"), list(FUNCTIONS), ids=[f"{m}{n}d" for m, n in FUNCTIONS])
def test_decomposed_route_gradcheck(mode: str, n: int) -> None:
    x = _distinct((1, 2, *SPATIAL[n])).requires_grad_(True)
    out = OUTPUTS[n][0]
    with tp.deterministic():
        assert torch.autograd.gradcheck(lambda t: FUNCTIONS[mode, n](t, out), (x,))


def test_decomposed_route_is_taken_in_deterministic_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards the routing itself: the comparison above would pass if both ran PyTorch's kernel."""
    calls: list[str] = []
    original = adaptive._decomposed

    def counted(*args: Any) -> torch.Tensor:
        calls.append("d")
        return original(*args)

    monkeypatch.setattr(adaptive, "_decomposed", counted)
    x = torch.rand(1, 2, 7, 7, requires_grad=True)
    tp.adaptive_max_pool2d(x, 3)
    assert calls == []
    with tp.deterministic():
        tp.adaptive_max_pool2d(x, 3)
        tp.adaptive_max_pool2d(x.detach(), 3)  # no gradient needed: PyTorch's kernel
    assert calls == ["d"]


@pytest.mark.parametrize("layout", ["batchless", "channels_last", "strided"])
@pytest.mark.parametrize("mode", ["avg", "max"])
def test_decomposed_route_layouts(mode: str, layout: str) -> None:
    base = _distinct((2, 3, 9, 8))
    x = {
        "batchless": base[0],
        "channels_last": base.contiguous(memory_format=torch.channels_last),
        "strided": base[..., ::2, :],
    }[layout].requires_grad_(True)
    with tp.deterministic():
        y = FUNCTIONS[mode, 2](x, (2, 3))
    torch.testing.assert_close(y, FUNCTIONS[mode, 2](x.detach(), (2, 3)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["avg", "max"])
def test_decomposed_route_low_precision(mode: str, dtype: torch.dtype) -> None:
    x = (_distinct((2, 4, 7, 7)) * 100).to(dtype).requires_grad_(True)
    with tp.deterministic():
        y = FUNCTIONS[mode, 2](x, 3)
    assert y.dtype == dtype
    tol = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    expected = adaptive_reference(x.detach().double(), (3, 3), mode)
    torch.testing.assert_close(y.double(), expected, rtol=tol, atol=tol * 100)


def test_none_keeps_size_and_modules_match_pytorch() -> None:
    x = torch.randn(2, 3, 7, 9)
    for ours, theirs in (
        (tp.AdaptiveAvgPool2d, torch.nn.AdaptiveAvgPool2d),
        (tp.AdaptiveMaxPool2d, torch.nn.AdaptiveMaxPool2d),
    ):
        for size in (3, (3, None), (None, 4)):
            module = ours(size)
            assert isinstance(module, theirs) and repr(module) == repr(theirs(size))
            torch.testing.assert_close(module(x), theirs(size)(x), rtol=0, atol=0)
    y, idx = tp.AdaptiveMaxPool2d(3, return_indices=True)(x)
    y_ref, idx_ref = F.adaptive_max_pool2d(x, 3, return_indices=True)
    assert torch.equal(y, y_ref) and torch.equal(idx, idx_ref)


@pytest.mark.parametrize(
    ("output_size", "error", "match"),
    [
        (0, ValueError, "output_size must be positive"),
        ((3,), ValueError, "output_size must have 2 entries"),
        ("3", TypeError, "output_size must be an int"),
        ((3, 2.5), TypeError, "output_size must contain ints or None"),
        (True, TypeError, "output_size must be an int"),
    ],
)
def test_bad_output_size(output_size: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        tp.adaptive_avg_pool2d(torch.zeros(1, 1, 4, 4), output_size)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="non-zero spatial sizes"):
        tp.adaptive_max_pool2d(torch.zeros(1, 1, 0, 4), 2)
    with pytest.raises(ValueError, match="dimensions"):
        tp.adaptive_max_pool2d(torch.zeros(4, 4), 2)
    with pytest.raises(TypeError, match="return_indices must be a bool"):
        tp.adaptive_max_pool2d(torch.zeros(1, 1, 4, 4), 2, return_indices=1)  # type: ignore[call-overload]


# ------------------------------------------------------------------ the deterministic mode


def test_mode_default_follows_torch_flag_off_cpu() -> None:
    cpu, meta = torch.zeros(1), torch.zeros(1, device="meta")
    assert not tp.is_deterministic(cpu) and not tp.is_deterministic(meta)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert tp.is_deterministic(meta) and not tp.is_deterministic(cpu) and tp.is_deterministic()
        tp.use_deterministic(False)
        assert not tp.is_deterministic(meta)
    finally:
        torch.use_deterministic_algorithms(previous)
    tp.use_deterministic(True)
    assert tp.is_deterministic(cpu) and tp.is_deterministic(meta)


def test_context_manager_restores_and_validates() -> None:
    tp.use_deterministic(False)
    with tp.deterministic():
        assert tp.is_deterministic()
        with tp.deterministic(None):
            assert not tp.is_deterministic(torch.zeros(1))
        assert tp.is_deterministic()
    assert not tp.is_deterministic()
    with pytest.raises(TypeError, match="mode must be True, False or None"):
        tp.use_deterministic(1)  # type: ignore[arg-type]


@pytest.mark.parametrize(("ceil_mode", "count_include_pad"), list(itertools.product([False, True], repeat=2)))
def test_separable_avg_pool3d_matches_pytorch(ceil_mode: bool, count_include_pad: bool) -> None:
    x = _distinct((2, 3, 7, 6, 9)).requires_grad_(True)
    args = ((3, 2, 3), (2, 2, 1), (1, 1, 0), ceil_mode, count_include_pad)
    with tp.deterministic():
        assert torch.autograd.gradcheck(lambda t: _deterministic.avg_pool3d(t, *args), (x,))
        y = _deterministic.avg_pool3d(x, *args)
    torch.testing.assert_close(y, F.avg_pool3d(x, *args), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("name", "kwargs", "dims"),
    [
        ("avgmax3d", {"kernel_size": 3, "stride": 2, "padding": 1}, 3),
        ("mixed3d", {"kernel_size": 2}, 3),
        ("adaptive_catavgmax2d", {"output_size": 3}, 2),
        ("spp2d", {"levels": (1, 2, 3)}, 2),
        ("median2d", {"kernel_size": 3, "stride": 1, "padding": 1}, 2),
    ],
)
def test_pools_using_the_routes_match_in_deterministic_mode(
    name: str, kwargs: dict[str, Any], dims: int
) -> None:
    module = tp.create_pool(name, **kwargs).eval().double()
    x = _distinct((2, 4, *[7] * dims)).requires_grad_(True)
    y = module(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    with tp.deterministic():
        y_det = module(x)
        (g_det,) = torch.autograd.grad(y_det.sum(), x)
    torch.testing.assert_close(y_det, y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_det, g, rtol=1e-12, atol=1e-12)
