"""Slow, obviously correct median pooling in float64 (shares no code with the implementation)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor


def _at(*index: int) -> tuple[int, ...]:
    """A tensor index from ints (``x[_at(n, c, *o)]``; ``x[n, c, *o]`` needs Python 3.11)."""
    return index


def _tuple(value: int | tuple[int, ...], n: int) -> tuple[int, ...]:
    return (value,) * n if isinstance(value, int) else tuple(value)


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size, written out from ``pooling_output_shape`` in ATen's Pool.h."""
    numerator = size + 2 * padding - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = numerator // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _window_cells(
    o: tuple[int, ...], s: tuple[int, ...], k: tuple[int, ...], d: tuple[int, ...]
) -> Iterator[tuple[int, ...]]:
    """Padded coordinates of the cells of window ``o``, in row-major order of the window offsets."""
    for offset in itertools.product(*(range(kk) for kk in k)):
        yield tuple(oo * ss + ii * dd for oo, ss, ii, dd in zip(o, s, offset, d))


def median_pool_reference(
    x: Tensor,
    kernel_size: int | tuple[int, ...],
    stride: int | tuple[int, ...] | None,
    padding: int | tuple[int, ...],
    padding_mode: str,
    dilation: int | tuple[int, ...] = 1,
    ceil_mode: bool = False,
) -> Tensor:
    """Lower median (sorted index ``(n - 1) // 2``) of every window, by Python loops over windows.

    ``x`` is ``(N, C, *spatial)`` with 1 to 3 spatial dims. ``padding_mode`` is ``"zeros"``,
    ``"reflect"``, ``"replicate"``, ``"circular"`` (explicit padding with ``F.pad``) or ``"valid"``
    (only in-bounds cells of each window count). Window cells are ``dilation`` apart; in ceil mode,
    the cells of a window that lie past the padded input are left out (as max pooling ignores them).
    A window holding NaN gives NaN. Returns float64 (integer inputs are exact in float64 up to 2^53).
    """
    nd = x.dim() - 2
    k = _tuple(kernel_size, nd)
    s = k if stride is None else _tuple(stride, nd)
    p = _tuple(padding, nd)
    d = _tuple(dilation, nd)
    x = x.detach().to(torch.float64)
    sizes = x.shape[2:]
    pads = []
    for pp in reversed(p):
        pads += [pp, pp]
    if padding_mode == "zeros":
        xp = F.pad(x, pads, mode="constant", value=0.0)
    elif padding_mode in ("reflect", "replicate", "circular"):
        xp = F.pad(x, pads, mode=padding_mode)
    elif padding_mode == "valid":
        xp = F.pad(x, pads, mode="constant", value=float("nan"))
    else:
        raise ValueError(padding_mode)
    inside = torch.zeros(xp.shape[2:], dtype=torch.bool)
    inside[tuple(slice(pp, pp + size) for pp, size in zip(p, sizes))] = True
    out_sizes = [output_size(*args, ceil_mode) for args in zip(sizes, k, s, p, d)]
    out = torch.empty(*x.shape[:2], *out_sizes, dtype=torch.float64)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for o in itertools.product(*(range(size) for size in out_sizes)):
                cells = [
                    cell
                    for cell in _window_cells(o, s, k, d)
                    if all(ci < size for ci, size in zip(cell, xp.shape[2:]))  # ceil-mode overhang
                    and (padding_mode != "valid" or inside[cell])
                ]
                values = torch.stack([xp[_at(n, c, *cell)] for cell in cells])
                if torch.isnan(values).any():
                    out[_at(n, c, *o)] = float("nan")
                    continue
                ordered = torch.sort(values).values
                out[_at(n, c, *o)] = ordered[(values.numel() - 1) // 2]
    return out


def median_pool_reference_grad(
    x: Tensor,
    kernel_size: int | tuple[int, ...],
    stride: int | tuple[int, ...] | None,
    padding: int | tuple[int, ...],
    padding_mode: str,
    grad_output: Tensor,
    dilation: int | tuple[int, ...] = 1,
    ceil_mode: bool = False,
) -> Tensor:
    """Gradient of the median pool by loops: each window sends its gradient to its selected cell.

    The selected cell is the first cell of the padded window in row-major order equal to the output
    (the first NaN for a NaN output); only in-bounds cells count for ``"valid"``. A padded cell passes
    the gradient to the input cell it copies (reflect/replicate: found by padding an index map) and
    drops it for ``"zeros"``. Ceil-mode overhang cells are never selected.
    """
    nd = x.dim() - 2
    k = _tuple(kernel_size, nd)
    s = k if stride is None else _tuple(stride, nd)
    p = _tuple(padding, nd)
    d = _tuple(dilation, nd)
    y = median_pool_reference(x, k, s, p, padding_mode, d, ceil_mode)
    x = x.detach().to(torch.float64)
    sizes = x.shape[2:]
    pads = []
    for pp in reversed(p):
        pads += [pp, pp]
    source = torch.arange(math_prod(sizes), dtype=torch.float64).reshape(1, 1, *sizes)
    if padding_mode in ("reflect", "replicate", "circular"):
        xp = F.pad(x, pads, mode=padding_mode)
        source = F.pad(source, pads, mode=padding_mode)
    else:
        xp = F.pad(x, pads, mode="constant", value=0.0)
        source = F.pad(source, pads, mode="constant", value=-1.0)
    source = source[0, 0].long()
    grad = torch.zeros(*x.shape[:2], math_prod(sizes), dtype=torch.float64)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for o in itertools.product(*(range(size) for size in y.shape[2:])):
                value = y[_at(n, c, *o)]
                for cell in _window_cells(o, s, k, d):
                    if any(ci >= size for ci, size in zip(cell, xp.shape[2:])):
                        continue  # ceil-mode overhang
                    src = int(source[cell])
                    if padding_mode == "valid" and src < 0:
                        continue
                    v = xp[_at(n, c, *cell)]
                    if v == value or (torch.isnan(v) and torch.isnan(value)):
                        if src >= 0:
                            grad[n, c, src] += grad_output[_at(n, c, *o)].double()
                        break
    return grad.reshape(x.shape)


def math_prod(values: tuple[int, ...] | torch.Size) -> int:
    result = 1
    for v in values:
        result *= int(v)
    return result
