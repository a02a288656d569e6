"""Peak extra memory of median and stochastic pooling: under 2x the input's size.

The issue: ``median_pool2d`` (the Module defaults k=3, s=1, p=1, reflect, and s=2; also with
indices) and ``stochastic_pool2d`` (training and eval, 3x3 and 2x2 windows, stride 2) must stay
under 2x the input's size in extra memory, at any input shape. Both chunk their work for that,
with chunks sized from the input. The median's chunks are 1/32 of the padded input (its working set
is about 9 chunks), at most 2^23 elements, at least 2^16 elements so that the per-chunk overhead
does not show on small inputs, but that floor never makes a chunk more than 1/16 of the input
(``median._kernels._plane_chunk_elements``), so no input is too small for the bound. A chunk is a
group of ``(n, c)`` planes or, when one plane is larger than a chunk, a band of output rows of one
plane with the halo of input rows its windows need (padding, ceil mode and dilation included), in
the forward, the gradient and the indices alike; ``compiled=True`` takes one chunk and is not
covered by the bound. Stochastic pooling sizes its own chunks (``stochastic._chunk_elements``, see
its docstring); its shapes beyond :data:`SHAPES` are tested in ``test_stochastic_memory.py``.
The shapes (:data:`SHAPES`) stress the chunking differently:
many small planes (64, 256, 112, 112), fewer larger planes in a smaller input (8, 64, 224, 224),
32 large planes (2, 16, 512, 512), a mid-size input (8, 64, 56, 56), and, for the median only,
small inputs (4, 16, 32, 32) and (2, 3, 64, 64) and few large planes (1, 3, 224, 224) and
(1, 1, 512, 512), where a chunk is a band of rows.

Definition of "extra memory" asserted here (``allocation_peak``): the peak, over the call, of the
bytes held by PyTorch's CPU allocator that were allocated during the call.

* forward, under ``torch.no_grad()``: every allocation of the call counts, the output included.
* forward + backward, ``y = fn(x); y.backward(g)`` with ``x`` a leaf: the same over both passes,
  except the input's gradient (the allocation that becomes ``x.grad``, recognised by its address,
  from the moment it is allocated) and the output's gradient ``g`` (allocated before the call).
  The output and everything autograd saves for the backward count.
* ``*_with_indices``, under ``torch.no_grad()``: every allocation of the call counts except the
  returned int64 indices, which alone are twice a float32 input's size at stride 1 (as those of
  ``F.max_pool2d``): the bound limits the values and the working set.

How: ``torch.profiler`` with ``profile_memory=True`` records every allocation and free of the CPU
allocator with its address and size (the chrome trace's ``[memory]`` events), so the timeline of
held bytes is exact and independent of the C heap. Peak RSS (``getrusage`` / ``VmHWM``) is not
used here: freed blocks may stay in the heap and be reused, and it cannot say when the input's
gradient was allocated (subtracting it from the backward's peak under-counts code that allocates
it last, as the code before the chunking did: 2.1x by RSS against 3.1x for the median).
``benchmarks/bench_memory.py`` reports both, each case in a fresh process; for the current code
peak RSS is within +0.16x of the input's size of the numbers asserted here.

Sizes and time: forward + backward of the median at (64, 256, 112, 112) takes ~25 s on one core,
too slow for this file, so the backward tests run there on the first 16 of the 64 batch items: the
chunks are a fraction of the input (the 2^23 cap is not reached at either size), so they are the
same fraction and the ratio about the same. The other shapes run at their full size, forward and
backward. Measured for the median (the test's own ``allocation_peak`` on one thread, AMD EPYC;
forward / forward + backward / with indices beyond the indices, k=3 s=1 p=1 reflect):
(64, 256, 112, 112) 1.06x / 1.11x (at 16 items) / 1.42x (at 16 items), s=2 0.31x / 0.32x;
(8, 64, 224, 224) 1.24x / 1.24x / 1.42x; (2, 16, 512, 512) 1.28x / 1.28x / 1.42x; (8, 64, 56, 56)
1.34x / 1.34x / 1.50x; (4, 16, 32, 32) 1.59x / 1.59x / 1.85x; (2, 3, 64, 64) 1.53x / 1.53x /
1.79x; (1, 3, 224, 224) 1.54x / 1.54x / 1.81x; (1, 1, 512, 512) 1.53x / 1.53x / 1.80x. Before
the floor was held to 1/16 and planes were cut into bands (a chunk was at least 2^16 elements and
at least one plane): (4, 16, 32, 32) 9.21x / 9.21x / 12.9x, (2, 3, 64, 64) 10.2x, (1, 3, 224, 224)
4.02x, (1, 1, 512, 512) 10.0x, (2, 64, 64, 64) 2.08x (forward), the larger shapes as now. Planes of
few, long rows, before -> after bands along the last dimension (forward / forward + backward / with
indices beyond the indices): (1, 1, 8, 4096) 2.38x / 3.97x / 3.41x -> 1.58x / 1.58x / 1.87x, s=2
1.56x / 1.56x -> 0.46x / 0.46x; (1, 1, 4, 65536) 3.75x / 6.94x / 5.81x -> 1.59x / 1.59x / 1.91x,
s=2 2.87x / 2.87x -> 0.36x / 0.36x.
Measured for stochastic pooling before its chunks were resized for issue 10 (commit 7cd4b61,
``python -m benchmarks.run_all --quick --only bench_memory``, forward / forward + backward, training
and eval 3x3 s=2; its current figures are in ``torchpool.ops.stochastic``): (16, 256, 112, 112)
training 0.51x / 0.57x, eval 0.61x / 1.14x; (8, 64, 224, 224) training 0.78x / 0.85x, eval 0.62x /
1.15x; (2, 16, 512, 512) training 1.36x / 1.43x, eval 0.62x / 1.15x. Median chunks of 1/8 gave 2.15x
at (8, 64, 56, 56), hence that shape. With the former fixed chunks of 2^23 elements the (8, 64, 224,
224) and (2, 16, 512, 512) shapes took 1.51x / 1.70x and 2.23x / 3.02x for the median, 0.99x / 1.80x
and 2.50x / 4.99x in eval mode (before any chunking, at (64, 256, 112, 112): median 2.06x / 3.08x,
training 1.81-1.88x, eval 2.5x / 5.0x). All of it runs on one thread (memory does not depend on the
thread count, and one thread is not slowed down by other processes on a shared machine).

Each test also checks its output, and gradient (and indices), on planes around the first chunk
boundary and the last plane (every plane, whole, where chunks are bands) against a direct
computation (``unfold``), so chunking cannot silently break results; ``test_chunked_equals_unchunked``
checks on small shapes that tiny chunk sizes (bands of one output row, bands of a few rows, one
plane, several planes) give the same bits as one chunk, for every padding mode, ceil mode,
dilation, indices and gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import torchpool as tp
from benchmarks.bench_memory import allocation_peak
from torchpool.ops import stochastic as stochastic_module
from torchpool.ops.median import _kernels as median_module  # the chunk sizes

FULL = (64, 256, 112, 112)
# name -> (forward shape, forward + backward shape). The chunks are sized from the input (a fixed
# fraction of it, below a cap that these shapes do not reach), so a smaller N or C keeps the ratio
# while the spatial size, which sets the size of a plane and so how finely the planes can be
# chunked, is kept.
SHAPES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "64x256x112": (FULL, (16, 256, 112, 112)),  # many small planes (forward + backward: 16 of 64)
    "8x64x224": ((8, 64, 224, 224), (8, 64, 224, 224)),  # fewer, larger planes; a smaller input
    "2x16x512": ((2, 16, 512, 512), (2, 16, 512, 512)),  # 32 large planes: a chunk is one plane
    "8x64x56": ((8, 64, 56, 56), (8, 64, 56, 56)),  # a mid-size input (6 MB): median chunks of 1/8 gave 2.15x
    # median only (the stochastic shapes of this kind are tested in their own file): small inputs,
    # where the chunk floor mattered, and few large planes, where a chunk is a band of one plane
    "4x16x32": ((4, 16, 32, 32), (4, 16, 32, 32)),  # 256 KB: the former 2^16-element floor gave 9.2x
    "1x3x224": ((1, 3, 224, 224), (1, 3, 224, 224)),  # an RGB image: bands of rows
    "1x1x512": ((1, 1, 512, 512), (1, 1, 512, 512)),  # one plane: bands of rows
    "2x3x64": ((2, 3, 64, 64), (2, 3, 64, 64)),  # a small image batch: bands of rows
    # one plane of few, long rows: a band of one window's rows is more than a chunk (3 of 8 rows,
    # 3 of 4), so the bands run along the last dimension (3.75x / 6.94x forward / + backward at
    # 4x65536 with bands of rows)
    "1x1x8x4096": ((1, 1, 8, 4096), (1, 1, 8, 4096)),
    "1x1x4x65536": ((1, 1, 4, 65536), (1, 1, 4, 65536)),
}
MEDIAN_ONLY_SHAPES = ("4x16x32", "1x3x224", "1x1x512", "2x3x64")
# median only, stride 1 and 2 (the stochastic cases at these shapes are in test_stochastic_memory.py)
WIDE_SHAPES = ("1x1x8x4096", "1x1x4x65536")
BOUND = 2.0
SEED = 7

# name -> (function name, kernel, stride, padding, keyword arguments)
CASES: dict[str, tuple[str, int, int, int, dict[str, object]]] = {
    "median-k3s1": ("median", 3, 1, 1, {}),
    "median-k3s2": ("median", 3, 2, 1, {}),
    "train-k3s2": ("train", 3, 2, 0, {}),
    "train-k2s2": ("train", 2, 2, 0, {}),
    "eval-k3s2": ("eval", 3, 2, 0, {}),
    "eval-k2s2": ("eval", 2, 2, 0, {}),
}
# the cases measured at every shape (all of CASES at the first)
MAIN_CASES = ("median-k3s1", "train-k3s2", "eval-k3s2")
BOUND_PARAMS = [
    pytest.param(shape, name, id=f"{shape}-{name}")
    for shape in SHAPES
    for name in (
        CASES
        if shape == "64x256x112"
        else ("median-k3s1",)
        if shape in MEDIAN_ONLY_SHAPES
        else ("median-k3s1", "median-k3s2")
        if shape in WIDE_SHAPES
        else MAIN_CASES
    )
]
# median with indices: at the forward + backward shapes
INDEX_PARAMS = [pytest.param(shape, id=shape) for shape in SHAPES]


# ------------------------------------------------------------------ measuring


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


_INPUTS: dict[tuple[int, ...], Tensor] = {}


def _input(shape: tuple[int, ...]) -> Tensor:
    """The uniform input of ``shape``, kept for the tests of that shape (the last shape only)."""
    if shape not in _INPUTS:
        _INPUTS.clear()
        x = torch.empty(shape)
        x.uniform_(generator=torch.Generator().manual_seed(SEED))  # in place: no temporary
        _INPUTS[shape] = x
    return _INPUTS[shape]


def _function(name: str) -> Callable[[Tensor], Tensor]:
    kind, k, s, p, kwargs = CASES[name]
    if kind == "median":
        median: Callable[..., Tensor] = tp.median_pool2d
        return lambda t: median(t, k, s, p, **kwargs)  # padding_mode="reflect", the default
    if kind == "train":
        return lambda t: tp.stochastic_pool2d(t, k, s, p, generator=torch.Generator().manual_seed(SEED))
    return lambda t: tp.stochastic_pool2d(t, k, s, p, training=False)


# ------------------------------------------------------------------ direct computations


def _check_planes(name: str, shape: Sequence[int]) -> list[int]:
    """Flat (n * C + c) indices of the planes to check: the first, around the first chunk boundary
    of the op (computed from its chunk sizing), and the last."""
    kind, _, _, p, _ = CASES[name]
    n, c, h, w = shape
    padded = (h + 2 * p) * (w + 2 * p)
    if kind == "median":
        boundary = median_module._plane_chunk_elements(n * c * padded) // padded
        if boundary == 0:  # a plane is larger than a chunk: bands of rows, every plane checked whole
            return sorted({0, n * c - 1})
    else:
        planes = max(1, stochastic_module._chunk_elements(n * c * padded) // padded)
        boundary = (planes // c) * c if planes >= c else planes
    assert 0 < boundary < n * c, "the checked shape must take more than one chunk"
    return [0, boundary - 1, boundary, n * c - 1]


def _windows(xp: Tensor, k: int, s: int) -> Tensor:
    return xp.unfold(-2, k, s).unfold(-2, k, s).flatten(-2)  # (..., Ho, Wo, k * k), row-major cells


def _reference(name: str, x: Tensor, planes: list[int], g: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Output (and input gradient for upstream ``g``) on ``planes`` of ``x``, computed directly."""
    kind, k, s, p, _ = CASES[name]
    n, c, h, w = x.shape
    xs = x.detach().flatten(0, 1)[planes].double().requires_grad_(g is not None)
    gs = None if g is None else g.flatten(0, 1)[planes].double()
    if kind == "median":
        cells = _windows(F.pad(xs.unsqueeze(0), (p,) * 4, mode="reflect")[0], k, s)
        y = cells.median(-1).values.detach()
        # gradient: one-hot to the first cell (row-major) equal to the median
        first = (cells == y.unsqueeze(-1)).double().argmax(-1, keepdim=True)
        out = cells.gather(-1, first).squeeze(-1)
    elif kind == "eval":
        cells = _windows(F.pad(xs, (p,) * 4), k, s)
        total = cells.sum(-1)
        out = (cells * cells).sum(-1) / torch.where(total > 0, total, 1.0)
    else:
        # the documented sampler: one float32 uniform per window in output order (the whole
        # output's worth, drawn at once); u = min(r * S, nextafter(S, -inf)); the drawn cell is
        # the first whose float32 running sum exceeds u (p = 0 here: no padding cells)
        assert p == 0
        r = torch.rand(
            (n, c, (h - k) // s + 1, (w - k) // s + 1), generator=torch.Generator().manual_seed(SEED)
        )
        cells32 = _windows(x.detach().flatten(0, 1)[planes], k, s)
        running = [cells32[..., 0]]
        for t in range(1, k * k):
            running.append(running[-1] + cells32[..., t])
        total = running[-1]
        u = torch.minimum(r.flatten(0, 1)[planes] * total, torch.nextafter(total, torch.tensor(-math.inf)))
        position = sum((running[t] <= u).long() for t in range(k * k - 1))
        assert isinstance(position, Tensor)
        out = _windows(xs, k, s).gather(-1, position.unsqueeze(-1)).squeeze(-1)
    grad = None
    if gs is not None:
        torch.autograd.backward(out, gs)
        grad = xs.grad
    return out.detach(), grad


def _assert_planes(
    name: str, x: Tensor, y: Tensor, g: Tensor | None = None, grad: Tensor | None = None
) -> None:
    planes = _check_planes(name, x.shape)
    expected, expected_grad = _reference(name, x, planes, g)
    exact = CASES[name][0] != "eval"
    rtol, atol = (0.0, 0.0) if exact else (1e-5, 1e-6)
    torch.testing.assert_close(y.flatten(0, 1)[planes].double(), expected, rtol=rtol, atol=atol)
    if grad is not None:
        assert expected_grad is not None
        # overlapping windows add up in another order
        torch.testing.assert_close(grad.flatten(0, 1)[planes].double(), expected_grad, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ the bound


@pytest.mark.parametrize(("shape", "name"), BOUND_PARAMS)
def test_forward_extra_memory_under_2x_input(shape: str, name: str, one_thread: None) -> None:
    x = _input(SHAPES[shape][0])
    fn = _function(name)
    result: list[Tensor] = []

    def run() -> None:
        with torch.no_grad():
            result.append(fn(x))

    extra = allocation_peak(run)
    y = result[0]
    assert extra >= y.nbytes, "the profiler recorded no allocations: the measurement is broken"
    ratio = extra / x.nbytes
    assert ratio < BOUND, f"{name} at {tuple(x.shape)}: forward peak extra memory {ratio:.2f}x the input"
    _assert_planes(name, x, y)


@pytest.mark.parametrize(("shape", "name"), BOUND_PARAMS)
def test_forward_backward_extra_memory_under_2x_input(shape: str, name: str, one_thread: None) -> None:
    x = _input(SHAPES[shape][1]).detach().requires_grad_(True)
    fn = _function(name)
    with torch.no_grad():
        out_shape = fn(x[:1, :1]).shape[2:]
    g = torch.empty(*x.shape[:2], *out_shape)
    g.uniform_(generator=torch.Generator().manual_seed(SEED + 1))
    result: list[Tensor] = []

    def run() -> None:
        y = fn(x)
        torch.autograd.backward(y, g)
        result.append(y.detach())

    extra = allocation_peak(run, exclude=lambda: [x.grad.data_ptr()] if x.grad is not None else [])
    y = result[0]
    assert x.grad is not None
    assert extra >= y.nbytes, "the profiler recorded no allocations: the measurement is broken"
    ratio = extra / x.nbytes
    assert ratio < BOUND, (
        f"{name} at {tuple(x.shape)}: forward+backward peak extra memory {ratio:.2f}x the input's size"
    )
    _assert_planes(name, x, y, g, x.grad)


@pytest.mark.parametrize("shape", INDEX_PARAMS)
def test_with_indices_extra_memory_under_2x_input(shape: str, one_thread: None) -> None:
    """``median_pool2d_with_indices``: the extra memory beyond the returned indices is under 2x.

    The int64 indices are twice the size of a float32 input at stride 1 by themselves (as those of
    ``F.max_pool2d``); what the bound limits is everything else: the values and the working set.
    """
    x = _input(SHAPES[shape][1])
    result: list[tuple[Tensor, Tensor]] = []

    def run() -> None:
        with torch.no_grad():
            result.append(tp.median_pool2d_with_indices(x, 3, 1, 1))

    extra = allocation_peak(run)
    y, indices = result[0]
    assert extra >= y.nbytes + indices.nbytes, "the profiler recorded no allocations"
    ratio = (extra - indices.nbytes) / x.nbytes
    assert ratio < BOUND, f"with_indices at {tuple(x.shape)}: extra memory beyond the indices {ratio:.2f}x"
    _assert_planes("median-k3s1", x, y)
    planes = _check_planes("median-k3s1", x.shape)
    xs = F.pad(x.flatten(0, 1)[planes].unsqueeze(0), (1,) * 4, mode="reflect")[0]
    cells = _windows(xs, 3, 1)
    first = (cells == y.flatten(0, 1)[planes].unsqueeze(-1)).int().argmax(-1)  # offset in the window
    rows = torch.arange(x.shape[2]).view(-1, 1) - 1 + first // 3
    cols = torch.arange(x.shape[3]) - 1 + first % 3
    rows, cols = rows.abs(), cols.abs()  # reflect
    rows = torch.where(rows >= x.shape[2], 2 * (x.shape[2] - 1) - rows, rows)
    cols = torch.where(cols >= x.shape[3], 2 * (x.shape[3] - 1) - cols, cols)
    torch.testing.assert_close(indices.flatten(0, 1)[planes], rows * x.shape[3] + cols, rtol=0, atol=0)


# ------------------------------------------------------------------ chunking keeps the bits


def _median_case(
    nd: int, k: int, s: int, p: int, mode: str, ceil_mode: bool = False, dilation: int = 1
) -> Callable[[Tensor], tuple[Tensor, ...]]:
    fn = {
        1: tp.median_pool1d_with_indices,
        2: tp.median_pool2d_with_indices,
        3: tp.median_pool3d_with_indices,
    }[nd]
    return lambda t: fn(t, k, s, p, dilation, ceil_mode=ceil_mode, padding_mode=mode)


def _stochastic_case(
    nd: int, k: int, s: int, p: int, training: bool
) -> Callable[[Tensor], tuple[Tensor, ...]]:
    fn = {1: tp.stochastic_pool1d, 2: tp.stochastic_pool2d, 3: tp.stochastic_pool3d}[nd]

    def call(t: Tensor) -> tuple[Tensor, ...]:
        if training:
            return tuple(fn(t, k, s, p, generator=torch.Generator().manual_seed(3), return_indices=True))
        return (fn(t, k, s, p, training=False),)

    return call


SMALL_CASES = [
    ("median2d-k3s1-reflect", "median", _median_case(2, 3, 1, 1, "reflect"), 2),
    ("median2d-k3s2-reflect", "median", _median_case(2, 3, 2, 1, "reflect"), 2),
    ("median2d-replicate", "median", _median_case(2, 3, 1, 1, "replicate"), 2),
    ("median2d-k4-zeros", "median", _median_case(2, 4, 1, 2, "zeros"), 2),
    ("median2d-valid", "median", _median_case(2, 3, 2, 1, "valid"), 2),
    ("median1d", "median", _median_case(1, 5, 2, 2, "reflect"), 1),
    ("median3d", "median", _median_case(3, 3, 1, 1, "replicate"), 3),
    ("median2d-circular", "median", _median_case(2, 3, 1, 1, "circular"), 2),
    ("median2d-k5-replicate", "median", _median_case(2, 5, 1, 2, "replicate"), 2),
    ("median2d-k7-reflect", "median", _median_case(2, 7, 2, 3, "reflect"), 2),
    ("median2d-ceil", "median", _median_case(2, 3, 2, 1, "reflect", ceil_mode=True), 2),
    ("median2d-ceil-valid", "median", _median_case(2, 2, 3, 1, "valid", ceil_mode=True), 2),
    ("median2d-dilation-zeros", "median", _median_case(2, 3, 1, 1, "zeros", dilation=2), 2),
    (
        "median2d-dilation-circular",
        "median",
        _median_case(2, 3, 2, 1, "circular", ceil_mode=True, dilation=2),
        2,
    ),
    ("median1d-ceil-circular", "median", _median_case(1, 4, 3, 2, "circular", ceil_mode=True), 1),
    ("median3d-ceil-reflect", "median", _median_case(3, 2, 2, 1, "reflect", ceil_mode=True), 3),
    ("train2d-k3s2p1", "stochastic", _stochastic_case(2, 3, 2, 1, True), 2),
    ("train2d-k2s2", "stochastic", _stochastic_case(2, 2, 2, 0, True), 2),
    ("train1d", "stochastic", _stochastic_case(1, 3, 1, 1, True), 1),
    ("train3d", "stochastic", _stochastic_case(3, 2, 1, 1, True), 3),
    ("eval2d-k3s2p1", "stochastic", _stochastic_case(2, 3, 2, 1, False), 2),
    ("eval2d-k2s2", "stochastic", _stochastic_case(2, 2, 2, 0, False), 2),
    ("eval1d", "stochastic", _stochastic_case(1, 3, 2, 1, False), 1),
    ("eval3d", "stochastic", _stochastic_case(3, 3, 2, 1, False), 3),
]
SMALL_PARAMS = [
    pytest.param(family, fn, nd, channels_last, id=name + ("-channels_last" if channels_last else ""))
    for name, family, fn, nd in SMALL_CASES
    for channels_last in ((False, True) if nd == 2 else (False,))
]


def _run_small(fn: Callable[[Tensor], tuple[Tensor, ...]], x: Tensor) -> list[Tensor]:
    leaf = x.clone().requires_grad_(True)
    outputs = fn(leaf)
    upstream = torch.rand(outputs[0].shape, generator=torch.Generator().manual_seed(5), dtype=x.dtype)
    torch.autograd.backward(outputs[0], upstream)
    assert leaf.grad is not None
    with torch.no_grad():
        no_grad = fn(x)
    return [*(o.detach() for o in outputs), leaf.grad, *no_grad]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("family", "fn", "nd", "channels_last"), SMALL_PARAMS)
def test_chunked_equals_unchunked(
    family: str,
    fn: Callable[[Tensor], tuple[Tensor, ...]],
    nd: int,
    channels_last: bool,
    dtype: torch.dtype,
    monkeypatch: pytest.MonkeyPatch,
    one_thread: None,
) -> None:
    x = torch.rand(3, 5, *[9, 8, 7][:nd], generator=torch.Generator().manual_seed(1), dtype=dtype)
    x[0, 1] = 0.0  # zero windows (stochastic) and ties (median)
    x[..., :2] = 0.0
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = _run_small(fn, x)
    constant = (
        ("_PLANE_CHUNK_ELEMENTS", median_module)
        if family == "median"
        else ("_CHUNK_ELEMENTS", stochastic_module)
    )
    # median: bands of one output row, bands of a few rows, one plane, several planes; stochastic: one
    # plane (or less), several planes, several batch items
    for chunk in (1, 40, 200, 400) if family == "median" else (1, 40, 200):
        monkeypatch.setattr(constant[1], constant[0], chunk)
        got = _run_small(fn, x)
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert torch.equal(a, b), f"chunk size {chunk} changed the result"


@pytest.mark.parametrize("requires_grad", [False, True])
def test_window_positions_do_not_wrap_above_256_cells(requires_grad: bool) -> None:
    """The drawn cells are counted in a byte per window only while windows have at most 256 cells."""
    x = torch.zeros(500, 1, 17, 17)  # 289 cells: the drawn cell's position can exceed 255
    x[..., 16, 15:] = 1.0
    x.requires_grad_(requires_grad)
    y, idx = tp.stochastic_pool2d(x, 17, generator=torch.Generator().manual_seed(0), return_indices=True)
    assert set(torch.unique(idx).tolist()) == {16 * 17 + 15, 16 * 17 + 16}
    assert bool((y == 1).all())
    if requires_grad:
        torch.autograd.backward(y.sum())
        assert x.grad is not None
        assert x.grad.sum().item() == 500 and x.grad[..., 16, 15:].sum().item() == 500


def _median_grad_grad(
    nd: int, k: int, s: int, p: int, mode: str, ceil_mode: bool, dilation: int, wide: bool = False
) -> Tensor:
    """The backward's gradient with respect to its ``grad_output`` (``torchpool::median_pool_grad_grad``)."""
    spatial = WIDE_SPATIAL[nd] if wide else (9, 8, 7)[:nd]
    x = torch.rand(3, 5, *spatial, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x.requires_grad_(True)
    fn: Callable[..., Tensor] = {1: tp.median_pool1d, 2: tp.median_pool2d, 3: tp.median_pool3d}[nd]
    y = fn(x, k, s, p, dilation, ceil_mode, padding_mode=mode)
    g = torch.rand(y.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    (gx,) = torch.autograd.grad(y, x, g, create_graph=True)
    v = torch.rand(gx.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(3))
    (gg,) = torch.autograd.grad(gx, g, v)
    return gg


@pytest.mark.parametrize(
    ("nd", "k", "s", "p", "mode", "ceil_mode", "dilation"),
    [
        (2, 3, 1, 1, "reflect", False, 1),
        (2, 3, 2, 1, "valid", True, 1),
        (2, 3, 1, 1, "circular", False, 2),
        (1, 4, 3, 2, "replicate", True, 1),
        (3, 2, 2, 1, "zeros", True, 1),
    ],
)
def test_chunked_grad_grad_equals_unchunked(
    nd: int,
    k: int,
    s: int,
    p: int,
    mode: str,
    ceil_mode: bool,
    dilation: int,
    monkeypatch: pytest.MonkeyPatch,
    one_thread: None,
) -> None:
    for wide in (False, True):
        expected = _median_grad_grad(nd, k, s, p, mode, ceil_mode, dilation, wide)
        # bands of one row, bands of a few rows (the wide planes: along the last dimension), planes
        for chunk in (1, 40, 400):
            monkeypatch.setattr(median_module, "_PLANE_CHUNK_ELEMENTS", chunk)
            assert torch.equal(_median_grad_grad(nd, k, s, p, mode, ceil_mode, dilation, wide), expected)
        monkeypatch.undo()


# ------------------------------------------------------------------ bands along the last dimension

# planes of few, long rows: with a tiny chunk a band of one window's rows (first dimension) is more
# than a chunk while one of the last dimension fits (or is the smallest), so the bands run along it
WIDE_SPATIAL = {1: (40,), 2: (5, 40), 3: (4, 5, 30)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("family", "fn", "nd", "channels_last"), [param for param in SMALL_PARAMS if param.values[0] == "median"]
)
def test_bands_along_the_last_dimension_keep_the_bits(
    family: str,
    fn: Callable[[Tensor], tuple[Tensor, ...]],
    nd: int,
    channels_last: bool,
    dtype: torch.dtype,
    monkeypatch: pytest.MonkeyPatch,
    one_thread: None,
) -> None:
    """Output, indices, gradient and the no-grad output with bands along the last dimension."""
    from torchpool.ops.median import _ops

    x = torch.rand(2, 3, *WIDE_SPATIAL[nd], generator=torch.Generator().manual_seed(1), dtype=dtype)
    x[0, 1] = 0.0  # ties
    x[..., :2] = 0.0
    x[..., 7:10] = 0.5
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = _run_small(fn, x)
    axes: list[int] = []
    chunking = _ops._chunking

    def spy(cfg: object, planes: int) -> tuple[int, int, int]:
        result = chunking(cfg, planes)  # type: ignore[arg-type]
        axes.append(result[2] if result[1] else -1)
        return result

    monkeypatch.setattr(_ops, "_chunking", spy)
    for chunk in (1, 12, 30, 60):  # bands of one output row and of a few rows
        monkeypatch.setattr(median_module, "_PLANE_CHUNK_ELEMENTS", chunk)
        got = _run_small(fn, x)
        for a, b in zip(got, expected, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert torch.equal(a, b), f"chunk size {chunk} changed the result"
    assert max(axes) == nd - 1, "the bands must run along the last dimension"
