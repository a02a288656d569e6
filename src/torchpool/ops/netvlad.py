"""NetVLAD pooling (section 7 of the survey; Arandjelovic et al., arXiv 1511.07247) and GhostVLAD.

Each of the ``L`` local descriptors ``x_i`` (the ``D`` channels at one position of an
``(N, D, *spatial)`` map, or of one frame of an ``(N, D, L)`` sequence, as in ActionVLAD) is
softly assigned to ``K`` cluster centres ``c_k``, and the assignment-weighted residuals are summed:

    a_ik = softmax_k(w_k . x_i + b_k)
    V_k  = sum_i a_ik (x_i - c_k) = (A^T X)_k - c_k sum_i a_ik

computed with two batched matrix products (never an ``N x K x D x L`` residual tensor; the descriptor
normalisation is folded into the ``(N, K, L)`` factors, so no normalised copy of the input is written
either: largest intermediate ``max(N D L, N (K + G) L, N K D)``). Then each
``V_k`` is L2-normalised ("intra-normalisation"), the ``K x D`` matrix is flattened and the whole
vector is L2-normalised: output ``(N, K * D)``. Descriptors are L2-normalised first by default.

GhostVLAD (Zhong et al. 2018) adds ``G`` ghost clusters to the soft-assignment only: they absorb
assignment mass (noisy descriptors) but are not aggregated, so the output stays ``K * D``.

All normalisations are ``v / sqrt(eps + ||v||^2)``: zero descriptors and empty clusters give zeros
(no NaN), and the gradient of a normalisation is bounded by ``1 / sqrt(eps)`` (1e3 for the default
``eps=1e-6``) instead of the ``1 / eps`` (1e12) of ``v / max(||v||, 1e-12)``. Vectors with a norm
well above ``sqrt(eps)`` are unaffected; near-empty clusters are damped towards zero rather than
blown up to unit length.

Initialisation follows the original code: k-means on sampled descriptors (:func:`kmeans`, pure
torch, deterministic for a seed), then ``w_k = 2 alpha c_k`` and ``b_k = -alpha ||c_k||^2`` so that
``w_k . x + b_k = alpha (||x||^2 - ||x - c_k||^2)``: the assignment ranks clusters by distance, and
``alpha = -log(0.01) / mean(d2_2 - d2_1)`` makes the top assignment ~100x the second (the geometric
mean of that ratio over the descriptors is exactly 100).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensor

from .._checks import check_bool, check_float_range, is_traced
from ..registry import register_pool

__all__ = ["GhostVLAD", "NetVLAD", "ghostvlad", "kmeans", "netvlad", "netvlad_alpha"]

_DEFAULT_EPS = 1e-6
_DEFAULT_ALPHA = 100.0  # used only for the data-free initialisation when alpha=None


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        bound = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half-precision inputs are computed in float32 (softmax, norms and sums of squares)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _normalize(v: Tensor, dim: int, eps: float) -> Tensor:
    """``v / sqrt(eps + ||v||^2)`` along ``dim``: zero stays zero, gradient at most ``1/sqrt(eps)``."""
    return v * _inverse_norm(v, dim, eps)


def _inverse_norm(v: Tensor, dim: int, eps: float) -> Tensor:
    """``1 / sqrt(eps + ||v||^2)`` along ``dim`` (kept), also where ``||v||^2`` overflows.

    ``||v||^2`` is inf in float32 from ``|v| ~ 1e19`` on, which made the factor 0 (an all-zero
    answer at 1e30). There the vectors are divided by their (detached) largest magnitude ``m``
    first: ``1 / sqrt(eps + ||v||^2) = (1 / m) / sqrt(eps / m^2 + ||v / m||^2)``, exact, with the
    same gradient. In eager mode that second pass runs only when some squared norm overflows
    (traced, or on meta/fake tensors, always, with ``m = 1`` for the other vectors).
    """
    squared = torch.linalg.vector_norm(v, dim=dim, keepdim=True).square()  # fused: no copy of v
    overflow = torch.isinf(squared)
    if not _no_values(v) and not bool(overflow.any()):
        return torch.rsqrt(squared + eps)
    # m = 1 elsewhere: v / 1 and eps / 1 are exact, so those vectors keep their values bit for bit
    m = v.detach().abs().amax(dim=dim, keepdim=True)
    m = torch.where(overflow & torch.isfinite(m), m, torch.ones_like(m))
    return torch.rsqrt(torch.linalg.vector_norm(v / m, dim=dim, keepdim=True).square() + eps / m.square()) / m


def _no_values(*tensors: Tensor) -> bool:
    """Whether some tensor has no values to read (``meta``, fake) or a trace is running."""
    return is_traced() or any(t.device.type == "meta" or isinstance(t, FakeTensor) for t in tensors)


def _check_parameter(value: object, name: str, shape: tuple[int, ...], hint: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise ValueError(f"{name} must have shape {shape} ({hint}), got {tuple(value.shape)}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {value.dtype}")
    return value


def netvlad(
    x: Tensor,
    centroids: Tensor,
    assign_weight: Tensor,
    assign_bias: Tensor | None,
    *,
    normalize_input: bool = True,
    ghost_clusters: int = 0,
    eps: float = _DEFAULT_EPS,
) -> Tensor:
    """NetVLAD / GhostVLAD pooling of the local descriptors of ``x`` (vectorised, no loop over clusters).

    Steps: L2-normalise each descriptor (if ``normalize_input``), soft-assign
    ``a = softmax_k(W x_i + b)`` over the ``K + G`` clusters, keep the ``K`` real ones, aggregate
    residuals ``V = A^T X - c * sum_i a_ik``, L2-normalise each cluster's ``V_k`` over ``D``,
    flatten, L2-normalise the whole vector. Half-precision inputs are computed in float32 and
    returned in their own dtype; the parameters are cast to the compute dtype.

    Args:
        x: descriptors with a batch dimension, channels first. Batch-less input is not accepted:
            ``(D, H, W)`` and a batched sequence ``(N, D, L)`` are indistinguishable.
        centroids: cluster centres ``c``, ``(K, D)``.
        assign_weight: soft-assignment weights ``W`` (a 1x1 convolution), ``(K + G, D)``.
        assign_bias: soft-assignment bias ``b``, ``(K + G,)``, or None for no bias.
        normalize_input: L2-normalise each descriptor before everything else.
        ghost_clusters: ``G``, the number of ghost clusters (the last ``G`` rows of
            ``assign_weight``): in the softmax, not in the output.
        eps: added to every squared norm before the square root (positive).

    Returns:
        The L2-normalised VLAD vectors.

    Shape:
        - Input: ``(N, D, *S)`` with at least one spatial (or time) dim, e.g. ``(N, D, H, W)`` or
          ``(N, D, L)``.
        - Output: ``(N, K * D)``, cluster-major (``y.view(N, K, D)[:, k]`` is cluster ``k``).

    Example:
        >>> x = torch.arange(16.0).reshape(1, 2, 2, 4)
        >>> c = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> y = netvlad(x, c, 2 * c, -torch.ones(2))
        >>> y.shape, round(y.norm().item(), 4)
        (torch.Size([1, 4]), 1.0)
        >>> [round(v, 4) for v in y[0].tolist()]
        [-0.4231, 0.5665, 0.6972, -0.1179]
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 3:
        raise ValueError(
            "input must have shape (N, D, *spatial) with a batch dim and at least one spatial (or time) "
            f"dim, got {tuple(x.shape)}; batch-less input is ambiguous, use x.unsqueeze(0)"
        )
    if not x.is_floating_point():
        raise TypeError(f"input must have a floating-point dtype, got {x.dtype}")
    if any(size == 0 for size in x.shape[2:]):
        raise ValueError(f"input must have non-zero spatial sizes, got shape {tuple(x.shape)}")
    if not isinstance(centroids, Tensor):
        raise TypeError(f"centroids must be a torch.Tensor, got {type(centroids).__name__}")
    if centroids.dim() != 2 or centroids.shape[0] < 1:
        raise ValueError(f"centroids must have shape (K, D) with K >= 1, got {tuple(centroids.shape)}")
    num_clusters, dim = centroids.shape
    if x.shape[1] != dim:
        hint = ""
        if x.shape[0] == dim:
            hint = (
                f"; shape {tuple(x.shape)} looks like one batch-less sample (D, *S): batch-less input is "
                "refused because (D, H, W) and a batch of sequences (N, D, L) cannot be told apart, "
                "use x.unsqueeze(0)"
            )
        raise ValueError(
            f"input has {x.shape[1]} channels but centroids have dim {dim} "
            f"(input must be (N, {dim}, *S)){hint}"
        )
    ghosts = _check_int(ghost_clusters, "ghost_clusters", 0)
    total = num_clusters + ghosts
    _check_parameter(assign_weight, "assign_weight", (total, dim), "num_clusters + ghost_clusters, dim")
    if assign_bias is not None:
        _check_parameter(assign_bias, "assign_bias", (total,), "num_clusters + ghost_clusters")
    check_bool(normalize_input, "normalize_input")
    eps = check_float_range(eps, "eps", 0.0, math.inf, low_open=True, high_open=True)

    dtype = _compute_dtype(x.dtype)
    descriptors = x.flatten(2).to(dtype)  # (N, D, L), a view for float32/64 input
    logits = torch.matmul(assign_weight.to(dtype), descriptors)  # (N, K + G, L)
    scale: Tensor | None = None
    if normalize_input:
        # x_i / sqrt(eps + ||x_i||^2) is folded into the (N, *, L) products instead of writing a
        # normalised copy of the input: W (x r) = (W x) r and A (x r)^T = (A r) x^T
        scale = _inverse_norm(descriptors, 1, eps)  # (N, 1, L)
        logits = logits * scale
    if assign_bias is not None:
        logits = logits + assign_bias.to(dtype).unsqueeze(-1)
    assignment = torch.softmax(logits, dim=1)[:, :num_clusters]  # (N, K, L): ghosts dropped
    weighted = assignment if scale is None else assignment * scale
    # V = A X^T - c * sum_i a_ik: (N, K, L) @ (N, L, D), then the centroid term
    vlad = torch.bmm(weighted, descriptors.transpose(1, 2))
    vlad = vlad - centroids.to(dtype) * assignment.sum(dim=2, keepdim=True)
    vlad = _normalize(vlad, 2, eps).flatten(1)  # intra-normalisation, then (N, K * D)
    return _normalize(vlad, 1, eps).to(x.dtype)


def ghostvlad(
    x: Tensor,
    centroids: Tensor,
    assign_weight: Tensor,
    assign_bias: Tensor | None,
    *,
    ghost_clusters: int = 1,
    normalize_input: bool = True,
    eps: float = _DEFAULT_EPS,
) -> Tensor:
    """GhostVLAD: :func:`netvlad` with ``ghost_clusters`` (default 1) extra clusters in the softmax only.

    Args:
        x: descriptors ``(N, D, *S)``.
        centroids: real cluster centres ``(K, D)``.
        assign_weight: ``(K + G, D)``, the ghost rows last.
        assign_bias: ``(K + G,)`` or None.
        ghost_clusters: ``G``, at least 1 (0 is :func:`netvlad`).
        normalize_input: L2-normalise each descriptor first.
        eps: added to every squared norm.

    Returns:
        The L2-normalised VLAD vectors of the real clusters.

    Shape:
        - Input: ``(N, D, *S)``.
        - Output: ``(N, K * D)``.

    Example:
        >>> c = torch.eye(2)
        >>> w = torch.cat([2 * c, torch.zeros(1, 2)])
        >>> ghostvlad(torch.ones(3, 2, 5), c, w, None).shape
        torch.Size([3, 4])
    """
    _check_int(ghost_clusters, "ghost_clusters", 1)  # 0 is NetVLAD: say so rather than run it
    return netvlad(
        x,
        centroids,
        assign_weight,
        assign_bias,
        normalize_input=normalize_input,
        ghost_clusters=ghost_clusters,
        eps=eps,
    )


def _squared_distances(points: Tensor, centres: Tensor) -> Tensor:
    """``||p - c||^2`` for every pair, ``(M, K)``, clamped at 0 (expanded form, no ``M x K x D`` tensor)."""
    d2 = points.square().sum(1, keepdim=True) - 2.0 * points @ centres.T + centres.square().sum(1)
    return d2.clamp_min(0.0)


def _check_descriptors(descriptors: object, dim: int | None = None) -> Tensor:
    if not isinstance(descriptors, Tensor):
        raise TypeError(f"descriptors must be a torch.Tensor, got {type(descriptors).__name__}")
    if descriptors.dim() != 2:
        raise ValueError(f"descriptors must have shape (M, D), got {tuple(descriptors.shape)}")
    if not descriptors.is_floating_point():
        raise TypeError(f"descriptors must have a floating-point dtype, got {descriptors.dtype}")
    if dim is not None and descriptors.shape[1] != dim:
        raise ValueError(
            f"descriptors must have dim {dim} (shape (M, {dim})), got {tuple(descriptors.shape)}"
        )
    return descriptors


def kmeans(descriptors: Tensor, k: int, *, seed: int = 0, iters: int = 100, tol: float = 1e-6) -> Tensor:
    """k-means (k-means++ seeding, then Lloyd iterations) in torch, deterministic for a ``seed``.

    Distances use the expanded form ``||x||^2 - 2 x.c + ||c||^2`` (memory ``M x k``). A cluster
    that loses all its points is re-seeded at the point farthest from its centre. Stops after
    ``iters`` iterations or when no centre moves by more than ``tol`` (relative to the data scale).
    Half-precision descriptors are clustered in float32.

    Args:
        descriptors: the points, ``(M, D)`` with ``M >= k``.
        k: the number of clusters.
        seed: seed of the k-means++ sampling (a private ``torch.Generator``; global RNG untouched).
        iters: maximum number of Lloyd iterations, at least 1.
        tol: convergence threshold on the largest centre shift.

    Returns:
        The centres, ``(k, D)``, in the (compute) dtype of the descriptors.

    Example:
        >>> pts = torch.tensor([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])
        >>> sorted(kmeans(pts, 2).tolist())
        [[0.0, 0.5], [10.0, 0.5]]
    """
    points = _check_descriptors(descriptors)
    k = _check_int(k, "k", 1)
    seed = _check_int(seed, "seed", 0)
    iters = _check_int(iters, "iters", 1)
    tol = check_float_range(tol, "tol", 0.0, math.inf, high_open=True)
    m = points.shape[0]
    if m < k:
        raise ValueError(f"descriptors must have at least k={k} rows, got {m}")
    if not bool(torch.isfinite(points).all()):
        raise ValueError("descriptors must be finite (NaN or inf give NaN centroids)")
    points = points.detach().to(_compute_dtype(points.dtype))
    generator = torch.Generator(device="cpu").manual_seed(seed)

    # k-means++: first centre uniform, then proportional to the squared distance to the chosen ones
    first = int(torch.randint(m, (1,), generator=generator).item())
    centres = [points[first]]
    closest = _squared_distances(points, points[first : first + 1]).squeeze(1)
    for _ in range(1, k):
        weights = closest.double().cpu()
        if float(weights.sum()) > 0:
            index = int(torch.multinomial(weights, 1, generator=generator).item())
        else:  # every point coincides with a centre: take any unused point
            index = int(torch.randint(m, (1,), generator=generator).item())
        centres.append(points[index])
        closest = torch.minimum(closest, _squared_distances(points, points[index : index + 1]).squeeze(1))
    c = torch.stack(centres)

    scale = float(points.abs().max()) or 1.0
    for _ in range(iters):
        d2 = _squared_distances(points, c)
        labels = d2.argmin(1)
        sums = torch.zeros_like(c).index_add_(0, labels, points)
        counts = torch.bincount(labels, minlength=k).to(points.dtype)
        updated = sums / counts.clamp_min(1).unsqueeze(1)
        empty = (counts == 0).nonzero().flatten().tolist()
        if empty:
            far = d2.gather(1, labels.unsqueeze(1)).squeeze(1)
            order = far.argsort(descending=True, stable=True)
            for slot, cluster in enumerate(empty):
                updated[cluster] = points[order[slot]]
        shift = float((updated - c).abs().max())
        c = updated
        if shift <= tol * scale and not empty:
            break
    return c


def netvlad_alpha(descriptors: Tensor, centroids: Tensor) -> float:
    """The original code's assignment sharpness: ``alpha = -log(0.01) / mean(d2_2 - d2_1)``.

    ``d2_1`` and ``d2_2`` are the squared distances of each descriptor to its nearest and
    second-nearest centroid. With ``w = 2 alpha c`` and ``b = -alpha ||c||^2`` the top assignment is
    then ``exp(alpha (d2_2 - d2_1))`` times the second: 100x at the mean gap.

    Args:
        descriptors: ``(M, D)`` (already L2-normalised if the layer normalises its input).
        centroids: ``(K, D)`` with ``K >= 2``.

    Returns:
        alpha, a positive float.

    Raises:
        ValueError: for fewer than two centroids, or if every descriptor is equidistant from its
            two nearest centroids (alpha would be infinite).

    Example:
        >>> pts = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
        >>> round(netvlad_alpha(pts, torch.tensor([[0.0, 0.0], [2.0, 0.0]])), 4)  # gaps 4 and 8
        0.7675
    """
    points = _check_descriptors(descriptors)
    if not isinstance(centroids, Tensor) or centroids.dim() != 2 or centroids.shape[0] < 2:
        shape = tuple(centroids.shape) if isinstance(centroids, Tensor) else type(centroids).__name__
        raise ValueError(
            f"centroids must have shape (K, D) with K >= 2 to find a second-nearest, got {shape}"
        )
    _check_descriptors(points, centroids.shape[1])
    dtype = torch.promote_types(_compute_dtype(points.dtype), _compute_dtype(centroids.dtype))
    d2 = _squared_distances(points.detach().to(dtype), centroids.detach().to(dtype))
    nearest = d2.topk(2, dim=1, largest=False).values
    gap = float((nearest[:, 1] - nearest[:, 0]).mean())
    if not gap > 0:
        raise ValueError("descriptors are equidistant from their two nearest centroids: alpha is undefined")
    return -math.log(0.01) / gap


class NetVLAD(nn.Module):
    """NetVLAD pooling layer: the Module form of :func:`netvlad`, with learned centres and assignment.

    Parameters: ``centroids`` ``(K, D)``, ``assign_weight`` ``(K + G, D)`` and ``assign_bias``
    ``(K + G,)`` (the soft-assignment 1x1 convolution; the last ``G`` rows are the ghosts).

    Initialisation: without data, the centres are random unit vectors (global RNG, like
    ``nn.Linear``) and the real rows of the assignment follow the alpha rule
    ``w_k = 2 alpha c_k``, ``b_k = -alpha ||c_k||^2`` with ``alpha`` (100 when ``alpha=None``).
    :meth:`init_from_descriptors` runs k-means on sample descriptors and sets ``alpha`` from the
    data (unless ``alpha`` was given). Ghost rows start at zero weight and zero bias: a ghost
    logit of 0 equals that of a real centre at squared distance ``||x||^2`` from ``x``, so at
    initialisation a ghost takes the largest share only of descriptors that are farther than that
    from every centre (for unit vectors: more than 60 degrees away); training moves them.

    Args:
        num_clusters: ``K``, the number of real clusters.
        dim: ``D``, the descriptor (channel) dimension.
        alpha: assignment sharpness for the alpha rule; None: estimated by
            :meth:`init_from_descriptors` (100 until then).
        normalize_input: L2-normalise each descriptor first.
        ghost_clusters: ``G``, ghost clusters in the soft-assignment only (GhostVLAD).
        eps: added to every squared norm (see :func:`netvlad`).
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - Input: ``(N, D, *S)``, e.g. ``(N, D, H, W)`` or ``(N, D, L)``; batch required.
        - Output: ``(N, K * D)``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> pool = NetVLAD(num_clusters=64, dim=512)
        >>> pool(torch.randn(2, 512, 3, 4)).shape
        torch.Size([2, 32768])
    """

    centroids: nn.Parameter
    assign_weight: nn.Parameter
    assign_bias: nn.Parameter

    def __init__(
        self,
        num_clusters: int,
        dim: int,
        *,
        alpha: float | None = None,
        normalize_input: bool = True,
        ghost_clusters: int = 0,
        eps: float = _DEFAULT_EPS,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.num_clusters = _check_int(num_clusters, "num_clusters", 1)
        self.dim = _check_int(dim, "dim", 1)
        self.alpha = (
            None if alpha is None else check_float_range(alpha, "alpha", 0.0, math.inf, low_open=True)
        )
        self.normalize_input = check_bool(normalize_input, "normalize_input")
        self.ghost_clusters = _check_int(ghost_clusters, "ghost_clusters", 0)
        self.eps = check_float_range(eps, "eps", 0.0, math.inf, low_open=True, high_open=True)
        total = self.num_clusters + self.ghost_clusters
        self.centroids = nn.Parameter(torch.empty(self.num_clusters, self.dim, device=device, dtype=dtype))
        self.assign_weight = nn.Parameter(torch.empty(total, self.dim, device=device, dtype=dtype))
        self.assign_bias = nn.Parameter(torch.empty(total, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random unit centres and the alpha-rule assignment (``alpha``, or 100 if None); ghosts zero."""
        with torch.no_grad():
            self.centroids.normal_()
            self.centroids.copy_(_normalize(self.centroids, 1, 1e-12))
        self._set_assignment(_DEFAULT_ALPHA if self.alpha is None else self.alpha)

    def _set_assignment(self, alpha: float) -> None:
        """``w_k = 2 alpha c_k``, ``b_k = -alpha ||c_k||^2`` for the real rows; ghost rows zero."""
        k = self.num_clusters
        with torch.no_grad():
            c = self.centroids.detach()
            self.assign_weight.zero_()
            self.assign_bias.zero_()
            self.assign_weight[:k] = 2.0 * alpha * c
            self.assign_bias[:k] = -alpha * c.square().sum(1)

    def init_from_descriptors(
        self, descriptors: Tensor, *, seed: int = 0, iters: int = 100, tol: float = 1e-6
    ) -> float:
        """Initialises the centres by k-means and the assignment by the original alpha rule.

        The descriptors are L2-normalised first if ``normalize_input`` (the layer sees them so).
        Centres: :func:`kmeans` (k-means++ seeding, deterministic for ``seed``). Then ``alpha`` is
        the constructor's ``alpha`` if given, else :func:`netvlad_alpha`, and
        ``w_k = 2 alpha c_k``, ``b_k = -alpha ||c_k||^2`` (ghost rows zero).

        Args:
            descriptors: sample local descriptors ``(M, D)``, ``M >= num_clusters`` (e.g. the
                positions of feature maps: ``x.transpose(0, 1).flatten(1).T``).
            seed: k-means++ seed.
            iters: maximum Lloyd iterations.
            tol: k-means convergence threshold.

        Returns:
            The alpha used.

        Raises:
            ValueError: for a wrong descriptor shape, too few descriptors, or ``num_clusters == 1``
                without an explicit ``alpha`` (there is no second-nearest centre).
        """
        points = _check_descriptors(descriptors, self.dim)
        if self.alpha is None and self.num_clusters < 2:
            raise ValueError("alpha must be given when num_clusters == 1 (no second-nearest centroid)")
        points = points.detach().to(device=self.centroids.device, dtype=_compute_dtype(points.dtype))
        if self.normalize_input:
            points = _normalize(points, 1, self.eps)
        centres = kmeans(points, self.num_clusters, seed=seed, iters=iters, tol=tol)
        with torch.no_grad():
            self.centroids.copy_(centres)
        alpha = self.alpha if self.alpha is not None else netvlad_alpha(points, centres)
        self._set_assignment(alpha)
        return alpha

    def extra_repr(self) -> str:
        return (
            f"num_clusters={self.num_clusters}, dim={self.dim}, alpha={self.alpha}, "
            f"normalize_input={self.normalize_input}, ghost_clusters={self.ghost_clusters}, eps={self.eps}"
        )

    def forward(self, x: Tensor) -> Tensor:
        return netvlad(
            x,
            self.centroids,
            self.assign_weight,
            self.assign_bias,
            normalize_input=self.normalize_input,
            ghost_clusters=self.ghost_clusters,
            eps=self.eps,
        )


class GhostVLAD(NetVLAD):
    """GhostVLAD (Zhong et al. 2018): :class:`NetVLAD` with ``ghost_clusters`` (default 1) ghosts.

    Args:
        num_clusters: ``K``, the real clusters (aggregated).
        dim: ``D``.
        ghost_clusters: ``G``, clusters in the soft-assignment only, at least 1 (0 is
            :class:`NetVLAD`).
        alpha: see :class:`NetVLAD`.
        normalize_input: L2-normalise each descriptor first.
        eps: added to every squared norm.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - Input: ``(N, D, *S)``.
        - Output: ``(N, K * D)`` (ghosts excluded).

    Example:
        >>> pool = GhostVLAD(8, 4)
        >>> pool.assign_weight.shape, pool(torch.randn(2, 4, 10)).shape
        (torch.Size([9, 4]), torch.Size([2, 32]))
    """

    def __init__(
        self,
        num_clusters: int,
        dim: int,
        *,
        ghost_clusters: int = 1,
        alpha: float | None = None,
        normalize_input: bool = True,
        eps: float = _DEFAULT_EPS,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        _check_int(ghost_clusters, "ghost_clusters", 1)  # 0 is NetVLAD: say so rather than run it
        super().__init__(
            num_clusters,
            dim,
            alpha=alpha,
            normalize_input=normalize_input,
            ghost_clusters=ghost_clusters,
            eps=eps,
            device=device,
            dtype=dtype,
        )


_EXAMPLE = {"num_clusters": 8, "dim": 4}
register_pool(
    "netvlad",
    NetVLAD,
    family="netvlad",
    dims=(1, 2, 3),
    trainable=True,
    channel_multiplier=None,
    description="soft-assigned residual aggregation to K learned centres, K*D output (NetVLAD)",
    example_kwargs=_EXAMPLE,
)
register_pool(
    "ghostvlad",
    GhostVLAD,
    family="netvlad",
    dims=(1, 2, 3),
    trainable=True,
    channel_multiplier=None,
    description="NetVLAD with ghost clusters in the soft-assignment only (GhostVLAD)",
    example_kwargs=_EXAMPLE,
)
