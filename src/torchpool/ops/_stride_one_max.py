"""Stride-1 max pooling with ``-inf`` "same" padding, for the YOLO SPP blocks (:mod:`.yolo`).

``_stride_one_max(x, slots)`` is ``cat([mp_k(x) for k in slots], channels)`` with
``mp_k = F.max_pool2d(x, k, 1, k // 2)`` and ``mp_1`` the identity, bit-identical to PyTorch.

Values path (no gradient needed). A ``k x k`` pool is computed separably (``k x 1`` then
``1 x k``, exact for max) and each 1-d running max by doubling: ``m2 = max(m1, m1 >> 1)``,
``m4 = max(m2, m2 >> 2)``, ... and ``mk = max(mp, mp >> (k - p))`` with ``p`` the largest power
of two ``<= k``: a few ``torch.maximum`` calls on shifted views, shared between all the
kernels of the block. Channels-last inputs are processed as ``(N, H, W, C)`` so every shifted
view stays dense. Large inputs run in blocks of samples and channels.

Gradient (and traced) path. PyTorch's vectorised channels-last ``max_pool2d``, cascaded like
SPPF (``mp9 = mp5 o mp5``); NCHW inputs are converted to channels-last and back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_input, is_traced, restore_batch


def _pad_neg_inf(x: Tensor, dim: int, r: int) -> Tensor:
    """Pads ``dim`` by ``r`` on both sides with ``-inf``."""
    if r == 0:
        return x
    shape = list(x.shape)
    shape[dim] += 2 * r
    out = x.new_full(shape, float("-inf"))
    out.narrow(dim, r, x.shape[dim]).copy_(x)
    return out


def _running_max(
    xp: Tensor,
    dim: int,
    length: int,
    pad: int,
    kernels: Sequence[int],
    outs: Sequence[Tensor | None] | None = None,
) -> list[Tensor]:
    """Running maxima along ``dim`` of ``xp`` (padded by ``pad`` on both sides) for odd ``kernels``.

    For each ``k`` returns ``values`` with ``values[i] = max xp[i + pad - k//2 : i + pad + k//2 + 1]``
    (``length`` positions), written into ``outs[i]`` when given.
    """
    size = xp.shape[dim]
    levels: dict[int, Tensor] = {1: xp}
    w = 1
    while 2 * w <= max(kernels):
        m = levels[w]
        n = size - 2 * w + 1
        levels[2 * w] = torch.maximum(m.narrow(dim, 0, n), m.narrow(dim, w, n))
        w *= 2
    results: list[Tensor] = []
    for i, k in enumerate(kernels):
        out = outs[i] if outs is not None else None
        p = 1
        while 2 * p <= k:
            p *= 2
        m = levels[p]
        start = pad - k // 2
        a = m.narrow(dim, start, length)
        if k == p:  # only k == 1 for odd kernels
            results.append(a if out is None else out.copy_(a))
            continue
        b = m.narrow(dim, start + k - p, length)
        results.append(torch.maximum(a, b) if out is None else torch.maximum(a, b, out=out))
    return results


def _row_max(colmax: Tensor, k: int, wdim: int, channels_last: bool, out: Tensor | None) -> Tensor:
    """The ``1 x k`` running max along ``wdim`` (into ``out`` if given).

    For NCHW the rows are short, so the doubling steps run on each padded plane flattened to
    one long row (``(H, W + 2r)`` -> ``H * (W + 2r)``): a window that would cross a row end is
    never read, because the last window of a row ends on that row's padding.
    """
    r = k // 2
    width = colmax.shape[wdim]
    padded = _pad_neg_inf(colmax, wdim, r)
    if channels_last:
        [value] = _running_max(padded, wdim, width, r, (k,), None if out is None else [out])
        return value
    n, c, height, row = padded.shape
    m = padded.reshape(n, c, height * row)
    w = 1
    while 2 * w <= k:
        size = m.shape[2] - w
        m = torch.maximum(m.narrow(2, 0, size), m.narrow(2, w, size))
        w *= 2
    shape, strides = (n, c, height, width), (m.stride(0), m.stride(1), row, 1)
    a = m.as_strided(shape, strides, m.storage_offset())
    b = m.as_strided(shape, strides, m.storage_offset() + k - w)
    return torch.maximum(a, b) if out is None else torch.maximum(a, b, out=out)


_BLOCK_ELEMENTS = 2**21  # input elements per block: bounds the temporaries of large inputs


def _multi_max_pool2d(x: Tensor, slots: tuple[int, ...]) -> Tensor:
    """``cat([mp_k(x) for k in slots], channels)`` with ``mp_1`` the identity; ``x`` is ``(N, C, H, W)``.

    Values only (no autograd). Large inputs run in blocks of samples and channels, which bounds
    the temporaries (smaller, cache-sized blocks were measured slower with 2 threads).
    """
    channels_last = (
        x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    )
    if channels_last:
        view = x.permute(0, 2, 3, 1)  # dense (N, H, W, C)
        cdim = 3
    else:
        view = x.contiguous()
        cdim = 1
    batch, c = view.shape[0], view.shape[cdim]
    out_shape = list(view.shape)
    out_shape[cdim] = c * len(slots)
    out_view = view.new_empty(out_shape)
    for s, k in enumerate(slots):
        if k == 1:
            out_view.narrow(cdim, s * c, c).copy_(view)
    kernels = sorted({k for k in slots if k > 1})
    if kernels:
        plane = view.shape[1] * view.shape[2] if channels_last else view.shape[2] * view.shape[3]
        channels = max(1, min(c, _BLOCK_ELEMENTS // max(plane, 1)))
        samples = max(1, min(batch, _BLOCK_ELEMENTS // max(plane * c, 1))) if channels == c else 1
        for n0 in range(0, batch, samples):
            nb = min(samples, batch - n0)
            for c0 in range(0, c, channels):
                cb = min(channels, c - c0)
                block = view.narrow(0, n0, nb).narrow(cdim, c0, cb)
                targets = [out_view.narrow(0, n0, nb).narrow(cdim, s * c + c0, cb) for s in range(len(slots))]
                _pool_block(block, slots, kernels, channels_last, targets)
    return out_view.permute(0, 3, 1, 2) if channels_last else out_view


def _pool_block(
    view: Tensor, slots: tuple[int, ...], kernels: list[int], channels_last: bool, targets: list[Tensor]
) -> None:
    """Pools one block (``(N, C, H, W)``, or ``(N, H, W, C)`` if ``channels_last``) into ``targets``:
    columns first (shared by all kernels), then rows."""
    hdim, wdim = (1, 2) if channels_last else (2, 3)
    height = view.shape[hdim]
    pad_h = max(kernels) // 2
    columns = _running_max(_pad_neg_inf(view, hdim, pad_h), hdim, height, pad_h, kernels)
    for s, k in enumerate(slots):
        if k > 1:
            _row_max(columns[kernels.index(k)], k, wdim, channels_last, targets[s])


def _native_cascade(x: Tensor, slots: tuple[int, ...]) -> Tensor:
    """The block through PyTorch's channels-last ``max_pool2d``, cascaded: ``mp_k = mp_(k - k' + 1) o mp_k'``
    for the previous kernel ``k'``. Used when a gradient is needed (autograd gives max-pool routing)."""
    pooled: dict[int, Tensor] = {1: x}
    previous = 1
    for k in sorted({k for k in slots if k > 1}):
        d = k - previous + 1
        pooled[k] = F.max_pool2d(pooled[previous], d, 1, d // 2)
        previous = k
    return torch.cat([pooled[k] for k in slots], dim=1)


def _stride_one_max(x: Tensor, slots: tuple[int, ...]) -> Tensor:
    x, unbatched = check_input(x, 2)
    if any(size == 0 for size in x.shape[2:]):
        raise ValueError(f"input must have non-zero spatial sizes, got shape {tuple(x.shape)}")
    if x.shape[1] == 0:
        # C = 0: the empty result (PyTorch's max_pool2d refuses an empty channel dimension)
        y = x.repeat(1, len(slots), 1, 1)
    elif is_traced() or (torch.is_grad_enabled() and x.requires_grad):
        # the autograd path, and the traceable one: torch.compile (fullgraph), torch.export and
        # ONNX export run PyTorch's max_pool2d cascade (the doubling path's as_strided views and
        # data-sized blocks break dynamo graphs); the values are the same either way
        channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        y = _native_cascade(x.contiguous(memory_format=torch.channels_last), slots)
        y = y if channels_last else y.contiguous()
    else:
        y = _multi_max_pool2d(x, slots)
    return restore_batch(y, unbatched)
