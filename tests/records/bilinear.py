r"""Records of the second-order pools (family ``bilinear``): bilinear, compact, low-rank, matrix sqrt.

The float64 reference and the sample cases (``OPS``, the ``OpRecord``\ s of ``test_ops.py``):
Op records and slow float64 references for the bilinear family (``torchpool.ops.bilinear``).

Nothing here calls the code under test to compute a value: outer products are accumulated
position by position, the sketches are built bin by bin from the documented drawing recipe
(re-implemented here, so a change of recipe, which would silently change saved models, is
caught), the Newton-Schulz recurrence is an explicit loop with the explicit centering matrix.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from op_record import Case, OpRecord, Out, PoolRecord, Semantics
from torch import Tensor, nn

from torchpool.ops.bilinear import (
    BilinearPool,
    CompactBilinearPool,
    LowRankBilinearPool,
    MatrixSqrtPool,
    bilinear_pool,
    compact_bilinear_pool,
    low_rank_bilinear_pool,
    matrix_sqrt_pool,
)

from ._policy import STATS


def _matrix(x: Tensor) -> Tensor:
    """``(N, D, *S)`` -> ``(N, D, L)`` in float64."""
    return x.detach().double().reshape(x.shape[0], x.shape[1], -1)


def _normalize_reference(y: Tensor, signed_sqrt: bool, l2_normalize: bool, eps: float) -> Tensor:
    out = y.clone()
    if signed_sqrt:
        for n in range(out.shape[0]):
            for j in range(out.shape[1]):
                v = float(y[n, j])
                s = 1.0 if v > 0 else -1.0 if v < 0 else 0.0
                out[n, j] = s * math.sqrt(abs(v) + eps)
    if l2_normalize:
        for n in range(out.shape[0]):
            norm = math.sqrt(sum(float(v) ** 2 for v in out[n]))
            out[n] = out[n] / max(norm, 1e-12)
    return out


def bilinear_reference(
    x_a: Tensor,
    x_b: Tensor | None = None,
    signed_sqrt: bool = True,
    l2_normalize: bool = True,
    eps: float = 1e-5,
) -> Tensor:
    """``(1/L) sum_l f_a(l) f_b(l)^T`` accumulated one position at a time, then sqrt / L2."""
    a = _matrix(x_a)
    b = a if x_b is None else _matrix(x_b)
    n, da, length = a.shape
    db = b.shape[1]
    out = torch.zeros(n, da * db, dtype=torch.float64)
    for i in range(n):
        acc = torch.zeros(da, db, dtype=torch.float64)
        for pos in range(length):
            acc += torch.outer(a[i, :, pos], b[i, :, pos])
        out[i] = (acc / length).flatten()
    return _normalize_reference(out, signed_sqrt, l2_normalize, eps)


def drawn_buffers(dim_a: int, dim_b: int, out_dim: int, method: str, seed: int) -> dict[str, Tensor]:
    """The documented drawing recipe of the compact bilinear parameters."""
    g = torch.Generator().manual_seed(seed)
    if method == "tensor_sketch":
        names_sizes = [("hash_a", dim_a), ("sign_a", dim_a), ("hash_b", dim_b), ("sign_b", dim_b)]
        out = {}
        for name, size in names_sizes:
            bound = out_dim if name.startswith("hash") else 2
            values = torch.randint(bound, (size,), generator=g)
            out[name] = values if name.startswith("hash") else values.double() * 2 - 1
        return out
    return {
        "weight_a": torch.randint(2, (out_dim, dim_a), generator=g).double() * 2 - 1,
        "weight_b": torch.randint(2, (out_dim, dim_b), generator=g).double() * 2 - 1,
    }


def compact_reference(
    x_a: Tensor,
    x_b: Tensor | None = None,
    out_dim: int = 8192,
    method: str = "tensor_sketch",
    seed: int = 0,
    signed_sqrt: bool = True,
    l2_normalize: bool = True,
    eps: float = 1e-5,
    buffers: dict[str, Tensor] | None = None,
) -> Tensor:
    """Per-position sketches averaged over positions.

    Tensor Sketch by the direct convolution formula ``phi[(h_a(i) + h_b(k)) mod d] += s_a(i)
    s_b(k) f_a(l)_i f_b(l)_k`` (exact zeros in unreachable bins; the FFT form is checked
    separately in ``test_bilinear.py``); Random Maclaurin by explicit dot products.
    """
    a = _matrix(x_a)
    b = a if x_b is None else _matrix(x_b)
    n, da, length = a.shape
    db = b.shape[1]
    p = buffers if buffers is not None else drawn_buffers(da, db, out_dim, method, seed)
    p = {k: (v.double() if v.is_floating_point() else v) for k, v in p.items()}
    out = torch.zeros(n, out_dim, dtype=torch.float64)
    for s in range(n):
        for pos in range(length):
            fa, fb = a[s, :, pos], b[s, :, pos]
            if method == "tensor_sketch":
                for i in range(da):
                    for k in range(db):
                        j = (int(p["hash_a"][i]) + int(p["hash_b"][k])) % out_dim
                        out[s, j] += p["sign_a"][i] * p["sign_b"][k] * fa[i] * fb[k]
            else:
                for j in range(out_dim):
                    out[s, j] += torch.dot(p["weight_a"][j], fa) * torch.dot(p["weight_b"][j], fb)
        out[s] /= length
    if method == "random_maclaurin":
        out /= math.sqrt(out_dim)
    return _normalize_reference(out, signed_sqrt, l2_normalize, eps)


def low_rank_reference(x: Tensor, u: Tensor, v: Tensor, bias: Tensor | None = None) -> Tensor:
    """``(1/L)(sum_l sum_r (u_kr . f(l))^2 - (v_kr . f(l))^2) + b_k``, class by class."""
    f = _matrix(x)
    n, _, length = f.shape
    num_classes, _, rank = u.shape
    u, v = u.detach().double(), v.detach().double()
    out = torch.zeros(n, num_classes, dtype=torch.float64)
    for s in range(n):
        for k in range(num_classes):
            total = 0.0
            for pos in range(length):
                for r in range(rank):
                    total += float(torch.dot(u[k, :, r], f[s, :, pos])) ** 2
                    total -= float(torch.dot(v[k, :, r], f[s, :, pos])) ** 2
            out[s, k] = total / length + (0.0 if bias is None else float(bias[k]))
    return out


def newton_schulz_reference(x: Tensor, num_iters: int = 5, triu: bool = True) -> Tensor:
    """iSQRT-COV with the explicit ``Ibar`` and a plain loop updating both ``Y`` and ``Z``."""
    f = _matrix(x)
    n, dim, length = f.shape
    ibar = (
        torch.eye(length, dtype=torch.float64) - torch.ones(length, length, dtype=torch.float64) / length
    ) / (length)
    outs = []
    for s in range(n):
        sigma = f[s] @ ibar @ f[s].T
        trace = sum(float(sigma[i, i]) for i in range(dim))
        eye = torch.eye(dim, dtype=torch.float64)
        if trace == 0:
            y = torch.zeros(dim, dim, dtype=torch.float64)
        else:
            y, z = sigma / trace, eye
            for _ in range(num_iters):
                y, z = 0.5 * y @ (3 * eye - z @ y), 0.5 * (3 * eye - z @ y) @ z
            y = math.sqrt(trace) * y
        if triu:
            outs.append(torch.stack([y[i, j] for i in range(dim) for j in range(i, dim)]))
        else:
            outs.append(y)
    return torch.stack(outs)


# --------------------------------------------------------------------------- adaptors


class _Split(nn.Module):
    """Multimodal form under the single-input record API: ``x_a, x_b = x[:, :k], x[:, k:]``."""

    def __init__(self, pool: nn.Module, split: int) -> None:
        super().__init__()
        self.pool = pool
        self.split = split

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.pool(x[:, : self.split], x[:, self.split :])
        return out


def _bilinear_fn(x: Tensor, dim_a: int, **kw: Any) -> Tensor:
    return bilinear_pool(x, **kw)


def _bilinear_module(dim_a: int, **kw: Any) -> nn.Module:
    return BilinearPool(dim_a, **kw)


def _bilinear_ref(x: Tensor, dim_a: int, **kw: Any) -> Tensor:
    return bilinear_reference(x, **kw)


def _split_bilinear_fn(x: Tensor, split: int, dim_b: int, **kw: Any) -> Tensor:
    return bilinear_pool(x[:, :split], x[:, split:], **kw)


def _split_bilinear_module(split: int, dim_b: int, **kw: Any) -> nn.Module:
    return _Split(BilinearPool(split, dim_b, **kw), split)


def _split_bilinear_ref(x: Tensor, split: int, dim_b: int, **kw: Any) -> Tensor:
    return bilinear_reference(x[:, :split], x[:, split:], **kw)


def _compact_fn(x: Tensor, dim_a: int, **kw: Any) -> Tensor:
    return compact_bilinear_pool(x, **kw)


def _compact_ref(x: Tensor, dim_a: int, path: str = "auto", **kw: Any) -> Tensor:
    return compact_reference(x, **kw)


def _split_compact_fn(x: Tensor, dim_a: int, dim_b: int, **kw: Any) -> Tensor:
    return compact_bilinear_pool(x[:, :dim_a], x[:, dim_a:], **kw)


def _split_compact_module(dim_a: int, dim_b: int, **kw: Any) -> nn.Module:
    return _Split(CompactBilinearPool(dim_a, dim_b, **kw), dim_a)


def _split_compact_ref(x: Tensor, dim_a: int, dim_b: int, path: str = "auto", **kw: Any) -> Tensor:
    return compact_reference(x[:, :dim_a], x[:, dim_a:], **kw)


def _low_rank_params(dim: int, num_classes: int, rank: int, bias: bool = True) -> tuple[Tensor, ...]:
    g = torch.Generator().manual_seed(7)
    u = torch.randn(num_classes, dim, rank, generator=g) / math.sqrt(dim)
    v = torch.randn(num_classes, dim, rank, generator=g) / math.sqrt(dim)
    b = torch.linspace(-0.5, 0.5, num_classes)
    return (u, v, b) if bias else (u, v)


def _low_rank_fn(x: Tensor, **kw: Any) -> Tensor:
    return low_rank_bilinear_pool(x, *_low_rank_params(**kw))


def _low_rank_module(dim: int, num_classes: int, rank: int, bias: bool = True) -> nn.Module:
    module = LowRankBilinearPool(dim, num_classes, rank, bias=bias)
    params = _low_rank_params(dim, num_classes, rank, bias)
    with torch.no_grad():
        module.u.copy_(params[0])
        module.v.copy_(params[1])
        if module.bias is not None:
            module.bias.copy_(params[2])
    return module


def _low_rank_ref(x: Tensor, **kw: Any) -> Tensor:
    return low_rank_reference(x, *_low_rank_params(**kw))


def _records() -> list[OpRecord]:
    ts = {"method": "tensor_sketch"}
    rm = {"method": "random_maclaurin"}
    return [
        OpRecord(
            "bilinear-2d",
            _bilinear_fn,
            _bilinear_module,
            _bilinear_ref,
            (
                Case((2, 3, 4, 5), {"dim_a": 3}),
                Case((2, 4, 3, 3), {"dim_a": 4, "signed_sqrt": False, "eps": 1e-3}),
            ),
            2,
            batchless=False,
        ),
        OpRecord(
            "bilinear-1d-nol2",
            _bilinear_fn,
            _bilinear_module,
            _bilinear_ref,
            (Case((2, 4, 7), {"dim_a": 4, "l2_normalize": False}),),
            1,
            batchless=False,
        ),
        OpRecord(
            "bilinear-3d-plain",
            _bilinear_fn,
            _bilinear_module,
            _bilinear_ref,
            (Case((2, 3, 2, 3, 2), {"dim_a": 3, "signed_sqrt": False, "l2_normalize": False}),),
            3,
            batchless=False,
        ),
        OpRecord(
            "bilinear-2d-multimodal",
            _split_bilinear_fn,
            _split_bilinear_module,
            _split_bilinear_ref,
            (Case((2, 5, 3, 4), {"split": 2, "dim_b": 3}),),
            2,
            batchless=False,
        ),
        OpRecord(
            "compact_bilinear-2d-tensor_sketch",
            _compact_fn,
            lambda dim_a, **kw: CompactBilinearPool(dim_a, **kw),
            _compact_ref,
            (
                Case((2, 4, 4, 5), {"dim_a": 4, "out_dim": 32, **ts}),
                # few elements: each batched MKL FFT call has a fixed overhead of milliseconds
                Case((1, 3, 3, 2), {"dim_a": 3, "out_dim": 32, **ts, "path": "location", "seed": 3}),
                Case((2, 3, 3, 3), {"dim_a": 3, "out_dim": 16, **ts, "path": "matrix", "signed_sqrt": False}),
            ),
            2,
            batchless=False,
        ),
        OpRecord(
            "compact_bilinear-1d-random_maclaurin",
            _compact_fn,
            lambda dim_a, **kw: CompactBilinearPool(dim_a, **kw),
            _compact_ref,
            (
                Case((2, 4, 9), {"dim_a": 4, "out_dim": 16, **rm}),
                Case((2, 4, 9), {"dim_a": 4, "out_dim": 16, **rm, "path": "matrix", "l2_normalize": False}),
                Case((2, 4, 9), {"dim_a": 4, "out_dim": 16, **rm, "path": "location", "seed": 5}),
            ),
            1,
            batchless=False,
        ),
        OpRecord(
            "compact_bilinear-2d-multimodal",
            _split_compact_fn,
            _split_compact_module,
            _split_compact_ref,
            (
                Case((2, 5, 3, 4), {"dim_a": 2, "dim_b": 3, "out_dim": 24, **ts}),
                Case((2, 5, 3, 4), {"dim_a": 3, "dim_b": 2, "out_dim": 16, **rm}),
            ),
            2,
            batchless=False,
        ),
        OpRecord(
            "low_rank_bilinear-2d",
            _low_rank_fn,
            _low_rank_module,
            _low_rank_ref,
            (
                Case((2, 4, 3, 4), {"dim": 4, "num_classes": 3, "rank": 2}),
                Case((2, 3, 5), {"dim": 3, "num_classes": 2, "rank": 1, "bias": False}),
            ),
            2,
            batchless=False,
        ),
        OpRecord(
            "matrix_sqrt-2d",
            matrix_sqrt_pool,
            MatrixSqrtPool,
            newton_schulz_reference,
            (Case((2, 4, 5, 6)), Case((2, 3, 4, 4), {"num_iters": 2, "triu": False})),
            2,
            batchless=False,
        ),
        OpRecord(
            "matrix_sqrt-1d-3d",
            matrix_sqrt_pool,
            MatrixSqrtPool,
            newton_schulz_reference,
            (Case((2, 3, 10), {"num_iters": 8}), Case((1, 3, 2, 3, 2), {"num_iters": 1})),
            1,
            batchless=False,
        ),
    ]


OPS: list[OpRecord] = _records()


PAGE = "bilinear"
FLOAT32 = "float32 (torchpool)"

RECORDS: list[PoolRecord] = [
    PoolRecord("bilinear", PAGE, dict(STATS), Semantics("stats", 0, False, None), FLOAT32),
    PoolRecord(
        "compact_bilinear",
        PAGE,
        {
            **STATS,
            "f32_huge": Out("nan and 0", STATS["f32_huge"].why),
            "nan": Out("nan@sample", "every output of the sample, the unreachable bins too (NaN * 0 mask)"),
        },
        Semantics("stats", 0, False, None),
        FLOAT32,
    ),
    PoolRecord(
        "low_rank_bilinear",
        PAGE,
        {
            **STATS,
            "f32_huge": Out(
                "nan", "the exact scores (~1e60) exceed float32; the difference of energies is inf - inf"
            ),
            "f16_huge": Out("±inf", "the exact scores (~4e9) exceed float16"),
            "f32_tiny": Out("0", "the exact scores (~1e-60) underflow float32"),
            "f32_subnormal": Out("0", "the exact scores underflow"),
            "nan": Out("nan@sample", "every class score of the sample"),
            "+inf": Out("nan@sample", "inf - inf between the U and V energies"),
            "-inf": Out("nan@sample", "inf - inf between the U and V energies"),
        },
        Semantics("stats", 2, False, None),
        FLOAT32,
        input_top=(100.0, "unnormalised scores ~ rank * mean(x^2) exceed 65504 beyond ~100"),
    ),
    PoolRecord(
        "matrix_sqrt",
        PAGE,
        {
            **STATS,
            "ties": Out("as-1x1, 0", "zero covariance: output 0, gradient 0 (trace replaced by 1)"),
            "f32_huge": Out("nan", "LIMIT: the covariance (~1e60) overflows float32"),
            "f32_tiny": Out(
                "0", "LIMIT: the covariance (~1e-60) underflows to 0: the zero-covariance output"
            ),
            "f32_subnormal": Out("0", "LIMIT: as for f32_tiny"),
            "+inf": Out("nan@sample", "inf - inf in the centring"),
            "-inf": Out("nan@sample", "inf - inf in the centring"),
        },
        Semantics("stats", 1, False, None),
        FLOAT32,
        onnx_torchscript_fails="aten::triu_indices has no opset-17 symbolic",
    ),
]
