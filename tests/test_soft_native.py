"""The C kernel of SoftPool and LIP (``csrc/exp_weighted.c``, CPU float32): values against the
float64 loop references, gradients against a float64 ``unfold`` + softmax formula, special
values against the pure-PyTorch window path, threads, double backward, the operator checks, and
the loader (cache, no compiler, switched off)."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from records.lip import lip_loops
from records.soft import soft_reference

import torchpool as tp
import torchpool._native as native
import torchpool.ops._soft_native as N
import torchpool.ops.soft as S
from torchpool._shape import IntOrTuple

pytestmark = pytest.mark.skipif(
    not N.available(torch.zeros(1)), reason=f"the C kernel is not built: {native.build_error('exp_weighted')}"
)

POOLS = {1: tp.soft_pool1d, 2: tp.soft_pool2d, 3: tp.soft_pool3d}


def test_kernel_builds_where_a_compiler_exists() -> None:
    """On a machine with a C compiler the fast path must not fall back silently."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    assert native.load("exp_weighted") is not None, native.build_error("exp_weighted")


# (size, kernel, stride, padding, ceil_mode): short rows (fewer outputs than a vector block), rows of
# several blocks, padded borders, strides 1 to 4 (2 is the kernel's fast case), ceil-mode windows
GEOMETRIES = [
    ((9,), 2, 2, 0, False),
    ((70,), 3, 1, 1, False),
    ((67,), 4, 3, 2, True),
    ((8, 8), 2, 2, 0, False),
    ((56, 56), 2, 2, 0, False),
    ((56, 56), 3, 2, 0, False),
    ((57, 41), 3, 2, 1, False),
    ((57, 41), 3, 2, 1, True),
    ((40, 70), 3, 1, 1, False),
    ((13, 100), (2, 5), (1, 4), (1, 2), True),
    ((7, 35), (1, 3), (1, 3), (0, 1), False),
    ((5, 6, 37), 2, 2, 0, False),
    ((5, 6, 37), (3, 2, 3), (2, 1, 2), (1, 0, 1), True),
]


def _inputs(size: tuple[int, ...], seed: int, scale: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, *size, generator=g) * scale


@pytest.mark.parametrize(("size", "k", "s", "p", "ceil"), GEOMETRIES)
def test_values_match_the_float64_loops(
    size: tuple[int, ...], k: IntOrTuple, s: IntOrTuple, p: IntOrTuple, ceil: bool
) -> None:
    x = _inputs(size, 0)
    y = POOLS[len(size)](x, k, s, p, ceil)
    expected = soft_reference(x.double(), k, s, p, ceil)
    torch.testing.assert_close(y.double(), expected, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("scale", [1e-3, 30.0, 1e4, -1e4])
def test_any_magnitude(scale: float) -> None:
    x = _inputs((20, 37), 1, scale)
    y = tp.soft_pool2d(x, 3, 2, 1)
    expected = soft_reference(x.double(), 3, 2, 1)
    torch.testing.assert_close(y.double(), expected, rtol=2e-6, atol=2e-6 * abs(scale))


def _unfold_soft(
    x: torch.Tensor, logit: torch.Tensor, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int]
) -> torch.Tensor:
    """Independent float64 formula: each window's cells unfolded, a softmax of the logits (padding
    cells -inf: no weight) times the values (padding 0)."""
    n, c, h, w = x.shape
    values = F.unfold(F.pad(x, (p[1], p[1], p[0], p[0])), k, stride=s)
    inside = F.unfold(F.pad(torch.ones_like(x), (p[1], p[1], p[0], p[0])), k, stride=s) > 0
    logits = F.unfold(F.pad(logit, (p[1], p[1], p[0], p[0])), k, stride=s).masked_fill(~inside, float("-inf"))
    weights = torch.softmax(logits.view(n, c, k[0] * k[1], -1), dim=2)
    out = (weights * values.view(n, c, k[0] * k[1], -1)).sum(dim=2)
    return out.view(n, c, (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1)


# 2x2 stride 2 tiling the map: the rows' two cells stored at once (a shifted last block of 16
# outputs at widths 98 and 62: 49 and 31 outputs); the others accumulate
GRADIENT_CASES = [
    ((56, 56), (2, 2), (2, 2), (0, 0)),
    ((6, 98), (2, 2), (2, 2), (0, 0)),
    ((4, 62), (2, 2), (2, 2), (0, 0)),
    ((6, 99), (2, 2), (2, 2), (0, 0)),
    ((23, 41), (3, 3), (2, 2), (1, 1)),
    ((9, 40), (3, 3), (1, 1), (1, 1)),
    ((10, 21), (2, 3), (3, 2), (1, 0)),
]


@pytest.mark.parametrize(("size", "k", "s", "p"), GRADIENT_CASES)
def test_soft_gradient_matches_float64(
    size: tuple[int, int], k: tuple[int, int], s: tuple[int, int], p: tuple[int, int]
) -> None:
    x = _inputs(size, 2).requires_grad_()
    y = tp.soft_pool2d(x, k, s, p)
    upstream = torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
    (grad,) = torch.autograd.grad(y, x, upstream)
    x64 = x.detach().double().requires_grad_()
    (expected,) = torch.autograd.grad(_unfold_soft(x64, x64, k, s, p), x64, upstream.double())
    torch.testing.assert_close(grad.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("size", "k", "s", "p"), GRADIENT_CASES)
@pytest.mark.parametrize("broadcast", [False, True])
def test_lip_values_and_gradients_match_float64(
    size: tuple[int, int], k: tuple[int, int], s: tuple[int, int], p: tuple[int, int], broadcast: bool
) -> None:
    x = _inputs(size, 4).requires_grad_()
    logit = _inputs(size, 5)[:, :1] if broadcast else _inputs(size, 5)
    logit.requires_grad_()
    y = tp.lip_pool2d(x, logit, k, s, p)
    torch.testing.assert_close(
        y.double(),
        lip_loops(x.detach().double(), logit.detach().double().expand_as(x), k, s, p),
        rtol=2e-6,
        atol=2e-6,
    )
    upstream = torch.randn(y.shape, generator=torch.Generator().manual_seed(6))
    grads = torch.autograd.grad(y, (x, logit), upstream)
    x64, l64 = x.detach().double().requires_grad_(), logit.detach().double().requires_grad_()
    expected = torch.autograd.grad(
        _unfold_soft(x64, l64.expand_as(x64), k, s, p), (x64, l64), upstream.double()
    )
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_special_values_as_the_window_path() -> None:
    """inf, -inf, NaN, the float32 extremes and subnormals: the same result, NaN where the
    pure-PyTorch window path (the formula with each window's max) has NaN."""
    values = torch.tensor(
        [0.0, 1.0, -1.0, 1e4, -1e4, 3e38, -3e38, float("inf"), float("-inf"), float("nan"), 88.0, 1e-40]
    )
    g = torch.Generator().manual_seed(7)
    for _ in range(20):
        x = values[torch.randint(len(values), (2, 3, 6, 37), generator=g)]
        x = torch.where(torch.rand(x.shape, generator=g) < 0.6, x, torch.randn(x.shape, generator=g))
        for k, s, p in ((2, 2, 0), (3, 2, 1), (3, 1, 1)):
            expected = S._soft_windows(x, 2, (k, k), (s, s), (p, p), False)
            torch.testing.assert_close(
                tp.soft_pool2d(x, k, s, p), expected, rtol=1e-5, atol=1e-6, equal_nan=True
            )


def test_a_nan_or_inf_stays_in_its_windows_gradient_too() -> None:
    x = torch.randn(1, 2, 8, 40)
    x[0, 0, 2, 5] = float("nan")
    x[0, 1, 6, 33] = float("inf")
    x.requires_grad_()
    y = tp.soft_pool2d(x, 2, 2)
    assert y.isnan().sum() == 2 and y[0, 0, 1, 2].isnan() and y[0, 1, 3, 16].isnan()
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    bad = grad.isnan()
    assert bad[0, 0, 2:4, 4:6].all() and bad[0, 1, 6:8, 32:34].all() and bad.sum() == 8


def test_threads_give_the_same_bits(one_thread: None) -> None:
    x = _inputs((31, 45), 8).requires_grad_()
    upstream = torch.randn(2, 3, 16, 23)
    single = tp.soft_pool2d(x, 3, 2, 1)
    (single_grad,) = torch.autograd.grad(single, x, upstream)
    torch.set_num_threads(2)
    many = tp.soft_pool2d(x, 3, 2, 1)
    (many_grad,) = torch.autograd.grad(many, x, upstream)
    assert torch.equal(single, many) and torch.equal(single_grad, many_grad)


def test_layouts_and_batchless_give_the_same() -> None:
    x = _inputs((20, 33), 9)
    y = tp.soft_pool2d(x, 3, 2, 1)
    torch.testing.assert_close(
        tp.soft_pool2d(x.to(memory_format=torch.channels_last), 3, 2, 1), y, rtol=0, atol=0
    )
    torch.testing.assert_close(
        tp.soft_pool2d(x.transpose(2, 3).contiguous().transpose(2, 3), 3, 2, 1), y, rtol=0, atol=0
    )
    torch.testing.assert_close(tp.soft_pool2d(x[1], 3, 2, 1), y[1], rtol=0, atol=0)


def test_double_backward_is_the_formulas() -> None:
    x = _inputs((9, 20), 10).requires_grad_()
    y = tp.soft_pool2d(x, 3, 2, 1)
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y), create_graph=True)
    (second,) = torch.autograd.grad(grad.square().sum(), x)
    x64 = x.detach().double().requires_grad_()
    y64 = _unfold_soft(x64, x64, (3, 3), (2, 2), (1, 1))
    (grad64,) = torch.autograd.grad(y64, x64, torch.ones_like(y64), create_graph=True)
    (second64,) = torch.autograd.grad(grad64.square().sum(), x64)
    torch.testing.assert_close(second.double(), second64, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("soft", [True, False])
def test_operators_pass_opcheck(soft: bool) -> None:
    x = _inputs((7, 19), 12).requires_grad_()
    logit = None if soft else _inputs((7, 19), 13).requires_grad_()
    geometry = ([3, 3], [2, 2], [1, 1], [4, 10])
    torch.library.opcheck(N._forward, (x, logit, *geometry))
    grad = torch.randn(2, 3, 4, 10)
    plain = None if logit is None else logit.detach()
    torch.library.opcheck(N._backward, (x.detach(), plain, grad, *geometry, True, not soft))


def test_empty_batch() -> None:
    x = torch.randn(0, 3, 8, 8, requires_grad=True)
    y = tp.soft_pool2d(x, 2)
    assert y.shape == (0, 3, 4, 4)
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert grad.shape == x.shape


def test_loader_caches_the_build(fresh_loader: None, tmp_path: object) -> None:
    assert native.load("exp_weighted") is not None
    built = sorted(native.cache_dir().glob("exp_weighted-*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    native.load.cache_clear()
    assert native.load("exp_weighted") is not None
    assert built[0].stat().st_mtime_ns == stamp and len(list(native.cache_dir().iterdir())) == 1


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("CC", "/bin/false", "false"),
        ("CC", "no-such-compiler-xyz", "no C compiler"),
        ("TORCHPOOL_NATIVE", "0", "TORCHPOOL_NATIVE=0"),
    ],
)
def test_without_the_kernel_the_pytorch_path_answers(
    fresh_loader: None, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, reason: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert native.load("exp_weighted") is None
    assert reason in str(native.build_error("exp_weighted"))
    x = _inputs((10, 12), 14)
    torch.testing.assert_close(
        tp.soft_pool2d(x, 3, 2, 1).double(), soft_reference(x.double(), 3, 2, 1), rtol=2e-6, atol=2e-6
    )
    logit = _inputs((10, 12), 15)
    expected = lip_loops(x.double(), logit.double(), (3, 3), (2, 2), (1, 1))
    torch.testing.assert_close(tp.lip_pool2d(x, logit).double(), expected, rtol=2e-6, atol=2e-6)


def test_every_geometry_of_a_small_grid() -> None:
    """Every kernel 1-4, stride 1-3, padding up to half the kernel, floor and ceil, on widths
    around the vector block (15, 16, 17, 33 outputs' worth)."""
    g = torch.Generator().manual_seed(16)
    for k, s, width in itertools.product(range(1, 5), range(1, 4), (15, 33, 35, 50)):
        for p, ceil in itertools.product(range(k // 2 + 1), (False, True)):
            x = torch.randn(1, 2, k + 1, width, generator=g)
            expected = soft_reference(x.double(), (k, k), (s, s), (p, p), ceil)
            torch.testing.assert_close(
                tp.soft_pool2d(x, k, s, p, ceil).double(), expected, rtol=2e-6, atol=2e-6
            )


def test_loader_falls_back_to_the_temporary_directory(
    fresh_loader: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("TORCHPOOL_CACHE_DIR", str(blocked / "cache"))
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    assert native.load("exp_weighted") is not None
    assert native.built_path("exp_weighted").parent.parent == tmp_path / "tmp"  # type: ignore[union-attr]


def test_portable_build_gives_the_same(fresh_loader: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Built for the compiler's default target (x86-64: SSE2, no AVX-512 instructions), as on a
    CPU where ``-march=native`` fails: the same values and gradients within rounding."""
    x = _inputs((11, 50), 17).requires_grad_()
    logit = _inputs((11, 50), 18).requires_grad_()
    upstream = torch.randn(2, 3, 6, 25)
    native_build = [tp.soft_pool2d(x, 3, 2, 1), tp.lip_pool2d(x, logit)]
    native_grads = [torch.autograd.grad(y, (x, logit), upstream, allow_unused=True) for y in native_build]
    monkeypatch.setattr(native, "TARGETS", ((),))
    native.load.cache_clear()
    assert native.load("exp_weighted") is not None, native.build_error("exp_weighted")
    portable = [tp.soft_pool2d(x, 3, 2, 1), tp.lip_pool2d(x, logit)]
    for y, z, grads in zip(native_build, portable, native_grads):
        torch.testing.assert_close(z, y, rtol=1e-6, atol=1e-6)
        for a, b in zip(torch.autograd.grad(z, (x, logit), upstream, allow_unused=True), grads):
            assert (a is None) == (b is None)
            if a is not None and b is not None:
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
