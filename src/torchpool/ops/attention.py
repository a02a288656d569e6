"""Attention pooling: a learned or input-derived query attends to the positions of a feature map.

Three heads, each as timm implements it (the outputs equal timm's modules after
``from_timm``):

* :class:`AttentionPool2d` (CLIP's head, Radford et al. 2021): the mean of the positions is
  prepended as a token, a learned positional embedding is added to every token (resized with
  timm's rule for inputs of another size), multi-head self-attention runs over the ``L + 1``
  tokens, and the mean token's output, projected, is the result.
* :class:`AttentionPoolLatent` (the "MAP" head of SigLIP-style models, Lee et al. 2019 /
  Zhai et al. 2023): a learned latent query attends to the positions, then a projection and a
  residual MLP (after an optional LayerNorm); the first latent's output (``pool="token"``) or the
  mean over the latents (``pool="avg"``).
* :class:`SimPool` (Psomas et al., "Keep It SimPool", ICCV 2023): the global average of the
  positions, projected, is the query; the LayerNorm-ed positions are the values and, projected,
  the keys; optionally a power mean of the values (``gamma``).

How it is computed. Only one query per latent (or the mean token) is ever needed, so nothing is
computed for the other queries, and the key and value projections are moved onto the query side
(exact in real arithmetic): per head ``h``, ``q_h . (W_k,h t + b_k,h) = (W_k,h^T q_h) . t + c``
and the constant ``c`` cancels in the softmax, so the key bias never enters; and since the
weights of a softmax sum to one, ``sum_j a_j (W_v,h t_j + b_v,h) = W_v,h (sum_j a_j t_j) + b_v,h``.
So :func:`torch.nn.functional.scaled_dot_product_attention` runs with the head-lifted queries
``W_k,h^T q_h`` (``C`` wide; the heads are rows of one query block, so the tokens are not
repeated per head) against the raw tokens, and the value projection is applied once to each
head's pooled token. The cost per sample is
``O(L C heads + C^2)`` instead of the ``O(L C^2)`` of projecting every position.

There are no functional forms: each head owns several learned tensors (projections, latents, a
positional embedding, a norm), so a function would take half a dozen weight arguments in an
order no peer shares; the Modules (and ``from_timm``) are the API. The ``from_timm`` readers
(what each timm configuration maps to, and the refusals) are in ``ops/_attention_timm.py``.

Input: ``(N, C, H, W)`` feature maps or ``(N, L, C)`` token sequences (a 3-d input is always
tokens; :class:`AttentionPool2d` takes them as the ``feat_size`` grid flattened row-major).
Output: ``(N, out_dim)``; with ``flatten=False`` the pooled axes are kept with size 1 in the
input's layout, as ``GeM`` and ``global_avg_pool`` keep them: ``(N, out_dim, 1, 1)`` for a
feature map (in place of a ``(N, C, 1, 1)`` pool, e.g. before a ConvNeXt head's LayerNorm2d),
``(N, 1, out_dim)`` for tokens (one token, as ``global_avg_pool(x, input_fmt="NHWC",
flatten=False)`` gives for a sequence). Half-precision input is computed in float32 and
rounded once.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_bool, check_choice, check_float_range
from ..registry import register_pool
from ._attention_timm import GELU_APPROXIMATE, attention2d_from_timm, latent_from_timm, simpool_from_timm

__all__ = ["AttentionPool2d", "AttentionPoolLatent", "SimPool"]


# ------------------------------------------------------------------ checks and helpers


def _check_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_heads(dim: int, num_heads: object) -> int:
    heads = _check_int(num_heads, "num_heads")
    if dim % heads:
        raise ValueError(f"num_heads must divide dim ({dim}), got {heads}")
    return heads


def _check_feat_size(feat_size: object) -> tuple[int, int]:
    if isinstance(feat_size, (tuple, list)):
        if len(feat_size) != 2:
            raise ValueError(f"feat_size must be an int or a pair of ints, got {feat_size!r}")
        return _check_int(feat_size[0], "feat_size"), _check_int(feat_size[1], "feat_size")
    size = _check_int(feat_size, "feat_size")
    return size, size


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half-precision input is computed in float32."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _tokens(x: object, dim: int) -> tuple[Tensor, tuple[int, int] | None]:
    """``(N, C, H, W)`` -> ``(N, H * W, C)`` and ``(H, W)``; ``(N, L, C)`` tokens as they are."""
    if not isinstance(x, Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"input must have a floating-point dtype, got {x.dtype}")
    if x.dim() == 4:
        if x.shape[1] != dim:
            raise ValueError(f"input must have dim={dim} channels (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[2] * x.shape[3] == 0:
            raise ValueError(f"input must have non-zero spatial sizes, got shape {tuple(x.shape)}")
        return x.flatten(2).transpose(1, 2), (x.shape[2], x.shape[3])
    if x.dim() == 3:
        if x.shape[2] != dim:
            raise ValueError(
                f"input tokens must be (N, L, C) with C = dim = {dim}, got shape {tuple(x.shape)}"
            )
        if x.shape[1] == 0:
            raise ValueError(f"input must have at least one token, got shape {tuple(x.shape)}")
        return x, None
    raise ValueError(f"input must be (N, C, H, W) features or (N, L, C) tokens, got shape {tuple(x.shape)}")


def _lifted(q: Tensor, weight: Tensor, heads: int) -> Tensor:
    """``(..., heads * d)`` queries and a ``(heads * d, C)`` key weight -> ``(..., heads, C)``."""
    d = weight.shape[0] // heads
    q = q.reshape(*q.shape[:-1], heads, d)
    return torch.einsum("...hd,hdc->...hc", q, weight.reshape(heads, d, weight.shape[1]))


def _value_projection(pooled: Tensor, weight: Tensor, bias: Tensor | None, heads: int) -> Tensor:
    """``(..., heads, C)`` pooled tokens per head -> ``(..., heads * d)`` with head ``h``'s value rows."""
    d = weight.shape[0] // heads
    out = torch.einsum("...hc,hdc->...hd", pooled, weight.reshape(heads, d, weight.shape[1]))
    out = out.reshape(*out.shape[:-2], heads * d)
    return out if bias is None else out + bias


def _attend(queries: Tensor, keys: Tensor, values: Tensor, scale: float) -> Tensor:
    """``(N or 1, Q, C)`` queries (one per head and latent) against ``(N, L, C)`` keys and values.

    The queries of all heads are one attention "head" of ``Q`` rows (each softmax is per row), so
    the keys and values are never repeated per head.
    """
    if queries.shape[0] != keys.shape[0]:
        queries = queries.expand(keys.shape[0], -1, -1)
    out = F.scaled_dot_product_attention(queries[:, None], keys[:, None], values[:, None], scale=scale)
    return out[:, 0]


def _linear(x: Tensor, layer: nn.Linear, dtype: torch.dtype) -> Tensor:
    bias = None if layer.bias is None else layer.bias.to(dtype)
    return F.linear(x, layer.weight.to(dtype), bias)


def _layer_norm(x: Tensor, norm: nn.LayerNorm, dtype: torch.dtype) -> Tensor:
    weight = None if norm.weight is None else norm.weight.to(dtype)
    bias = None if norm.bias is None else norm.bias.to(dtype)
    return F.layer_norm(x, norm.normalized_shape, weight, bias, norm.eps)


def _finish(out: Tensor, x: Tensor, flatten: bool) -> Tensor:
    """``(N, D)`` as it is, or with the pooled axes of ``x`` kept (size 1) in its layout (views)."""
    if flatten:
        return out
    return out[:, :, None, None] if x.dim() == 4 else out[:, None, :]


# ------------------------------------------------------------------ CLIP's AttentionPool2d


class AttentionPool2d(nn.Module):
    r"""CLIP's attention pooling head, as ``timm.layers.AttentionPool2d`` with ``pool_type="token"``.

    The tokens are the positions; their mean is prepended, a learned positional embedding
    ``pos_embed`` (``feat_size[0] * feat_size[1] + 1`` rows) is added, multi-head self-attention
    (a fused ``qkv`` projection, ``num_heads`` heads) runs over the ``L + 1`` tokens and the mean
    token's output, through ``proj``, is returned. For an input of another size the
    embedding's grid part is resized as timm does (``F.interpolate``, bicubic, antialiased,
    ``align_corners=None``; in float32 for half-precision input, else in the input's dtype; the
    mean token's row is kept). Parameter names match timm's, so a timm state dict loads.

    Note: ``num_heads`` defaults to 8; timm's module defaults to ``head_dim=64`` (``dim / 64``
    heads): pass ``num_heads=dim // 64`` for timm's default (``from_timm`` reads it).

    Args:
        dim: channels ``C`` of the input.
        num_heads: attention heads; must divide ``dim``.
        feat_size: the grid the positional embedding is learned for: ``int`` or ``(H, W)``.
        out_dim: output features (``proj``); default ``dim``.
        qkv_bias: whether the ``qkv`` projection has a bias (the key part never affects the
            output: it cancels in the softmax).
        flatten: return ``(N, out_dim)``; otherwise keep the pooled axes with size 1:
            ``(N, out_dim, 1, 1)`` for a feature map, ``(N, 1, out_dim)`` for tokens.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - Input: ``(N, C, H, W)``, or ``(N, L, C)`` tokens with ``L = feat_size[0] * feat_size[1]``
          (the grid flattened row-major).
        - Output: ``(N, out_dim)`` if ``flatten``, else ``(N, out_dim, 1, 1)`` (feature map) or
          ``(N, 1, out_dim)`` (tokens).

    Example:
        >>> pool = AttentionPool2d(64, num_heads=4, feat_size=7, out_dim=32)
        >>> pool(torch.randn(2, 64, 7, 7)).shape
        torch.Size([2, 32])
        >>> pool(torch.randn(2, 64, 9, 5)).shape  # the positional embedding is resized
        torch.Size([2, 32])
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        feat_size: int | tuple[int, int] = 7,
        out_dim: int | None = None,
        *,
        qkv_bias: bool = True,
        flatten: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.dim = _check_int(dim, "dim")
        self.num_heads = _check_heads(self.dim, num_heads)
        self.feat_size = _check_feat_size(feat_size)
        self.out_dim = self.dim if out_dim is None else _check_int(out_dim, "out_dim")
        check_bool(qkv_bias, "qkv_bias")
        self.flatten = check_bool(flatten, "flatten")
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.qkv = nn.Linear(self.dim, 3 * self.dim, bias=qkv_bias, **factory)
        self.proj = nn.Linear(self.dim, self.out_dim, **factory)
        self.pos_embed = nn.Parameter(
            torch.empty(self.feat_size[0] * self.feat_size[1] + 1, self.dim, **factory)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """timm's initialisation: truncated normal (std ``dim**-0.5``) ``qkv`` and ``pos_embed``,
        zero ``qkv`` bias, PyTorch's default ``proj``."""
        std = self.dim**-0.5
        nn.init.trunc_normal_(self.qkv.weight, std=std)
        if self.qkv.bias is not None:
            nn.init.zeros_(self.qkv.bias)
        nn.init.trunc_normal_(self.pos_embed, std=std)
        self.proj.reset_parameters()

    def _positions(self, size: tuple[int, int], dtype: torch.dtype) -> Tensor:
        """The ``(H * W + 1, C)`` positional embedding for an ``H x W`` grid, in ``dtype``."""
        pos = self.pos_embed.to(dtype)
        if size == self.feat_size:
            return pos
        grid = pos[1:].reshape(1, *self.feat_size, self.dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=size, mode="bicubic", align_corners=None, antialias=True)
        return torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(size[0] * size[1], self.dim)])

    def forward(self, x: Tensor) -> Tensor:
        """Pools ``x``; see the class docstring."""
        tokens, size = _tokens(x, self.dim)
        if size is None:
            if tokens.shape[1] != self.feat_size[0] * self.feat_size[1]:
                raise ValueError(
                    f"input tokens must number feat_size[0] * feat_size[1] = "
                    f"{self.feat_size[0] * self.feat_size[1]}, got shape {tuple(tokens.shape)}"
                )
            size = self.feat_size
        dtype = _compute_dtype(x.dtype)
        tokens = tokens.to(dtype).contiguous()  # one layout: the same rounding for every input layout
        c, heads = self.dim, self.num_heads
        seq = torch.cat([tokens.mean(1, keepdim=True), tokens], dim=1) + self._positions(size, dtype)
        weight = self.qkv.weight.to(dtype)
        bias = None if self.qkv.bias is None else self.qkv.bias.to(dtype)
        q = F.linear(seq[:, 0], weight[:c], None if bias is None else bias[:c])  # the mean token's
        lifted = _lifted(q, weight[c : 2 * c], heads)  # (N, heads, C)
        pooled = _attend(lifted, seq, seq, (c // heads) ** -0.5)  # (N, heads, C)
        out = _value_projection(pooled, weight[2 * c :], None if bias is None else bias[2 * c :], heads)
        return _finish(_linear(out, self.proj, dtype).to(x.dtype), x, self.flatten)

    @classmethod
    def from_timm(cls, module: nn.Module) -> AttentionPool2d:
        """An :class:`AttentionPool2d` with the weights of a ``timm.layers.AttentionPool2d``.

        Supported: ``pool_type="token"``, ``class_token=False`` (the mean token), ``embed_dim``
        equal to ``in_features``, an output projection (``out_features`` not 0), a fused or a
        separate (``qkv_separate=True``) projection, with or without bias. Other configurations
        raise ``ValueError``. Dropout is not copied (the result is the eval-mode output).

        Args:
            module: the timm module.

        Returns:
            A new module on the timm module's device and dtype, with copies of its weights.
        """
        return attention2d_from_timm(cls, module)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_heads={self.num_heads}, feat_size={self.feat_size}, "
            f"out_dim={self.out_dim}, flatten={self.flatten}"
        )


# ------------------------------------------------------------------ the latent query (MAP head)


class _Mlp(nn.Module):
    """timm's ``Mlp`` layout (``fc1``, GELU, ``fc2``), so state dicts carry over."""

    def __init__(self, dim: int, hidden: int, approximate: str, factory: dict[str, Any]) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, **factory)
        self.act = nn.GELU(approximate=approximate)
        self.fc2 = nn.Linear(hidden, dim, **factory)

    def run(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        return _linear(self.act(_linear(x, self.fc1, dtype)), self.fc2, dtype)


class AttentionPoolLatent(nn.Module):
    r"""A learned latent query attends to the positions, as ``timm.layers.AttentionPoolLatent``.

    ``num_latents`` learned queries (``latent``, through ``q``) attend with ``num_heads`` heads
    to the positions (keys and values from ``kv``); each latent's output goes through ``proj``,
    then ``x + mlp(norm(x))`` (``mlp``: ``fc1``, GELU, ``fc2`` with ``dim * mlp_ratio`` hidden
    units); the first latent (``pool="token"``) or the mean over the latents (``pool="avg"``).
    The defaults are timm's: ``qkv_bias=True``, no norm (timm's ``norm_layer=None``; ViTs pass a
    LayerNorm: ``norm=True, norm_eps=1e-6``), exact GELU, ``pool="token"``. Not supported (and
    refused by ``from_timm``): ``qk_norm``, an absolute ``pos_embed``, ``q_proj=False``, a
    ``latent_dim`` or ``embed_dim`` other than ``dim``, ``out_features=0``, ``pool_type=""``.
    Parameter names match timm's.

    Args:
        dim: channels ``C`` of the input.
        num_heads: attention heads; must divide ``dim``.
        num_latents: learned queries.
        mlp_ratio: hidden units of the MLP per output feature.
        out_dim: output features (``proj``); default ``dim``.
        qkv_bias: whether ``q`` and ``kv`` have biases (the key bias never affects the output).
        norm: a LayerNorm before the MLP.
        norm_eps: its eps.
        act: ``"gelu"`` (exact) or ``"gelu_tanh"``.
        pool: ``"token"`` (the first latent) or ``"avg"`` (the mean over the latents).
        flatten: return ``(N, out_dim)``; otherwise keep the pooled axes with size 1:
            ``(N, out_dim, 1, 1)`` for a feature map, ``(N, 1, out_dim)`` for tokens.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(N, L, C)`` tokens.
        - Output: ``(N, out_dim)`` if ``flatten``, else ``(N, out_dim, 1, 1)`` (feature map) or
          ``(N, 1, out_dim)`` (tokens).

    Example:
        >>> pool = AttentionPoolLatent(64, num_heads=4)
        >>> pool(torch.randn(2, 64, 7, 7)).shape
        torch.Size([2, 64])
        >>> pool(torch.randn(2, 196, 64)).shape
        torch.Size([2, 64])
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        num_latents: int = 1,
        mlp_ratio: float = 4.0,
        *,
        out_dim: int | None = None,
        qkv_bias: bool = True,
        norm: bool = False,
        norm_eps: float = 1e-5,
        act: str = "gelu",
        pool: str = "token",
        flatten: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.dim = _check_int(dim, "dim")
        self.num_heads = _check_heads(self.dim, num_heads)
        self.num_latents = _check_int(num_latents, "num_latents")
        self.mlp_ratio = check_float_range(
            mlp_ratio, "mlp_ratio", 0.0, math.inf, low_open=True, high_open=True
        )
        self.out_dim = self.dim if out_dim is None else _check_int(out_dim, "out_dim")
        check_bool(qkv_bias, "qkv_bias")
        check_bool(norm, "norm")
        self.flatten = check_bool(flatten, "flatten")
        eps = check_float_range(norm_eps, "norm_eps", 0.0, math.inf, high_open=True)
        self.act = check_choice(act, "act", GELU_APPROXIMATE)
        self.pool = check_choice(pool, "pool", ("token", "avg"))
        hidden = int(self.out_dim * self.mlp_ratio)
        if hidden < 1:
            raise ValueError(
                f"mlp_ratio must give at least one hidden unit (out_dim * mlp_ratio), got {mlp_ratio}"
            )
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.latent = nn.Parameter(torch.empty(1, self.num_latents, self.dim, **factory))
        self.q = nn.Linear(self.dim, self.dim, bias=qkv_bias, **factory)
        self.kv = nn.Linear(self.dim, 2 * self.dim, bias=qkv_bias, **factory)
        self.proj = nn.Linear(self.dim, self.out_dim, **factory)
        self.norm: nn.Module = nn.LayerNorm(self.out_dim, eps=eps, **factory) if norm else nn.Identity()
        self.mlp = _Mlp(self.out_dim, hidden, GELU_APPROXIMATE[self.act], factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """timm's initialisation of the latent (truncated normal, std ``dim**-0.5``, cut at
        2 std); PyTorch's defaults for the linear layers and the norm."""
        std = self.dim**-0.5
        nn.init.trunc_normal_(self.latent, std=std, a=-2 * std, b=2 * std)
        for layer in (self.q, self.kv, self.proj, self.mlp.fc1, self.mlp.fc2, self.norm):
            if isinstance(layer, (nn.Linear, nn.LayerNorm)):
                layer.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        """Pools ``x``; see the class docstring."""
        tokens, _ = _tokens(x, self.dim)
        dtype = _compute_dtype(x.dtype)
        tokens = tokens.to(dtype).contiguous()  # one layout: the same rounding for every input layout
        c, heads = self.dim, self.num_heads
        weight = self.kv.weight.to(dtype)
        bias = None if self.kv.bias is None else self.kv.bias.to(dtype)
        q = _linear(self.latent[0].to(dtype), self.q, dtype)  # (latents, C)
        lifted = _lifted(q, weight[:c], heads).reshape(1, -1, c)  # (1, latents * heads, C)
        pooled = _attend(lifted, tokens, tokens, (c // heads) ** -0.5)
        pooled = pooled.reshape(pooled.shape[0], self.num_latents, heads, c)
        out = _value_projection(pooled, weight[c:], None if bias is None else bias[c:], heads)
        out = _linear(out, self.proj, dtype)
        normed = _layer_norm(out, self.norm, dtype) if isinstance(self.norm, nn.LayerNorm) else out
        out = out + self.mlp.run(normed, dtype)
        out = out[:, 0] if self.pool == "token" else out.mean(1)
        return _finish(out.to(x.dtype), x, self.flatten)

    @classmethod
    def from_timm(cls, module: nn.Module) -> AttentionPoolLatent:
        """An :class:`AttentionPoolLatent` with the weights of a ``timm.layers.AttentionPoolLatent``.

        Supported: ``pool_type`` ``"token"`` or ``"avg"``, ``norm_layer`` None or an affine
        LayerNorm, GELU (exact or tanh) activation, ``qkv_bias`` either way. Refused with
        ``ValueError``: ``qk_norm``, ``pos_embed="abs"``, ``q_proj=False``, ``embed_dim`` or
        ``latent_dim`` other than ``in_features``, ``out_features=0``, another pool type, another
        activation or norm. Dropout is not copied (the result is the eval-mode output).

        Args:
            module: the timm module.

        Returns:
            A new module on the timm module's device and dtype, with copies of its weights.
        """
        return latent_from_timm(cls, module)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_heads={self.num_heads}, num_latents={self.num_latents}, "
            f"mlp_ratio={self.mlp_ratio}, out_dim={self.out_dim}, act={self.act!r}, pool={self.pool!r}, "
            f"flatten={self.flatten}"
        )


# ------------------------------------------------------------------ SimPool


class SimPool(nn.Module):
    r"""SimPool (Psomas et al. 2023), as ``timm.layers.SimPool2d`` / ``SimPool1d``.

    The query is the global average of the positions through ``q``; the keys are the
    LayerNorm-ed positions (``norm``) through ``k``; the values are the LayerNorm-ed positions
    themselves (no value projection), split into ``num_heads`` heads. With ``gamma`` the values
    are shifted to be positive (``v - min_j v + 1e-6`` per channel) and pooled as a power mean:
    ``(sum_j a_j v_j^gamma)^(1/gamma)``. The defaults are timm's: ``qkv_bias=False``, LayerNorm
    with eps ``1e-5``, no ``qk_norm`` (not supported). Parameter names match timm's.

    Args:
        dim: channels ``C`` of the input.
        num_heads: attention heads; must divide ``dim``.
        gamma: the power of the power mean; None for the plain attention-weighted mean.
        qkv_bias: whether ``q`` and ``k`` have biases (the key bias never affects the output).
        norm_eps: the LayerNorm's eps.
        flatten: return ``(N, C)``; otherwise keep the pooled axes with size 1:
            ``(N, C, 1, 1)`` for a feature map, ``(N, 1, C)`` for tokens.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(N, L, C)`` tokens.
        - Output: ``(N, C)`` if ``flatten``, else ``(N, C, 1, 1)`` (feature map) or
          ``(N, 1, C)`` (tokens).

    Example:
        >>> pool = SimPool(64)
        >>> pool(torch.randn(2, 64, 7, 7)).shape
        torch.Size([2, 64])
        >>> SimPool(64, num_heads=4, gamma=2.0)(torch.randn(2, 49, 64)).shape
        torch.Size([2, 64])
        >>> SimPool(64, flatten=False)(torch.randn(2, 64, 7, 7)).shape  # for a (N, C, 1, 1) slot
        torch.Size([2, 64, 1, 1])
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 1,
        gamma: float | None = None,
        *,
        qkv_bias: bool = False,
        norm_eps: float = 1e-5,
        flatten: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.dim = _check_int(dim, "dim")
        self.num_heads = _check_heads(self.dim, num_heads)
        self.gamma = (
            None
            if gamma is None
            else check_float_range(gamma, "gamma", 0.0, math.inf, low_open=True, high_open=True)
        )
        check_bool(qkv_bias, "qkv_bias")
        self.flatten = check_bool(flatten, "flatten")
        eps = check_float_range(norm_eps, "norm_eps", 0.0, math.inf, high_open=True)
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.norm = nn.LayerNorm(self.dim, eps=eps, **factory)
        self.q = nn.Linear(self.dim, self.dim, bias=qkv_bias, **factory)
        self.k = nn.Linear(self.dim, self.dim, bias=qkv_bias, **factory)

    def forward(self, x: Tensor) -> Tensor:
        """Pools ``x``; see the class docstring."""
        tokens, _ = _tokens(x, self.dim)
        dtype = _compute_dtype(x.dtype)
        tokens = tokens.to(dtype).contiguous()  # one layout: the same rounding for every input layout
        heads = self.num_heads
        q = _linear(tokens.mean(1), self.q, dtype)  # (N, C)
        lifted = _lifted(q, self.k.weight.to(dtype), heads)  # (N, heads, C)
        normed = _layer_norm(tokens, self.norm, dtype)
        values = normed
        if self.gamma is not None:
            values = (normed - normed.amin(1, keepdim=True) + 1e-6).pow(self.gamma)
        pooled = _attend(lifted, normed, values, (self.dim // heads) ** -0.5)  # (N, heads, C)
        if heads > 1:  # head h keeps its own channels
            blocks = pooled.reshape(*pooled.shape[:2], heads, self.dim // heads)  # (N, q head, c head, d)
            pooled = torch.diagonal(blocks, dim1=1, dim2=2).transpose(1, 2)
        out = pooled.reshape(pooled.shape[0], self.dim)
        if self.gamma is not None:
            out = out.pow(1.0 / self.gamma)
        elif heads == 1:  # a view of the attention's output, which its backward keeps: an in-place
            out = out.clone()  # op after the pool (EfficientNet's Dropout(inplace=True)) would break it
        return _finish(out.to(x.dtype), x, self.flatten)

    @classmethod
    def from_timm(cls, module: nn.Module) -> SimPool:
        """A :class:`SimPool` with the weights of a ``timm.layers.SimPool2d`` or ``SimPool1d``.

        Supported: ``qkv_bias`` either way, ``gamma``, ``num_heads``, an affine LayerNorm
        ``norm_layer`` (any eps). Refused with ``ValueError``: ``qk_norm=True``, another norm.

        Args:
            module: the timm module.

        Returns:
            A new module on the timm module's device and dtype, with copies of its weights.
        """
        return simpool_from_timm(cls, module)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, gamma={self.gamma}, flatten={self.flatten}"


register_pool(
    "attention2d",
    AttentionPool2d,
    family="attention",
    dims=(2,),
    trainable=True,
    channel_multiplier=None,
    description="mean token + learned positions, multi-head attention (CLIP, Radford et al. 2021)",
    example_kwargs={"dim": 4, "num_heads": 2, "feat_size": 8},
)
register_pool(
    "attention_latent",
    AttentionPoolLatent,
    family="attention",
    dims=(2,),
    trainable=True,
    channel_multiplier=None,
    description="a learned latent query attends to the positions, then an MLP (MAP, Zhai et al. 2023)",
    example_kwargs={"dim": 4, "num_heads": 2},
)
register_pool(
    "simpool",
    SimPool,
    family="attention",
    dims=(2,),
    trainable=True,
    channel_multiplier=None,
    description="the GAP query attends to the LayerNorm-ed positions (SimPool, Psomas et al. 2023)",
    example_kwargs={"dim": 4, "num_heads": 2},
)
