"""Bilinear / second-order pooling (section 8 of the survey).

Every op here takes features ``x`` of shape ``(N, D, *S)`` (any number of spatial dims, at
least one), reads them as a ``(D, L)`` matrix per sample (``L = prod(S)`` positions, the
``f(l)`` below) and pools second-order statistics over the positions:

* :func:`bilinear_pool` (B-CNN, Lin et al., arXiv 1504.07889): the full bilinear matrix
  ``B = (1/L) sum_l f_a(l) f_b(l)^T`` (``D_a x D_b``; homogeneous / second-order pooling when
  ``f_a = f_b``), flattened, then the signed square root ``sign(y) sqrt(|y| + eps)`` and L2
  normalisation. ``sqrt(|y|)`` alone has an infinite (NaN after the chain rule) gradient at
  ``y = 0``: ``eps`` keeps it finite.
* :func:`compact_bilinear_pool` (Gao et al., arXiv 1511.06062): a ``d``-dimensional random
  feature ``phi`` with ``E <phi(x), phi(y)> = <B_x, B_y>`` (``= <x, y>^2`` for one position),
  by Tensor Sketch (Pham & Pagh) or Random Maclaurin. Each is computed along one of two
  equal paths, chosen by a cost estimate (see :func:`compact_bilinear_pool`). It lives in
  :mod:`torchpool.ops.compact_bilinear`; its names are importable from here too, as before.
* :func:`low_rank_bilinear_pool` (Kong & Fowlkes, arXiv 1611.05109): a classifier head with
  class scores ``<U_k U_k^T - V_k V_k^T, B>`` that never forms ``B``.
* :func:`matrix_sqrt_pool` (iSQRT-COV, Li et al., arXiv 1712.01034): the covariance matrix,
  normalised by its approximate square root from ``num_iters`` Newton-Schulz iterations.

Half-precision inputs are computed in float32 (matrix products, square roots, FFTs) and
returned in their own dtype. There is no batch-less form: ``(D, H, W)`` and ``(N, D, L)``
could not be told apart.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._checks import check_bool
from ..registry import register_pool
from ._second_order import _compute, _eps, _features, _normalize, _NormalizedPool, _pair, _positive_int
from .compact_bilinear import CompactBilinearPool as CompactBilinearPool
from .compact_bilinear import _sketch_buffers as _sketch_buffers
from .compact_bilinear import compact_bilinear_path as compact_bilinear_path
from .compact_bilinear import compact_bilinear_pool as compact_bilinear_pool

__all__ = [
    "BilinearPool",
    "LowRankBilinearPool",
    "MatrixSqrtPool",
    "bilinear_pool",
    "low_rank_bilinear_pool",
    "matrix_sqrt_pool",
]


# --------------------------------------------------------------------------- full bilinear


def bilinear_pool(
    x_a: Tensor,
    x_b: Tensor | None = None,
    *,
    signed_sqrt: bool = True,
    l2_normalize: bool = True,
    eps: float = 1e-5,
) -> Tensor:
    """Full bilinear pooling (B-CNN): ``(1/L) sum_l f_a(l) f_b(l)^T``, signed sqrt, L2.

    With one input this is homogeneous bilinear (second-order) pooling, bit-for-bit the
    survey's PyTorch snippet: ``bmm(X, X^T) / (H*W)``, ``sign(X) * sqrt(|X| + 1e-5)``,
    ``F.normalize``. With two inputs (multimodal) ``x_a`` and ``x_b`` must have the same
    batch and spatial sizes. The ``eps`` inside the square root is what keeps the gradient
    finite at ``0`` (``d sqrt(|y|) / dy`` is infinite there and the chain rule gives NaN);
    ``eps=0`` is accepted but gives NaN gradients wherever an entry is exactly 0.

    Args:
        x_a: features ``(N, D_a, *S)``.
        x_b: second features ``(N, D_b, *S)``; ``None`` pairs ``x_a`` with itself.
        signed_sqrt: apply ``sign(y) sqrt(|y| + eps)`` elementwise.
        l2_normalize: divide each sample by its L2 norm (``F.normalize``, zero stays zero).
        eps: added under the square root, ``>= 0``.

    Returns:
        The pooled features, row-major flattened ``D_a x D_b`` matrices.

    Shape:
        - Input: ``(N, D_a, *S)`` and optionally ``(N, D_b, *S)``.
        - Output: ``(N, D_a * D_b)``.

    Example:
        >>> x = torch.tensor([[[1.0, 3.0], [2.0, 0.0]]])
        >>> bilinear_pool(x, signed_sqrt=False, l2_normalize=False).tolist()
        [[5.0, 1.0, 1.0, 2.0]]
    """
    a, b, homogeneous, dtype = _pair(x_a, x_b)
    check_bool(signed_sqrt, "signed_sqrt")
    check_bool(l2_normalize, "l2_normalize")
    return _bilinear(a, b, homogeneous, dtype, signed_sqrt, l2_normalize, _eps(eps))


def _bilinear(
    a: Tensor,
    b: Tensor,
    homogeneous: bool,
    dtype: torch.dtype,
    signed_sqrt: bool,
    l2_normalize: bool,
    eps: float,
) -> Tensor:
    n, length = a.shape[0], a.shape[2]
    a = _compute(a)
    b = a if homogeneous else _compute(b)
    y = torch.bmm(a, torch.transpose(b, 1, 2)) / length
    y = torch.reshape(y, (n, a.shape[1] * b.shape[1]))
    return _normalize(y, signed_sqrt, l2_normalize, eps).to(dtype)


class BilinearPool(_NormalizedPool):
    """Full bilinear pooling: the Module form of :func:`bilinear_pool`.

    Args:
        dim_a: channels of ``x_a``.
        dim_b: channels of ``x_b``; ``None`` means ``dim_a`` (and allows ``forward(x)``).
        signed_sqrt: apply ``sign(y) sqrt(|y| + eps)``.
        l2_normalize: L2-normalise each sample.
        eps: added under the square root (keeps the gradient at 0 finite).

    Shape:
        - Input: ``(N, dim_a, *S)``, optionally with ``x_b`` of shape ``(N, dim_b, *S)``.
        - Output: ``(N, dim_a * dim_b)`` (:attr:`out_features`).

    Example:
        >>> pool = BilinearPool(8)
        >>> pool(torch.rand(2, 8, 7, 7)).shape
        torch.Size([2, 64])
        >>> BilinearPool(8, 3)(torch.rand(2, 8, 7, 7), torch.rand(2, 3, 7, 7)).shape
        torch.Size([2, 24])
    """

    def __init__(
        self,
        dim_a: int,
        dim_b: int | None = None,
        *,
        signed_sqrt: bool = True,
        l2_normalize: bool = True,
        eps: float = 1e-5,
    ) -> None:
        super().__init__(dim_a, dim_b, signed_sqrt, l2_normalize, eps)

    @property
    def out_features(self) -> int:
        """Length of the output vector, ``dim_a * dim_b``."""
        return self.dim_a * self._dim_b

    def forward(self, x_a: Tensor, x_b: Tensor | None = None) -> Tensor:
        a, b, homogeneous, dtype = _pair(x_a, x_b, self.dim_a, self.dim_b)
        return _bilinear(a, b, homogeneous, dtype, self.signed_sqrt, self.l2_normalize, self.eps)


# --------------------------------------------------------------------------- compact bilinear


# --------------------------------------------------------------------------- low-rank bilinear


def low_rank_bilinear_pool(x: Tensor, u: Tensor, v: Tensor, bias: Tensor | None = None) -> Tensor:
    """Low-rank bilinear classifier (Kong & Fowlkes, arXiv 1611.05109).

    Class ``k`` has the bilinear weight ``W_k = U_k U_k^T - V_k V_k^T`` (rank ``2r``, symmetric,
    indefinite) and the score ``<W_k, B> = (1/L) (||U_k^T X||_F^2 - ||V_k^T X||_F^2) + b_k``,
    where ``X`` is the ``(D, L)`` feature matrix and ``B = X X^T / L`` is never formed. The
    ``1/L`` keeps the scores on the scale of :func:`bilinear_pool` (without its normalisation)
    for any input size. All classes are computed with one matmul.

    Args:
        x: features ``(N, D, *S)``.
        u: ``(K, D, r)``, the positive factors ``U_k``.
        v: ``(K, D, r)``, the negative factors ``V_k``.
        bias: optional ``(K,)``.

    Returns:
        The class scores.

    Shape:
        - Input: ``(N, D, *S)``.
        - Output: ``(N, K)``.

    Example:
        >>> x = torch.tensor([[[1.0, 3.0], [2.0, 0.0]]])
        >>> u = torch.tensor([[[1.0], [0.0]]])
        >>> v = torch.tensor([[[0.0], [1.0]]])
        >>> low_rank_bilinear_pool(x, u, v).tolist()
        [[3.0]]
    """
    feats = _features(x, "x")
    for name, factor in (("u", u), ("v", v)):
        if not isinstance(factor, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(factor).__name__}")
        if factor.dim() != 3 or factor.shape[1] != feats.shape[1]:
            raise ValueError(
                f"{name} must have shape (num_classes, D={feats.shape[1]}, rank), got {tuple(factor.shape)}"
            )
    if u.shape != v.shape:
        raise ValueError(f"v must have the shape of u {tuple(u.shape)}, got {tuple(v.shape)}")
    num_classes, dim, rank = u.shape
    if bias is not None and (not isinstance(bias, Tensor) or bias.shape != (num_classes,)):
        shape = tuple(bias.shape) if isinstance(bias, Tensor) else type(bias).__name__
        raise ValueError(f"bias must be None or a tensor of shape ({num_classes},), got {shape}")
    feats = _compute(feats)
    # (D, K, 2r): the columns of U_k then V_k, for all k side by side
    factors = torch.cat([u, v], dim=2).to(feats.dtype).permute(1, 0, 2).reshape(dim, num_classes * 2 * rank)
    projected = torch.matmul(feats.transpose(1, 2), factors)  # (N, L, K * 2r)
    energy = projected.square().sum(1).reshape(-1, num_classes, 2, rank).sum(3) / feats.shape[2]
    scores = energy[:, :, 0] - energy[:, :, 1]
    if bias is not None:
        scores = scores + bias.to(scores.dtype)
    return scores.to(x.dtype)


class LowRankBilinearPool(nn.Module):
    """Low-rank bilinear pooling classifier head: the Module form of :func:`low_rank_bilinear_pool`.

    The learned ``u`` and ``v`` (``(num_classes, dim, rank)``) are drawn from
    ``N(0, 1/dim)``, so a score starts with the scale of ``rank`` times the mean squared
    feature; the paper initialises them from a trained full bilinear classifier instead (copy
    them in). The paper's shared dimensionality reduction is a separate 1x1 convolution
    in front of this head.

    Args:
        dim: feature channels ``D``.
        num_classes: number of classes ``K``.
        rank: rank ``r`` of each of ``U_k`` and ``V_k``.
        bias: learn a per-class bias.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - Input: ``(N, dim, *S)``.
        - Output: ``(N, num_classes)``.

    Example:
        >>> head = LowRankBilinearPool(32, num_classes=10, rank=4)
        >>> head(torch.rand(2, 32, 7, 7)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        dim: int,
        num_classes: int,
        rank: int,
        *,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.dim = _positive_int(dim, "dim")
        self.num_classes = _positive_int(num_classes, "num_classes")
        self.rank = _positive_int(rank, "rank")
        check_bool(bias, "bias")
        kw = {"device": device, "dtype": dtype}
        self.u = nn.Parameter(torch.empty(num_classes, dim, rank, **kw))  # type: ignore[arg-type]
        self.v = nn.Parameter(torch.empty(num_classes, dim, rank, **kw))  # type: ignore[arg-type]
        self.bias = nn.Parameter(torch.empty(num_classes, **kw)) if bias else None  # type: ignore[arg-type]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``u``, ``v`` from ``N(0, 1/dim)``; bias zero."""
        std = 1.0 / math.sqrt(self.dim)
        nn.init.normal_(self.u, std=std)
        nn.init.normal_(self.v, std=std)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_classes={self.num_classes}, rank={self.rank}, bias={self.bias is not None}"
        )

    def forward(self, x: Tensor) -> Tensor:
        _features(x, "x", self.dim, "dim")
        return low_rank_bilinear_pool(x, self.u, self.v, self.bias)


# --------------------------------------------------------------------------- matrix square root


def matrix_sqrt_pool(x: Tensor, num_iters: int = 5, *, triu: bool = True) -> Tensor:
    """Covariance pooling with iterative matrix square-root normalisation (iSQRT-COV).

    ``Sigma = X Ibar X^T`` with ``Ibar = (1/L)(I - (1/L) 1 1^T)`` (the biased covariance of the
    ``L`` positions), pre-normalised ``A = Sigma / tr(Sigma)``, then ``num_iters`` coupled
    Newton-Schulz steps from ``Y_0 = A``, ``Z_0 = I``::

        T = 0.5 (3I - Z_k Y_k);  Y_{k+1} = Y_k T;  Z_{k+1} = T Z_k

    and post-compensation ``sqrt(tr Sigma) Y_N``. ``Y_N`` tends to ``A^{1/2}`` (the
    eigenvalues of ``A`` lie in ``[0, 1]``), but a few steps are NOT the exact root: that is
    the method (5 by default, as in the paper). A zero covariance (constant features) gives a
    zero output with a finite gradient: the trace is replaced by 1 where it is 0, both in the
    division and in the square root. Only batched matmuls, so it is fast on GPUs.

    Args:
        x: features ``(N, D, *S)``.
        num_iters: Newton-Schulz iterations ``N >= 1``.
        triu: return the row-major upper triangle (with diagonal) of each ``D x D`` result,
            as the paper does (the matrix is symmetric); else the full matrix.

    Returns:
        The normalised covariances.

    Shape:
        - Input: ``(N, D, *S)``.
        - Output: ``(N, D (D + 1) / 2)`` if ``triu``, else ``(N, D, D)``.

    Example:
        >>> x = torch.tensor([[[1.0, -1.0, 1.0, -1.0], [0.0, 0.0, 0.0, 0.0]]])
        >>> matrix_sqrt_pool(x, num_iters=3).tolist()
        [[1.0, 0.0, 0.0]]
    """
    feats = _features(x, "x")
    num_iters = _positive_int(num_iters, "num_iters")
    check_bool(triu, "triu")
    feats = _compute(feats)
    n, dim, length = feats.shape
    centered = feats - feats.mean(2, keepdim=True)
    sigma = torch.bmm(centered, centered.transpose(1, 2)) / length
    trace = sigma.diagonal(dim1=1, dim2=2).sum(1)
    safe = torch.where(trace > 0, trace, torch.ones_like(trace))[:, None, None]
    eye = torch.eye(dim, dtype=feats.dtype, device=feats.device).expand(n, dim, dim)
    y = sigma / safe
    z = eye
    for step in range(num_iters):
        t = 0.5 * (3.0 * eye - torch.bmm(z, y))
        y = torch.bmm(y, t)
        if step + 1 < num_iters:  # the last Z is not needed
            z = torch.bmm(t, z)
    y = torch.sqrt(safe) * y
    if triu:
        rows, cols = torch.triu_indices(dim, dim, device=y.device)
        y = y[:, rows, cols]
    return y.to(x.dtype)


class MatrixSqrtPool(nn.Module):
    """iSQRT-COV covariance pooling: the Module form of :func:`matrix_sqrt_pool`.

    Args:
        num_iters: Newton-Schulz iterations (5 in the paper).
        triu: return the upper triangle ``(N, D (D + 1) / 2)``; else ``(N, D, D)``.

    Shape:
        - Input: ``(N, D, *S)``.
        - Output: ``(N, D (D + 1) / 2)`` if ``triu``, else ``(N, D, D)``.

    Example:
        >>> MatrixSqrtPool()(torch.rand(2, 8, 7, 7)).shape
        torch.Size([2, 36])
    """

    def __init__(self, num_iters: int = 5, *, triu: bool = True) -> None:
        super().__init__()
        self.num_iters = _positive_int(num_iters, "num_iters")
        self.triu = check_bool(triu, "triu")

    def extra_repr(self) -> str:
        return f"num_iters={self.num_iters}, triu={self.triu}"

    def forward(self, x: Tensor) -> Tensor:
        return matrix_sqrt_pool(x, self.num_iters, triu=self.triu)


register_pool(
    "bilinear",
    BilinearPool,
    family="bilinear",
    dims=(1, 2, 3),
    channel_multiplier=None,
    description="full bilinear (1/L) sum f f^T, signed sqrt, L2 (B-CNN); D*D outputs",
    example_kwargs={"dim_a": 4},
)
register_pool(
    "low_rank_bilinear",
    LowRankBilinearPool,
    family="bilinear",
    dims=(1, 2, 3),
    trainable=True,
    channel_multiplier=None,
    description="low-rank bilinear classifier ||U^T X||^2 - ||V^T X||^2 (Kong & Fowlkes)",
    example_kwargs={"dim": 4, "num_classes": 3, "rank": 2},
)
register_pool(
    "matrix_sqrt",
    MatrixSqrtPool,
    family="bilinear",
    dims=(1, 2, 3),
    channel_multiplier=None,
    description="covariance with Newton-Schulz matrix square root (iSQRT-COV); D(D+1)/2 outputs",
)
