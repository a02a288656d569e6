r"""Records of NetVLAD and GhostVLAD (family ``netvlad``).

The float64 reference and the sample cases (``OPS``, the ``OpRecord``\ s of ``test_ops.py``):
NetVLAD / GhostVLAD records, with a slow, obviously-correct float64 reference.

The reference follows the popular public implementation's pattern: a Python loop over the
clusters (and here also over the positions), computing each residual ``x_i - c_k`` explicitly,
exactly the SPEC steps: normalise descriptors, softmax over ``K + G`` logits, drop the ghosts,
sum the weighted residuals, intra-normalise each cluster, flatten, normalise the whole.
"""

from __future__ import annotations

from typing import Any

import torch
from op_record import Case, OpRecord, Out, PoolRecord, Semantics
from torch import Tensor

from torchpool.ops.netvlad import NetVLAD, netvlad

from ._policy import STATS

EPS = 1e-6


def _norm(v: Tensor, eps: float) -> Tensor:
    return v / torch.sqrt(eps + (v * v).sum())


def netvlad_loop_reference(
    x: Tensor,
    centroids: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    normalize_input: bool = True,
    ghost_clusters: int = 0,
    eps: float = EPS,
) -> Tensor:
    """Loops over samples, positions and clusters; float64; returns ``(N, K * D)``."""
    x = x.double()
    c, w = centroids.double(), weight.double()
    b = torch.zeros(w.shape[0], dtype=torch.float64) if bias is None else bias.double()
    n, d = x.shape[:2]
    k_real = c.shape[0]
    k_all = k_real + ghost_clusters
    assert w.shape == (k_all, d)
    flat = x.reshape(n, d, -1)
    outputs = []
    for s in range(n):
        descriptors = []
        for i in range(flat.shape[2]):
            v = flat[s, :, i]
            descriptors.append(_norm(v, eps) if normalize_input else v)
        assignments = []
        for v in descriptors:
            logits = [float((w[k] * v).sum() + b[k]) for k in range(k_all)]
            top = max(logits)
            e = [torch.exp(torch.tensor(z - top, dtype=torch.float64)) for z in logits]
            total = sum(e)
            assignments.append([e[k] / total for k in range(k_real)])  # ghosts dropped here
        blocks = []
        for k in range(k_real):
            vlad_k = torch.zeros(d, dtype=torch.float64)
            for i, v in enumerate(descriptors):
                residual = v - c[k]
                vlad_k = vlad_k + assignments[i][k] * residual
            blocks.append(_norm(vlad_k, eps))
        outputs.append(_norm(torch.cat(blocks), eps))
    return torch.stack(outputs)


def vlad_module(
    num_clusters: int, dim: int, normalize_input: bool = True, ghost_clusters: int = 0
) -> NetVLAD:
    """A NetVLAD with fixed, seeded float32 parameters (logits of order 1, not one-hot)."""
    module = NetVLAD(num_clusters, dim, normalize_input=normalize_input, ghost_clusters=ghost_clusters)
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        module.centroids.copy_(torch.randn(module.centroids.shape, generator=g) * 0.5)
        module.assign_weight.copy_(torch.randn(module.assign_weight.shape, generator=g))
        module.assign_bias.copy_(torch.randn(module.assign_bias.shape, generator=g) * 0.5)
    return module


def vlad_function(x: Tensor, **kwargs: Any) -> Tensor:
    """The functional form with the same parameters as :func:`vlad_module`."""
    m = vlad_module(**kwargs)
    return netvlad(
        x,
        m.centroids,
        m.assign_weight,
        m.assign_bias,
        normalize_input=m.normalize_input,
        ghost_clusters=m.ghost_clusters,
    )


def vlad_reference(x: Tensor, **kwargs: Any) -> Tensor:
    m = vlad_module(**kwargs)
    return netvlad_loop_reference(
        x,
        m.centroids.detach(),
        m.assign_weight.detach(),
        m.assign_bias.detach(),
        m.normalize_input,
        m.ghost_clusters,
    )


OPS: list[OpRecord] = [
    OpRecord(
        "netvlad-2d",
        vlad_function,
        vlad_module,
        vlad_reference,
        (
            Case((2, 4, 3, 3), {"num_clusters": 3, "dim": 4}),
            Case((2, 4, 3, 3), {"num_clusters": 3, "dim": 4, "normalize_input": False}),
            Case((1, 3, 2, 4), {"num_clusters": 2, "dim": 3}),
        ),
        2,
        inputs="real",
        batchless=False,
    ),
    OpRecord(
        "netvlad-1d-sequence",
        vlad_function,
        vlad_module,
        vlad_reference,
        (
            Case((2, 4, 5), {"num_clusters": 3, "dim": 4}),
            Case((2, 4, 5), {"num_clusters": 3, "dim": 4, "normalize_input": False}),
        ),
        1,
        inputs="real",
        batchless=False,
    ),
    OpRecord(
        "netvlad-3d",
        vlad_function,
        vlad_module,
        vlad_reference,
        (Case((1, 3, 2, 2, 2), {"num_clusters": 2, "dim": 3}),),
        3,
        inputs="real",
        batchless=False,
    ),
    OpRecord(
        "ghostvlad-2d",
        vlad_function,
        vlad_module,
        vlad_reference,
        (
            Case((2, 4, 3, 3), {"num_clusters": 3, "dim": 4, "ghost_clusters": 1}),
            Case((2, 4, 3, 3), {"num_clusters": 3, "dim": 4, "ghost_clusters": 2, "normalize_input": False}),
        ),
        2,
        inputs="real",
        batchless=False,
    ),
    OpRecord(
        "ghostvlad-1d-sequence",
        vlad_function,
        vlad_module,
        vlad_reference,
        (Case((2, 4, 6), {"num_clusters": 2, "dim": 4, "ghost_clusters": 1}),),
        1,
        inputs="real",
        batchless=False,
    ),
]


PAGE = "netvlad"
NETVLAD = {
    **STATS,
    "zeros": Out("ref, any", "the zero descriptor is assigned by softmax(bias): V_k = -L a_k c_k"),
    "ties": Out("ref, any"),
    "f32_huge": Out("ok", "a descriptor whose ||x||^2 overflows is divided by its largest |x_i| first"),
    "f32_tiny": Out("as-zeros", "by design: descriptors with ||x|| << sqrt(eps) are damped to 0"),
    "f32_subnormal": Out("as-zeros", "by design (eps)"),
    "nan": Out("nan@sample", "every output of the sample is NaN"),
    "+inf": Out(
        "nan@sample", "x / ||x|| = inf / inf = NaN for the descriptor, then every output of the sample"
    ),
    "-inf": Out("nan@sample", "as for +inf"),
}
_SEMANTICS = Semantics("netvlad", 0, False, None)

RECORDS: list[PoolRecord] = [
    PoolRecord("netvlad", PAGE, dict(NETVLAD), _SEMANTICS, "float32 (torchpool)", cuda_inductor=True),
    PoolRecord(
        "ghostvlad",
        PAGE,
        {
            **NETVLAD,
            "zeros": Out("ref, any", "the ghost cluster takes the mass (bias 0 vs -100): output ~1e-36"),
        },
        _SEMANTICS,
        "float32 (torchpool)",
    ),
]
