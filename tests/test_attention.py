"""Attention pools: timm's modules (after ``from_timm``), resized positional embeddings, tokens,
parameter gradients, refusals.

The float64 loop references are in ``tests/records/attention.py`` (``OPS``, run by
``test_ops.py``). The timm comparisons run in the zoo environment (``pytest.importorskip``).
Tolerances against timm: float64 ``rtol = atol = 1e-12`` (the projections are reassociated:
``(W_k^T q) . t`` instead of ``q . (W_k t)``, so the results differ by rounding only), float32
``rtol = atol = 2e-5`` at these sizes (inputs and weights of order 1).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from records.attention import (
    aa_bicubic_matrix,
    latent_module,
    latent_module_reference,
    pool2d_module,
    pool2d_module_reference,
    randomize,
    simpool_module,
    simpool_module_reference,
)
from torch import nn

import torchpool as tp
from torchpool.ops.attention import AttentionPool2d, AttentionPoolLatent, SimPool

TOL64 = 1e-12
TOL32 = 2e-5


def _x(*shape: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ------------------------------------------------------------------ without timm


def test_resize_rule_is_antialiased_bicubic() -> None:
    """The reference's loop resampler equals ``F.interpolate(bicubic, antialias=True)``: up and down."""
    grid = _x(1, 3, 5, 4)
    for size in ((7, 9), (2, 3), (5, 1), (1, 1), (11, 4)):
        expected = F.interpolate(grid, size=size, mode="bicubic", antialias=True, align_corners=None)
        rows, cols = aa_bicubic_matrix(5, size[0]), aa_bicubic_matrix(4, size[1])
        got = torch.einsum("ia,jb,ncab->ncij", rows, cols, grid)
        torch.testing.assert_close(got, expected, rtol=TOL64, atol=TOL64)


@pytest.mark.parametrize("size", [(3, 3), (5, 7), (2, 2), (1, 1), (6, 2)])
def test_attention2d_other_sizes(size: tuple[int, int]) -> None:
    module = pool2d_module(dim=6, num_heads=2, feat_size=(3, 4), out_dim=5).double()
    x = _x(2, 6, *size)
    torch.testing.assert_close(module(x), pool2d_module_reference(module, x), rtol=1e-10, atol=1e-10)


def test_tokens_equal_feature_maps() -> None:
    x = _x(2, 8, 3, 4)
    tokens = x.flatten(2).transpose(1, 2)
    for module in (
        pool2d_module(dim=8, num_heads=2, feat_size=(3, 4)),
        latent_module(dim=8, num_heads=4, num_latents=2),
        simpool_module(dim=8, num_heads=2, gamma=2.0),
    ):
        module = module.double()
        torch.testing.assert_close(module(tokens), module(x), rtol=1e-14, atol=1e-14)


def test_tokens_reference() -> None:
    """Token input against the references (which read ``(N, L, C)`` directly)."""
    x = _x(2, 5, 4)
    latent = latent_module(dim=4, num_heads=2).double()
    torch.testing.assert_close(latent(x), latent_module_reference(latent, x), rtol=1e-10, atol=1e-10)
    sim = simpool_module(dim=4, num_heads=2).double()
    torch.testing.assert_close(sim(x), simpool_module_reference(sim, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "build",
    [
        lambda: pool2d_module(dim=4, num_heads=2, feat_size=2, out_dim=3),
        lambda: latent_module(dim=4, num_heads=2, num_latents=2, mlp_ratio=1.0, norm=True),
        lambda: simpool_module(dim=4, num_heads=2, qkv_bias=True),
        lambda: simpool_module(dim=4, gamma=2.0),
    ],
    ids=["attention2d", "latent", "simpool", "simpool-gamma"],
)
def test_gradcheck_input_and_parameters(build: Any) -> None:
    module = build().double()
    x = _x(2, 4, 3, 2) if not isinstance(module, SimPool) or module.gamma is None else _x(2, 4, 3, 2).abs()
    x.requires_grad_(True)
    names = [name for name, _ in module.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in module.parameters())

    def run(inp: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.func.functional_call(module, dict(zip(names, ps)), (inp,))
        return out

    assert torch.autograd.gradcheck(run, (x, *params), eps=1e-6, atol=1e-6)


def test_state_dict_round_trip() -> None:
    for build in (
        lambda: pool2d_module(dim=8, num_heads=2, feat_size=3),
        lambda: latent_module(dim=8, num_heads=2, norm=True),
        lambda: simpool_module(dim=8, num_heads=2, gamma=2.0),
    ):
        module = build()
        fresh = type(module)(**_ctor_kwargs(module))
        fresh.load_state_dict(module.state_dict())
        x = _x(2, 8, 3, 3, dtype=torch.float32)
        torch.testing.assert_close(fresh(x), module(x), rtol=0, atol=0)


def _ctor_kwargs(module: nn.Module) -> dict[str, Any]:
    if isinstance(module, AttentionPool2d):
        return {"dim": module.dim, "num_heads": module.num_heads, "feat_size": module.feat_size}
    if isinstance(module, AttentionPoolLatent):
        return {"dim": module.dim, "num_heads": module.num_heads, "norm": True}
    assert isinstance(module, SimPool)
    return {"dim": module.dim, "num_heads": module.num_heads, "gamma": module.gamma}


def test_half_input_is_computed_in_float32() -> None:
    module = simpool_module(dim=8, num_heads=2)
    x = _x(2, 8, 3, 3, dtype=torch.float32).half()
    y = module(x)
    assert y.dtype == torch.float16
    torch.testing.assert_close(y, module(x.float()).half(), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("build", "x", "error", "match"),
    [
        (lambda: SimPool(4), _x(2, 3, 2, 2), ValueError, r"dim=4 channels"),
        (lambda: SimPool(4), _x(2, 3, 5), ValueError, r"C = dim = 4"),
        (lambda: SimPool(4), _x(2, 4), ValueError, r"\(N, C, H, W\) features or \(N, L, C\) tokens"),
        (lambda: SimPool(4), torch.ones(2, 4, 2, 2, dtype=torch.long), TypeError, "floating-point"),
        (lambda: SimPool(4), _x(2, 4, 0, 2), ValueError, "non-zero spatial"),
        (lambda: AttentionPool2d(4, 2, feat_size=3), _x(2, 8, 4), ValueError, "feat_size"),
    ],
)
def test_bad_input(build: Any, x: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        build().double()(x)


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: AttentionPool2d(6, 4), ValueError, r"num_heads must divide dim \(6\)"),
        (lambda: AttentionPool2d(6, 2, feat_size=(2, 0)), ValueError, "feat_size"),
        (lambda: AttentionPool2d(6, 2, feat_size=(2, 3, 4)), ValueError, "feat_size"),  # type: ignore[arg-type]
        (lambda: AttentionPool2d(6.0, 2), TypeError, "dim must be an int"),  # type: ignore[arg-type]
        (lambda: AttentionPoolLatent(4, 2, num_latents=0), ValueError, "num_latents"),
        (lambda: AttentionPoolLatent(4, 2, mlp_ratio=0.0), ValueError, "mlp_ratio"),
        (lambda: AttentionPoolLatent(4, 2, pool="max"), ValueError, "pool"),
        (lambda: AttentionPoolLatent(4, 2, act="relu"), ValueError, "act"),
        (lambda: SimPool(4, gamma=0.0), ValueError, "gamma"),
        (lambda: SimPool(4, qkv_bias=1), TypeError, "qkv_bias"),  # type: ignore[arg-type]
        (lambda: AttentionPool2d(4, 2, flatten=1), TypeError, "flatten must be a bool, got int"),  # type: ignore[arg-type]
        (lambda: AttentionPoolLatent(4, 2, flatten="no"), TypeError, "flatten must be a bool, got str"),  # type: ignore[arg-type]
        (lambda: SimPool(4, flatten=None), TypeError, "flatten must be a bool, got NoneType"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments(build: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        build()


FLATTEN_BUILDS = [
    lambda **kw: pool2d_module(dim=8, num_heads=2, feat_size=(3, 4), out_dim=5, **kw),
    lambda **kw: latent_module(dim=8, num_heads=4, num_latents=2, out_dim=6, norm=True, **kw),
    lambda **kw: simpool_module(dim=8, num_heads=2, gamma=2.0, **kw),
]


@pytest.mark.parametrize("build", FLATTEN_BUILDS, ids=["attention2d", "latent", "simpool"])
def test_flatten_false_keeps_the_pooled_axes(build: Any) -> None:
    """``flatten=False``: ``(N, D, 1, 1)`` for maps, ``(N, 1, D)`` for tokens, the same values;
    no new state (the state dicts of both settings load into each other)."""
    flat, kept = build().double(), build(flatten=False).double()
    assert flat.flatten is True and kept.flatten is False
    assert "flatten=True" in repr(flat) and "flatten=False" in repr(kept)
    assert flat.state_dict().keys() == kept.state_dict().keys()
    kept.load_state_dict(flat.state_dict())  # strict: no key missing or unexpected
    maps = _x(3, 8, 3, 4).abs()
    tokens = maps.flatten(2).transpose(1, 2)
    expected = flat(maps)
    d = expected.shape[1]
    assert d == {AttentionPool2d: 5, AttentionPoolLatent: 6, SimPool: 8}[type(flat)]
    y_maps, y_tokens = kept(maps), kept(tokens)
    assert y_maps.shape == (3, d, 1, 1) and y_tokens.shape == (3, 1, d)
    torch.testing.assert_close(y_maps.reshape(3, d), expected, rtol=0, atol=0)
    torch.testing.assert_close(y_tokens.reshape(3, d), flat(tokens), rtol=0, atol=0)
    half = kept.float()(maps.half())  # the half-precision path ends in the same reshape
    assert half.shape == (3, d, 1, 1) and half.dtype == torch.float16


def test_registered() -> None:
    names = {info.name: info for info in tp.list_pools()}
    for name in ("attention2d", "attention_latent", "simpool"):
        assert names[name].family == "attention" and names[name].channel_multiplier is None
        y = tp.create_pool(name, **names[name].example_kwargs)(torch.rand(2, 4, 8, 8))
        assert y.shape == (2, 4)


# ------------------------------------------------------------------ timm


def _timm() -> Any:
    return pytest.importorskip("timm.layers")


def _fill(module: nn.Module, seed: int = 7) -> nn.Module:
    """Every timm parameter non-trivial (its biases start at 0)."""
    randomize(module, seed)
    return module.eval()


def _set_fused(module: nn.Module, fused: bool) -> None:
    for m in module.modules():
        if hasattr(m, "fused_attn"):
            setattr(m, "fused_attn", fused)  # noqa: B010  (an attribute Module's typing does not know)


ATTN2D = [
    {"in_features": 16, "feat_size": 3, "num_heads": 4},
    {"in_features": 16, "feat_size": (2, 3), "head_dim": 4, "out_features": 10},
    {"in_features": 16, "feat_size": 3, "num_heads": 2, "qkv_separate": True},
]  # qkv_bias=False: timm's init_weights zeroes the missing bias and fails (the reference covers it)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("kwargs", ATTN2D, ids=str)
def test_attention2d_equals_timm(kwargs: dict[str, Any], fused: bool) -> None:
    layers = _timm()
    theirs = _fill(layers.AttentionPool2d(**kwargs))
    _set_fused(theirs, fused)
    ours = AttentionPool2d.from_timm(theirs)
    assert ours.flatten is True
    feat = kwargs["feat_size"] if isinstance(kwargs["feat_size"], tuple) else (kwargs["feat_size"],) * 2
    x = _x(3, 16, *feat)
    with torch.no_grad():
        torch.testing.assert_close(ours.double()(x), theirs.double()(x), rtol=TOL64, atol=TOL64)
        # other sizes: timm resizes in float32 whatever the dtype, so compare in float32
        ours, theirs = ours.float(), theirs.float()
        for size in ((5, 6), (2, 2), (1, 4), feat):
            x32 = _x(3, 16, *size, dtype=torch.float32, seed=1)
            torch.testing.assert_close(ours(x32), theirs(x32), rtol=TOL32, atol=TOL32)


def test_attention2d_loads_timm_state_dict() -> None:
    layers = _timm()
    theirs = _fill(layers.AttentionPool2d(16, feat_size=3, num_heads=4, out_features=8))
    ours = AttentionPool2d(16, 4, 3, 8)
    ours.load_state_dict(theirs.state_dict())
    x = _x(2, 16, 3, 3, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=TOL32, atol=TOL32)


LATENT = [
    {"in_features": 16, "num_heads": 4},
    {"in_features": 16, "num_heads": 2, "latent_len": 3, "pool_type": "avg", "norm_layer": nn.LayerNorm},
    {"in_features": 16, "num_heads": 8, "latent_len": 2, "out_features": 12, "mlp_ratio": 1.5},
    {"in_features": 16, "num_heads": 4, "qkv_bias": False, "act_layer": "gelu_tanh"},
]


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("kwargs", LATENT, ids=str)
def test_latent_equals_timm(kwargs: dict[str, Any], fused: bool) -> None:
    layers = _timm()
    kwargs = dict(kwargs)
    if kwargs.get("act_layer") == "gelu_tanh":
        kwargs["act_layer"] = layers.get_act_layer("gelu_tanh")
    theirs = _fill(layers.AttentionPoolLatent(**kwargs))
    _set_fused(theirs, fused)
    ours = AttentionPoolLatent.from_timm(theirs)
    assert ours.flatten is True
    tokens = _x(3, 10, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours.double()(tokens), theirs.double()(tokens), rtol=TOL64, atol=TOL64)
        maps = _x(2, 16, 3, 4)
        torch.testing.assert_close(
            ours(maps), theirs(maps.flatten(2).transpose(1, 2)), rtol=TOL64, atol=TOL64
        )


SIMPOOL = [
    {"dim": 16},
    {"dim": 16, "num_heads": 4, "qkv_bias": True},
    {"dim": 16, "num_heads": 2, "gamma": 2.0},
    {"dim": 16, "gamma": 1.25, "norm_layer": lambda d, **kw: nn.LayerNorm(d, eps=1e-6, **kw)},
]


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("kwargs", SIMPOOL, ids=str)
def test_simpool_equals_timm(kwargs: dict[str, Any], fused: bool) -> None:
    layers = _timm()
    for cls, x in ((layers.SimPool2d, _x(3, 16, 4, 5)), (layers.SimPool1d, _x(3, 9, 16))):
        theirs = _fill(cls(**kwargs)).double()
        _set_fused(theirs, fused)
        ours = SimPool.from_timm(theirs)
        assert ours.flatten is True
        with torch.no_grad():
            torch.testing.assert_close(ours(x), theirs(x), rtol=TOL64, atol=TOL64)
            x32, ours32, theirs32 = x.float(), ours.float(), theirs.float()
            torch.testing.assert_close(ours32(x32), theirs32(x32), rtol=TOL32, atol=TOL32)


def test_from_timm_refuses_unsupported() -> None:
    layers = _timm()
    SimPool2d = layers.SimPool2d
    cases: list[tuple[Any, Any, str]] = [
        (AttentionPool2d, layers.AttentionPool2d(8, 2, num_heads=2, class_token=True), "class_token"),
        (AttentionPool2d, layers.AttentionPool2d(8, 2, num_heads=2, pool_type=""), "pool_type"),
        (AttentionPool2d, layers.AttentionPool2d(8, 2, num_heads=2, embed_dim=16), "embed_dim"),
        (AttentionPool2d, layers.AttentionPool2d(8, 2, num_heads=2, out_features=0), "out_features=0"),
        (AttentionPoolLatent, layers.AttentionPoolLatent(8, num_heads=2, qk_norm=True), "qk_norm"),
        (
            AttentionPoolLatent,
            layers.AttentionPoolLatent(8, num_heads=2, pos_embed="abs", feat_size=4),
            "pos",
        ),
        (AttentionPoolLatent, layers.AttentionPoolLatent(8, num_heads=2, q_proj=False), "q_proj"),
        (AttentionPoolLatent, layers.AttentionPoolLatent(8, num_heads=2, pool_type=""), "pool_type"),
        (AttentionPoolLatent, layers.AttentionPoolLatent(8, num_heads=2, out_features=0), "out_features=0"),
        (AttentionPoolLatent, layers.AttentionPoolLatent(8, num_heads=2, act_layer=nn.ReLU), "activation"),
        (AttentionPoolLatent, layers.AttentionPoolLatent(8, num_heads=2, norm_layer=nn.BatchNorm1d), "norm"),
        (SimPool, SimPool2d(8, num_heads=2, qk_norm=True), "qk_norm"),
        (SimPool, SimPool2d(8, norm_layer=nn.BatchNorm1d), "norm"),
    ]
    for cls, module, match in cases:
        with pytest.raises(ValueError, match=match):
            cls.from_timm(module)


@pytest.mark.parametrize("kind", ["simpool", "attention2d"])
def test_flatten_false_replaces_convnext_global_pool(kind: str) -> None:
    """timm's ConvNeXt head pools to ``(N, C, 1, 1)`` and applies a LayerNorm2d before flattening:
    a ``flatten=False`` head drops into ``head.global_pool``."""
    timm = pytest.importorskip("timm")
    model = timm.create_model("convnext_atto", pretrained=False, num_classes=5).eval()
    c = model.num_features
    x = _x(2, 3, 64, 64, dtype=torch.float32)
    with torch.no_grad():
        feats = model.forward_features(x)
        pool: AttentionPool2d | SimPool = (
            simpool_module(dim=c, num_heads=4, flatten=False)
            if kind == "simpool"
            else pool2d_module(dim=c, num_heads=4, feat_size=tuple(feats.shape[2:]), flatten=False)
        )
        model.head.global_pool = pool
        got = model(x)
        pooled = pool(feats)
        pool.flatten = True  # the same weights, flattened; the rest of the head by hand
        head = model.head
        expected = head.fc(head.norm(pool(feats)[:, :, None, None]).flatten(1))
    assert pooled.shape == (2, c, 1, 1) and got.shape == (2, 5)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
