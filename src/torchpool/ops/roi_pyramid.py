"""SPP on regions: SPPNet's detection mode (He et al. 2014, arXiv 1406.4729, section 3.1).

SPPNet computes the convolutional feature map of a whole image once and pools each candidate
window (a region of the map) into a fixed pyramid of bins, ``C * sum(n^2)`` features per
region whatever its size. :func:`roi_spatial_pyramid_pool` does that for ``K`` regions at once;
with one level ``(n,)`` and ``mode="max"`` it is ``torchvision.ops.roi_pool(features, boxes,
(n, n), spatial_scale)`` (Fast R-CNN's RoI pooling is SPP on regions with one level).

**The bins** are those of torchvision's ``roi_pool`` CPU kernel, computed the same way and in the
same precision (the features' dtype; float32 for float16 / bfloat16 features), so the results
are equal bit for bit:

* each corner is scaled and rounded half away from zero (C's ``round``):
  ``x1' = round(x1 * spatial_scale)``, likewise ``y1', x2', y2'``, the product taken in the
  features' dtype (``spatial_scale`` rounded to it first);
* the region is ``roi_w = max(x2' - x1' + 1, 1)`` wide and ``roi_h = max(y2' - y1' + 1, 1)``
  high: a malformed box (``x2 < x1``) is one cell;
* bin ``i`` of ``n`` spans rows ``[floor(i * b) + y1', ceil((i + 1) * b) + y1')`` with
  ``b = roi_h / n`` (again in the features' dtype), clipped to ``[0, H]``; columns alike;
* a bin that is empty after clipping (a region partly or wholly outside the map) gives 0.

``mode="avg"`` is the mean over the same bins (empty bins 0).

**How it is computed**, vectorised over the regions (no loop over boxes). On the CPU in float32 the
max mode runs a C kernel (``csrc/roi_spp.c``, :mod:`torchpool.ops._roi_native`; built on first use
where a C compiler exists): one image and 16 channels at a time, every box of the image pooled from
a copy of those channels held as channel vectors, the coarser levels from the finer ones box by
box where the bins nest, each max's cell the first in row-major order among ties (torchvision's
cell), its backward (``torchpool::roi_spp_max_backward``) adding each bin's gradient to that cell.
The PyTorch path below serves the other dtypes and devices, the double backward and machines
without a compiler:

* ``max``: a sparse table of row maxima of the map (the max over ``2^j`` consecutive rows,
  ``j`` up to the longest bin), so a bin's row range is the max of two overlapping ``2^j``
  blocks; the bin's columns are gathered (``index_select`` of channel vectors, the last column
  repeated to the widest bin's width, which changes no max) and reduced with ``amax``. The
  channels are pooled in slices whose table holds at most :data:`_TABLE` values (one buffer,
  reused), and the candidates gathered in chunks of at most :data:`_CHUNK` values (with the
  argmax: :data:`_TABLE_ARGMAX`, :data:`_CHUNK_ARGMAX`): every temporary is a few MiB, which the
  CPU allocator reuses (larger ones are fresh pages on every call, whose page faults cost more
  than the pooling). A level's boxes are sorted by their widest bin and gathered in
  :data:`_GROUPS` groups, each padded to its own widest bin only; the maxima are written in that
  order, slice by slice, and un-sorted once (``index_select``: writing each slice back in box
  order with ``index_copy_`` is serial on CPU).
  A coarser level whose bins are exactly unions of a finer level's bins (levels ``(1, 2, 4)``:
  checked per region, since the bins are computed in floating point) is the max over those
  finer bins (``1`` from ``2``, ``2`` from ``4``) instead of a second pass over the map.
  Where a gradient is needed, the forward also finds each max's cell. For a finite float32 map
  (the common case) the cell rides on the value: the table holds float64 keys, each float32
  value with its cell ``(n * H + h) * W + w`` in the 29 low mantissa bits that a float32 value
  leaves zero; that moves a value by less than a float32 ulp away from zero, so keys order as
  their values (ties by cell) and the max key, taken as above (derived levels included), is the
  max value and one of its cells; the backward scatters every level's gradient to its cells.
  Otherwise (float64, half precision, a map with an infinity, which a key would turn into NaN,
  or a NaN, which must propagate) the cell is searched for after the max: the first candidate
  equal to the max (an equality mask times descending weights: ``max(dim)``'s indices are
  several times slower on CPU) gives its column and block; its row is found by descending the
  sparse table from that block, ``j`` steps into the half that holds the value (the bins
  sorted by ``j``, so each step works on a suffix; whether the map holds a NaN, which changes
  the comparisons, is one ``amax`` of the map). A derived level keeps, instead of cells, the
  finer bin that holds each of its maxima (the first equal to it); the backward adds each
  derived bin's gradient to that finer bin's (coarsest level first: ``1`` into ``2``, ``2`` into
  ``4``) and then scatters only the directly pooled levels' gradients to their cells, straight
  into the ``(N, C, H, W)`` gradient (one scatter into the map for ``(1, 2, 4)``). Empty bins
  are set to ``-inf`` before the coarse levels' max and to 0 in the result by writing only
  their rows (``index_fill_``).
* ``avg``: a float64 summed-area table of the map (float32 on MPS), four corners per bin.

Where cells of a bin tie for its max, the bin's gradient goes to one of them, as in
torchvision (the C kernel: the same one, the first in row-major order; the PyTorch path: not
necessarily). A NaN in a bin gives NaN, as PyTorch's max pools do (torchvision's kernel skips
NaN; the C kernel's gradient goes to the first NaN), and a bin of ``-inf`` gives ``-inf``
(torchvision: ``-FLT_MAX``).

**Under** ``torch.compile`` (``fullgraph=True``), ``torch.export``, ``torch.jit.trace`` and fake
tensors, where no value of the boxes may be read in Python, the max mode is one custom operator,
``torchpool::roi_spp_max`` (a fake function gives its shapes from the input shapes; inside, the
eager forward on the real values, boxes checked; its backward the C kernel's operator, or one
``scatter_add`` to each max's cell), and the avg mode the same summed-area-table ops (nothing
data-dependent), its boxes checked at run time by ``torchpool::roi_spp_checked_rois``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensor

from .._checks import check_bool, check_choice, check_float_range, is_traced
from . import _roi_native
from .pyramid import Level, _check_levels

__all__ = ["RoISpatialPyramidPool", "roi_spatial_pyramid_pool"]

_MODES = ("max", "avg")
#: the most values gathered at once (boxes are gathered in chunks below it): a few MiB, which the
#: allocator reuses (glibc serves CPU allocations above 32 MiB with fresh pages every time: page faults;
#: and, until a larger block has been freed, any allocation as large as the largest freed so far).
_CHUNK = 2**20
#: the most values in the row table of one slice of channels (the channels are pooled in slices): 4 MiB
#: (at 16 MiB the table was served fresh pages on every call unless the caller had freed a larger block:
#: twice the time of the forward).
_TABLE = 2**20
#: the same two bounds where the forward also finds each max's cell: its steps are per slice of channels,
#: so fewer, wider slices are faster there.
_CHUNK_ARGMAX = 2**21
_TABLE_ARGMAX = 2**22
#: a level's boxes, sorted by their widest bin, are gathered in this many groups, each gathering its
#: own widest bin's columns (rather than every box the widest of all).
_GROUPS = 4
#: torchvision's kernel holds the rounded corners in a C ``int``.
_CORNER_LIMIT = 2.0**31
Boxes = Tensor | Sequence[Tensor]
Bins = tuple[int, int]


def _check_features(features: object) -> Tensor:
    if not isinstance(features, Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if features.dim() != 4:
        raise ValueError(f"features must have 4 dimensions (N, C, H, W), got shape {tuple(features.shape)}")
    if not features.is_floating_point():
        raise TypeError(f"features must have a floating-point dtype, got {features.dtype}")
    if features.shape[2] == 0 or features.shape[3] == 0:
        raise ValueError(f"features must have non-zero spatial sizes, got shape {tuple(features.shape)}")
    return features


def _rois(boxes: object, features: Tensor) -> Tensor:
    """``boxes`` as one ``(K, 5)`` tensor of ``(batch_index, x1, y1, x2, y2)`` (shapes and dtypes checked)."""
    expected = "a Tensor[K, 5] of (batch_index, x1, y1, x2, y2) or a list of Tensor[L_i, 4] (one per image)"
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(f"boxes must be {expected}, got a tensor of shape {tuple(boxes.shape)}")
        if not boxes.is_floating_point():
            raise TypeError(f"boxes must have a floating-point dtype, got {boxes.dtype}")
        rois = boxes
    elif isinstance(boxes, (list, tuple)):
        if len(boxes) > features.shape[0]:
            raise ValueError(
                f"boxes must hold at most one tensor per image: got {len(boxes)} for {features.shape[0]}"
            )
        parts = []
        for i, part in enumerate(boxes):
            if not isinstance(part, Tensor):
                raise TypeError(f"boxes[{i}] must be a Tensor[L, 4], got {type(part).__name__}")
            if part.dim() != 2 or part.shape[1] != 4:
                raise ValueError(f"boxes[{i}] must be a Tensor[L, 4], got shape {tuple(part.shape)}")
            if not part.is_floating_point():
                raise TypeError(f"boxes[{i}] must have a floating-point dtype, got {part.dtype}")
            parts.append(torch.cat([torch.full_like(part[:, :1], i), part], dim=1))
        rois = torch.cat(parts) if parts else features.new_zeros(0, 5)
    else:
        raise TypeError(f"boxes must be {expected}, got {type(boxes).__name__}")
    if rois.device != features.device:
        raise ValueError(f"boxes are on {rois.device}, but features are on {features.device}")
    return rois.detach()


def _check_values(rois: Tensor, batch: int, scale: float) -> None:
    """The batch indices name images, the coordinates are finite and fit torchvision's ``int``."""
    if not bool(torch.isfinite(rois).all()):
        raise ValueError("boxes must be finite (no NaN or infinity)")
    index = rois[:, 0]
    bad = (index != index.trunc()) | (index < 0) | (index >= batch)
    if bool(bad.any()):
        raise ValueError(
            f"boxes' batch indices (column 0) must be integers in [0, {batch}), got {index[bad][:5].tolist()}"
        )
    if bool(((rois[:, 1:].double() * scale).abs() >= _CORNER_LIMIT).any()):
        raise ValueError("boxes' coordinates times spatial_scale must lie within +-2**31")


def _round_half_away(v: Tensor) -> Tensor:
    """C's ``round``: halves away from zero (``torch.round`` rounds them to even); exact, since
    ``v - trunc(v)`` is."""
    whole = v.trunc()
    return (whole + torch.where((v - whole).abs() >= 0.5, v.sign(), torch.zeros_like(v))).long()


def _bins(
    rois: Tensor, levels: Sequence[Bins], height: int, width: int, scale: float, dtype: torch.dtype
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every level's bins, as torchvision's ``roi_pool`` computes them: row starts and ends
    ``(K, sum nh)``, column starts and ends ``(K, sum nw)``, clipped to the map."""
    corners = _round_half_away(rois[:, 1:].to(dtype) * torch.tensor(scale, dtype=dtype, device=rois.device))
    x1, y1, x2, y2 = corners.unbind(1)
    out: list[Tensor] = []
    for axis, (start, end, size) in enumerate(((y1, y2, height), (x1, x2, width))):
        counts = [level[axis] for level in levels]
        extent = (end - start + 1).clamp_min(1).to(dtype)
        divisor = torch.tensor([n for n in counts for _ in range(n)], dtype=dtype, device=rois.device)
        index = torch.tensor([i for n in counts for i in range(n)], dtype=dtype, device=rois.device)
        step = extent[:, None] / divisor
        out.append(((index * step).floor().long() + start[:, None]).clamp(0, size))
        out.append((((index + 1) * step).ceil().long() + start[:, None]).clamp(0, size))
    return out[0], out[1], out[2], out[3]


def _offsets(levels: Sequence[Bins], axis: int) -> list[int]:
    offsets = [0]
    for level in levels:
        offsets.append(offsets[-1] + level[axis])
    return offsets


def _derived(levels: Sequence[Bins], bins: tuple[Tensor, Tensor, Tensor, Tensor]) -> dict[Bins, Bins]:
    """The levels whose bins are exactly unions of a finer level's bins, for every region: coarse ->
    fine (the finer level with the fewest bins, itself derived or not: ``(1, 2, 4)``: 2 from 4, 1
    from 2)."""
    hs, he, ws, we = bins
    rows, cols = _offsets(levels, 0), _offsets(levels, 1)
    derived: dict[Bins, Bins] = {}
    done: list[int] = []
    for i in sorted(range(len(levels)), key=lambda i: -levels[i][0] * levels[i][1]):
        mh, mw = levels[i]
        for j in reversed(done):
            nh, nw = levels[j]
            if nh % mh or nw % mw:
                continue
            rh, rw = nh // mh, nw // mw
            same = (
                torch.equal(hs[:, rows[i] : rows[i + 1]], hs[:, rows[j] : rows[j + 1] : rh])
                and torch.equal(he[:, rows[i] : rows[i + 1]], he[:, rows[j] + rh - 1 : rows[j + 1] : rh])
                and torch.equal(ws[:, cols[i] : cols[i + 1]], ws[:, cols[j] : cols[j + 1] : rw])
                and torch.equal(we[:, cols[i] : cols[i + 1]], we[:, cols[j] + rw - 1 : cols[j + 1] : rw])
            )
            if same:
                derived[levels[i]] = levels[j]
                break
        done.append(i)
    return derived


def _row_table(x: Tensor, depth: int, table: Tensor, cell: Tensor | None = None) -> Tensor:
    """``table`` ``(N, R, W, C)``: the rows of ``x`` ``(N, H, W, C)``, then the max over 2, 4, ...
    ``2^depth`` consecutive rows (block ``j`` starts at row ``sum_{i<j} (H - 2^i + 1)``); no autograd.
    With ``cell`` ``(N, H, W, 1)``: a float64 table of keys, each value with its cell in the low
    mantissa bits (see :func:`_keyed`)."""
    height = x.shape[1]
    sizes = [height - (1 << j) + 1 for j in range(depth + 1)]
    table[:, :height].copy_(x)
    if cell is not None:
        table[:, :height].view(torch.int64).bitwise_or_(cell)
    start = 0
    for j in range(1, depth + 1):
        half, prev = 1 << (j - 1), table[:, start : start + sizes[j - 1]]
        start += sizes[j - 1]
        torch.maximum(
            prev[:, : sizes[j]], prev[:, half : half + sizes[j]], out=table[:, start : start + sizes[j]]
        )
    return table


#: the low mantissa bits of a float64 key that hold its cell ``(n * H + h) * W + w`` (a float32 value in
#: float64 leaves 29 of them zero).
_CELL_BITS = 29


def _keyed(x: Tensor, argmax: bool) -> tuple[bool, bool]:
    """Whether the argmax can ride on the values (and whether the map holds NaN): for a finite float32
    map of fewer than ``2^29`` cells, each value is pooled as a float64 key whose 29 low mantissa bits,
    zero in a float32 value, hold its cell. Setting them moves a value by less than a float32 ulp away
    from zero, so keys order as their values (ties by cell) and the max key is the max value with one
    of its cells: no search for the cell afterwards. Not where the max must propagate NaN, where an
    infinity would become NaN, or where denormals flush to zero (``torch.set_flush_denormal``: the
    keys of zeros are denormal)."""
    if not argmax:
        return False, False
    low, high = torch.aminmax(x)
    if bool(high.isnan()):
        return False, True
    n, _, height, width = x.shape
    # (MPS has no float64)
    if x.dtype != torch.float32 or x.device.type == "mps" or n * height * width >= 2**_CELL_BITS:
        return False, False
    keeps = bool(torch.tensor(2.0**-1074, dtype=torch.float64, device=x.device).mul(1.0) != 0)
    return keeps and bool(torch.isfinite(low) & torch.isfinite(high)), False


def _unkey(key: Tensor, batch: Tensor, channels: int, area: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The values ``(K, nh, nw, C)`` (``dtype``) and their cells ``((n * C + c) * H + h) * W + w`` in the
    map from float64 keys (:func:`_keyed`); an empty bin's key is ``-inf``, whose cell is its image's
    first (its gradient is 0)."""
    bits = key.view(torch.int64)
    mask = (1 << _CELL_BITS) - 1
    value = (bits & ~mask).view(torch.float64).to(dtype)
    cell = bits & mask  # (n * H + h) * W + w
    cell += (
        batch[:, None, None, None] * ((channels - 1) * area)
        + torch.arange(channels, device=key.device) * area
    )
    return value, cell


class _Plan(NamedTuple):
    """One directly pooled level, its boxes sorted by their widest bin: ``order`` (the box at each
    sorted position) and the image of each; chunks of sorted boxes ``(lo, hi, candidates)``: each
    bin's ``2 x span`` table entries ``(2 * span, K_chunk, nh, nw)`` (its two row blocks times its
    columns, the last column repeated up to the chunk's widest bin, which changes no max); the
    bins ``(K * nh * nw)`` sorted by their sparse-table level ``j`` (``by_level``, undone by
    ``unsort``), ``above[j]`` the first with level ``j`` or more (these three only where the argmax
    is wanted); ``inverse``: the sorted position of each box (undoes ``order``)."""

    order: Tensor
    batch: Tensor
    chunks: list[tuple[int, int, Tensor]]
    by_level: Tensor
    unsort: Tensor
    above: list[int]
    inverse: Tensor


def _plan(
    batch: Tensor,
    two_rows: Tensor,
    level: Tensor,
    col_start: Tensor,
    col_len: Tensor,
    width: int,
    slice_width: int,
    depth: int,
    chunk: int,
    argmax: bool,
) -> _Plan:
    """The chunks of one level: its boxes sorted by their widest bin and split into :data:`_GROUPS`
    groups that each gather their own widest bin's columns, in chunks of at most ``chunk``
    gathered values. ``two_rows`` ``(K, nh, 2)``: the table rows of each row bin's two blocks
    (image included); ``level`` ``(K, nh)``; ``col_start``, ``col_len`` ``(K, nw)``."""
    k, nh = two_rows.shape[:2]
    nw = col_start.shape[1]
    order = col_len.amax(1).argsort(stable=True)
    two_rows, col_start, col_len = two_rows[order], col_start[order], col_len[order]
    groups = min(_GROUPS, k)
    bounds = [k * g // groups for g in range(groups + 1)]
    last = torch.tensor(bounds[1:], device=col_len.device) - 1
    spans: list[int] = col_len.amax(1)[last].tolist()
    arange = torch.arange(max(spans), device=col_len.device)
    chunks = []
    for g, span in enumerate(spans):
        step = max(1, chunk // (nh * nw * 2 * span * slice_width))
        for lo in range(bounds[g], bounds[g + 1], step):
            hi = min(lo + step, bounds[g + 1])
            cols = col_start[lo:hi, :, None] + torch.minimum(arange[:span], col_len[lo:hi, :, None] - 1)
            entries = two_rows[lo:hi, :, None, :, None] * width + cols[:, None, :, None, :]
            chunks.append(
                (lo, hi, entries.permute(3, 4, 0, 1, 2).reshape(2 * span, hi - lo, nh, nw).contiguous())
            )
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(k, device=order.device)
    if not argmax:
        return _Plan(order, batch[order], chunks, order[:0], order[:0], [], inverse)
    level = level[order][:, :, None].expand(k, nh, nw).reshape(-1)
    by_level = level.argsort(stable=True)
    unsort = torch.empty_like(by_level)
    unsort[by_level] = torch.arange(by_level.numel(), device=by_level.device)
    counts: list[int] = torch.bincount(level, minlength=depth + 1).tolist()
    above = [sum(counts[:j]) for j in range(depth + 1)]
    return _Plan(order, batch[order], chunks, by_level, unsort, above, inverse)


def _descend(
    flat: Tensor, starts: list[int], above: list[int], entry: Tensor, values: Tensor, width: int, nan: bool
) -> Tensor:
    """The table entry of each max's own cell (the table's first block of rows, the map's rows):
    from the entry ``(B, c)`` of the block that holds it, ``j`` steps down the sparse table into
    the half that holds the value (the first half where both do; a NaN half first, as the max
    propagates NaN). ``flat``: the table ``(entries, c)``; ``starts``: the first row of each of its
    blocks; the bins sorted by level ``j``, ``above[j]`` the first of level ``j`` or more (at step
    ``j``, those are all at level ``j``: a suffix, one shift for all); ``nan``: the map has NaN."""
    channels = flat.shape[1]
    index = entry * channels + torch.arange(channels, device=flat.device)  # into flat.view(-1)
    for j in range(len(above) - 1, 0, -1):
        part, value = index[above[j] :], values[above[j] :]
        if part.numel() == 0:
            continue
        part += (starts[j - 1] - starts[j]) * width * channels  # the first half: level j - 1
        first = flat.view(-1).index_select(0, part.view(-1)).view(part.shape)
        second = ((first != value) & (first == first)) if nan else (first < value)
        part += second * ((1 << (j - 1)) * width * channels)
    if channels & (channels - 1) == 0:  # a power of two: a shift (int64 division is slow on CPU)
        return index.bitwise_right_shift_(channels.bit_length() - 1)
    return index.div_(channels, rounding_mode="floor")


def _first_max(found: Tensor, value: Tensor, dims: tuple[int, ...], nan: bool) -> Tensor:
    """The row-major position over ``dims`` (kept, size 1) of the first of ``found`` that holds its
    max ``value`` (``dims`` kept; a NaN where the max is NaN): an equality mask times descending
    weights, whose max is the first match (``max(dim)``'s indices are several times slower on CPU);
    ``nan``: the values may hold NaN."""
    shape = [1] * found.dim()
    for dim in dims:
        shape[dim] = found.shape[dim]
    count = math.prod(shape)
    match = found == value
    if nan:
        match |= found != found
    small = count < 256
    weight = torch.arange(count, 0, -1, dtype=torch.uint8 if small else torch.int32, device=found.device)
    weighted = match.view(torch.uint8) if small else match.to(torch.int32)
    return torch.rsub(_amax(weighted.mul_(weight.view(shape)), dims), count).long()


def _amax(t: Tensor, dims: tuple[int, ...]) -> Tensor:
    """``t.amax(dims, keepdim=True)``, one dim at a time (several at once is many times slower on CPU)."""
    for dim in sorted(dims, reverse=True):
        t = t.amax(dim=dim, keepdim=True)
    return t


def _fill_bins(values: Tensor, ok: Tensor, fill: float) -> None:
    """``values`` ``(K, nh, nw, C)`` (contiguous) set to ``fill`` in place where ``ok`` ``(K, nh, nw)`` is
    false: only those rows written (a bool-mask index_put_ is a masked_fill_ over every value)."""
    empty = (~ok).view(-1).nonzero().squeeze(1)
    values.view(-1, values.shape[-1]).index_fill_(0, empty, fill)


def _max_bins(
    x: Tensor,
    batch: Tensor,
    levels: Sequence[Bins],
    bins: tuple[Tensor, Tensor, Tensor, Tensor],
    argmax: bool,
) -> tuple[dict[Bins, tuple[Tensor, Tensor, Tensor | None]], dict[Bins, Bins]]:
    """Each level's ``(K, nh, nw, C)`` bin maxima (``-inf`` where empty), ``(K, nh, nw)`` non-empty mask
    and, with ``argmax``, for a directly pooled level the ``(K, nh, nw, C)`` flat index
    ``((n * C + c) * H + h) * W + w`` of each max in the map, for a derived level the finer bin that
    holds it (see :func:`_coarse`); and the derived levels (coarse -> finer level).
    ``x``: the map ``(N, C, H, W)``, pooled in slices of channels (each slice's row table holds at
    most :data:`_TABLE` values: a few MiB that the allocator reuses)."""
    n, channels, height, width = x.shape
    hs, he, ws, we = bins
    rows, cols = _offsets(levels, 0), _offsets(levels, 1)
    derived = _derived(levels, bins)
    direct = [i for i, level in enumerate(levels) if level not in derived]
    row_sel = torch.cat([torch.arange(rows[i], rows[i + 1], device=x.device) for i in direct])
    row_ok = he > hs
    length = torch.where(row_ok, he - hs, 1)
    depth = int(length[:, row_sel].max()).bit_length() - 1
    starts = [sum(height - (1 << i) + 1 for i in range(j)) for j in range(depth + 2)]
    table_rows = starts[-1]
    level = torch.zeros_like(length)
    for j in range(1, depth + 1):
        level += length >= (1 << j)
    top = torch.where(row_ok, hs, 0)
    block_rows = torch.stack([top, top + length - (1 << level)], dim=-1)  # (K, P, 2): the blocks' first rows
    two_rows = batch[:, None, None] * table_rows + torch.tensor(starts, device=x.device)[level][..., None]
    two_rows = two_rows + block_rows
    col_ok = we > ws
    col_len = torch.where(col_ok, we - ws, 1)
    col_start = torch.where(col_ok, ws, 0)
    keyed, nan = _keyed(x, argmax)
    search = argmax and not keyed  # the cells found after the max (first candidate, then row descent)
    table_size, chunk = (_TABLE_ARGMAX, _CHUNK_ARGMAX) if search else (_TABLE, _CHUNK)
    slices = -(-channels * n * table_rows * width // table_size)  # ceil: channel slices of equal widths
    slice_width = -(-channels // slices)
    area = height * width
    channel_shift = torch.arange(channels, device=x.device) * area
    plans = {
        levels[i]: _plan(
            batch,
            two_rows[:, rows[i] : rows[i + 1]],
            level[:, rows[i] : rows[i + 1]],
            col_start[:, cols[i] : cols[i + 1]],
            col_len[:, cols[i] : cols[i + 1]],
            width,
            slice_width,
            depth,
            chunk,
            search,
        )
        for i in direct
    }
    k = batch.shape[0]
    # the maxima in each plan's sorted order (written slice by slice, un-sorted once at the end: an
    # index_copy_ into a slice of channels is serial and several times slower)
    pooled = torch.float64 if keyed else x.dtype
    ordered = {lv: x.new_empty(k, lv[0], lv[1], channels, dtype=pooled) for lv in plans}
    cells = (
        {lv: torch.empty(k, lv[0], lv[1], channels, dtype=torch.long, device=x.device) for lv in plans}
        if search
        else {}
    )
    buffer = x.new_empty(n * table_rows * width * slice_width, dtype=pooled)  # one slice's table, reused
    cell = torch.arange(n * height * width, device=x.device).view(n, height, width, 1) if keyed else None
    for c0 in range(0, channels, slice_width):
        c1 = min(c0 + slice_width, channels)
        table = buffer[: n * table_rows * width * (c1 - c0)].view(n, table_rows, width, c1 - c0)
        flat = _row_table(x[:, c0:c1].permute(0, 2, 3, 1), depth, table, cell).view(-1, c1 - c0)
        for lv, plan in plans.items():
            where = []
            for lo, hi, entries in plan.chunks:
                found = flat.index_select(0, entries.view(-1)).view(*entries.shape, c1 - c0)
                if not search:  # (an out= view of the slice makes the reduction many times slower)
                    ordered[lv][lo:hi, :, :, c0:c1].copy_(found.amax(dim=0))
                    continue
                best = found.amax(dim=0)
                ordered[lv][lo:hi, :, :, c0:c1].copy_(best)
                first = _first_max(found, best, (0,), nan)
                where.append(torch.gather(entries[..., None].expand(found.shape), 0, first)[0])
            if not search:
                continue
            entry = torch.cat(where).view(-1, c1 - c0).index_select(0, plan.by_level)
            value = ordered[lv].view(-1, channels)[:, c0:c1].index_select(0, plan.by_level)
            row = _descend(flat, starts, plan.above, entry, value, width, nan)
            row = row.index_select(0, plan.unsort).view(k, lv[0], lv[1], c1 - c0)
            # the table's first block is the map: (n * R + h) * W + w -> ((n * C + c) * H + h) * W + w
            shift = plan.batch[:, None] * ((channels - 1) * area - (table_rows - height) * width)
            row += (shift + channel_shift[c0:c1])[:, None, None]
            cells[lv][:, :, :, c0:c1].index_copy_(0, plan.order, row)
    values = {lv: ordered[lv].index_select(0, plan.inverse) for lv, plan in plans.items()}
    result: dict[Bins, tuple[Tensor, Tensor, Tensor | None]] = {}
    for i in direct:
        lv = levels[i]
        ok = row_ok[:, rows[i] : rows[i + 1], None] & col_ok[:, None, cols[i] : cols[i + 1]]
        if not bool(ok.all()):  # empty bins -inf (for the coarse levels' max): only their rows written
            _fill_bins(values[lv], ok, -math.inf)
        result[lv] = (values[lv], ok, cells[lv] if search else None)
    for coarse in sorted(derived, key=lambda level: -level[0] * level[1]):
        value, ok, found_cells = result[derived[coarse]]
        result[coarse] = _coarse(value, ok, found_cells is not None, coarse, nan)
    if not keyed:
        return result, derived
    for lv, (key, ok, _) in result.items():  # every level's cells in the map: none derived for the backward
        value, where_max = _unkey(key, batch, channels, area, x.dtype)
        result[lv] = (value, ok, where_max)
    return result, {}


def _coarse(
    value: Tensor, ok: Tensor, argmax: bool, level: Bins, nan: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    """A coarse level's ``(K, mh, mw, C)`` maxima and mask from a finer level's ``(K, nh, nw, C)``
    (``-inf`` in its empty bins), whose bins it unites ``rh x rw`` at a time (views, no regrouping
    copy); with ``argmax``, the ``(K, mh * mw, C)`` finer bin ``a * nw + b`` that holds each max (the
    backward adds each coarse bin's gradient to that finer bin's)."""
    k, nh, nw, channels = value.shape
    (mh, mw), rh, rw = level, nh // level[0], nw // level[1]
    fine = value.view(k, mh, rh, mw, rw, channels)
    top = _amax(fine, (2, 4))  # (K, mh, 1, mw, 1, C)
    coarse_ok = ok.view(k, mh, rh, mw, rw).any(dim=4).any(dim=2)
    if not argmax:
        return top.view(k, mh, mw, channels), coarse_ok, None
    index = _first_max(fine, top, (2, 4), nan).view(k, mh * mw, channels)  # a * rw + b: fine bin (a, b)
    if rw != nw:
        index += index.div(rw, rounding_mode="floor") * (nw - rw)  # a * nw + b
    i = torch.arange(mh, device=value.device)[:, None] * (rh * nw)
    j = torch.arange(mw, device=value.device)[None, :] * rw
    index += (i + j).view(-1, 1)  # (i rh + a) nw + j rw + b (a 2-d broadcast: many times faster than 3-d)
    return top.view(k, mh, mw, channels), coarse_ok, index


class _RoIMax(torch.autograd.Function):
    """The max path with its backward: each bin's gradient to the cell of its max (found in the forward);
    a derived level's gradient first added to the finer bins that hold its maxima, so that one scatter
    into the map serves them all."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, batch: Tensor, levels: list[Bins], hs: Tensor, he: Tensor, ws: Tensor, we: Tensor
    ) -> tuple[Tensor, ...]:
        pooled, derived = _max_bins(x, batch, levels, (hs, he, ws, we), argmax=True)
        ctx.save_for_backward(*[pooled[level][2] for level in levels])
        ctx.shape, ctx.levels, ctx.derived = x.shape, levels, derived
        ctx.mark_non_differentiable(*[pooled[level][1] for level in levels])
        return tuple(pooled[level][0] for level in levels) + tuple(pooled[level][1] for level in levels)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        levels: list[Bins] = ctx.levels
        saved = dict(zip(levels, ctx.saved_tensors))
        grad = dict(zip(levels, grads))
        owned: set[Bins] = set()  # levels whose gradient is a tensor of our own (added into)
        for coarse in sorted(ctx.derived, key=lambda level: level[0] * level[1]):  # coarsest first
            g = grad.pop(coarse)
            if g is None:
                continue
            fine = ctx.derived[coarse]
            k, channels = g.shape[0], g.shape[3]
            if fine not in owned:
                base, shape = grad[fine], (k, fine[0], fine[1], channels)
                grad[fine] = g.new_zeros(shape) if base is None else g.new_empty(shape).copy_(base)
                owned.add(fine)
            target = grad[fine]
            assert target is not None  # set just above
            target.view(k, -1, channels).scatter_add_(1, saved[coarse], g.reshape(k, -1, channels))
        grad_x: Tensor | None = None
        for level, g in grad.items():
            if g is None:
                continue
            if grad_x is None:  # straight into the (N, C, H, W) gradient: no layout change after
                grad_x = g.new_zeros(ctx.shape)
            grad_x.view(-1).scatter_add_(0, saved[level].view(-1), g.reshape(-1))
        return (grad_x, None, None, None, None, None, None)


# ------------------------------------------------------------------ the traced max path: one custom operator


def _pairs(flat: Sequence[int]) -> list[Bins]:
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


def _max_op_impl(
    features: Tensor, rois: Tensor, levels: Sequence[int], spatial_scale: float, argmax: bool
) -> list[Tensor]:
    """``torchpool::roi_spp_max`` on real values (a compiled graph, an exported program or a trace
    calling it): the eager forward, the boxes checked as in eager mode. Each level's ``(K, C, nh, nw)``
    maxima (0 in empty bins), then with ``argmax`` each max's flat cell ``((n * C + c) * H + h) * W + w``
    in the map (``features.numel()`` for an empty bin: the backward drops it)."""
    bins = _pairs(levels)
    n, channels, height, width = features.shape
    count = rois.shape[0]
    _check_values(rois, n, spatial_scale)
    if count == 0 or channels == 0:
        empty = [features.new_zeros(count, channels, bh, bw) for bh, bw in bins]
        return empty + ([features.new_zeros(t.shape, dtype=torch.long) for t in empty] if argmax else [])
    if _roi_native.available(features, rois):  # CPU float32: the C kernel
        maxima, where_max = _roi_native.max_forward(features, rois, bins, spatial_scale, argmax)
        return maxima + where_max
    unique = list(dict.fromkeys(bins))
    dtype = features.dtype if features.dtype in (torch.float32, torch.float64) else torch.float32
    geometry = _bins(rois, unique, height, width, spatial_scale, dtype)
    found, derived = _max_bins(features, rois[:, 0].long(), unique, geometry, argmax)
    cells: dict[Bins, Tensor] = {level: cell for level, (_, _, cell) in found.items() if cell is not None}
    for coarse in sorted(derived, key=lambda level: -level[0] * level[1]):  # finer first: 2 from 4, then 1
        if argmax:  # the finer bin that holds each max -> that bin's cell
            fine = cells[derived[coarse]]
            picked = fine.view(count, -1, channels).gather(1, cells[coarse])
            cells[coarse] = picked.view(count, coarse[0], coarse[1], channels)
    values: list[Tensor] = []
    where: list[Tensor] = []
    for level in bins:
        value, ok, _ = found[level]
        values.append(value.masked_fill(~ok[..., None], 0).permute(0, 3, 1, 2).contiguous())
        if argmax:
            cell = cells[level].masked_fill(~ok[..., None], features.numel())
            where.append(cell.permute(0, 3, 1, 2).contiguous())
    return values + where


def _max_op_fake(
    features: Tensor, rois: Tensor, levels: Sequence[int], spatial_scale: float, argmax: bool
) -> list[Tensor]:
    count, channels = rois.shape[0], features.shape[1]
    values = [features.new_empty(count, channels, bh, bw) for bh, bw in _pairs(levels)]
    return values + ([features.new_empty(t.shape, dtype=torch.long) for t in values] if argmax else [])


def _max_op_setup(ctx: Any, inputs: tuple[Any, ...], output: list[Tensor]) -> None:
    features, rois, levels, _, argmax = inputs
    ctx.shape = features.shape
    ctx.native = _roi_native.available(features, rois)
    ctx.save_for_backward(*(output[len(levels) // 2 :] if argmax else []))


def _max_op_backward(ctx: Any, grads: list[Tensor | None]) -> tuple[Tensor | None, ...]:
    """Each bin's gradient to its max's cell: the C kernel's operator (CPU float32), or where the
    gradient must be differentiable again (and off the kernel) plain scatter_add (traceable)."""
    cells = ctx.saved_tensors
    if ctx.native and not torch.is_grad_enabled() and cells:
        present = [(g, cell) for g, cell in zip(grads, cells) if g is not None]
        if not present:
            return (None,) * 5
        native = _roi_native.max_backward([g for g, _ in present], [c for _, c in present], list(ctx.shape))
        return (native, None, None, None, None)
    grad: Tensor | None = None
    for g, cell in zip(grads, cells):
        if g is None:
            continue
        if grad is None:  # one spare cell at the end, for the empty bins
            grad = g.new_zeros(math.prod(ctx.shape) + 1)
        grad = grad.scatter_add(0, cell.reshape(-1), g.reshape(-1))
    if grad is None:
        return (None,) * 5
    return (grad[:-1].view(ctx.shape), None, None, None, None)


def _define_max_op() -> Any:
    """``torchpool::roi_spp_max``: what ``torch.compile``, ``torch.export`` and the JIT tracer see of the
    max mode: one opaque operator whose output shapes follow from the input shapes (the forward reads
    the boxes: its bins, the levels derived from finer ones and its chunks depend on them)."""
    op = torch.library.custom_op(
        "torchpool::roi_spp_max",
        _max_op_impl,
        mutates_args=(),
        schema="(Tensor features, Tensor rois, int[] levels, float spatial_scale, bool argmax) -> Tensor[]",
    )
    op.register_fake(_max_op_fake)
    op.register_autograd(_max_op_backward, setup_context=_max_op_setup)
    return op


_MAX_OP = _define_max_op()


def _checked_rois_impl(rois: Tensor, batch: int, spatial_scale: float) -> Tensor:
    _check_values(rois, batch, spatial_scale)
    return rois.clone()


def _define_check_op() -> Any:
    """``torchpool::roi_spp_checked_rois``: the boxes, checked on real values as in eager mode (a copy,
    which the avg mode's traced ops then read, so that no graph drops the check)."""
    op = torch.library.custom_op(
        "torchpool::roi_spp_checked_rois",
        _checked_rois_impl,
        mutates_args=(),
        schema="(Tensor rois, int batch, float spatial_scale) -> Tensor",
    )
    op.register_fake(lambda rois, batch, spatial_scale: torch.empty_like(rois))
    return op


_CHECK_OP = _define_check_op()


def _avg_bins(
    x: Tensor, batch: Tensor, levels: Sequence[Bins], bins: tuple[Tensor, Tensor, Tensor, Tensor]
) -> dict[Bins, tuple[Tensor, Tensor]]:
    """Each level's ``(K, nh, nw, C)`` bin means (from a summed-area table) and non-empty mask."""
    _, height, width, channels = x.shape
    acc = torch.float32 if x.device.type == "mps" else torch.float64
    table = F.pad(x.to(acc).cumsum(1).cumsum(2), (0, 0, 1, 0, 1, 0)).view(-1, channels)
    hs, he, ws, we = bins
    he, we = torch.maximum(he, hs), torch.maximum(we, ws)  # empty bins: zero area
    rows, cols = _offsets(levels, 0), _offsets(levels, 1)
    k = batch.shape[0]
    sign = torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=acc, device=x.device)
    result: dict[Bins, tuple[Tensor, Tensor]] = {}
    for i, (nh, nw) in enumerate(levels):
        h0, h1 = hs[:, rows[i] : rows[i + 1], None], he[:, rows[i] : rows[i + 1], None]
        w0, w1 = ws[:, None, cols[i] : cols[i + 1]], we[:, None, cols[i] : cols[i + 1]]
        base = batch[:, None, None] * (height + 1)
        corners = torch.stack(
            [(base + h1) * (width + 1) + w1, (base + h0) * (width + 1) + w1,
             (base + h1) * (width + 1) + w0, (base + h0) * (width + 1) + w0],
            dim=-1,
        )  # fmt: skip
        cells = table.index_select(0, corners.reshape(-1)).view(k, nh, nw, 4, channels)
        sums = (cells * sign[:, None]).sum(3)
        area = (h1 - h0) * (w1 - w0)
        ok = area > 0
        result[(nh, nw)] = ((sums / area.clamp_min(1)[..., None]).to(x.dtype), ok)
    return result


def _traced(x: Tensor, rois: Tensor, bins: list[Bins], scale: float, mode: str) -> list[Tensor]:
    """Each level's ``(K, C, nh, nw)`` under ``torch.compile``, ``torch.export``, the JIT tracer or fake
    tensors, where no value of the boxes may be read in Python: the max mode is one operator
    (:data:`_MAX_OP`, the eager forward inside), the avg mode plain differentiable ops whose shapes
    follow from the input shapes (the eager ones, empty bins zeroed by a mask)."""
    if mode == "max":
        flat = [size for level in bins for size in level]
        argmax = torch.is_grad_enabled() and x.requires_grad
        out: list[Tensor] = _MAX_OP(x, rois, flat, scale, argmax)
        return out[: len(bins)]
    count, channels, height, width = rois.shape[0], *x.shape[1:]
    if channels == 0:
        return [x.new_zeros(count, 0, bh, bw) for bh, bw in bins]
    rois = _CHECK_OP(rois, x.shape[0], scale)
    unique = list(dict.fromkeys(bins))
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    geometry = _bins(rois, unique, height, width, scale, dtype)
    pooled = _avg_bins(x.permute(0, 2, 3, 1), rois[:, 0].long(), unique, geometry)
    return [pooled[lv][0].masked_fill(~pooled[lv][1][..., None], 0).permute(0, 3, 1, 2) for lv in bins]


def _roi_spp(
    features: Tensor, boxes: Boxes, levels: Sequence[Level], spatial_scale: float, mode: str, flatten: bool
) -> Tensor | list[Tensor]:
    bins = [(level[0], level[1]) for level in _check_levels(levels, 2)]
    scale = check_float_range(spatial_scale, "spatial_scale", 0.0, math.inf, low_open=True, high_open=True)
    check_choice(mode, "mode", _MODES)
    check_bool(flatten, "flatten")
    x = _check_features(features)
    rois = _rois(boxes, x)
    n, channels = x.shape[:2]
    count = rois.shape[0]
    meta = x.device.type == "meta" or rois.device.type == "meta"
    traced = not meta and (is_traced() or isinstance(x, FakeTensor) or isinstance(rois, FakeTensor))
    if not meta and not traced:
        _check_values(rois, n, scale)
    if traced:  # the boxes' values are not read here (the max mode's operator checks them)
        outs = _traced(x, rois, bins, scale, mode)
    elif mode == "max" and count and channels and not meta and _roi_native.available(x, rois):
        if not (torch.is_grad_enabled() and x.requires_grad):  # the C kernel, straight into the result
            flat = x.new_empty(count, channels * sum(bh * bw for bh, bw in bins)) if flatten else None
            outs = _roi_native.max_forward(x, rois, bins, scale, False, flat)[0]
            return outs if flat is None else flat
        # the C kernel inside the operator (its gradient: each bin's to its max's cell)
        outs = _MAX_OP(x, rois, [size for level in bins for size in level], scale, True)[: len(bins)]
    elif count == 0 or channels == 0 or meta:
        # no regions / no channels / no values (meta): the empty result, or meta's of the right shape
        if meta:
            outs = [x.new_empty(count, channels, bh, bw) for bh, bw in bins]
        else:
            base = x[: min(count, 1), :, :1, :1]
            outs = [base.expand(count, channels, bh, bw) for bh, bw in bins]
    else:
        unique = list(dict.fromkeys(bins))
        dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        geometry = _bins(rois, unique, x.shape[2], x.shape[3], scale, dtype)
        batch = rois[:, 0].long()
        pooled: dict[Bins, tuple[Tensor, Tensor]]
        if mode == "avg":
            pooled = _avg_bins(x.permute(0, 2, 3, 1), batch, unique, geometry)
        elif torch.is_grad_enabled() and x.requires_grad:
            both = _RoIMax.apply(x, batch, unique, *geometry)  # type: ignore[no-untyped-call]
            pooled = {level: (both[i], both[len(unique) + i]) for i, level in enumerate(unique)}
        else:
            found, _ = _max_bins(x, batch, unique, geometry, argmax=False)
            pooled = {level: (values, ok) for level, (values, ok, _) in found.items()}
        outs = []
        for level in bins:
            values, ok = pooled[level]
            if bool(ok.all()):
                pass
            elif values.requires_grad:
                values = values.masked_fill(~ok[..., None], 0)
            else:  # our own tensor: only the empty bins' rows written
                _fill_bins(values, ok, 0.0)
            outs.append(values.permute(0, 3, 1, 2))
    if not flatten:
        return [out.contiguous() for out in outs]
    if any(out.requires_grad for out in outs):
        return torch.cat([out.flatten(1) for out in outs], dim=1)
    flat = x.new_empty(count, channels * sum(bh * bw for bh, bw in bins))
    start = 0
    for out in outs:  # each level straight into its columns (no flattened copy to concatenate)
        size = math.prod(out.shape[1:])
        flat[:, start : start + size].view(out.shape).copy_(out)
        start += size
    return flat


@overload
def roi_spatial_pyramid_pool(
    features: Tensor,
    boxes: Boxes,
    levels: Sequence[Level] = ...,
    *,
    spatial_scale: float = ...,
    mode: str = ...,
    flatten: Literal[True] = ...,
) -> Tensor: ...
@overload
def roi_spatial_pyramid_pool(
    features: Tensor,
    boxes: Boxes,
    levels: Sequence[Level] = ...,
    *,
    spatial_scale: float = ...,
    mode: str = ...,
    flatten: Literal[False],
) -> list[Tensor]: ...
@overload
def roi_spatial_pyramid_pool(
    features: Tensor,
    boxes: Boxes,
    levels: Sequence[Level] = ...,
    *,
    spatial_scale: float = ...,
    mode: str = ...,
    flatten: bool = ...,
) -> Tensor | list[Tensor]: ...
def roi_spatial_pyramid_pool(
    features: Tensor,
    boxes: Boxes,
    levels: Sequence[Level] = (1, 2, 4),
    *,
    spatial_scale: float = 1.0,
    mode: str = "max",
    flatten: bool = True,
) -> Tensor | list[Tensor]:
    """Spatial pyramid pooling of regions (SPPNet's detection mode): ``C * sum(n^2)`` features per box.

    Each box is pooled into ``n x n`` bins for every level ``n`` with torchvision's ``roi_pool``
    bins (corners scaled by ``spatial_scale`` and rounded half away from zero, bin ``i`` of ``n``
    spanning ``[floor(i * b), ceil((i + 1) * b))`` with ``b = (y2' - y1' + 1) / n`` from the
    rounded corner, clipped to the map; an empty bin gives 0), so one level ``(n,)`` with
    ``mode="max"`` equals ``torchvision.ops.roi_pool(features, boxes, (n, n), spatial_scale)``
    exactly. Boxes partly or wholly outside the map, and regions smaller than a level, work.

    Args:
        features: the feature map ``(N, C, H, W)``.
        boxes: as torchvision takes them: a ``Tensor[K, 5]`` of ``(batch_index, x1, y1, x2, y2)``
            or a list of ``Tensor[L_i, 4]`` of ``(x1, y1, x2, y2)``, one per image (at most
            ``N``); floating point, on the features' device. Batch indices must be integers in
            ``[0, N)``.
        levels: bins per side for each level: ints, or ``(bins_h, bins_w)`` tuples.
        spatial_scale: maps box coordinates to the map's (``1/16`` for a stride-16 backbone).
        mode: ``"max"`` or ``"avg"`` (the mean over the same bins).
        flatten: return one vector per box, ``[level 0 (C * n0^2, channel-major), level 1, ...]``
            as :func:`~torchpool.ops.pyramid.spatial_pyramid_pool2d` orders it; otherwise a
            list with one ``(K, C, n, n)`` tensor per level.

    Returns:
        The pooled regions.

    Raises:
        ValueError: for boxes of the wrong shape, non-finite boxes, batch indices that are not
            integers in ``[0, N)``, boxes on another device, or bad ``levels`` / ``spatial_scale``.
        TypeError: for non-floating features or boxes, or arguments of the wrong type.

    Shape:
        - Input: ``features`` ``(N, C, H, W)``; ``boxes`` ``(K, 5)`` or ``[(L_i, 4), ...]``
          with ``K = sum L_i``.
        - Output: ``(K, C * B)`` with ``B = sum(n_h * n_w)``; with ``flatten=False``, a list of
          ``(K, C, n_h, n_w)``. No boxes give ``(0, C * B)``.

    Example:
        >>> features = torch.randn(2, 8, 38, 50)  # a stride-16 map of two 608 x 800 images
        >>> boxes = torch.tensor([[0, 0.0, 0.0, 320.0, 240.0], [1, 400.0, 100.0, 799.0, 607.0]])
        >>> roi_spatial_pyramid_pool(features, boxes, (1, 2, 4), spatial_scale=1 / 16).shape
        torch.Size([2, 168])
        >>> [t.shape[2:] for t in roi_spatial_pyramid_pool(features, boxes, (1, 2), flatten=False)]
        [torch.Size([1, 1]), torch.Size([2, 2])]
    """
    return _roi_spp(features, boxes, levels, spatial_scale, mode, flatten)


class RoISpatialPyramidPool(nn.Module):
    """SPP on regions (SPPNet's detection mode): the Module form of :func:`roi_spatial_pyramid_pool`.

    Args:
        levels: bins per side for each level: ints, or ``(bins_h, bins_w)`` tuples.
        spatial_scale: maps box coordinates to the map's (``1/16`` for a stride-16 backbone).
        mode: ``"max"`` or ``"avg"``.
        flatten: return ``(K, C * B)`` with ``B = sum(n_h * n_w)``; otherwise a list of
            ``(K, C, n_h, n_w)``, one per level.

    Shape:
        - Input: ``features`` ``(N, C, H, W)`` and ``boxes`` ``(K, 5)`` of
          ``(batch_index, x1, y1, x2, y2)`` or a list of ``(L_i, 4)``, one per image.
        - Output: ``(K, C * B)``; with ``flatten=False``, a list of ``(K, C, n_h, n_w)``.

    Example:
        >>> pool = RoISpatialPyramidPool((1, 2, 4), spatial_scale=0.5)
        >>> boxes = [torch.tensor([[0.0, 0.0, 20.0, 10.0]]), torch.tensor([[4.0, 4.0, 8.0, 8.0]])]
        >>> pool(torch.randn(2, 16, 12, 12), boxes).shape
        torch.Size([2, 336])
        >>> pool.output_features(16)
        336
    """

    def __init__(
        self,
        levels: Sequence[Level] = (1, 2, 4),
        spatial_scale: float = 1.0,
        mode: str = "max",
        flatten: bool = True,
    ) -> None:
        super().__init__()
        _check_levels(levels, 2)
        self.levels = tuple(levels)
        self.spatial_scale = check_float_range(
            spatial_scale, "spatial_scale", 0.0, math.inf, low_open=True, high_open=True
        )
        self.mode = check_choice(mode, "mode", _MODES)
        self.flatten = check_bool(flatten, "flatten")

    def output_features(self, channels: int) -> int:
        """Length of the flattened output for ``channels`` input channels."""
        return channels * sum(h * w for h, w in _check_levels(self.levels, 2))

    def extra_repr(self) -> str:
        return (
            f"levels={self.levels}, spatial_scale={self.spatial_scale}, mode={self.mode!r}, "
            f"flatten={self.flatten}"
        )

    def forward(self, features: Tensor, boxes: Boxes) -> Tensor | list[Tensor]:
        return _roi_spp(features, boxes, self.levels, self.spatial_scale, self.mode, self.flatten)
