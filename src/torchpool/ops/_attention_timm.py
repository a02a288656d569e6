"""Reading timm's attention pooling modules: the ``from_timm`` conversions of :mod:`.attention`.

Each reader checks that the timm module is a configuration the torchpool Module computes
exactly (anything else is refused with a ``ValueError`` naming the timm option), builds the
torchpool Module on the timm module's device and dtype, and copies the weights. timm's
attributes are read by name, so timm itself is never imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .attention import AttentionPool2d, AttentionPoolLatent, SimPool

__all__ = ["GELU_APPROXIMATE", "attention2d_from_timm", "latent_from_timm", "simpool_from_timm"]

# timm's names of the two GELUs (``get_act_layer``) and ``F.gelu``'s ``approximate`` for each
GELU_APPROXIMATE = {"gelu": "none", "gelu_tanh": "tanh"}


def _refuse(source: str, what: str) -> ValueError:
    return ValueError(f"from_timm: {source} with {what} is not supported")


def _linear_has_bias(layer: Any, source: str, name: str) -> bool:
    if not isinstance(layer, nn.Linear):
        raise _refuse(source, f"{name} = {type(layer).__name__} (expected nn.Linear)")
    return layer.bias is not None


def _timm_layer_norm(norm: Any, source: str, size: int) -> float:
    """The eps of a timm norm layer that computes exactly ``F.layer_norm`` with weight and bias."""
    if (
        not isinstance(norm, nn.LayerNorm)
        or tuple(norm.normalized_shape) != (size,)
        or norm.weight is None
        or norm.bias is None
    ):
        raise _refuse(source, f"norm {norm!r} (expected an affine nn.LayerNorm({size}))")
    return float(norm.eps)


def _timm_gelu(act: nn.Module, source: str) -> str:
    """``"gelu"`` or ``"gelu_tanh"``: which one ``act`` computes, bit for bit, on a probe."""
    probe = torch.linspace(-4.0, 4.0, 101)
    with torch.no_grad():
        got = act(probe)
    for name, approximate in GELU_APPROXIMATE.items():
        if torch.equal(got, F.gelu(probe, approximate=approximate)):
            return name
    raise _refuse(source, f"the activation {type(act).__name__} (only exact or tanh GELU)")


def attention2d_from_timm(cls: type[AttentionPool2d], module: nn.Module) -> AttentionPool2d:
    """``cls.from_timm``: see :meth:`.attention.AttentionPool2d.from_timm`."""
    source = "timm AttentionPool2d"
    timm: Any = module  # timm's attributes, read by name
    if getattr(timm, "pool_type", None) != "token":
        raise _refuse(source, f"pool_type={getattr(timm, 'pool_type', None)!r} (only 'token')")
    if getattr(timm, "cls_token", None) is not None:
        raise _refuse(source, "class_token=True (only the mean token)")
    dim, embed = int(timm.in_features), int(timm.embed_dim)
    if embed != dim:
        raise _refuse(source, f"embed_dim={embed} != in_features={dim}")
    proj = timm.proj
    if not isinstance(proj, nn.Linear):
        raise _refuse(source, "out_features=0 (no output projection)")
    qkv = timm.qkv
    if qkv is None:
        parts = [getattr(timm, name) for name in ("q", "k", "v")]
        biases = {_linear_has_bias(p, source, "q/k/v") for p in parts}
        if len(biases) != 1:
            raise _refuse(source, "q, k and v projections of which only some have a bias")
        has_bias = biases.pop()
        weight = torch.cat([p.weight for p in parts])
        bias = torch.cat([p.bias for p in parts]) if has_bias else None
    else:
        has_bias = _linear_has_bias(qkv, source, "qkv")
        weight, bias = qkv.weight, qkv.bias
    pos = timm.pos_embed
    feat = tuple(int(s) for s in timm.feat_size)
    out = cls(
        dim,
        int(timm.num_heads),
        (feat[0], feat[1]),
        proj.out_features,
        qkv_bias=has_bias,
        device=pos.device,
        dtype=pos.dtype,
    )
    with torch.no_grad():
        out.qkv.weight.copy_(weight)
        if bias is not None and out.qkv.bias is not None:
            out.qkv.bias.copy_(bias)
        out.pos_embed.copy_(pos)
        out.proj.load_state_dict(proj.state_dict())
    return out


def latent_from_timm(cls: type[AttentionPoolLatent], module: nn.Module) -> AttentionPoolLatent:
    """``cls.from_timm``: see :meth:`.attention.AttentionPoolLatent.from_timm`."""
    source = "timm AttentionPoolLatent"
    timm: Any = module  # timm's attributes, read by name
    latent = timm.latent
    dim = int(latent.shape[-1])
    kv, q, proj, mlp = (getattr(timm, name) for name in ("kv", "q", "proj", "mlp"))
    pool = getattr(timm, "pool", None)
    if pool not in ("token", "avg"):
        raise _refuse(source, f"pool_type={pool!r} (only 'token' or 'avg')")
    if getattr(timm, "pos_embed", None) is not None:
        raise _refuse(source, "pos_embed='abs'")
    if not isinstance(getattr(timm, "q_norm", None), nn.Identity):
        raise _refuse(source, "qk_norm=True")
    has_bias = _linear_has_bias(kv, source, "kv")
    if _linear_has_bias(q, source, "q (q_proj=False?)") != has_bias:
        raise _refuse(source, "a bias on only one of q and kv")
    if kv.in_features != dim or q.in_features != dim or q.out_features != dim:
        raise _refuse(source, f"embed_dim or latent_dim other than in_features ({dim})")
    if mlp is None or not isinstance(proj, nn.Linear):
        raise _refuse(source, "out_features=0 (no projection and MLP)")
    norm = timm.norm
    eps = None if isinstance(norm, nn.Identity) else _timm_layer_norm(norm, source, proj.out_features)
    act = _timm_gelu(mlp.act, source)
    for name in ("norm",):
        if not isinstance(getattr(mlp, name, nn.Identity()), nn.Identity):
            raise _refuse(source, f"an MLP {name} layer")
    out = cls(
        dim,
        int(timm.num_heads),
        int(latent.shape[1]),
        mlp.fc1.out_features / proj.out_features,
        out_dim=proj.out_features,
        qkv_bias=has_bias,
        norm=eps is not None,
        norm_eps=1e-5 if eps is None else eps,
        act=act,
        pool=pool,
        device=latent.device,
        dtype=latent.dtype,
    )
    if out.mlp.fc1.out_features != mlp.fc1.out_features:  # a ratio that float rounding does not give back
        hidden, factory = mlp.fc1.out_features, {"device": latent.device, "dtype": latent.dtype}
        out.mlp.fc1 = nn.Linear(out.out_dim, hidden, **factory)  # the MLP's two layers, resized
        out.mlp.fc2 = nn.Linear(hidden, out.out_dim, **factory)
    with torch.no_grad():
        out.latent.copy_(latent)
        for name in ("q", "kv", "proj", "norm"):
            getattr(out, name).load_state_dict(getattr(timm, name).state_dict())
        out.mlp.fc1.load_state_dict(mlp.fc1.state_dict())
        out.mlp.fc2.load_state_dict(mlp.fc2.state_dict())
    return out


def simpool_from_timm(cls: type[SimPool], module: nn.Module) -> SimPool:
    """``cls.from_timm``: see :meth:`.attention.SimPool.from_timm`."""
    source = f"timm {type(module).__name__}"
    timm: Any = module  # timm's attributes, read by name
    if not isinstance(getattr(timm, "q_norm", None), nn.Identity):
        raise _refuse(source, "qk_norm=True")
    q, k = timm.q, timm.k
    has_bias = _linear_has_bias(q, source, "q")
    if _linear_has_bias(k, source, "k") != has_bias:
        raise _refuse(source, "a bias on only one of q and k")
    dim = q.in_features
    eps = _timm_layer_norm(timm.norm, source, dim)
    gamma = getattr(timm, "gamma", None)
    out = cls(
        dim,
        int(timm.num_heads),
        None if gamma is None else float(gamma),
        qkv_bias=has_bias,
        norm_eps=eps,
        device=q.weight.device,
        dtype=q.weight.dtype,
    )
    with torch.no_grad():
        for name in ("norm", "q", "k"):
            getattr(out, name).load_state_dict(getattr(timm, name).state_dict())
    return out
