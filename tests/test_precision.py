"""float16 / bfloat16 precision of EVERY registered pool (CPU), plus the precision table.

The walk covers ``tp.list_pools()``, so a newly registered pool is checked automatically. For
each pool, each of its dims, float16 and bfloat16:

* Sizes: windows big enough that a sum accumulated in the input dtype overflows float16
  (65504): 256 cells in 1d (kernel 256 on length 512), 256 in 2d (16 x 16 on 32 x 32), 512 in
  3d (8^3 on 16^3); adaptive pools 2 bins per dimension (an output size of 1 takes PyTorch's
  plain-mean path instead); ``dim``/``dim_a`` 8 = the channels; everything else from
  ``example_kwargs``. Pools whose windows are not summed keep their example window
  (:data:`KEEP_WINDOW`).
* Inputs: uniform in ``[0, 1000]`` (post-ReLU activations at the top of the normal range: a
  256-cell window sums to ~1.3e5, a product of two is 1e6) and, for pools that do arithmetic,
  in ``[-1000, 1000]`` (signed features / pre-activations: sums partly cancel). Selection-only
  pools (max, median: no arithmetic, exact in any dtype) and stochastic pooling (non-negative
  input only) take the first range only; pools whose exact result leaves the float16 range at
  1000 get smaller inputs (:data:`INPUT_TOP`).
* The Module is converted with ``.to(dtype)``, as in a half-precision model: every op casts
  its parameters and buffers to its compute dtype itself (float32 parameters with a half
  input work too: :func:`test_float32_parameters_with_half_input`). The reference is a
  float32 copy of the converted Module (the same rounded parameters) on the same input
  upcast to float32, so only the op's arithmetic is compared, not the rounding of the input.
* Asserted: output dtype == input dtype; output finite; output close to the reference with
  ``rtol = 2 eps`` of the dtype (float16 2e-3, bfloat16 1.6e-2) and ``atol = rtol * max|ref|``
  (cancelling sums make small outputs relatively less precise); the input gradient of
  ``sum(w * y)`` (random ``w``) finite and close with ``4 eps`` (PyTorch's backward kernels add
  the contributions of overlapping windows and concatenated branches in the input dtype).
  ``w`` is scaled by a power of two so that the reference gradient peaks near 1, as
  ``torch.amp.GradScaler`` scales the loss: float16 gradients below 6e-5 are subnormal and
  lose digits whatever the op does (a normalised output of a 1000-valued input has input
  gradients ~1e-6).

Exceptions, on each pool's record (``tests/records/<family>.py``): ``half_exceptions``, collected in
:data:`PYTORCH_EXCEPTIONS` (PyTorch's own implementation fails; the test asserts that it still
does, so the table stays true), and ``half_bugs``, collected in :data:`BUGS` (torchpool code that
should compute in float32 and does not; ``xfail(strict=True)``). :func:`render_precision_rows` turns
them into the precision table (:data:`PRECISION_TABLE_HEADER` + rows) for the README.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from op_record import Known
from records import POOLS, get_record
from torch import Tensor, nn

import torchpool as tp

INFOS = tp.list_pools()
DTYPES = (torch.float16, torch.bfloat16)
CHANNELS = 8
SIZE = {1: 512, 2: 32, 3: 16}
WINDOW = {1: 256, 2: 16, 3: 8}
TOP = 1000.0
SEED = 0

Forward = Callable[[nn.Module, Tensor], Tensor]

# ------------------------------------------------------------------ per-pool choices (on the records)

#: the facts below are views of the pools' records (``tests/records/<family>.py``).

#: pools whose example window is kept (``PoolRecord.keep_window``): no sum over the window
#: (selection only), or the kernel is fixed by the block (fractional: ``output_ratio``; SPPF /
#: YOLO-SPP: odd kernels).
KEEP_WINDOW: frozenset[str] = frozenset(name for name, record in POOLS.items() if record.keep_window)

#: pools with no sum over a window (selection only) checked on smaller inputs
#: (``PoolRecord.small_input``): the median's 3d kernel takes seconds to plan for a 16^3
#: half-precision input, and there is no sum to overflow.
SMALL_INPUT: frozenset[str] = frozenset(name for name, record in POOLS.items() if record.small_input)
SMALL_SIZE = {1: 64, 2: 16, 3: 8}

#: largest input magnitude where 1000 would put the exact result itself out of float16 range.
INPUT_TOP: dict[str, tuple[float, str]] = {
    name: record.input_top for name, record in POOLS.items() if record.input_top is not None
}

#: pools that only accept non-negative input.
NONNEGATIVE_ONLY: frozenset[str] = frozenset(
    name for name, record in POOLS.items() if record.nonnegative_only
)

#: (pool, dtype name) -> how PyTorch's own pool fails on the CPU (for every input range it is fed).
PYTORCH_EXCEPTIONS: dict[tuple[str, str], Known] = {
    (name, dtype): known for name, record in POOLS.items() for dtype, known in record.half_exceptions.items()
}

#: (case, dtype name) -> torchpool code that overflows or loses precision in half precision:
#: xfail(strict=True). ``case`` is a registry name (walk, inputs in [0, 1000]),
#: ``"<name>[signed]"`` (walk, inputs in [-1000, 1000]) or a targeted ``"<name>[<variant>]"``.
#: Signed inputs partly cancel in the sums, so some bugs only show with non-negative ones.
BUGS: dict[tuple[str, str], Known] = {
    (f"{name}[{variant}]" if variant else name, dtype): known
    for name, record in POOLS.items()
    for (variant, dtype), known in record.half_bugs.items()
}

#: how each pool computes in half precision, by name stem (``avg2d`` -> ``avg``).
COMPUTED_IN: dict[str, str] = {
    re.sub(r"[123]d$", "", name): record.computed_in for name, record in POOLS.items()
}


# ------------------------------------------------------------------ helpers


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One intra-op thread: the tensors are small, and on a busy machine the threads' barriers
    cost more than the work (the file takes 4-5x longer with 2 threads on 2 shared cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _stem(name: str) -> str:
    return re.sub(r"[123]d$", "", name)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _kwargs(info: tp.PoolInfo, dims: int) -> dict[str, Any]:
    kwargs = dict(info.example_kwargs)
    windowed = info.name not in KEEP_WINDOW
    if "kernel_size" in kwargs and windowed:
        kwargs["kernel_size"] = WINDOW[dims]
    kwargs.update(get_record(info.name).precision_kwargs)
    for key in ("dim", "dim_a"):
        if key in kwargs:
            kwargs[key] = CHANNELS
    return kwargs


def _input(
    dims: int, top: float, signed: bool, *, channels: int = CHANNELS, size: dict[int, int] = SIZE
) -> Tensor:
    """float32 ``(2, channels, *[size] * dims)``, uniform in ``[0, top]`` or ``[-top, top]``."""
    g = torch.Generator().manual_seed(SEED)
    x = torch.rand(2, channels, *[size[dims]] * dims, generator=g)
    return (x * 2 - 1) * top if signed else x * top


_VLAD_STATES: dict[tuple[Any, ...], dict[str, Tensor]] = {}


def _prepare(module: nn.Module, x: Tensor) -> None:
    """Data-dependent setup of the float32 Module, before conversion."""
    if isinstance(module, tp.NetVLAD):  # centres near the data, as in use (random ones are far)
        key = (module.extra_repr(), tuple(x.shape), float(x.sum()))  # same for both dtypes
        if key not in _VLAD_STATES:
            descriptors = x.movedim(1, -1).reshape(-1, x.shape[1])
            module.init_from_descriptors(descriptors[:: max(1, len(descriptors) // 256)], iters=10)
            _VLAD_STATES[key] = copy.deepcopy(module.state_dict())
        module.load_state_dict(_VLAD_STATES[key])
    if isinstance(module, tp.GatedPool2d):  # a non-trivial gate (it starts at zero)
        with torch.no_grad():
            module.gate_weight.normal_(0.0, 0.1 / module.gate_weight[0].numel())


def _fix_random(module: nn.Module, reference: nn.Module, x: Tensor) -> None:
    """Fractional max pooling draws its regions even in eval mode: give both the same samples."""
    if isinstance(module, (nn.FractionalMaxPool2d, nn.FractionalMaxPool3d)):
        g = torch.Generator().manual_seed(SEED)
        samples = torch.rand(x.shape[0], x.shape[1], x.dim() - 2, generator=g).to(x.dtype)
        module._random_samples = samples
        reference._random_samples = samples.float()


def _call(module: nn.Module, x: Tensor) -> Tensor:
    y = module(x)
    out: Tensor = y[0] if isinstance(y, tuple) else y
    return out


def _loss_scale(grad: Tensor) -> float:
    """A power of two in ``[1, 2^14]`` that brings ``max|grad|`` near 1 (as a GradScaler would)."""
    peak = float(grad.abs().max())
    if not math.isfinite(peak) or peak == 0.0:
        return 1.0
    return 2.0 ** min(max(-math.floor(math.log2(peak)), 0), 14)


def _assert_close(actual: Tensor, expected: Tensor, tol: float, what: str) -> None:
    """``|actual - expected| <= tol * (|expected| + max|expected|)`` elementwise (float32 arithmetic)."""
    expected = expected.detach().float()
    magnitude = expected.abs()
    error = (actual.detach().float() - expected).abs()
    excess = error - tol * (magnitude + magnitude.max())
    if not bool((excess <= 0).all()):  # also catches NaN
        worst = int(torch.nan_to_num(excess, nan=math.inf).argmax())
        raise AssertionError(
            f"{what}: {int((~(excess <= 0)).sum())} of {excess.numel()} values off; worst "
            f"{actual.flatten()[worst].item()!r} vs {expected.flatten()[worst].item()!r} (tol {tol:.2e} "
            f"relative, + {tol:.2e} * max {magnitude.max().item():.3g})"
        )


def _check(module: nn.Module, x32: Tensor, dtype: torch.dtype, forward: Forward = _call) -> None:
    """Runs the float32-converted ``module`` in ``dtype`` against a float32 reference."""
    module = module.to(dtype)
    reference = copy.deepcopy(module).float()
    x = x32.to(dtype).requires_grad_()
    x_ref = x.detach().float().requires_grad_()
    _fix_random(module, reference, x)
    y_ref = forward(reference, x_ref)
    y = forward(module, x)
    assert y.dtype == dtype, f"output dtype {y.dtype}, input {dtype}"
    assert torch.isfinite(y).all(), f"non-finite output: {(~torch.isfinite(y)).sum().item()} values"
    eps = torch.finfo(dtype).eps
    _assert_close(y, y_ref, 2 * eps, "output")

    w = torch.rand(y.shape, generator=torch.Generator().manual_seed(SEED + 1)).to(dtype).float()
    (grad_ref,) = torch.autograd.grad(y_ref, x_ref, w)
    scale = _loss_scale(grad_ref)
    (grad,) = torch.autograd.grad(y, x, (w * scale).to(dtype))
    assert grad.dtype == dtype
    assert torch.isfinite(grad).all(), f"non-finite input gradient: {(~torch.isfinite(grad)).sum().item()}"
    _assert_close(grad, grad_ref * scale, 4 * eps, "input gradient")


def _bug_marks(case: str, dtype: torch.dtype) -> list[pytest.MarkDecorator]:
    bug = BUGS.get((case, _dtype_name(dtype)))
    return [pytest.mark.xfail(strict=True, reason=bug.reason)] if bug else []


def _dtypes(case: str) -> tuple[torch.dtype, ...]:
    """The half-precision dtypes of :data:`DTYPES` the case's pool computes in (``PoolRecord.dtypes``)."""
    record = POOLS.get(re.sub(r"\[.*\]$", "", case))
    return tuple(d for d in DTYPES if record is None or d in record.dtypes)


def _params(cases: list[tuple[str, Any, str]]) -> list[Any]:
    """``(case, value, id)`` -> ``pytest.param(value, dtype)`` for each dtype, with the bug marks."""
    return [
        pytest.param(value, dtype, id=f"{ident}-{_dtype_name(dtype)}", marks=_bug_marks(case, dtype))
        for case, value, ident in cases
        for dtype in _dtypes(case)
    ]


# ------------------------------------------------------------------ the registry walk


def _takes_signed(name: str) -> bool:
    """Signed inputs for pools that do arithmetic (sums cancel); a selection is exact whatever the sign."""
    pool = get_record(name)
    return not pool.nonnegative_only and not pool.computed_in.startswith("exact (selection)")


WALK = _params(
    [
        (info.name + ("[signed]" if signed else ""), (info, d, signed), f"{info.name}-{d}d-{kind}")
        for info in INFOS
        for d in info.dims
        for signed, kind in ((False, "relu"), (True, "signed"))
        if not signed or _takes_signed(info.name)
    ]
)


@pytest.mark.parametrize(("case", "dtype"), WALK)
def test_registry_half_precision(case: tuple[tp.PoolInfo, int, bool], dtype: torch.dtype) -> None:
    info, dims, signed = case
    top = INPUT_TOP.get(info.name, (TOP, ""))[0]
    torch.manual_seed(SEED)
    module = tp.create_pool(info.name, **_kwargs(info, dims)).eval()
    x32 = _input(dims, top, signed, size=SMALL_SIZE if info.name in SMALL_INPUT else SIZE)
    _prepare(module, x32)
    known = PYTORCH_EXCEPTIONS.get((info.name, _dtype_name(dtype)))
    if known is None:
        _check(module, x32, dtype)
    elif known.kind == "overflow":
        y = _call(module.to(dtype), x32.to(dtype))
        assert y.dtype == dtype and not torch.isfinite(y).all(), "no longer overflows: update the table"
    else:
        module = module.to(dtype)
        reference = copy.deepcopy(module).float()
        x = x32.to(dtype)
        _fix_random(module, reference, x)
        y = _call(module, x)
        assert y.dtype == dtype and torch.isfinite(y).all()
        assert not torch.equal(y.float(), _call(reference, x.float())), "same regions now: update the table"


def test_tables_name_registered_pools() -> None:
    names = {info.name for info in INFOS}
    assert {name for name, _ in PYTORCH_EXCEPTIONS} <= names
    assert set(INPUT_TOP) <= names
    assert {re.sub(r"\[.*\]$", "", case) for case, _ in BUGS} <= names
    assert {dtype for _, dtype in [*PYTORCH_EXCEPTIONS, *BUGS]} <= {_dtype_name(d) for d in DTYPES}
    missing = sorted({_stem(name) for name in names} - set(COMPUTED_IN))
    assert not missing, f"classify how these pools compute in COMPUTED_IN: {missing}"
    for name in names:  # one precision-table row per stem: its pools compute alike
        assert get_record(name).computed_in == COMPUTED_IN[_stem(name)], (
            f"{name}: computed_in differs in its stem"
        )


# ------------------------------------------------------------------ targeted cases

GEM_CASES = _params([("gem", p, f"p{p:g}") for p in (3.0, 6.0, 10.0)])


@pytest.mark.parametrize(("p", "dtype"), GEM_CASES)
def test_gem_large_p(p: float, dtype: torch.dtype) -> None:
    """Values ~100 (50..150): x^p reaches 150^10 = 5.8e21, far past float16's 65504."""
    x = _input(2, 100.0, False) + 50.0
    _check(tp.GeM(p=p), x, dtype)


def test_gem_powers_do_not_overflow_float32() -> None:
    """p = 13 on 1000 is 1e39 (inf in float32) before the root; eps^10 (a dead channel) underflows to 0."""
    x = torch.full((1, 2, 4, 4), 1000.0, requires_grad=True)
    y = tp.gem(x, p=13.0)
    torch.autograd.backward(y.sum())
    torch.testing.assert_close(y, torch.full((1, 2), 1000.0))
    assert x.grad is not None and torch.isfinite(x.grad).all()
    dead = torch.zeros(1, 2, 4, 4, requires_grad=True)
    y = tp.gem(dead, p=10.0, eps=1e-6)
    torch.autograd.backward(y.sum())
    torch.testing.assert_close(y, torch.full((1, 2), 1e-6))
    assert dead.grad is not None and torch.isfinite(dead.grad).all()


def _bilinear(**kwargs: Any) -> Callable[[], nn.Module]:
    return lambda: tp.BilinearPool(64, **kwargs)


#: 16 x 16 positions: a sum of 256 products of up to 1e6.
PLANE = {2: 16}

SECOND_ORDER: list[tuple[str, Callable[[], nn.Module], float, str]] = [
    ("bilinear", _bilinear(), TOP, "bilinear-normalised"),
    # the unnormalised matrix holds mean(x_i x_j) <= top^2: 200^2 = 40000 fits float16
    ("bilinear", _bilinear(signed_sqrt=False, l2_normalize=False), 200.0, "bilinear-raw"),
    *[
        (
            "compact_bilinear",
            (lambda m=method, p=path: tp.CompactBilinearPool(64, out_dim=512, method=m, path=p)),
            TOP,
            f"compact-{method}-{path}",
        )
        for method in ("tensor_sketch", "random_maclaurin")
        for path in ("matrix", "location")
    ],
    ("low_rank_bilinear", lambda: tp.LowRankBilinearPool(64, num_classes=10, rank=8), 100.0, "low_rank"),
    ("matrix_sqrt", lambda: tp.MatrixSqrtPool(), TOP, "matrix_sqrt"),
]


@pytest.mark.parametrize("signed", [False, True], ids=["relu", "signed"])
@pytest.mark.parametrize(
    ("case", "dtype"),
    _params([(f"{name}[{ident}]", (build, top), ident) for name, build, top, ident in SECOND_ORDER]),
)
def test_second_order_64_channels(
    case: tuple[Callable[[], nn.Module], float], dtype: torch.dtype, signed: bool
) -> None:
    """Sums of outer products over 256 positions of 64 channels (each product up to 1e6)."""
    build, top = case
    torch.manual_seed(SEED)
    _check(build(), _input(2, top, signed, channels=64, size=PLANE), dtype)


VLAD_CASES = _params(
    [
        (name, (ghosts, normalize), f"{name}-{'norm' if normalize else 'raw'}")
        for name, ghosts in (("netvlad", 0), ("ghostvlad", 2))
        for normalize in (True, False)
    ]
)


@pytest.mark.parametrize("signed", [False, True], ids=["relu", "signed"])
@pytest.mark.parametrize(("case", "dtype"), VLAD_CASES)
def test_netvlad_large_descriptors(case: tuple[int, bool], dtype: torch.dtype, signed: bool) -> None:
    """128-d descriptors up to 1000 (squared norms ~4e7), 16 clusters initialised from the data."""
    ghosts, normalize = case
    torch.manual_seed(SEED)
    module = tp.NetVLAD(16, 128, ghost_clusters=ghosts, normalize_input=normalize)
    x = _input(2, TOP, signed, channels=128, size=PLANE)
    _prepare(module, x)
    _check(module, x, dtype)


LP_SMALL = _params([(f"lp{d}d", d, f"lp{d}d") for d in (1, 2)])


@pytest.mark.parametrize(("dims", "dtype"), LP_SMALL)
def test_lp_pool_window_sum_limit(dims: int, dtype: torch.dtype) -> None:
    """PyTorch's LPPool: fine while a window's sum of x^2 stays below 65504; float16 overflows past it."""
    small = _input(dims, 4.0, True)  # 2x2 (or 2) windows of |x| <= 4: sum x^2 <= 64
    _check(tp.create_pool(f"lp{dims}d", norm_type=2.0, kernel_size=2), small, dtype)
    moderate = _input(dims, 30.0, False)  # 256-cell windows of x ~ 15: sum x^2 ~ 7.7e4
    y = tp.create_pool(f"lp{dims}d", norm_type=2.0, kernel_size=WINDOW[dims]).to(dtype)(moderate.to(dtype))
    assert torch.isfinite(y).all() == (dtype == torch.bfloat16)


def _train(module: nn.Module, x: Tensor) -> Tensor:
    """Training mode, draws from a fresh generator with the same seed for each run."""
    y = module.train()(x, generator=torch.Generator().manual_seed(SEED))
    out: Tensor = y[0] if isinstance(y, tuple) else y
    return out


RANDOM_CASES = _params(
    [(f"{family}{d}d", (family, d), f"{family}{d}d") for family in ("stochastic", "mixed") for d in (1, 2, 3)]
)


@pytest.mark.parametrize(("case", "dtype"), RANDOM_CASES)
def test_random_pools_train_mode(case: tuple[str, int], dtype: torch.dtype) -> None:
    """Training-mode draws from window sums (stochastic) / per sample (mixed), same generator."""
    family, dims = case
    module = tp.create_pool(f"{family}{dims}d", kernel_size=WINDOW[dims])
    _check(module, _input(dims, TOP, False), dtype, forward=_train)


ADAPTIVE_CASES = _params(
    [
        (f"{stem}{d}d[out{size}]", (f"{stem}{d}d", d, size), f"{stem}{d}d-out{size}")
        for stem in ("adaptive_avg", "adaptive_avgmax", "adaptive_catavgmax")
        for d in (1, 2, 3)
        for size in (1, 3)
    ]
)


@pytest.mark.parametrize(("case", "dtype"), ADAPTIVE_CASES)
def test_adaptive_output_sizes(case: tuple[str, int, int], dtype: torch.dtype) -> None:
    """Output size 1 (one bin: the whole plane) and 3 (uneven, overlapping bins); 2 is in the walk."""
    name, dims, size = case
    _check(tp.create_pool(name, output_size=size), _input(dims, TOP, False), dtype)


SPP_CASES = _params(
    [(f"{name}[avg]", (name, d), f"{name}-avg") for name, d in (("spp1d", 1), ("spp", 2), ("spp3d", 3))]
)


@pytest.mark.parametrize(("case", "dtype"), SPP_CASES)
def test_spp_average_mode(case: tuple[str, int], dtype: torch.dtype) -> None:
    """SPPNet with average bins: levels 1 (whole plane) and 2 (256 / 256 / 512 cells a bin)."""
    name, dims = case
    _check(tp.create_pool(name, levels=(1, 2), mode="avg"), _input(dims, TOP, False), dtype)


MEDIAN_CASES = _params(
    [(f"median{d}d[k{k}]", (d, k), f"median{d}d-k{k}") for d, k in ((1, 9), (2, 5), (3, 3))]
)


@pytest.mark.parametrize(("case", "dtype"), MEDIAN_CASES)
def test_median_signed_large_windows(case: tuple[int, int], dtype: torch.dtype) -> None:
    """Selection only: the float16 result is exactly the float32 one's (compared with the tolerance)."""
    dims, k = case
    _check(tp.create_pool(f"median{dims}d", kernel_size=k), _input(dims, TOP, True, size=SMALL_SIZE), dtype)


def _has_float_state(info: tp.PoolInfo) -> bool:
    module = tp.create_pool(info.name, **_kwargs(info, info.dims[0]))
    return any(t.is_floating_point() for t in [*module.parameters(), *module.buffers()])


TRAINABLE = [pytest.param(info, id=info.name) for info in INFOS if _has_float_state(info)]


@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_name)
@pytest.mark.parametrize("info", TRAINABLE)
def test_float32_parameters_with_half_input(info: tp.PoolInfo, dtype: torch.dtype) -> None:
    """Parameters / buffers left in float32 (no ``.to(dtype)``): the output has the input's dtype."""
    dims = info.dims[0]
    torch.manual_seed(SEED)
    module = tp.create_pool(info.name, **_kwargs(info, dims)).eval()
    x32 = _input(dims, INPUT_TOP.get(info.name, (TOP, ""))[0], False)
    _prepare(module, x32)
    x = x32.to(dtype)
    y = _call(module, x)
    assert y.dtype == dtype and torch.isfinite(y).all()
    _assert_close(y, _call(module, x.float()), 2 * torch.finfo(dtype).eps, "output")


# ------------------------------------------------------------------ precision table

PRECISION_TABLE_HEADER = (
    "| pool | float16 | bfloat16 | computed in | exception |\n| --- | --- | --- | --- | --- |\n"
)


_CELL = {"overflow": "no (overflow)", "regions": "regions differ", "bug": "no (bug)"}


def _status(name: str, dtype: str) -> tuple[str, str]:
    """(cell, note) of one registered pool and dtype in the registry walk (either input range)."""
    if dtype not in {_dtype_name(d) for d in get_record(name).dtypes}:
        return "no (unsupported)", ""
    known = (
        PYTORCH_EXCEPTIONS.get((name, dtype))
        or BUGS.get((name, dtype))
        or BUGS.get((f"{name}[signed]", dtype))
    )
    return ("yes", "") if known is None else (_CELL[known.kind], known.note)


def _summarise(per_dim: dict[str, str]) -> str:
    """``{"1d": "yes", "2d": "yes", "3d": "no (bug)"}`` -> ``"1d, 2d: yes; 3d: no (bug)"``."""
    values = list(dict.fromkeys(per_dim.values()))
    if len(values) == 1:
        return values[0]
    return "; ".join(
        ", ".join(d for d, v in per_dim.items() if v == value) + f": {value}" for value in values
    )


def _label(stem: str, infos: list[tp.PoolInfo]) -> str:
    """``avg1d/2d/3d`` where the names are the stem plus the dims, else the names."""
    dims = [d for info in infos for d in info.dims]
    if len(infos) > 1 and all(info.name == f"{stem}{info.dims[0]}d" for info in infos):
        return infos[0].name + "".join(f"/{d}d" for d in dims[1:])
    return " / ".join(info.name for info in infos)


def render_precision_rows() -> list[str]:
    """Markdown rows of the precision table (after :data:`PRECISION_TABLE_HEADER`), one per name stem.

    The float16 / bfloat16 cells come from the registry walk's exception tables, which the walk
    asserts (so the tests keep them true); bugs of targeted cases (e.g. ``spp3d[avg]``) are added
    to the notes.
    """
    stems: dict[str, list[tp.PoolInfo]] = {}
    for info in INFOS:
        stems.setdefault(_stem(info.name), []).append(info)
    rows = []
    for stem, infos in stems.items():
        infos = sorted(infos, key=lambda info: info.dims)
        cells, notes = [], []
        for dtype in ("float16", "bfloat16"):
            per_dim = {}
            for info in infos:
                cell, note = _status(info.name, dtype)
                per_dim.update({f"{d}d": cell for d in info.dims})
                notes += [note] if note else []
            cells.append(_summarise(per_dim))
        names = {info.name for info in infos}
        for (case, _), bug in BUGS.items():
            base = re.sub(r"\[.*\]$", "", case)
            if base in names and bug.note not in notes:
                notes.append(f"{case}: {bug.note}")
        top = INPUT_TOP.get(infos[0].name)
        if top is not None:
            notes.append(f"inputs up to {top[0]:g} ({top[1]})")
        row = [_label(stem, infos), *cells, COMPUTED_IN.get(stem, "?"), "; ".join(dict.fromkeys(notes))]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return rows


def test_precision_table_renders_every_pool() -> None:
    rows = render_precision_rows()
    cells = [re.split(r"(?<!\\)\|", row)[1:-1] for row in rows]
    assert all(len(row) == 5 for row in cells), "a cell holds an unescaped |"
    labels = " ".join(row[0] for row in cells)
    assert all(_stem(info.name) in labels for info in INFOS)
    assert all(row[3].strip() != "?" for row in cells)


if __name__ == "__main__":
    print(PRECISION_TABLE_HEADER + "\n".join(render_precision_rows()))
