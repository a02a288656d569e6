"""SoftPool over non-overlapping windows (``kernel_size == stride``, no padding, every size a multiple
of the window): the window sums as sums of contiguous slices of a reshaped view.

With ``x`` viewed as ``(planes, o_0, k_0, ..., o_{n-1} k_{n-1})`` each window axis but the last is
summed by adding its ``k`` slices (contiguous rows: vectorised), the sums of ``e = exp(a)`` and
``e * a`` at once (one stacked buffer), and the last axis by adding its ``k`` stride-``k`` slices,
once, on data already ``k_0 ... k_{n-2}`` times smaller. The gradient
``d y / d a_i = e_i (a_i q + r)`` (``q = g / den``, ``r = q (1 - y)`` per window) spreads ``q`` and
``r`` along the last axis first (for ``k = 2`` as the real and imaginary parts of a complex tensor:
one vectorised op), then broadcasts them over the other axes' cells (one ``addcmul`` and one
multiplication by ``e``, kept by the forward pass).

**Stabiliser.** ``e = exp2(a log2(e))`` is first computed unshifted, chunk by chunk; a chunk where
some window's ``sum(e)`` leaves ``[exp(-limit), exp(limit)]`` (a window far below 0, a value above
``limit``, a NaN or an infinity) is computed again with its planes' max subtracted (as the
general path). The exponent's rounding is that of ``a log2(e)``: relative to ``|a|``, as the input's
own. The caller checks ``den`` for underflow as on the general path.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import Tensor

from ._soft_range import LOG2E, unsafe_planes

__all__ = ["fits", "soft_tiles"]

#: elements of the input per chunk and thread (the chunk's temporaries, ~4x its size, mostly in
#: L2 / L3; measured on one thread: 2**19 beats 2**17 and 2**18, smaller chunks pay more per-op cost).
_CHUNK = 1 << 19


def fits(size: tuple[int, ...], k: tuple[int, ...], s: tuple[int, ...], p: tuple[int, ...]) -> bool:
    """Whether the windows tile the input exactly: ``k == s``, no padding, sizes multiples of ``k``,
    at least one window larger than one cell.

    Example:
        >>> fits((56, 56), (2, 2), (2, 2), (0, 0)), fits((7, 8), (2, 2), (2, 2), (0, 0))
        (True, False)
    """
    return k == s and not any(p) and all(n % kk == 0 and n > 0 for n, kk in zip(size, k)) and math.prod(k) > 1


def soft_tiles(x: Tensor, k: tuple[int, ...], keep: bool) -> tuple[Tensor, Tensor, bool]:
    """``(y, den, clean)`` of SoftPool over the windows ``k`` tiling the last ``len(k)`` dims of
    ``x`` (:func:`fits`); ``den`` (no gradient) is each window's ``sum(e)`` for the caller's
    underflow check, ``clean``: every plane passed unshifted (``den`` in ``[exp(-limit),
    exp(limit)]``: no check needed). ``keep``: keep ``e`` for the backward pass (``False``: no
    backward pass possible)."""
    report: list[bool] = []
    y, den = _SoftTiles.apply(x, k, keep, report)  # type: ignore[no-untyped-call]
    return y, den, report[0]


def _plane_chunks(planes: int, plane_size: int) -> list[tuple[int, int]]:
    """``(first, end)`` plane ranges of even sizes, about ``_CHUNK`` elements per thread each."""
    step = max(1, _CHUNK * torch.get_num_threads() // max(1, plane_size))
    count = max(1, -(-planes // step))
    bounds = [planes * i // count for i in range(count + 1)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def _blocked(t: Tensor, out: tuple[int, ...], k: tuple[int, ...]) -> Tensor:
    """``t`` of shape ``(..., n_0, ..., n_last)`` viewed as ``(..., o_0, k_0, ..., o_{last-1},
    k_{last-1}, n_last)`` (the last axis left whole)."""
    lead = t.shape[: t.dim() - len(k)]
    shape = [*lead]
    for o, kk in zip(out[:-1], k[:-1]):
        shape += [o, kk]
    return t.view(*shape, t.shape[-1])


def _window_sums(pair: Tensor, k: tuple[int, ...], out: tuple[int, ...], dest: Tensor) -> None:
    """``dest`` ``(m, n, *out)`` = the window sums of ``pair`` ``(m, n, *size)``: each axis but the
    last by adding its ``k`` contiguous slices, the last by adding its ``k`` strided slices."""
    cur = _blocked(pair, out, k)
    for axis in range(len(k) - 1):
        dim = 3 + axis  # this axis' cells (the cell dims of the earlier axes are summed away)
        if k[axis] == 1:
            cur = cur.select(dim, 0)
            continue
        shape = list(cur.shape)
        del shape[dim]
        total = cur.new_empty(shape)
        torch.add(cur.select(dim, 0), cur.select(dim, 1), out=total)
        for i in range(2, k[axis]):
            total.add_(cur.select(dim, i))
        cur = total
    cells = cur.view(*cur.shape[:-1], out[-1], k[-1])
    if k[-1] == 1:
        dest.copy_(cells.select(-1, 0))
        return
    torch.add(cells.select(-1, 0), cells.select(-1, 1), out=dest)
    for i in range(2, k[-1]):
        dest.add_(cells.select(-1, i))


def _weights(xc: Tensor, shift: Tensor | None, out: Tensor) -> Tensor:
    """``out = exp2(xc log2(e))`` or, given ``shift``, ``exp2((xc - shift) log2(e))`` (one rounding
    per op: the same bits in vectorised and scalar loops)."""
    if shift is None:
        torch.mul(xc, LOG2E, out=out)
    else:
        torch.sub(xc, shift, out=out).mul_(LOG2E)
    return out.exp2_()


def _forward_chunk(
    xc: Tensor,
    e: Tensor,
    ev: Tensor,
    shift: Tensor | None,
    geometry: tuple[tuple[int, ...], tuple[int, ...]],
    dest: Tensor,
) -> None:
    """``dest`` ``(2, n, *out)`` = the chunk's window sums of ``e`` and ``e * x``; ``e`` and ``ev``
    are buffers of ``xc``'s shape, ``ev = e[1]`` when ``e`` is a stacked ``(2, n, ...)`` buffer
    (then both are summed at once)."""
    k, out = geometry
    if e.dim() == xc.dim() + 1:  # stacked
        _weights(xc, shift, e[0])
        torch.mul(e[0], xc, out=e[1])
        _window_sums(e, k, out, dest)
    else:
        _weights(xc, shift, e)
        torch.mul(e, xc, out=ev)
        _window_sums(e.unsqueeze(0), k, out, dest[:1])
        _window_sums(ev.unsqueeze(0), k, out, dest[1:])


def _shifted_planes(
    xf: Tensor,
    index: Tensor,
    state: tuple[Tensor, Tensor, Tensor | None],
    geometry: tuple[tuple[int, ...], tuple[int, ...]],
) -> None:
    """The planes ``index`` computed again with their max subtracted, chunk by chunk: ``state`` =
    ``(y, sums, kept e or None)`` updated for those planes only (a plane's result does not depend
    on the other planes)."""
    y, sums, saved = state
    size = xf.shape[1:]
    for a, b in _plane_chunks(index.numel(), math.prod(size)):
        part = index[a:b]
        xb = xf.index_select(0, part)
        shift_b = torch.amax(xb, dim=tuple(range(1, xb.dim())), keepdim=True)
        e = xb.new_empty((2, *xb.shape))
        dest = sums.new_empty((2, b - a, *sums.shape[2:]))
        _forward_chunk(xb, e, e[1], shift_b, geometry, dest)
        sums.index_copy_(1, part, dest)
        y.index_copy_(0, part, dest[1] / dest[0])
        if saved is not None:
            saved.index_copy_(0, part, e[0])


class _SoftTiles(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x: Tensor, k: tuple[int, ...], keep: bool, report: list[bool]
    ) -> tuple[Tensor, Tensor]:
        ndim = len(k)
        lead = x.shape[: x.dim() - ndim]
        size = tuple(x.shape[x.dim() - ndim :])
        out = tuple(n // kk for n, kk in zip(size, k))
        planes = math.prod(lead)
        xf = x.contiguous().view(planes, *size)
        y = x.new_empty((planes, *out))
        sums = x.new_empty((2, planes, *out))  # den, num
        saved = x.new_empty(xf.shape) if keep else None
        chunks = _plane_chunks(planes, math.prod(size))
        counts = [b - a for a, b in chunks]
        buf = x.new_empty((2, max(counts), *size))
        parts = zip(
            xf.split_with_sizes(counts), sums.split_with_sizes(counts, 1), y.split_with_sizes(counts), counts
        )
        for i, (xc, dest, y_part, n) in enumerate(parts):
            e = buf[:, :n] if saved is None else saved[chunks[i][0] : chunks[i][1]]
            _forward_chunk(xc, e, buf[1, :n], None, (k, out), dest)
            torch.div(dest[1], dest[0], out=y_part)
        bad = unsafe_planes(sums, False, ndim)
        clean = bad is None
        if bad is not None:
            _shifted_planes(xf, bad[0], (y, sums, saved), (k, out))
        report.append(clean)
        y = y.view(*lead, *out)
        den = sums[0].view(*lead, *out)
        ctx.save_for_backward(xf, y, den, saved)
        ctx.k = k
        ctx.mark_non_differentiable(den)
        ctx.set_materialize_grads(False)  # no zero-filled gradient for den
        return y, den

    @staticmethod
    def backward(ctx: Any, grad: Tensor | None, _grad_den: Tensor | None) -> tuple[Tensor | None, ...]:
        xf, y, den, saved = ctx.saved_tensors
        if saved is None:
            raise RuntimeError("soft_tiles: backward through a forward run with keep=False")
        if grad is None:  # only den was used (it has no gradient)
            return None, None, None, None
        k: tuple[int, ...] = ctx.k
        ndim = len(k)
        planes, size = xf.shape[0], tuple(xf.shape[1:])
        out = tuple(y.shape[y.dim() - ndim :])
        lead = y.shape[: y.dim() - ndim]
        g = grad.reshape(planes, *out)
        yf, denf = y.reshape(planes, *out), den.reshape(planes, *out)
        result = xf.new_empty(xf.shape)
        # a window whose weights all underflowed (its plane recomputed by the caller): no gradient
        empty = None if bool(denf.amin() > 0) else denf == 0
        for a, b in _plane_chunks(planes, math.prod(size)):
            qr = xf.new_empty((2, b - a, *out))
            d = denf[a:b] if empty is None else denf[a:b].masked_fill(empty[a:b], 1.0)
            q = torch.div(g[a:b], d, out=qr[0])
            torch.addcmul(q, q, yf[a:b], value=-1.0, out=qr[1])  # r = q (1 - y)
            if empty is not None:
                qr.masked_fill_(empty[a:b], 0.0)
            wide = _spread_last(qr, k[-1])
            xc = xf[a:b]
            e = saved[a:b]
            target = _blocked(result[a:b], out, k)
            shape = list(target.shape)
            for axis in range(ndim - 1):
                shape[1 + 2 * axis + 1] = 1
            u, r = (w.view(shape) for w in wide.unbind(0))
            torch.addcmul(r, _blocked(xc, out, k), u, out=target)
            target.mul_(_blocked(e, out, k))
        return result.view(*lead, *size), None, None, None


def _spread_last(qr: Tensor, last: int) -> Tensor:
    """``qr`` ``(2, n, ..., o)`` with each value repeated ``last`` times along the last dim."""
    if last == 1:
        return qr
    if last == 2 and qr.dtype in (torch.float32, torch.float64):
        return torch.view_as_real(torch.complex(qr, qr)).flatten(-2)
    return qr.unsqueeze(-1).expand(*qr.shape, last).flatten(-2)
