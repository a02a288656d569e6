r"""Records of the attention pools (family ``attention``): CLIP's AttentionPool2d, the latent-query
(MAP) head and SimPool.

The float64 references (``OPS``, the ``OpRecord``\ s of ``test_ops.py``) share no code with
``torchpool.ops.attention``: they run multi-head attention as timm writes it, every query, key
and value projected per head from every token (key bias included), one Python loop per sample,
head and query, the softmax by hand (``exp(s - max) / sum``), no
``scaled_dot_product_attention``; the positional embedding of another grid size is resized
by a loop implementation of antialiased bicubic interpolation (PIL's kernel, ``a = -0.5``, as
``F.interpolate(..., antialias=True)``). The Modules have seeded, non-trivial parameters
(non-zero biases and positional embedding).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from op_record import Case, OpRecord, Out, PoolRecord, Semantics
from torch import Tensor, nn

from torchpool.ops.attention import AttentionPool2d, AttentionPoolLatent, SimPool

from ._policy import STATS

# ------------------------------------------------------------------ seeded modules


def randomize(module: nn.Module, seed: int = 1234) -> nn.Module:
    """Every parameter drawn from a seeded normal (scaled by ``1/sqrt(fan)``), biases included."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            fan = p.shape[-1] if p.dim() > 1 else 1
            scale = 0.3 if name.endswith("bias") else fan**-0.5
            if name.startswith("norm.") and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * scale * 1.5)
    return module


def pool2d_module(**kwargs: Any) -> AttentionPool2d:
    module = AttentionPool2d(**kwargs)
    randomize(module)
    return module


def latent_module(**kwargs: Any) -> AttentionPoolLatent:
    module = AttentionPoolLatent(**kwargs)
    randomize(module)
    return module


def simpool_module(**kwargs: Any) -> SimPool:
    module = SimPool(**kwargs)
    randomize(module)
    return module


def _function(build: Any) -> Any:
    def function(x: Tensor, **kwargs: Any) -> Tensor:
        y: Tensor = build(**kwargs).eval()(x)
        return y

    return function


# ------------------------------------------------------------------ the float64 references


def softmax_loop(scores: list[float]) -> list[float]:
    top = max(scores)
    e = [math.exp(s - top) for s in scores]
    total = sum(e)
    return [v / total for v in e]


def attention_loop(
    queries: Tensor, tokens: Tensor, wq: Tensor, bq: Tensor | None, wk: Tensor, bk: Tensor | None,
    wv: Tensor | None, bv: Tensor | None, heads: int, values: Tensor | None = None,
) -> Tensor:  # fmt: skip
    """Multi-head attention of ``(Q, C)`` query tokens over ``(L, C)`` tokens, float64, by loops.

    ``queries`` are projected by ``wq`` (None: already projected), the keys by ``wk``, the values
    by ``wv`` (None: ``values`` as given, ``(L, C)``). Returns ``(Q, C)``, heads concatenated.
    """

    def project(t: Tensor, w: Tensor | None, b: Tensor | None) -> Tensor:
        if w is None:
            return t
        out = t @ w.T
        return out if b is None else out + b

    q, k = project(queries, wq, bq), project(tokens, wk, bk)
    v = project(tokens, wv, bv) if values is None else values
    c = q.shape[1]
    d = c // heads
    out = torch.zeros(q.shape[0], c, dtype=torch.float64)
    for h in range(heads):
        cols = slice(h * d, (h + 1) * d)
        for i in range(q.shape[0]):
            scores = [float((q[i, cols] * k[j, cols]).sum()) / math.sqrt(d) for j in range(k.shape[0])]
            weights = softmax_loop(scores)
            for j, w in enumerate(weights):
                out[i, cols] += w * v[j, cols]
    return out


def cubic(t: float, a: float = -0.5) -> float:
    t = abs(t)
    if t < 1:
        return ((a + 2) * t - (a + 3)) * t * t + 1
    if t < 2:
        return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return 0.0


def aa_bicubic_matrix(n_in: int, n_out: int) -> Tensor:
    """``(n_out, n_in)`` weights of antialiased bicubic resampling (PIL's rule, align_corners=False)."""
    scale = n_in / n_out
    support = 2.0 * max(scale, 1.0)
    inv = 1.0 / max(scale, 1.0)
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        centre = scale * (i + 0.5)
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n_in)
        w = [cubic((j - centre + 0.5) * inv) for j in range(lo, hi)]
        total = sum(w)
        for j, wj in zip(range(lo, hi), w):
            m[i, j] = wj / total
    return m


def resize_positions(pos: Tensor, feat: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """``(1 + fh * fw, C)`` -> ``(1 + H * W, C)``: the grid part resampled, the first row kept."""
    if tuple(size) == tuple(feat):
        return pos
    grid = pos[1:].reshape(feat[0], feat[1], -1)
    rows, cols = aa_bicubic_matrix(feat[0], size[0]), aa_bicubic_matrix(feat[1], size[1])
    out = torch.zeros(size[0], size[1], pos.shape[1], dtype=torch.float64)
    for i in range(size[0]):
        for j in range(size[1]):
            for a in range(feat[0]):
                for b in range(feat[1]):
                    if rows[i, a] != 0 and cols[j, b] != 0:
                        out[i, j] += rows[i, a] * cols[j, b] * grid[a, b]
    return torch.cat([pos[:1], out.reshape(-1, pos.shape[1])])


def _d(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach().double()


def _layer_norm_loop(t: Tensor, norm: nn.LayerNorm) -> Tensor:
    """LayerNorm over the last dim by hand (biased variance), float64."""
    mean = t.mean(-1, keepdim=True)
    var = ((t - mean) ** 2).mean(-1, keepdim=True)
    return (t - mean) / torch.sqrt(
        var + norm.eps
    ) * norm.weight.detach().double() + norm.bias.detach().double()


def _tokens_of(x: Tensor, n: int) -> tuple[Tensor, tuple[int, int] | None]:
    """Sample ``n`` as ``(L, C)`` tokens, with the grid size of a 4-d input."""
    if x.dim() == 4:
        h, w = x.shape[2:]
        return torch.stack([x[n, :, i, j] for i in range(h) for j in range(w)]), (h, w)
    return x[n], None


def pool2d_module_reference(module: AttentionPool2d, x: Tensor) -> Tensor:
    """CLIP's head in float64 from the module's parameters: every query of the mean-prepended
    sequence (as timm computes it), then the mean token's output projected."""
    c, heads = module.dim, module.num_heads
    w, b = _d(module.qkv.weight), _d(module.qkv.bias)
    assert w is not None
    bq, bk, bv = (None, None, None) if b is None else (b[:c], b[c : 2 * c], b[2 * c :])
    pos = _d(module.pos_embed)
    assert pos is not None
    outs = []
    for n in range(x.shape[0]):
        t, size = _tokens_of(x.double(), n)
        seq = torch.cat([t.mean(0, keepdim=True), t])
        seq = seq + resize_positions(pos, module.feat_size, size or module.feat_size)
        att = attention_loop(seq, seq, w[:c], bq, w[c : 2 * c], bk, w[2 * c :], bv, heads)
        outs.append(att[0] @ module.proj.weight.detach().double().T + module.proj.bias.detach().double())
    return torch.stack(outs)


def latent_module_reference(module: AttentionPoolLatent, x: Tensor) -> Tensor:
    """The MAP head in float64 from the module's parameters."""
    c, heads = module.dim, module.num_heads
    wkv, bkv = _d(module.kv.weight), _d(module.kv.bias)
    assert wkv is not None
    latent = module.latent.detach().double()[0]
    outs = []
    for n in range(x.shape[0]):
        t, _ = _tokens_of(x.double(), n)
        att = attention_loop(
            latent, t, module.q.weight.detach().double(), _d(module.q.bias), wkv[:c],
            None if bkv is None else bkv[:c], wkv[c:], None if bkv is None else bkv[c:], heads,
        )  # fmt: skip
        y = att @ module.proj.weight.detach().double().T + module.proj.bias.detach().double()
        z = y
        if isinstance(module.norm, nn.LayerNorm):
            z = _layer_norm_loop(y, module.norm)
        hidden = z @ module.mlp.fc1.weight.detach().double().T + module.mlp.fc1.bias.detach().double()
        if module.act == "gelu":
            hidden = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))
        else:
            inner = math.sqrt(2 / math.pi) * (hidden + 0.044715 * hidden**3)
            hidden = 0.5 * hidden * (1 + torch.tanh(inner))
        y = y + hidden @ module.mlp.fc2.weight.detach().double().T + module.mlp.fc2.bias.detach().double()
        outs.append(y[0] if module.pool == "token" else y.mean(0))
    return torch.stack(outs)


def simpool_module_reference(module: SimPool, x: Tensor) -> Tensor:
    """SimPool in float64 from the module's parameters."""
    outs = []
    for n in range(x.shape[0]):
        t, _ = _tokens_of(x.double(), n)
        normed = _layer_norm_loop(t, module.norm)
        values = normed
        if module.gamma is not None:
            lowest = torch.stack([normed[:, ch].min() for ch in range(normed.shape[1])])
            values = (normed - lowest + 1e-6) ** module.gamma
        q = t.mean(0, keepdim=True)
        att = attention_loop(
            q, normed, module.q.weight.detach().double(), _d(module.q.bias),
            module.k.weight.detach().double(), _d(module.k.bias), None, None, module.num_heads, values,
        )  # fmt: skip
        outs.append(att[0] if module.gamma is None else att[0] ** (1 / module.gamma))
    return torch.stack(outs)


def module_reference(module: nn.Module, x: Tensor) -> Tensor:
    """The float64 loop reference of any of the three pools, from its parameters."""
    if isinstance(module, AttentionPool2d):
        return pool2d_module_reference(module, x)
    if isinstance(module, AttentionPoolLatent):
        return latent_module_reference(module, x)
    assert isinstance(module, SimPool), type(module)
    return simpool_module_reference(module, x)


def _reference(build: Any, run: Any) -> Any:
    def reference(x: Tensor, **kwargs: Any) -> Tensor:
        out: Tensor = run(build(**kwargs), x)
        if kwargs.get("flatten") is False:  # (N, D) -> (N, D, 1, 1) for maps, (N, 1, D) for tokens
            out = out.reshape(out.shape[0], out.shape[1], 1, 1) if x.dim() == 4 else out.unsqueeze(1)
        return out

    return reference


OPS: list[OpRecord] = [
    OpRecord(
        "attention2d",
        _function(pool2d_module),
        pool2d_module,
        _reference(pool2d_module, pool2d_module_reference),
        (
            Case((2, 4, 3, 3), {"dim": 4, "num_heads": 2, "feat_size": 3}),
            Case((2, 6, 3, 4), {"dim": 6, "num_heads": 3, "feat_size": (3, 4), "out_dim": 5}),
            Case((1, 4, 5, 2), {"dim": 4, "num_heads": 1, "feat_size": 3}),  # the embedding resized
            Case((2, 4, 2, 2), {"dim": 4, "num_heads": 2, "feat_size": (3, 4), "qkv_bias": False}),
            Case((2, 4, 3, 2), {"dim": 4, "num_heads": 2, "feat_size": 3, "out_dim": 3, "flatten": False}),
        ),
        2,
        inputs="real",
        batchless=False,
    ),
    OpRecord(
        "attention_latent",
        _function(latent_module),
        latent_module,
        _reference(latent_module, latent_module_reference),
        (
            Case((2, 4, 3, 3), {"dim": 4, "num_heads": 2}),
            Case((2, 6, 2, 3), {"dim": 6, "num_heads": 3, "num_latents": 3, "pool": "avg", "norm": True}),
            Case(
                (1, 4, 3, 2),
                {
                    "dim": 4,
                    "num_heads": 1,
                    "num_latents": 2,
                    "out_dim": 3,
                    "act": "gelu_tanh",
                    "mlp_ratio": 2.0,
                },
            ),
            Case((2, 4, 2, 2), {"dim": 4, "num_heads": 4, "qkv_bias": False, "norm": True, "norm_eps": 1e-6}),
            Case((2, 4, 3, 2), {"dim": 4, "num_heads": 2, "num_latents": 2, "out_dim": 3, "flatten": False}),
        ),
        2,
        inputs="real",
        batchless=False,
    ),
    OpRecord(
        "simpool",
        _function(simpool_module),
        simpool_module,
        _reference(simpool_module, simpool_module_reference),
        (
            Case((2, 4, 3, 3), {"dim": 4}),
            Case((2, 6, 2, 3), {"dim": 6, "num_heads": 3, "qkv_bias": True}),
            Case((1, 4, 3, 2), {"dim": 4, "num_heads": 2, "gamma": 2.0}),
            Case((2, 4, 2, 2), {"dim": 4, "gamma": 1.5, "qkv_bias": True}),
            Case((2, 4, 3, 2), {"dim": 4, "num_heads": 2, "flatten": False}),
        ),
        2,
        inputs="real",
        batchless=False,
    ),
]


PAGE = "attention"

#: every position is a key of every query: a non-finite cell reaches all of its sample's outputs.
_NONFINITE = {
    "nan": Out("nan@sample", "every output of the sample is NaN (all positions are keys of the query)"),
    "+inf": Out(
        "nan@sample", "the cell's logit or value is infinite: inf - inf or inf * 0 = NaN in the softmax"
    ),
    "-inf": Out("nan@sample", "as for +inf"),
}
_TINY = Out("as-zeros", "the input is negligible next to the biases and the positional embedding")
ATTENTION2D = {
    **STATS,
    "1x1": Out("ok", "the float64 loop reference (no closed form: the positions carry an embedding)"),
    "zeros": Out("ref, any", "the output of the positional embedding alone"),
    "ties": Out("ref, any"),
    "f32_huge": Out("nan", "LIMIT: the attention logits q . k (~1e60) overflow float32, inf - inf = NaN"),
    "f16_huge": Out("ok", "computed in float32"),
    "f32_tiny": _TINY,
    "f32_subnormal": _TINY,
    **_NONFINITE,
}
LATENT = {
    **STATS,
    "zeros": Out("as-1x1, any", "equal keys: uniform attention, the output of one token"),
    "ties": Out("as-1x1, any", "equal keys: uniform attention, the output of one token"),
    "f32_huge": Out("ok-f64", "the logits grow as the input (~1e30): a hard attention, as in float64"),
    "f16_huge": Out("ok", "computed in float32"),
    "f32_tiny": Out("as-zeros", "the input is negligible next to the biases"),
    "f32_subnormal": Out("as-zeros", "the input is negligible next to the biases"),
    **_NONFINITE,
}
_LN_EPS = "by design: LayerNorm's eps dominates the variance (~1e-60): normalised tokens ~0, as for zeros"
SIMPOOL = {
    **STATS,
    "zeros": Out("0, 0", "LayerNorm of a constant token is its bias (0 as initialised)"),
    "ties": Out("as-1x1, any", "equal keys: uniform attention, the LayerNorm-ed token"),
    "f32_huge": Out("nan", "LIMIT: LayerNorm's variance (~1e60) overflows float32 (timm's SimPool alike)"),
    "f16_huge": Out("ok", "computed in float32"),
    "f32_tiny": Out("as-zeros", _LN_EPS),
    "f32_subnormal": Out("as-zeros", _LN_EPS),
    **_NONFINITE,
}

RECORDS: list[PoolRecord] = [
    PoolRecord(
        "attention2d", PAGE, ATTENTION2D, Semantics("attention", None, False, None), "float32 (torchpool)"
    ),
    PoolRecord(
        "attention_latent", PAGE, LATENT, Semantics("stats", None, False, None), "float32 (torchpool)"
    ),
    PoolRecord("simpool", PAGE, SIMPOOL, Semantics("stats", None, False, None), "float32 (torchpool)"),
]
