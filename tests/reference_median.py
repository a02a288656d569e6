"""Slow, obviously correct median pooling in float64 (shares no code with the implementation)."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor


def _tuple(value: int | tuple[int, ...], n: int) -> tuple[int, ...]:
    return (value,) * n if isinstance(value, int) else tuple(value)


def median_pool_reference(
    x: Tensor,
    kernel_size: int | tuple[int, ...],
    stride: int | tuple[int, ...] | None,
    padding: int | tuple[int, ...],
    padding_mode: str,
) -> Tensor:
    """Lower median (sorted index ``(n - 1) // 2``) of every window, by Python loops over windows.

    ``x`` is ``(N, C, *spatial)`` with 1 to 3 spatial dims. ``padding_mode`` is ``"zeros"``,
    ``"reflect"``, ``"replicate"`` (explicit padding with ``F.pad``) or ``"valid"`` (only in-bounds
    cells of each window count). A window holding NaN gives NaN. Returns float64.
    """
    nd = x.dim() - 2
    k = _tuple(kernel_size, nd)
    s = k if stride is None else _tuple(stride, nd)
    p = _tuple(padding, nd)
    x = x.detach().to(torch.float64)
    sizes = x.shape[2:]
    pads = []
    for pp in reversed(p):
        pads += [pp, pp]
    if padding_mode == "zeros":
        xp = F.pad(x, pads, mode="constant", value=0.0)
    elif padding_mode in ("reflect", "replicate"):
        xp = F.pad(x, pads, mode=padding_mode)
    elif padding_mode == "valid":
        xp = F.pad(x, pads, mode="constant", value=float("nan"))
    else:
        raise ValueError(padding_mode)
    inside = torch.zeros(xp.shape[2:], dtype=torch.bool)
    inside[tuple(slice(pp, pp + size) for pp, size in zip(p, sizes))] = True
    out_sizes = [(i + 2 * pp - kk) // ss + 1 for i, kk, ss, pp in zip(sizes, k, s, p)]
    out = torch.empty(*x.shape[:2], *out_sizes, dtype=torch.float64)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for o in itertools.product(*(range(size) for size in out_sizes)):
                region = tuple(slice(oo * ss, oo * ss + kk) for oo, ss, kk in zip(o, s, k))
                values = xp[n, c][region].reshape(-1)
                if padding_mode == "valid":
                    values = values[inside[region].reshape(-1)]
                if torch.isnan(values).any():
                    out[(n, c, *o)] = float("nan")
                    continue
                ordered = torch.sort(values).values
                out[(n, c, *o)] = ordered[(values.numel() - 1) // 2]
    return out


def median_pool_reference_grad(
    x: Tensor,
    kernel_size: int | tuple[int, ...],
    stride: int | tuple[int, ...] | None,
    padding: int | tuple[int, ...],
    padding_mode: str,
    grad_output: Tensor,
) -> Tensor:
    """Gradient of the median pool by loops: each window sends its gradient to its selected cell.

    The selected cell is the first cell of the padded window in row-major order equal to the output
    (the first NaN for a NaN output); only in-bounds cells count for ``"valid"``. A padded cell passes
    the gradient to the input cell it copies (reflect/replicate: found by padding an index map) and
    drops it for ``"zeros"``.
    """
    nd = x.dim() - 2
    k = _tuple(kernel_size, nd)
    s = k if stride is None else _tuple(stride, nd)
    p = _tuple(padding, nd)
    y = median_pool_reference(x, k, s, p, padding_mode)
    x = x.detach().to(torch.float64)
    sizes = x.shape[2:]
    pads = []
    for pp in reversed(p):
        pads += [pp, pp]
    source = torch.arange(math_prod(sizes), dtype=torch.float64).reshape(1, 1, *sizes)
    if padding_mode in ("reflect", "replicate"):
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
                value = y[(n, c, *o)]
                for offset in itertools.product(*(range(kk) for kk in k)):
                    cell = tuple(oo * ss + ii for oo, ss, ii in zip(o, s, offset))
                    src = int(source[cell])
                    if padding_mode == "valid" and src < 0:
                        continue
                    v = xp[(n, c, *cell)]
                    if v == value or (torch.isnan(v) and torch.isnan(value)):
                        if src >= 0:
                            grad[n, c, src] += grad_output[(n, c, *o)].double()
                        break
    return grad.reshape(x.shape)


def math_prod(values: tuple[int, ...] | torch.Size) -> int:
    result = 1
    for v in values:
        result *= int(v)
    return result
