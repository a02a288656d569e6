"""Degenerate inputs for EVERY registered pool: the documented policy, and the tests that hold it.

The tests walk ``tp.list_pools()`` and every spatial dim of each pool (eval mode, float32, 4
channels, each pool's example arguments; stochastic and mixed pools in train mode too, under a
fixed seed / ``generator``). For each (pool, case) the pool's record (``PoolRecord.policy`` in
``tests/records/<family>.py``, collected in :data:`POLICY`) says what happens now, and the test
asserts exactly that; ``docs/degenerate.md`` is rendered from the table
(``python tests/test_degenerate.py --write``) and a test keeps it in sync.

Cases (the codes each one accepts are listed in :data:`CODES`):

* ``n0``: an empty batch ``(0, 4, 8, ...)``: output batch 0 with the other sizes of the N=2
  output, and a backward pass, with and without autograd recording.
* ``1x1``: a ``(2, 4, 1, ...)`` input with the example arguments; where they do not fit, the
  exception and its message (which must name the size), then the same with the window shrunk to
  one cell. The output must equal the pool's reduction of that one cell.
* ``kernel``: the window set to the whole ``5 x 5`` (or ``5``, ``5^3``) input: a single output
  equal to the float64 global reduction (max / mean / median / ...) computed here by hand.
* ``zeros`` / ``ties``: all zeros / all 3.0: output value, finite gradient, and how the
  gradient is routed (``one-hot``: every window's gradient reaches one cell, never split between
  tied cells; ``uniform``: every cell gets the same share). Every pool is also checked against
  Euler's identity ``sum(x * grad) = degree * sum(y)`` and, where ``f(x + t) = f(x) + t``,
  against ``sum(grad) = number of outputs``.
* ``f32_huge`` (``1e30 u``), ``f16_huge`` (``6e4 u``), ``f32_tiny`` (``1e-30 u``),
  ``f32_subnormal`` (``1e-40 u``), ``u`` uniform in [0.5, 1]: ``ok`` means the output equals the
  exact answer (``s**degree f(u)``; for float16, the float32 result on the same values).
* ``nan`` / ``+inf`` / ``-inf``: one cell (sample 0, channel 1; at the corner and in the
  interior) set to the value. The outputs that depend on the cell are found by probing it with
  10 and 0; the code names the values found there (``nan``, ``+inf``, ``-inf``, ``finite``) and
  every other output must be bit-identical to the clean run (``@sample``: the whole sample's
  outputs instead of only the dependent ones).

Reasons starting with ``BUG:`` are current behaviour that is wrong (to be fixed in ``src``),
``LIMIT:`` an intermediate over/underflow of the textbook formula at extreme magnitudes, and
``UPSTREAM:`` PyTorch's own behaviour for a pool registered as is.
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from op_record import Out, Semantics
from records import POOLS, get_record
from records.attention import module_reference
from torch import nn

import torchpool as tp

DOC = Path(__file__).resolve().parents[1] / "docs" / "degenerate.md"
INFOS = tp.list_pools()
NAMES = {info.name for info in INFOS}
SEED = 1234
CHANNELS = 4
SIZE = 8  # spatial size per dim of the N=0, zeros, ties, magnitude and non-finite inputs
KERNEL_SIZE = 5  # spatial size per dim of the kernel = input size case (odd: SPPF needs odd kernels)
TIE = 3.0
EPS_GEM = 1e-6

#: pools also run in train mode (random draws there; seeded): those whose output depends on the mode.
TRAIN_MODE: frozenset[str] = frozenset(name for name, record in POOLS.items() if record.train_differs)

CASES: tuple[str, ...] = (
    "n0", "1x1", "kernel", "zeros", "ties",
    "f32_huge", "f16_huge", "f32_tiny", "f32_subnormal",
    "nan", "+inf", "-inf",
)  # fmt: skip
MAGNITUDES: dict[str, tuple[float, torch.dtype]] = {
    "f32_huge": (1e30, torch.float32),
    "f16_huge": (6e4, torch.float16),
    "f32_tiny": (1e-30, torch.float32),
    "f32_subnormal": (1e-40, torch.float32),
}
SPECIALS: dict[str, float] = {"nan": math.nan, "+inf": math.inf, "-inf": -math.inf}

#: the codes each case accepts, with what the test asserts for them (rendered into the doc).
CODES: dict[str, dict[str, str]] = {
    "n0": {
        "ok": "output batch 0, other sizes as for N=2; backward gives a zero-size gradient",
        "raises E": "raises exception E (message checked)",
    },
    "1x1": {
        "ok": "the example arguments work; output = the reduction of the single cell",
        "raises E": "the example window does not fit: raises E naming the size; with the window "
        "shrunk to one cell the output = the reduction of the cell",
        "empty": "the example arguments return an empty (size-0) output without error; with the "
        "window shrunk to one cell the output = the cell",
    },
    "kernel": {
        "global": "one output per channel, equal to the float64 global reduction",
        "centre": "the pooled channels' centre cell equals the global max",
        "n/a": "no window (channel statistics over all positions)",
        "raises E": "raises exception E (message checked)",
    },
    "zeros": {
        "0": "output exactly 0",
        "eps": "output = eps (the input is clamped to eps)",
        "ref": "output = the float64 reference (NetVLAD: softmax(bias) residuals of the zero descriptor; "
        "attention pools: the loop reference from the module's parameters)",
    },
    "ties": {
        "c": "output = the constant",
        "c*k^(1/p)": "output = c * (window size)^(1/p) (LP norm of a constant window)",
        "as-1x1": "output = the output for one cell of the constant (a statistic of the positions)",
        "ref": "output = the float64 reference",
    },
    "grad": {
        "one-hot": "each window's gradient goes to one cell (integer gradients)",
        "uniform": "every cell gets the same gradient",
        "0": "the gradient is exactly 0",
        "any": "finite; only Euler's identity is checked",
    },
    "magnitude": {
        "ok": "finite and equal to the exact answer (rtol 1e-3; float16: 5e-3)",
        "ok-f64": "finite and equal to the pool's float64 result on the same values (rtol 1e-3; pools that "
        "are not homogeneous, so s * f(u) is not the answer)",
        "inf": "every output +inf",
        "±inf": "every output +inf or -inf (the exact answer exceeds the dtype's range)",
        "nan": "every output NaN",
        "nan and 0": "NaN, and exact 0 in the outputs no input reaches (unreachable sketch bins)",
        "0": "every output exactly 0",
        "eps": "every output = eps (clamped)",
        "as-zeros": "the output for an all-zero input",
        "raises E": "raises exception E",
    },
    "special": {
        "raises E": "raises exception E (message checked)",
        "nan / +inf / -inf / finite": "the values found in the outputs that depend on the cell "
        "(joined by `and`); all other outputs unchanged",
        "...@sample": "the same for every output of the cell's sample",
        "...@kept": "the same in the outputs whose kept (drawn) window holds the cell; where the draw kept "
        "none, every output unchanged (S3Pool in training)",
    },
}


# ------------------------------------------------------------------ the policy (on the records)

#: registry name -> eval-mode outcomes (``PoolRecord.policy``, in ``tests/records/<family>.py``).
POLICY: dict[str, Mapping[str, Out]] = {name: record.policy for name, record in POOLS.items()}
#: train-mode outcomes of the pools in TRAIN_MODE (``PoolRecord.train_policy``).
TRAIN_POLICY: dict[str, Mapping[str, Out]] = {
    name: record.train_policy for name, record in POOLS.items() if record.train_policy is not None
}


def policy(name: str, mode: str) -> Mapping[str, Out]:
    """The outcome table of one pool in one mode."""
    return get_record(name).policy_in(mode)


def semantics(name: str, mode: str) -> Semantics:
    """What one pool computes in one mode."""
    return get_record(name).semantics_in(mode)


# ------------------------------------------------------------------ helpers

VARIANTS = [
    pytest.param(info, d, mode, id=f"{info.name}-{d}d" + ("-train" if mode == "train" else ""))
    for info in INFOS
    for d in info.dims
    for mode in (("eval", "train") if info.name in TRAIN_MODE else ("eval",))
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """The inputs are tiny: one intra-op thread is fastest (and far faster on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _seed(seed: int) -> None:
    """``torch.manual_seed`` for the CPU only (the full one also queues a CUDA seed, slowly)."""
    torch.default_generator.manual_seed(seed)


def _build(info: tp.PoolInfo, mode: str, **override: Any) -> nn.Module:
    _seed(0)  # same initial parameters for every build
    kwargs = {**info.example_kwargs, **override}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return tp.create_pool(info.name, **kwargs).train(mode == "train")


def _forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One forward pass with the randomness pinned (global seed and ``generator=``)."""
    kwargs: dict[str, Any] = {}
    _seed(SEED)
    if "generator" in inspect.signature(module.forward).parameters:
        kwargs["generator"] = torch.Generator().manual_seed(SEED)
    y = module(x, **kwargs)
    out: torch.Tensor = y[0] if isinstance(y, tuple) else y
    return out


def _uniform(d: int, size: int = SIZE, batch: int = 2) -> torch.Tensor:
    """``u`` uniform in [0.5, 1): positive (stochastic pooling), no ties, away from GeM's eps."""
    g = torch.Generator().manual_seed(0)
    return 0.5 + 0.5 * torch.rand(batch, CHANNELS, *[size] * d, generator=g)


def _reduce(kind: str, x: torch.Tensor) -> torch.Tensor:
    """The float64 reduction over all positions: ``(N, C, *S)`` -> ``(N, C')``."""
    flat = x.double().flatten(2)
    mean, mx = flat.mean(2), flat.amax(2)
    if kind == "max":
        return mx
    if kind == "mean":
        return mean
    if kind == "lp2":
        return flat.square().sum(2).sqrt()
    if kind == "median":
        return flat.median(2).values  # the lower median, as median pooling
    if kind == "avgmax":
        return 0.5 * (mean + mx)
    if kind == "catavgmax":
        return torch.cat([mean, mx], dim=1)
    if kind == "mix":
        return 0.5 * mx + 0.5 * mean
    if kind == "stochastic":
        return flat.square().sum(2) / flat.sum(2)
    if kind == "gem":
        return flat.clamp(min=EPS_GEM).pow(3).mean(2).pow(1 / 3)
    if kind == "soft":  # SoftPool: the softmax-weighted mean
        return (torch.softmax(flat, 2) * flat).sum(2)
    if kind == "lse":  # LSE pooling at its example r = 10: (1/r) log mean exp(r x)
        return (torch.logsumexp(10 * flat, 2) - math.log(flat.shape[2])) / 10
    if kind == "s3":  # S3Pool's eval rule at stride = size: the mean of the 2x2 dense max (far edge
        # padded with -inf) over the first size - size // 2 cells per dim
        keep = x.shape[-1] - x.shape[-1] // 2
        padded = torch.nn.functional.pad(x.double(), (0, 1, 0, 1), value=-math.inf)
        return padded.unfold(2, 2, 1).unfold(3, 2, 1).amax((-2, -1))[:, :, :keep, :keep].mean((2, 3))
    raise AssertionError(kind)


def _check_reduction(kind: str, y: torch.Tensor, x: torch.Tensor) -> None:
    """``y`` (N, C', 1, ...) or (N, C') against the reduction of all of ``x``'s positions."""
    got = y.double().reshape(y.shape[0], -1)
    if kind == "draw":  # one cell of the plane, drawn
        cells = x.double().flatten(2)
        assert bool(((got[:, :, None] == cells).any(2)).all()), "a drawn output is no cell of its window"
        return
    if kind == "max|mean":  # per sample: max or mean, every channel alike
        for n in range(got.shape[0]):
            as_max = torch.allclose(got[n], _reduce("max", x)[n], rtol=1e-5, atol=1e-6)
            as_mean = torch.allclose(got[n], _reduce("mean", x)[n], rtol=1e-5, atol=1e-6)
            assert as_max or as_mean, f"sample {n} is neither the max nor the mean"
        return
    torch.testing.assert_close(got, _reduce(kind, x), rtol=1e-5, atol=1e-6)


def _netvlad_reference(module: Any, x: torch.Tensor) -> torch.Tensor:
    """NetVLAD / GhostVLAD in float64, from the module's parameters."""
    eps = float(module.eps)
    c = module.centroids.detach().double()
    w = module.assign_weight.detach().double()
    b = module.assign_bias.detach().double()
    f = x.detach().double().reshape(x.shape[0], x.shape[1], -1)  # (N, D, L)
    if module.normalize_input:
        f = f / (eps + f.square().sum(1, keepdim=True)).sqrt()
    a = torch.softmax(torch.einsum("kd,ndl->nkl", w, f) + b[:, None], dim=1)[:, : c.shape[0]]
    v = torch.einsum("nkl,ndl->nkd", a, f) - c * a.sum(2, keepdim=True)
    v = (v / (eps + v.square().sum(2, keepdim=True)).sqrt()).flatten(1)
    out: torch.Tensor = v / (eps + v.square().sum(1, keepdim=True)).sqrt()
    return out


def _reference_run(sem: Semantics, module: Any, x: torch.Tensor) -> torch.Tensor:
    """NetVLAD's float64 reference; for an attention pool (no closed form for one cell or a
    constant map: a learned positional embedding is added) its float64 loop reference from the
    module's parameters (``tests/records/attention.py``)."""
    if sem.reduce == "attention":
        return module_reference(module, x.detach())
    return _netvlad_reference(module, x)


def _expect_raises(out: Out, fn: Callable[[], object]) -> None:
    exc = {
        "ValueError": ValueError,
        "RuntimeError": RuntimeError,
        "NotImplementedError": NotImplementedError,
        "TypeError": TypeError,
    }[out.code.split()[1]]
    with pytest.raises(exc, match=out.match):
        fn()


def _is_raises(out: Out) -> bool:
    return out.code.startswith("raises ")


def _value_classes(y: torch.Tensor) -> set[str]:
    classes = set()
    if bool(y.isnan().any()):
        classes.add("nan")
    if bool((y == math.inf).any()):
        classes.add("+inf")
    if bool((y == -math.inf).any()):
        classes.add("-inf")
    if bool(y.isfinite().any()):
        classes.add("finite")
    return classes


def _check_gradient(code: str, sem: Semantics, x: torch.Tensor, y: torch.Tensor, grad: torch.Tensor) -> None:
    """The gradient of ``y.sum()`` at a constant input ``x``."""
    assert bool(grad.isfinite().all()), "non-finite gradient"
    g, xd, yd = grad.double(), x.double(), y.double()
    # Euler: sum(x * grad) = degree * sum(y) for a homogeneous f
    scale = max(float((xd * g).abs().sum()), float(yd.abs().sum()), 1.0)
    if sem.degree is not None:
        assert abs(float((xd * g).sum()) - sem.degree * float(yd.sum())) <= 1e-5 * scale
    if sem.shift and code != "0":
        assert float(g.sum()) == pytest.approx(y.numel(), rel=1e-5), (
            "the gradient does not sum to 1 per output"
        )
    if code == "one-hot":
        assert bool((g >= 0).all()) and torch.equal(g, g.round()), (
            "a window's gradient was split between ties"
        )
    elif code == "uniform":
        assert torch.allclose(g, g.flatten()[0].expand_as(g), rtol=1e-5, atol=0.0), "gradient not uniform"
    elif code == "0":
        assert bool((g == 0).all()), "gradient not 0"
    else:
        assert code == "any", code


# ------------------------------------------------------------------ tests: the table


def test_policy_covers_every_pool_and_case() -> None:
    assert set(POLICY) == NAMES, set(POLICY) ^ NAMES
    assert set(TRAIN_POLICY) == TRAIN_MODE and TRAIN_MODE <= NAMES
    for table in (*POLICY.values(), *TRAIN_POLICY.values()):
        assert tuple(table) == CASES or set(table) == set(CASES), set(table) ^ set(CASES)
        for case, out in table.items():
            assert _is_raises(out) == bool(out.match), (case, out)
            if "BUG" in out.why:
                assert out.why.startswith(("BUG: ", "UPSTREAM BUG: ")), out.why


# ------------------------------------------------------------------ tests: each case


@pytest.mark.parametrize(("info", "d", "mode"), VARIANTS)
def test_empty_batch(info: tp.PoolInfo, d: int, mode: str) -> None:
    out = policy(info.name, mode)["n0"]
    module = _build(info, mode)
    x = torch.rand(0, CHANNELS, *[SIZE] * d, requires_grad=True)
    if _is_raises(out):
        _expect_raises(out, lambda: _forward(module, x))
        return
    assert out.code == "ok", out
    full = _forward(module, _uniform(d)).shape
    y = _forward(module, x)
    assert tuple(y.shape) == (0, *full[1:])
    torch.autograd.backward(y.sum())
    assert x.grad is not None and x.grad.shape == x.shape
    with torch.no_grad():  # the no-autograd path (SPPF / YOLO-SPP use another kernel there)
        assert tuple(_forward(module, x.detach()).shape) == (0, *full[1:])


def _check_single_cell(info: tp.PoolInfo, sem: Semantics, module: nn.Module, x: torch.Tensor) -> None:
    """The output for a ``(2, 4, 1, ...)`` input against the pool's reduction of the one cell."""
    y = _forward(module, x)
    if sem.cell == "channel-groups":  # -inf padding: every channel group is the cell
        torch.testing.assert_close(y, x.repeat(1, y.shape[1] // x.shape[1], 1, 1), rtol=0, atol=0)
    elif sem.cell == "bins":  # every bin of every level is the cell
        bins = [n ** (x.dim() - 2) for n in info.example_kwargs["levels"]]
        expected = torch.cat([x.flatten(1).repeat_interleave(b, dim=1) for b in bins], dim=1)
        torch.testing.assert_close(y, expected, rtol=0, atol=0)
    elif sem.reduce in ("netvlad", "attention"):
        torch.testing.assert_close(y.double(), _reference_run(sem, module, x), rtol=1e-4, atol=1e-5)
    elif sem.reduce == "stats":  # a statistic of the positions: the cell tiled 3 times per dim is alike
        tiled = _forward(module, x.expand(*x.shape[:2], *[3] * (x.dim() - 2)))
        torch.testing.assert_close(y, tiled, rtol=1e-4, atol=1e-6)
    else:
        _check_reduction(sem.reduce, y, x)


@pytest.mark.parametrize(("info", "d", "mode"), VARIANTS)
def test_single_cell_input(info: tp.PoolInfo, d: int, mode: str) -> None:
    out = policy(info.name, mode)["1x1"]
    sem = semantics(info.name, mode)
    x = _uniform(d, size=1)
    module = _build(info, mode)
    if out.code == "ok":
        _check_single_cell(info, sem, module, x)
        return
    if out.code == "empty":
        y = _forward(module, x)
        assert y.numel() == 0 and y.shape[:2] == x.shape[:2], y.shape
    else:
        _expect_raises(out, lambda: _forward(module, x))
    assert sem.window is not None
    shrunk = _build(info, mode, **sem.window(1))
    kernel_out = policy(info.name, mode)["kernel"]
    if _is_raises(kernel_out):  # a window as large as the input is refused, 1 as well
        _expect_raises(kernel_out, lambda: _forward(shrunk, x))
        return
    _check_single_cell(info, sem, shrunk, x)


@pytest.mark.parametrize(("info", "d", "mode"), VARIANTS)
def test_kernel_equals_input_size(info: tp.PoolInfo, d: int, mode: str) -> None:
    out = policy(info.name, mode)["kernel"]
    sem = semantics(info.name, mode)
    if out.code == "n/a":
        assert sem.window is None
        return
    assert sem.window is not None
    module = _build(info, mode, **sem.window(KERNEL_SIZE))
    x = torch.rand(2, CHANNELS, *[KERNEL_SIZE] * d, generator=torch.Generator().manual_seed(1))
    if _is_raises(out):
        _expect_raises(out, lambda: _forward(module, x))
        return
    y = _forward(module, x)
    if out.code == "centre":
        index: tuple[Any, ...] = (slice(None), slice(None)) + (KERNEL_SIZE // 2,) * d
        order = ("x", "max")  # sppf and yolo_spp default to ultralytics' order [x, pools]
        parts = {"x": x[index], "max": x.flatten(2).amax(2)}
        centre = y[index]
        torch.testing.assert_close(centre, torch.cat([parts[p] for p in order], dim=1), rtol=0, atol=0)
        return
    assert out.code == "global", out
    assert y.numel() == x.shape[0] * CHANNELS * (2 if sem.reduce == "catavgmax" else 1), y.shape
    _check_reduction(sem.reduce, y, x)


def _check_constant(info: tp.PoolInfo, d: int, mode: str, case: str, value: float) -> None:
    out = policy(info.name, mode)[case]
    sem = semantics(info.name, mode)
    value_code, grad_code = out.code.split(", ")
    module = _build(info, mode)
    x = torch.full((2, CHANNELS, *[SIZE] * d), value, requires_grad=True)
    y = _forward(module, x)
    torch.autograd.backward(y.sum())
    assert x.grad is not None
    assert bool(y.isfinite().all()), "non-finite output"
    if value_code == "0":
        assert bool((y == 0).all()), y
    elif value_code == "c":
        torch.testing.assert_close(y, torch.full_like(y, value), rtol=1e-6, atol=0)
    elif value_code == "eps":
        torch.testing.assert_close(y, torch.full_like(y, EPS_GEM), rtol=1e-5, atol=0)
    elif value_code == "c*k^(1/p)":  # LP with p = 2 over a 2-wide window: c * sqrt(2**d)
        torch.testing.assert_close(y, torch.full_like(y, value * math.sqrt(2**d)), rtol=1e-6, atol=0)
    elif value_code == "as-1x1":
        first: tuple[Any, ...] = (slice(None), slice(None)) + (slice(0, 1),) * d
        one = _forward(module, x.detach()[first])
        torch.testing.assert_close(y, one, rtol=1e-5, atol=1e-6)
    elif value_code == "ref":
        torch.testing.assert_close(y.double(), _reference_run(sem, module, x), rtol=1e-4, atol=1e-6)
    else:
        raise AssertionError(out)
    _check_gradient(grad_code, sem, x.detach(), y.detach(), x.grad)


@pytest.mark.parametrize(("info", "d", "mode"), VARIANTS)
def test_all_zeros(info: tp.PoolInfo, d: int, mode: str) -> None:
    _check_constant(info, d, mode, "zeros", 0.0)


@pytest.mark.parametrize(("info", "d", "mode"), VARIANTS)
def test_all_equal(info: tp.PoolInfo, d: int, mode: str) -> None:
    _check_constant(info, d, mode, "ties", TIE)


@pytest.mark.parametrize("case", list(MAGNITUDES))
@pytest.mark.parametrize(("info", "d", "mode"), VARIANTS)
def test_magnitude(info: tp.PoolInfo, d: int, mode: str, case: str) -> None:
    out = policy(info.name, mode)[case]
    sem = semantics(info.name, mode)
    scale, dtype = MAGNITUDES[case]
    module = _build(info, mode)
    u = _uniform(d)
    x = (u.double() * scale).to(dtype)
    if _is_raises(out):
        _expect_raises(out, lambda: _forward(module, x))
        return
    with torch.no_grad():
        y = _forward(module, x).double()
        if dtype == torch.float16:  # the float32 answer on the same values
            exact, rtol = _forward(module, x.float()).double(), 5e-3
        else:
            assert sem.degree is not None or out.code != "ok", "no degree: the exact answer is unknown"
            exact, rtol = _forward(module, u).double() * scale ** (sem.degree or 0), 1e-3
        zero_answer = _forward(module, torch.zeros_like(x)).double()
    if out.code == "ok":
        assert bool(y.isfinite().all())
        torch.testing.assert_close(y, exact, rtol=rtol, atol=rtol * float(exact.abs().max()))
    elif out.code == "ok-f64":
        assert bool(y.isfinite().all())
        with torch.no_grad():
            exact = _forward(module, x.double()).double()
        torch.testing.assert_close(y, exact, rtol=1e-3, atol=1e-3 * float(exact.abs().max()))
    elif out.code == "inf":
        assert bool((y == math.inf).all()), y
    elif out.code == "±inf":
        assert bool(y.isinf().all()), y
    elif out.code == "nan":
        assert bool(y.isnan().all()), y
    elif out.code == "nan and 0":
        assert bool(y.isnan().any()) and bool((y.isnan() | (y == 0)).all()), y
    elif out.code == "0":
        assert bool((y == 0).all()), y
    elif out.code == "eps":
        torch.testing.assert_close(y, torch.full_like(y, EPS_GEM), rtol=1e-3, atol=0)
    elif out.code == "as-zeros":
        assert not torch.allclose(exact, zero_answer, atol=1e-3), "the exact answer is the zero answer"
        torch.testing.assert_close(y, zero_answer, rtol=1e-5, atol=1e-6)
    else:
        raise AssertionError(out)


def _median_windows(module: Any, cell: tuple[int, ...], shape: torch.Size) -> torch.Tensor:
    """The outputs of a median pool whose (reflect-padded) window contains ``cell``."""
    d = len(shape) - 2
    assert module.padding_mode == "reflect", module.padding_mode
    k, s, p = (
        tuple(v) if isinstance(v, (tuple, list)) else (v,) * d
        for v in (module.kernel_size, module.stride, module.padding)
    )
    mark = torch.zeros(shape)
    mark[cell] = 1.0
    padded = torch.nn.functional.pad(mark, [q for pp in reversed(p) for q in (pp, pp)], mode="reflect")
    pool = (torch.nn.functional.max_pool1d, torch.nn.functional.max_pool2d, torch.nn.functional.max_pool3d)
    return pool[d - 1](padded, k, s) > 0


@pytest.mark.parametrize("where", ["corner", "interior"])
@pytest.mark.parametrize("value", list(SPECIALS))
@pytest.mark.parametrize(("info", "d", "mode"), VARIANTS)
def test_nonfinite(info: tp.PoolInfo, d: int, mode: str, value: str, where: str) -> None:
    out = policy(info.name, mode)[value]
    module = _build(info, mode)
    u = _uniform(d)
    cell = (0, 1, *[0 if where == "corner" else 3] * d)

    def put(v: float) -> torch.Tensor:
        x = u.clone()
        x[cell] = v
        return x

    x = put(SPECIALS[value])
    if _is_raises(out):
        _expect_raises(out, lambda: _forward(module, x))
        return
    with torch.no_grad():
        clean = _forward(module, u)
        depends = (_forward(module, put(10.0)) != clean) | (_forward(module, put(0.0)) != clean)
        y = _forward(module, x)
    if semantics(info.name, mode).reflect_windows:  # [a, x, a] has median a for any x
        depends |= _median_windows(module, cell, u.shape)
    # the autograd path gives the same values (SPPF / YOLO-SPP run another kernel there)
    y_grad = _forward(module, x.clone().requires_grad_(True)).detach()
    torch.testing.assert_close(y_grad, y, rtol=1e-6, atol=1e-6, equal_nan=True)
    classes, _, region = out.code.partition("@")
    if region == "kept" and not bool(depends.any()):  # the draw kept no window holding the cell
        assert torch.equal(y, clean), "an output changed though no kept window holds the cell"
        return
    if region == "sample":
        inside = torch.zeros_like(depends)
        inside[0] = True
    else:
        inside = depends
    assert bool(depends.any()) and not bool((depends & ~inside).any())
    assert torch.equal(y[~inside], clean[~inside]), "an output that does not depend on the cell changed"
    assert _value_classes(y[inside]) == set(classes.split(" and ")), _value_classes(y[inside])


# ------------------------------------------------------------------ the doc


def _md(text: str) -> str:
    """Plain text for Markdown: ``x**2`` must not turn into bold."""
    return text.replace("*", "\\*")


def _cell(out: Out) -> str:
    text = _md(out.code).replace("|", "\\|")
    if out.why.startswith(("BUG", "UPSTREAM BUG")):
        text += " **(bug)**"
    elif "LIMIT" in out.why:
        text += " (limit)"
    return text


_HEADERS = {
    "n0": "N=0",
    "1x1": "1x1",
    "kernel": "kernel = input",
    "zeros": "zeros",
    "ties": "ties",
    "f32_huge": "1e30 f32",
    "f16_huge": "6e4 f16",
    "f32_tiny": "1e-30 f32",
    "f32_subnormal": "1e-40 f32",
    "nan": "NaN",
    "+inf": "+inf",
    "-inf": "-inf",
}


def _rows() -> list[tuple[str, str, Mapping[str, Out]]]:
    rows = []
    for info in INFOS:
        dims = ", ".join(f"{d}d" for d in info.dims)
        rows.append((info.name, dims, POLICY[info.name]))
        if info.name in TRAIN_MODE:
            rows.append((f"{info.name} (train)", dims, TRAIN_POLICY[info.name]))
    return rows


def render_degenerate_md() -> str:
    head = (
        "# Degenerate inputs\n\n"
        "Generated from `tests/test_degenerate.py` (`python tests/test_degenerate.py --write`); a test\n"
        "fails when this page and the tests disagree. Checked on torch 2.13 (CPU), float32, eval mode\n"
        "with each pool's example arguments and 4 channels (stochastic and mixed pools in train mode\n"
        "too, under a fixed seed). Every dim a pool supports is tested and behaves alike.\n\n"
        "**Marks.** *(bug)*: current behaviour that is wrong and will be fixed; *(limit)*: an\n"
        "intermediate over- or underflow of the textbook formula at extreme magnitudes (the exact\n"
        "answer is finite); `UPSTREAM`: PyTorch's own behaviour, for pools registered as is.\n\n"
        "## Cases\n\n"
        "- **N=0**: input `(0, 4, 8, ...)`.\n"
        "- **1x1**: input `(2, 4, 1, ...)`.\n"
        "- **kernel = input**: the window set to the whole `5 x 5` (`5`, `5^3`) input.\n"
        "- **zeros**, **ties**: all 0, all 3.0; `value, gradient`. Every pool also satisfies Euler's\n"
        "  identity `sum(x * grad) = degree * sum(y)` (those with a degree), and the gradient sums to 1\n"
        "  per output where\n"
        "  `f(x + t) = f(x) + t` (max, mean, median, mixed, pyramid pools).\n"
        "- **1e30 f32**, **6e4 f16**, **1e-30 f32**, **1e-40 f32** (subnormal): `s * u`, `u` uniform\n"
        "  in [0.5, 1).\n"
        "- **NaN**, **+inf**, **-inf**: one cell (sample 0, channel 1; at a corner and inside) set to\n"
        "  the value. The outputs that depend on the cell are found by probing it with 10 and 0.\n\n"
        "## Codes\n\n"
    )
    groups = {
        "n0": "N=0",
        "1x1": "1x1",
        "kernel": "kernel = input",
        "zeros": "zeros (value)",
        "ties": "ties (value)",
        "grad": "zeros / ties (gradient)",
        "magnitude": "magnitudes",
        "special": "NaN / +inf / -inf",
    }
    codes = []
    for key, title in groups.items():
        codes.append(f"**{title}**\n")
        codes += [f"- `{code}`: {_md(text)}" for code, text in CODES[key].items()]
        codes.append("")
    lines = [
        "## Policy\n",
        "| pool | dims | " + " | ".join(_HEADERS[c] for c in CASES) + " |",
        "| --- | --- | " + " | ".join("---" for _ in CASES) + " |",
    ]
    for name, dims, table in _rows():
        lines.append(f"| {name} | {dims} | " + " | ".join(_cell(table[c]) for c in CASES) + " |")
    notes: dict[tuple[str, str, str], list[str]] = {}
    for name, _, table in _rows():
        for case in CASES:
            out = table[case]
            if out.why or _is_raises(out):
                detail = _md(out.why)
                if _is_raises(out):
                    detail = f"`{out.code}` matching `{out.match}`" + (f"; {detail}" if detail else "")
                notes.setdefault((case, out.code, detail), []).append(name)
    note_lines = ["", "## Notes\n"]
    for case in CASES:
        entries = [(key, names) for key, names in notes.items() if key[0] == case]
        if not entries:
            continue
        note_lines.append(f"**{_HEADERS[case]}**\n")
        for (_, code, detail), names in entries:
            note_lines.append(f"- `{code}` ({', '.join(names)}): {detail}")
        note_lines.append("")
    return head + "\n".join(codes) + "\n" + "\n".join(lines) + "\n" + "\n".join(note_lines)


def test_degenerate_doc_matches_tests() -> None:
    assert DOC.read_text() == render_degenerate_md(), (
        "docs/degenerate.md is stale: run `python tests/test_degenerate.py --write`"
    )


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        DOC.write_text(render_degenerate_md())
        print(f"wrote {DOC}")
    else:
        print(render_degenerate_md())
