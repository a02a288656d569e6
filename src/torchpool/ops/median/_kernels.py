"""Median pooling, part 2: the kernels on padded tensors (eager network, compiled network, fallbacks).

Everything here works on a flattened ``(B, *spatial)`` tensor already padded by :func:`_pad`;
:class:`_Config` describes the window of one call.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..._compat import cpu_kernel_missing
from .._windows import MAX_CHUNK_ELEMENTS, chunk_elements
from ._network import _choose_plan, _Plan

# Elements per chunk of the eager network: small enough for the intermediates to stay in cache.
_CHUNK_ELEMENTS = 1 << 19
# Padded elements per chunk that is padded at a time (forward, backward and indices), so that no
# padded copy of the whole input is made: the extra memory is the output and a few chunks. This is
# the largest chunk; :func:`_plane_chunk_elements` sizes the chunks of one input. A chunk is a group
# of whole ``(n, c)`` planes, or, when one plane is larger than the chunk, a band of rows of one
# plane with the halo its windows need (along the first spatial axis whose bands fit, ``band_axis``).
_PLANE_CHUNK_ELEMENTS = MAX_CHUNK_ELEMENTS
# A chunk holds at most 1 / _PLANE_CHUNK_FRACTION of the (padded) input, so that the working set of
# one chunk (the padded chunk, the backward's gradient and masks, the network's intermediates:
# several chunk-sized tensors, about 9) is a small fraction of the input at every shape.
_PLANE_CHUNK_FRACTION = 32
# ... and, when that fraction is tiny, at least this many elements (smaller chunks show the per-chunk
# overhead), but never more than 1 / _PLANE_CHUNK_MAX_SHARE of the input: with a working set of
# about 9 chunks and an output of at most the input's size, the extra memory stays under 2x.
_PLANE_CHUNK_MIN_ELEMENTS = 1 << 16
_PLANE_CHUNK_MAX_SHARE = 16
# Extra elements the unfold fallback may allocate per chunk (at least; else the input's size).
_FALLBACK_MIN_ELEMENTS = 1 << 22


def _plane_chunk_elements(padded_elements: int) -> int:
    """Padded elements per chunk for an input of ``padded_elements`` padded elements.

    A fraction of the input (:data:`_PLANE_CHUNK_FRACTION`), raised towards
    :data:`_PLANE_CHUNK_MIN_ELEMENTS` but never above 1 / :data:`_PLANE_CHUNK_MAX_SHARE` of the
    input, and at most :data:`_PLANE_CHUNK_ELEMENTS`.
    """
    return chunk_elements(
        padded_elements,
        fraction=_PLANE_CHUNK_FRACTION,
        minimum=_PLANE_CHUNK_MIN_ELEMENTS,
        limit=_PLANE_CHUNK_MAX_SHARE,
        maximum=_PLANE_CHUNK_ELEMENTS,
    )


@dataclass(frozen=True)
class _Config:
    """The window of one call. The kernels see the input padded by ``padding`` on both sides and, in
    ceil mode, by ``overhang`` more cells on the far side (never part of a window).

    ``rows`` makes it the config of a *band*: the output rows ``[first, last)`` of the spatial axis
    ``axis`` (the first one unless that one is too short to cut), computed from the padded rows
    ``[first * stride, first * stride + used)`` of that axis (see :func:`_pad_band`); ``out_sizes``,
    ``used`` and the masks are then the band's, everything else is the whole input's.
    """

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    sizes: tuple[int, ...]  # unpadded input sizes
    mode: str
    compiled: bool
    dilation: tuple[int, ...]
    ceil_mode: bool
    rows: tuple[int, int] | None = None
    axis: int = 0

    @cached_property
    def spans(self) -> tuple[int, ...]:
        """Cells from the first to the last cell of a window, per axis."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))

    @cached_property
    def full_out_sizes(self) -> tuple[int, ...]:
        """PyTorch's pooling output size (``pooling_output_shape``), with dilation and ceil mode."""
        sizes = []
        for i, e, s, p in zip(self.sizes, self.spans, self.stride, self.padding):
            o = (i + 2 * p - e + (s - 1 if self.ceil_mode else 0)) // s + 1
            if self.ceil_mode and (o - 1) * s >= i + p:
                o -= 1
            sizes.append(o)
        return tuple(sizes)

    @cached_property
    def out_sizes(self) -> tuple[int, ...]:
        """The output size, of the band's rows for a band."""
        sizes = self.full_out_sizes
        if self.rows is None:
            return sizes
        a = self.axis
        return (*sizes[:a], self.rows[1] - self.rows[0], *sizes[a + 1 :])

    @cached_property
    def row_offset(self) -> int:
        """The padded row where a band starts (0 without a band)."""
        return 0 if self.rows is None else self.rows[0] * self.stride[self.axis]

    @cached_property
    def used(self) -> tuple[int, ...]:
        """Cells of the padded (and overhung) input that the windows cover, per axis."""
        return tuple(s * (o - 1) + e for s, o, e in zip(self.stride, self.out_sizes, self.spans))

    @cached_property
    def full_used(self) -> tuple[int, ...]:
        """:attr:`used` of the whole input."""
        return tuple(s * (o - 1) + e for s, o, e in zip(self.stride, self.full_out_sizes, self.spans))

    @cached_property
    def overhang(self) -> tuple[int, ...]:
        """Ceil-mode cells past the padded input that the last window reaches, per axis."""
        return tuple(max(0, u - i - 2 * p) for u, i, p in zip(self.full_used, self.sizes, self.padding))

    @cached_property
    def restricted(self) -> bool:
        """Whether some window holds cells that do not count (``"valid"`` padding, ceil overhang)."""
        return (self.mode == "valid" and any(self.padding)) or any(self.overhang)

    def counted_range(self, axis: int) -> tuple[int, int]:
        """``[first, last)`` cells of the padded axis (of the band) that count: in bounds for ``"valid"``."""
        p, size = self.padding[axis], self.sizes[axis]
        first, last = (p, p + size) if self.mode == "valid" else (0, size + 2 * p)
        shift = self.row_offset if axis == self.axis else 0
        return first - shift, last - shift

    def _masks(self, device: torch.device, ranges: Sequence[tuple[int, int]]) -> list[Tensor]:
        masks = []
        for (first, last), p, size, extra in zip(ranges, self.padding, self.sizes, self.overhang):
            mask = torch.zeros(size + 2 * p + extra, dtype=torch.bool, device=device)
            mask[first:last] = True
            masks.append(mask)
        if self.rows is not None:
            a = self.axis
            masks[a] = masks[a][self.row_offset : self.row_offset + self.used[a]]
        return masks

    def inbounds(self, device: torch.device) -> list[Tensor]:
        """Per axis, which cells of the padded axis (of the band) are input cells."""
        return self._masks(device, [(p, p + size) for p, size in zip(self.padding, self.sizes)])

    def counted(self, device: torch.device) -> list[Tensor]:
        """Per axis, which cells of the padded axis (of the band) can be part of a window."""
        shift = [self.row_offset if axis == self.axis else 0 for axis in range(len(self.sizes))]
        ranges = [(a + q, b + q) for (a, b), q in zip(map(self.counted_range, range(len(self.sizes))), shift)]
        return self._masks(device, ranges)


def _jit_is_tracing() -> bool:
    """``torch.jit.is_tracing()``, typed (torch does not annotate it)."""
    return bool(torch.jit.is_tracing())  # type: ignore[attr-defined, no-untyped-call]


def _pad(x: Tensor, cfg: _Config, skip: int | None = None) -> Tensor:
    """Pads ``(B, *sizes)`` by ``padding`` in the padding mode, then by the ceil-mode overhang (zeros).

    The axis ``skip`` is left alone (:func:`_pad_band` pads a band's axis itself).
    """
    padding = [0 if axis == skip else p for axis, p in enumerate(cfg.padding)]
    overhang = [0 if axis == skip else e for axis, e in enumerate(cfg.overhang)]
    if any(padding):
        pads = [p for p in reversed(padding) for _ in range(2)]
        if cfg.mode in ("zeros", "valid"):
            x = F.pad(x, pads, mode="constant", value=0)
        elif cfg.mode == "circular" and _jit_is_tracing():
            # the TorchScript ONNX exporter aborts the process on a circular F.pad (torch 2.13): wrap
            # with slices and a concatenation instead
            for axis, (p, size) in enumerate(zip(padding, cfg.sizes)):
                if p:
                    dim = axis + 1
                    x = torch.cat([x.narrow(dim, size - p, p), x, x.narrow(dim, 0, p)], dim)
        elif cpu_kernel_missing(f"pad_{cfg.mode}{len(padding)}d", x):  # old torch, half precision
            x = F.pad(x.float(), pads, mode=cfg.mode).to(x.dtype)  # exact: padding copies values
        else:  # padded without autograd; the padding backward is _unpad_grad (deterministic)
            x = F.pad(x, pads, mode=cfg.mode)
    if any(overhang):
        x = F.pad(x, [q for e in reversed(overhang) for q in (0, e)], mode="constant", value=0)
    return x


def _source_rows(cfg: _Config, first: int, count: int) -> list[int | None]:
    """The input row that each padded row ``first .. first + count - 1`` of the band's axis copies
    (``None`` for a zero row: zero padding, ceil-mode overhang)."""
    p, size = cfg.padding[cfg.axis], cfg.sizes[cfg.axis]
    rows: list[int | None] = []
    for r in range(first, first + count):
        q = r - p
        if 0 <= q < size:
            rows.append(q)
        elif r >= size + 2 * p or cfg.mode in ("zeros", "valid"):
            rows.append(None)
        elif cfg.mode == "reflect":
            rows.append(-q if q < 0 else 2 * (size - 1) - q)
        elif cfg.mode == "circular":
            rows.append(q % size)
        else:  # replicate
            rows.append(min(max(q, 0), size - 1))
    return rows


def _pad_band(x: Tensor, cfg: _Config) -> Tensor:
    """The padded rows of the band ``cfg.rows`` of ``(B, *sizes)``: exactly those rows of :func:`_pad`."""
    first, count, dim = cfg.row_offset, cfg.used[cfg.axis], cfg.axis + 1
    pieces: list[Tensor] = []
    run: list[int] = []  # consecutive source rows, taken as one narrow view

    def flush() -> None:
        if run:
            pieces.append(x.narrow(dim, run[0], len(run)))
            run.clear()

    for source in _source_rows(cfg, first, count):
        if source is not None and run and source == run[-1] + 1:
            run.append(source)
            continue
        flush()
        if source is None:
            pieces.append(x.new_zeros((*x.shape[:dim], 1, *x.shape[dim + 1 :])))
        else:
            run.append(source)
    flush()
    band = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim)
    return _pad(band, cfg, skip=cfg.axis)


# ----------------------------------------------------------------------------------------------
# Running a plan
# ----------------------------------------------------------------------------------------------


def _leading(spatial: Iterable[slice]) -> tuple[slice, ...]:
    """Index keeping the leading (batch) dimension and slicing the spatial ones."""
    return (slice(None), *spatial)


def _axis_slice(axis: int, ndim: int, start: int, stop: int, step: int) -> tuple[slice, ...]:
    """Index selecting ``start:stop:step`` along spatial ``axis`` of a ``(B, *spatial)`` tensor."""
    index = [slice(None)] * (ndim + 1)
    index[axis + 1] = slice(start, stop, step)
    return tuple(index)


def _run_plan(
    plan: _Plan,
    xs: Tensor,
    out: Tensor,
    stride: Sequence[int],
    dilation: Sequence[int],
    pool: dict[Any, list[Tensor]],
) -> None:
    """Evaluates ``plan`` on ``xs`` (``(b, *used)``) into ``out`` (``(b, *out_sizes)``), eagerly.

    Window cell ``c`` along an axis sits ``c * dilation`` cells after the window start.
    """
    nd = xs.dim() - 1
    out_sizes = out.shape[1:]
    values: dict[int, Tensor] = {}
    owned: set[int] = set()
    step = stride[nd - 1]
    # Strided views along the innermost axis defeat vectorisation: split the input into contiguous
    # phases once (the plan sorts along that axis first, see _choose_plan).
    phases = _phases(xs, step) if _uses_phases(plan, stride) else []
    for t, (kind, a, b, c) in enumerate(plan.instrs):
        if kind == "view":
            axis = plan.perm[b]
            size = out_sizes[axis]
            c *= dilation[axis]
            if a < 0 and phases and axis == nd - 1:
                values[t] = phases[c % step][..., c // step : c // step + size]
            else:
                src = xs if a < 0 else values[a]
                values[t] = src[_axis_slice(axis, nd, c, c + stride[axis] * (size - 1) + 1, stride[axis])]
        else:
            ta, tb = values[a], values[b]
            if t == plan.out:
                dst = out
            elif a in owned and plan.last_use[a] == t:
                dst = ta
                owned.discard(a)
            elif b in owned and plan.last_use[b] == t:
                dst = tb
                owned.discard(b)
            else:
                free = pool.get(ta.shape)
                dst = free.pop() if free else torch.empty(ta.shape, dtype=ta.dtype, device=ta.device)
                owned.add(t)
            if t != plan.out and dst is not out:
                owned.add(t)
            (torch.minimum if kind == "min" else torch.maximum)(ta, tb, out=dst)
            values[t] = dst
        if t == plan.out:
            break
        for node in plan.deaths[t]:
            tensor = values.pop(node)
            if node in owned:
                owned.discard(node)
                pool.setdefault(tensor.shape, []).append(tensor)
    if plan.instrs[plan.out][0] == "view":
        out.copy_(values[plan.out])


def _network_eager(
    plan: _Plan, xu: Tensor, out: Tensor, stride: Sequence[int], dilation: Sequence[int]
) -> None:
    """Runs the network over chunks of the batch so that intermediates stay in cache."""
    per_item = max(1, math.prod(xu.shape[1:]))
    chunk = max(1, _CHUNK_ELEMENTS // per_item)
    pool: dict[Any, list[Tensor]] = {}
    for start in range(0, xu.shape[0], chunk):
        _run_plan(plan, xu[start : start + chunk], out[start : start + chunk], stride, dilation, pool)


def _uses_phases(plan: _Plan, stride: Sequence[int]) -> bool:
    """Whether stage 0 reads the input through contiguous phases of the innermost axis."""
    nd = len(stride)
    return stride[nd - 1] > 1 and plan.perm[0] == nd - 1


def _phases(xu: Tensor, step: int) -> list[Tensor]:
    """The innermost axis split into ``step`` contiguous phases (``xu[..., r::step]``)."""
    return [xu[..., r::step].contiguous() for r in range(step)]


def _network_source(
    plan: _Plan, out_sizes: Sequence[int], stride: Sequence[int], dilation: Sequence[int]
) -> str:
    """Python source of a straight-line function computing the plan.

    Its arguments are the padded ``(B, *padded)`` tensor, or the phases of :func:`_phases`.
    """
    nd = len(out_sizes)
    step = stride[nd - 1]
    phases = _uses_phases(plan, stride)
    lines = [f"def network({', '.join(f'p{r}' for r in range(step)) if phases else 'xp'}):"]
    for t, (kind, a, b, c) in enumerate(plan.instrs):
        if kind == "view":
            axis = plan.perm[b]
            c *= dilation[axis]
            if a < 0 and phases:
                lines.append(f"    v{t} = p{c % step}[..., {c // step}:{c // step + out_sizes[axis]}]")
                continue
            parts = [":"] * (nd + 1)
            parts[axis + 1] = f"{c}:{c + stride[axis] * (out_sizes[axis] - 1) + 1}:{stride[axis]}"
            src = "xp" if a < 0 else f"v{a}"
            lines.append(f"    v{t} = {src}[{', '.join(parts)}]")
        else:
            lines.append(f"    v{t} = torch.{'minimum' if kind == 'min' else 'maximum'}(v{a}, v{b})")
    suffix = ".clone()" if plan.instrs[plan.out][0] == "view" else ""
    lines.append(f"    return v{plan.out}{suffix}")
    return "\n".join(lines) + "\n"


def _select_source(kernel: Sequence[int], stride: Sequence[int], out_sizes: Sequence[int]) -> str:
    """Source of a fused kernel: window offset of the selected cell (first equal cell, row-major)."""
    n = math.prod(kernel)
    # float32 offsets (exact below 2^24) and ``v != v`` (rather than isnan) keep the generated C++
    # loops vectorised, here and in the gather kernel (int32 offsets made that one ~6x slower)
    lines = [
        "def select(xp, y):",
        "    ynan = y != y",
        f"    sel = torch.full_like(y, {n}.0, dtype=torch.float32)",
    ]
    offsets = list(itertools.product(*(range(k) for k in kernel)))
    for o in range(n - 1, -1, -1):
        parts = [":"] + [
            f"{i}:{i + s * (osz - 1) + 1}:{s}" for i, s, osz in zip(offsets[o], stride, out_sizes)
        ]
        lines.append(f"    v = xp[{', '.join(parts)}]")
        lines.append(f"    sel = torch.where((v == y) | ((v != v) & ynan), {float(o)}, sel)")
    lines.append("    return sel")
    return "\n".join(lines) + "\n"


def _gather_source(kernel: Sequence[int], used: Sequence[int]) -> str:
    """Source of a fused gather-form accumulation of the gradient over pre-padded ``selp``/``gp``."""
    lines = ["def gather(selp, gp):"]
    for o, offset in enumerate(itertools.product(*(range(k) for k in kernel))):
        idx = ", ".join([":"] + [f"{k - 1 - i}:{k - 1 - i + u}" for k, i, u in zip(kernel, offset, used)])
        term = f"torch.where(selp[{idx}] == {float(o)}, gp[{idx}], 0)"
        lines.append(f"    acc = {term}" if o == 0 else f"    acc = acc + {term}")
    lines.append("    return acc")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# The compiled forward on integer keys (CPU, float32/float64)
# ----------------------------------------------------------------------------------------------

# Float dtype -> (integer dtype of the same width, its sign shift, its magnitude mask). The key of a float
# with bits ``i`` is ``i ^ ((i >> shift) & mask)``: negative floats get their magnitude bits flipped, so
# that the signed integer order of the keys is the float order (-0.0 just below +0.0), and a min/max
# network on keys is a plain integer min/max (one instruction) where the float network's NaN-propagating
# vector min/max takes several (about 2x slower on x86 CPUs). The map is its own inverse. A NaN's key
# lies beyond the infinities', so inputs with a NaN take the float network (which propagates NaN).
_KEY_DTYPES: dict[torch.dtype, tuple[torch.dtype, int, int]] = {
    torch.float32: (torch.int32, 31, 0x7FFF_FFFF),
    torch.float64: (torch.int64, 63, 0x7FFF_FFFF_FFFF_FFFF),
}
# The magnitude bits of +inf: a larger magnitude is a NaN.
_INF_BITS: dict[torch.dtype, int] = {torch.float32: 0x7F80_0000, torch.float64: 0x7FF0_0000_0000_0000}


# Bytes of padded keys per chunk of :func:`_forward_keys`: the chunk is written, then read by the
# network, from the cache (a fraction of a 32 MiB L3) rather than from memory.
_KEY_CHUNK_BYTES = 8 << 20
# Vector widths (bits) inductor may use for the key kernels, widest first. Their inner loop runs along
# the last axis, whose length is rarely a multiple of the widest vector (56 int32 = 3.5 AVX-512
# vectors): a narrower width without a remainder beats a masked tail loop (about 15% on a 3x3 window).
_KEY_SIMD_BITS = (512, 256)


def _key_compile_options(inner: int, itemsize: int) -> dict[str, Any]:
    """``torch.compile`` options of the key kernels for an inner loop of ``inner`` elements: on an AVX-512
    CPU, the widest of :data:`_KEY_SIMD_BITS` that divides it, when that is not the default width."""
    if torch.backends.cpu.get_cpu_capability() != "AVX512":
        return {}
    for bits in _KEY_SIMD_BITS:
        if inner % max(1, bits // (8 * itemsize)) == 0:
            return {} if bits == _KEY_SIMD_BITS[0] else {"cpp.simdlen": bits}
    return {}


def _keys_source(cfg: _Config, shift: int, mask: int) -> str:
    """Source of ``keys(xi, kp)``: writes the keys of the bits ``xi`` (``(B, *sizes)``) into the inner
    cells of the padded ``kp`` and returns the largest magnitude bits of ``xi`` (a NaN's exceed the
    infinities'). (The padding cells are left to :func:`_fill_border`: written in the graph, as views
    of ``xi``, inductor turned the whole pass into one masked loop with scalar loads, several times
    slower.)"""
    inner = ", ".join([":"] + [f"{p}:{p + size}" for p, size in zip(cfg.padding, cfg.sizes)])
    return (
        f"def keys(xi, kp):\n    kp[{inner}] = xi ^ ((xi >> {shift}) & {mask})\n"
        f"    return (xi & {mask}).amax()\n"
    )


def _network_keys_source(plan: _Plan, cfg: _Config, shift: int, mask: int) -> str:
    """Source of ``network_keys(kp, out)``: the network on padded keys (or their phases), writing the
    bits of the medians into ``out`` (the key map is its own inverse)."""
    args = ", ".join(f"p{r}" for r in range(cfg.stride[-1])) if _uses_phases(plan, cfg.stride) else "kp"
    return _network_source(plan, cfg.out_sizes, cfg.stride, cfg.dilation) + (
        f"def network_keys({args}, out):\n    k = network({args})\n"
        f"    out.copy_(k ^ ((k >> {shift}) & {mask}))\n    return out\n"
    )


def _fill_border(kp: Tensor, cfg: _Config) -> None:
    """Fills the padding cells of ``kp`` (inner cells filled) as :func:`_pad` pads: an axis at a time,
    from the innermost, each padding row copying its source row (zeros: the key 0 of +0.0).

    A front padding row and its mirror at the back are filled by one strided copy when their sources
    are in the same order (reflect, replicate, zeros): half the copies, each large enough for the
    copy to run on several threads.
    """
    nd = len(cfg.sizes)
    for axis in reversed(range(nd)):
        p, size, dim = cfg.padding[axis], cfg.sizes[axis], axis + 1
        if not p:
            continue
        view = kp
        for outer in range(axis):  # the outer axes are padded later: their inner cells only
            view = view.narrow(outer + 1, cfg.padding[outer], cfg.sizes[outer])
        sources = _source_rows(replace(cfg, rows=None, axis=axis), 0, size + 2 * p)
        for front in range(p):
            back = size + 2 * p - 1 - front
            first, last = sources[front], sources[back]
            rows = view[_axis_slice(axis, nd, front, back + 1, back - front)]
            if first is None and last is None:
                rows.zero_()
            elif first is not None and last is not None and last > first:
                rows.copy_(view[_axis_slice(axis, nd, first + p, last + p + 1, last - first)])
            else:
                for row, source in ((front, first), (back, last)):
                    if source is None:
                        view.narrow(dim, row, 1).zero_()
                    else:
                        view.narrow(dim, row, 1).copy_(view.narrow(dim, source + p, 1))


def _forward_keys(x: Tensor, cfg: _Config) -> Tensor | None:
    """The compiled forward on integer keys of the unpadded ``(B, *sizes)`` float tensor ``x``.

    A chunk of planes at a time (:data:`_KEY_CHUNK_BYTES` of padded keys, reused, so that the pass
    over the keys reads them from the cache): one compiled pass writes the keys into the padded
    buffer (no padded float copy), the padding cells are copied from their sources, and one compiled
    kernel runs the network on the keys, writing the chunk's output in place. The medians are the
    same values as the float network's (a zero's sign may differ: -0.0 orders below +0.0). None when
    it does not apply (another dtype or device, ``"valid"`` padding, ceil-mode overhang, no network)
    or when ``x`` holds a NaN: the caller then runs the float network.
    """
    if x.dtype not in _KEY_DTYPES or x.device.type != "cpu" or cfg.restricted or cfg.rows is not None:
        return None
    if _jit_is_tracing():  # the TorchScript exporters record the float network's ops
        return None
    plan = _choose_plan(cfg.kernel, cfg.stride, cfg.full_out_sizes, cfg.full_used)
    if plan is None:
        return None
    int_dtype, shift, mask = _KEY_DTYPES[x.dtype]
    xi = x.view(int_dtype)
    padded = tuple(s + 2 * p for s, p in zip(cfg.sizes, cfg.padding))
    per_plane = max(1, math.prod(padded) * x.element_size())
    chunks = -(-x.shape[0] // max(1, _KEY_CHUNK_BYTES // per_plane))
    chunk = -(-x.shape[0] // max(1, chunks))  # equal chunks: at most two shapes to compile
    kp = torch.empty((min(chunk, x.shape[0]), *padded), dtype=int_dtype, device=x.device)
    bits = torch.empty((x.shape[0], *cfg.out_sizes), dtype=int_dtype, device=x.device)
    phases = _uses_phases(plan, cfg.stride)
    key_options = _key_compile_options(cfg.sizes[-1], x.element_size())
    net_options = _key_compile_options(cfg.out_sizes[-1], x.element_size())
    net_key = ("fwd_keys", plan.kernel, plan.perm, cfg.out_sizes, cfg.stride, cfg.dilation, x.dtype)

    def network_source() -> str:
        return _network_keys_source(plan, cfg, shift, mask)

    for start in range(0, x.shape[0], chunk):
        part = xi[start : start + chunk]
        kpc = kp[: part.shape[0]]
        key = (cfg.sizes, cfg.padding, tuple(part.shape), tuple(part.stride()), x.dtype)
        largest = _call_compiled(
            ("keys", *key), lambda: _keys_source(cfg, shift, mask), "keys", part, kpc, options=key_options
        )
        if largest is None or int(largest) > _INF_BITS[x.dtype]:
            return None
        _fill_border(kpc, cfg)
        args = _phases(kpc[_leading(slice(0, u) for u in cfg.used)], cfg.stride[-1]) if phases else [kpc]
        out = bits[start : start + chunk]
        net = _call_compiled(
            (*net_key, tuple(kpc.shape)), network_source, "network_keys", *args, out, options=net_options
        )
        if net is None:
            return None
    return bits.view(x.dtype)


def _grad_compiled(xp: Tensor, y: Tensor, g: Tensor, cfg: _Config) -> Tensor | None:
    """Backward with two compiled kernels; the padding/dilation between them is done eagerly."""
    out_sizes = tuple(y.shape[1:])
    key = ("select", cfg.kernel, cfg.stride, tuple(xp.shape), xp.dtype, xp.device)
    sel = _call_compiled(key, lambda: _select_source(cfg.kernel, cfg.stride, out_sizes), "select", xp, y)
    if sel is None:
        return None
    # Outputs sit at multiples of the stride of a grid padded by kernel - 1 on both sides, so that
    # every padded-input cell gathers from kernel-many unmasked shifted views.
    used = [s * (o - 1) + k for k, s, o in zip(cfg.kernel, cfg.stride, out_sizes)]
    grid = (xp.shape[0], *(u + k - 1 for u, k in zip(used, cfg.kernel)))
    inner = (
        slice(None),
        *(slice(k - 1, k - 1 + s * (o - 1) + 1, s) for k, s, o in zip(cfg.kernel, cfg.stride, out_sizes)),
    )
    if all(s == 1 for s in cfg.stride):  # one pass each instead of a fill and a copy
        pads = [q for k in reversed(cfg.kernel) for q in (k - 1, k - 1)]
        selp, gp = F.pad(sel, pads, value=-1.0), F.pad(g, pads)
    else:
        selp = torch.full(grid, -1, dtype=sel.dtype, device=sel.device)
        selp[inner] = sel
        gp = torch.zeros(grid, dtype=g.dtype, device=g.device)
        gp[inner] = g
    key = ("gather", cfg.kernel, grid, (), g.dtype, g.device)
    acc = _call_compiled(key, lambda: _gather_source(cfg.kernel, used), "gather", selp, gp)
    if acc is None:
        return None
    if list(acc.shape[1:]) == list(xp.shape[1:]):
        return acc
    grad = torch.zeros_like(xp)
    grad[_leading(slice(0, u) for u in used)] = acc
    return grad


_COMPILED: dict[tuple[Any, ...], Callable[..., Tensor] | None] = {}
_COMPILED_MAX = 64


def _compiled(
    key: tuple[Any, ...], source: Callable[[], str], name: str, options: dict[str, Any] | None = None
) -> Callable[..., Tensor] | None:
    """A ``torch.compile``-d function generated from source, cached per key (None if compile failed);
    ``options`` are inductor's (part of the key).

    Each source gets its own code object (file name), so that the graphs of different keys do not
    count against dynamo's recompile limit of one function.
    """
    if key in _COMPILED:
        return _COMPILED[key]
    namespace: dict[str, Any] = {"torch": torch}
    code = compile(source(), f"<torchpool.median.{name}.{len(_COMPILED)}>", "exec")
    exec(code, namespace)
    if len(_COMPILED) >= _COMPILED_MAX:
        _COMPILED.pop(next(iter(_COMPILED)))
    fn = torch.compile(namespace[name], dynamic=False, options=options or None)
    _COMPILED[key] = fn
    return fn


def _call_compiled(
    key: tuple[Any, ...],
    source: Callable[[], str],
    name: str,
    *args: Tensor,
    options: dict[str, Any] | None = None,
) -> Tensor | None:
    if options:
        key = (*key, tuple(sorted(options.items())))
    fn = _compiled(key, source, name, options)
    if fn is None:
        return None
    try:
        return fn(*args)
    except Exception as error:
        warnings.warn(
            f"torch.compile failed for median pooling ({type(error).__name__}: {error}); using eager mode",
            RuntimeWarning,
            stacklevel=4,
        )
        _COMPILED[key] = None
        return None


# ----------------------------------------------------------------------------------------------
# Fallbacks and the "valid" mode
# ----------------------------------------------------------------------------------------------


def _windows(xs: Tensor, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]) -> Tensor:
    """``(b, *out, prod(kernel))`` copy of the windows of ``xs`` (``(b, *spatial)``)."""
    spans = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    if _jit_is_tracing():  # the TorchScript ONNX exporter cannot export unfold: stack the views
        out_sizes = [(u - e) // s + 1 for u, e, s in zip(xs.shape[1:], spans, stride)]
        views = [
            xs[
                _leading(
                    slice(i * d, i * d + s * (o - 1) + 1, s)
                    for i, s, d, o in zip(offset, stride, dilation, out_sizes)
                )
            ]
            for offset in itertools.product(*(range(k) for k in kernel))
        ]
        return torch.stack(views, dim=-1)
    w = xs
    for axis, (e, s, d) in enumerate(zip(spans, stride, dilation)):
        w = w.unfold(axis + 1, e, s)[..., ::d]
    nd = len(kernel)
    return w.reshape(*w.shape[: nd + 1], -1)


def _fallback_chunk(xp: Tensor, out_sizes: Sequence[int], kernel: Sequence[int]) -> int:
    budget = max(xp.numel(), _FALLBACK_MIN_ELEMENTS)
    return max(1, budget // max(1, math.prod(out_sizes) * math.prod(kernel)))


def _median_unfold(xu: Tensor, out: Tensor, cfg: _Config) -> None:
    """Memory-bounded fallback: unfold + :func:`torch.median` over chunks of the batch."""
    chunk = _fallback_chunk(xu, out.shape[1:], cfg.kernel)
    for start in range(0, xu.shape[0], chunk):
        windows = _windows(xu[start : start + chunk], cfg.kernel, cfg.stride, cfg.dilation)
        out[start : start + chunk] = windows.median(dim=-1).values


def _outer(vectors: Sequence[Tensor]) -> Tensor:
    """Outer product of 1-d tensors (logical and for bool tensors, product otherwise)."""
    nd = len(vectors)
    result = vectors[0].reshape([-1] + [1] * (nd - 1))
    for axis in range(1, nd):
        shape = [1] * nd
        shape[axis] = -1
        result = result * vectors[axis].reshape(shape)
    return result


def _valid_region(
    xp: Tensor, counted: Sequence[Tensor], cfg: _Config, ranges: Sequence[tuple[int, int]]
) -> Tensor:
    """Lower median of the counted cells of the windows whose outputs lie in ``ranges``."""
    kernel, stride, dilation = cfg.kernel, cfg.stride, cfg.dilation
    spans = [slice(s * lo, s * (hi - 1) + e) for (lo, hi), e, s in zip(ranges, cfg.spans, stride)]
    slab = xp[_leading(spans)]
    mask = _outer([inb[span] for inb, span in zip(counted, spans)])
    counts = _outer(
        [
            torch.stack([inb[s * o : s * o + e : d].sum() for o in range(lo, hi)])
            for inb, (lo, hi), e, s, d in zip(counted, ranges, cfg.spans, stride, dilation)
        ]
    )
    rank = ((counts - 1) // 2).unsqueeze(-1)
    top = float("inf") if xp.is_floating_point() else torch.iinfo(xp.dtype).max
    values = torch.where(mask, slab, torch.tensor(top, dtype=xp.dtype, device=xp.device))
    out_sizes = [hi - lo for lo, hi in ranges]
    result = torch.empty((xp.shape[0], *out_sizes), dtype=xp.dtype, device=xp.device)
    chunk = _fallback_chunk(slab, out_sizes, kernel)
    for start in range(0, xp.shape[0], chunk):
        ordered = _windows(values[start : start + chunk], kernel, stride, dilation).sort(dim=-1).values
        picked = ordered.gather(-1, rank.expand(*ordered.shape[:-1], 1)).squeeze(-1)
        if xp.is_floating_point():
            nan = torch.isnan(ordered[..., -1])  # NaN sorts last
            picked = torch.where(nan, ordered[..., -1], picked)
        result[start : start + chunk] = picked
    return result


def _fix_borders(y: Tensor, xp: Tensor, cfg: _Config, everything: bool) -> None:
    """Overwrites the outputs whose windows hold uncounted cells with the median of the counted ones.

    Uncounted cells: the padding in ``"valid"`` mode, and the ceil-mode overhang past the padded input.
    """
    counted = cfg.counted(xp.device)
    out_sizes = y.shape[1:]
    nd = len(out_sizes)
    interior: list[tuple[int, int]] = []
    borders: list[list[tuple[int, int]]] = []
    for axis in range(nd):
        s, e, o = cfg.stride[axis], cfg.spans[axis], out_sizes[axis]
        first, last = cfg.counted_range(axis)
        inside = [j for j in range(o) if s * j >= first and s * j + e <= last]
        lo, hi = (inside[0], inside[-1] + 1) if inside and not everything else (0, 0)
        interior.append((lo, hi))
        borders.append([r for r in ((0, lo), (hi, o)) if r[1] > r[0]] if hi > lo else [(0, o)])
    for axis in range(nd):
        for border in borders[axis]:
            ranges = [*interior[:axis], border, *[(0, o) for o in out_sizes[axis + 1 :]]]
            if any(hi <= lo for lo, hi in ranges):
                continue
            y[_leading(slice(lo, hi) for lo, hi in ranges)] = _valid_region(xp, counted, cfg, ranges)
