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
  equal paths, chosen by a cost estimate (see :func:`compact_bilinear_pool`).
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
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensor

from .._checks import check_bool, check_choice, check_float_range, is_traced
from ..registry import register_pool

__all__ = [
    "BilinearPool",
    "CompactBilinearPool",
    "LowRankBilinearPool",
    "MatrixSqrtPool",
    "bilinear_pool",
    "compact_bilinear_pool",
    "compact_bilinear_path",
    "low_rank_bilinear_pool",
    "matrix_sqrt_pool",
]

_METHODS = ("tensor_sketch", "random_maclaurin")
_PATHS = ("auto", "matrix", "location")
_HALF = (torch.float16, torch.bfloat16)

# Cost-model constants for the Tensor Sketch path choice, in units of one multiply-add of a
# batched matmul, measured on a 2-core x86 CPU (torch 2.13): scattering one element with
# ``index_add`` ~ 200 units, one ``n log2 n`` unit of a length-``d`` real FFT pair (with the
# count sketches and the complex product) ~ 30 units. Only the order of magnitude matters.
_SCATTER_UNIT = 200.0
_FFT_UNIT = 30.0


# --------------------------------------------------------------------------- checks


def _no_values(*tensors: Tensor) -> bool:
    """Whether some tensor has no values to read (``meta``, fake) or a trace is running."""
    return is_traced() or any(t.device.type == "meta" or isinstance(t, FakeTensor) for t in tensors)


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


def _optional_dim(value: object, name: str) -> int | None:
    return None if value is None else _positive_int(value, name)


def _eps(value: object) -> float:
    return check_float_range(value, "eps", 0.0, float("inf"))


def _features(x: object, name: str, channels: int | None = None, channels_name: str = "") -> Tensor:
    """Checks an ``(N, D, *S)`` input and returns it as ``(N, D, L)`` (a view where possible)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 3:
        raise ValueError(
            f"{name} must have shape (N, D, *spatial) with at least one spatial dim, got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {x.dtype}")
    if any(size == 0 for size in x.shape[2:]):
        raise ValueError(f"{name} must have non-zero spatial sizes, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} has {x.shape[1]} channels, but {channels_name}={channels}")
    return x.flatten(2)  # not reshape(N, C, -1), which cannot infer -1 for N = 0


def _pair(
    x_a: object,
    x_b: object | None,
    dim_a: int | None = None,
    dim_b: int | None = None,
) -> tuple[Tensor, Tensor, bool, torch.dtype]:
    """Checks ``x_a`` (and ``x_b``) and returns ``(a, b, homogeneous, out_dtype)`` as ``(N, D, L)``.

    ``dim_b=None`` means ``dim_a``. Without ``x_b`` the input is paired with itself.
    """
    a = _features(x_a, "x_a", dim_a, "dim_a")
    assert isinstance(x_a, Tensor)
    if x_b is None:
        if dim_b is not None and dim_a is not None and dim_b != dim_a:
            raise ValueError(f"x_b is required when dim_b ({dim_b}) differs from dim_a ({dim_a})")
        return a, a, True, x_a.dtype
    b = _features(
        x_b, "x_b", dim_b if dim_b is not None else dim_a, "dim_b" if dim_b is not None else "dim_a"
    )
    assert isinstance(x_b, Tensor)
    if x_b.dtype != x_a.dtype:
        raise TypeError(f"x_b must have the dtype of x_a ({x_a.dtype}), got {x_b.dtype}")
    if x_b.shape[0] != x_a.shape[0]:
        raise ValueError(f"x_b must have the batch size of x_a ({x_a.shape[0]}), got {x_b.shape[0]}")
    if x_b.shape[2:] != x_a.shape[2:]:
        raise ValueError(
            f"x_b must have the spatial size of x_a ({tuple(x_a.shape[2:])}), got {tuple(x_b.shape[2:])}"
        )
    if x_b.device != x_a.device:
        raise ValueError(f"x_b is on {x_b.device}, but x_a is on {x_a.device}")
    return a, b, False, x_a.dtype


def _compute(t: Tensor) -> Tensor:
    """Half-precision tensors are computed in float32."""
    return t.float() if t.dtype in _HALF else t


def _normalize(y: Tensor, signed_sqrt: bool, l2_normalize: bool, eps: float) -> Tensor:
    """Signed square root ``sign(y) sqrt(|y| + eps)`` and L2 over dim 1, each optional."""
    if signed_sqrt:
        y = torch.sign(y) * torch.sqrt(torch.abs(y) + eps)
    if l2_normalize:
        y = F.normalize(y)
    return y


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


class _NormalizedPool(nn.Module):
    """Shared arguments and ``extra_repr`` of the (compact) bilinear Modules."""

    def __init__(self, dim_a: int, dim_b: int | None, signed_sqrt: bool, l2_normalize: bool, eps: float):
        super().__init__()
        self.dim_a = _positive_int(dim_a, "dim_a")
        self.dim_b = _optional_dim(dim_b, "dim_b")
        self.signed_sqrt = check_bool(signed_sqrt, "signed_sqrt")
        self.l2_normalize = check_bool(l2_normalize, "l2_normalize")
        self.eps = _eps(eps)

    @property
    def _dim_b(self) -> int:
        return self.dim_a if self.dim_b is None else self.dim_b

    def extra_repr(self) -> str:
        return (
            f"dim_a={self.dim_a}, dim_b={self.dim_b}, signed_sqrt={self.signed_sqrt}, "
            f"l2_normalize={self.l2_normalize}, eps={self.eps}"
        )


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


def _sketch_buffers(dim_a: int, dim_b: int, out_dim: int, method: str, seed: int) -> dict[str, Tensor]:
    """The fixed random parameters of a compact bilinear pool, drawn on the CPU from ``seed``.

    Tensor Sketch, in this order from one ``torch.Generator().manual_seed(seed)``:
    ``hash_a = randint(out_dim, (dim_a,))``, ``sign_a = 2 * randint(2, (dim_a,)) - 1``, then
    ``hash_b``, ``sign_b`` likewise. Random Maclaurin: ``weight_a = 2 * randint(2, (out_dim,
    dim_a)) - 1``, then ``weight_b`` (``(out_dim, dim_b)``). Signs and weights are float32.
    """
    g = torch.Generator().manual_seed(seed)
    if method == "tensor_sketch":
        hash_a = torch.randint(out_dim, (dim_a,), generator=g)
        sign_a = torch.randint(2, (dim_a,), generator=g).float() * 2 - 1
        hash_b = torch.randint(out_dim, (dim_b,), generator=g)
        sign_b = torch.randint(2, (dim_b,), generator=g).float() * 2 - 1
        return {"hash_a": hash_a, "sign_a": sign_a, "hash_b": hash_b, "sign_b": sign_b}
    weight_a = torch.randint(2, (out_dim, dim_a), generator=g).float() * 2 - 1
    weight_b = torch.randint(2, (out_dim, dim_b), generator=g).float() * 2 - 1
    return {"weight_a": weight_a, "weight_b": weight_b}


def compact_bilinear_path(method: str, dim_a: int, dim_b: int, positions: int, out_dim: int) -> str:
    """The path ``path="auto"`` takes: ``"matrix"`` or ``"location"`` (by estimated cost).

    Tensor Sketch: the ``"matrix"`` path costs a ``D_a x D_b x L`` batched matmul plus a
    scatter of ``D_a D_b`` elements; the ``"location"`` path ``L`` count sketches and FFT
    pairs of length ``d`` (``~ L d log2 d``). Random Maclaurin: ``L d (D_a + D_b)`` (project
    each position) against ``D_a D_b L + d D_a D_b`` (via ``B``), both plain matmuls.

    Args:
        method: ``"tensor_sketch"`` or ``"random_maclaurin"``.
        dim_a: channels of ``x_a``.
        dim_b: channels of ``x_b``.
        positions: spatial positions ``L``.
        out_dim: sketch size ``d``.

    Returns:
        ``"matrix"`` or ``"location"``.

    Example:
        >>> compact_bilinear_path("tensor_sketch", 512, 512, 28 * 28, 8192)
        'matrix'
        >>> compact_bilinear_path("tensor_sketch", 4096, 4096, 49, 8192)
        'location'
    """
    check_choice(method, "method", _METHODS)
    dim_a, dim_b = _positive_int(dim_a, "dim_a"), _positive_int(dim_b, "dim_b")
    positions, out_dim = _positive_int(positions, "positions"), _positive_int(out_dim, "out_dim")
    return _choose_path(method, dim_a, dim_b, positions, out_dim)


def _choose_path(method: str, dim_a: int, dim_b: int, positions: int, out_dim: int) -> str:
    """:func:`compact_bilinear_path` without the checks (sizes may be traced ``SymInt`` or tensors)."""
    pairs = dim_a * dim_b
    if method == "tensor_sketch":
        matrix = pairs * (positions + _SCATTER_UNIT)
        location = positions * (
            _FFT_UNIT * out_dim * math.log2(max(out_dim, 2)) + _SCATTER_UNIT * (dim_a + dim_b)
        )
    else:
        matrix = pairs * positions + out_dim * pairs + out_dim * dim_b
        location = positions * out_dim * (dim_a + dim_b + 1)
    return "matrix" if matrix <= location else "location"


def _count_sketch(x: Tensor, hashes: Tensor, signs: Tensor, out_dim: int) -> Tensor:
    """``(N, D, L)`` -> per-position count sketches ``(N, L, d)``: ``Psi[j] = sum_{h(i)=j} s(i) x_i``."""
    signed = (x * signs[:, None]).transpose(1, 2)
    return signed.new_zeros(x.shape[0], x.shape[2], out_dim).index_add(2, hashes, signed)


def _tensor_sketch(a: Tensor, b: Tensor, buffers: dict[str, Tensor], out_dim: int, path: str) -> Tensor:
    """Average over positions of ``TS(f_a(l) (x) f_b(l))``, ``(N, d)``."""
    dtype = a.dtype
    hash_a, hash_b = buffers["hash_a"], buffers["hash_b"]
    sign_a, sign_b = buffers["sign_a"].to(dtype), buffers["sign_b"].to(dtype)
    length = a.shape[2]
    if path == "matrix":
        # phi[j] = sum_{(h_a(i) + h_b(k)) mod d = j} s_a(i) s_b(k) B[i, k]: the circular convolution
        # of the two count sketches is linear in f_a f_b^T, so it commutes with the average.
        bmat = torch.bmm(a * sign_a[:, None], (b * sign_b[:, None]).transpose(1, 2)) / length
        index = torch.remainder(hash_a[:, None] + hash_b[None, :], out_dim).flatten()
        return bmat.new_zeros(a.shape[0], out_dim).index_add(1, index, bmat.flatten(1))
    spectrum_a = torch.fft.rfft(_count_sketch(a, hash_a, buffers["sign_a"].to(dtype), out_dim), dim=2)
    spectrum_b = torch.fft.rfft(_count_sketch(b, hash_b, buffers["sign_b"].to(dtype), out_dim), dim=2)
    # the inverse FFT is linear: average the products first, then one inverse per sample
    phi = torch.fft.irfft((spectrum_a * spectrum_b).sum(1) / length, n=out_dim, dim=1)
    # Bins that no pair (i, k) hashes to are exactly 0 on the matrix path but FFT round-off
    # here, which the signed square root would blow up to +-sqrt(eps): zero them. The reachable
    # bins are the support of the circular convolution of the two hash histograms.
    counts_a = torch.bincount(hash_a, minlength=out_dim).double()
    counts_b = torch.bincount(hash_b, minlength=out_dim).double()
    pairs = torch.fft.irfft(torch.fft.rfft(counts_a) * torch.fft.rfft(counts_b), n=out_dim)
    return phi * (pairs > 0.5).to(phi.dtype)


def _random_maclaurin(a: Tensor, b: Tensor, buffers: dict[str, Tensor], out_dim: int, path: str) -> Tensor:
    """Average over positions of ``(1/sqrt(d)) (W_a f_a(l)) * (W_b f_b(l))``, ``(N, d)``."""
    weight_a, weight_b = buffers["weight_a"].to(a.dtype), buffers["weight_b"].to(a.dtype)
    length = a.shape[2]
    if path == "matrix":
        # phi[j] = w_a[j]^T B w_b[j] / sqrt(d)
        bmat = torch.bmm(a, b.transpose(1, 2)) / length
        return (torch.matmul(weight_a, bmat) * weight_b).sum(2) / math.sqrt(out_dim)
    projected = torch.matmul(weight_a, a) * torch.matmul(weight_b, b)
    return projected.sum(2) / (length * math.sqrt(out_dim))


def _compact(
    a: Tensor,
    b: Tensor,
    homogeneous: bool,
    dtype: torch.dtype,
    buffers: dict[str, Tensor],
    out_dim: int,
    method: str,
    path: str,
    signed_sqrt: bool,
    l2_normalize: bool,
    eps: float,
) -> Tensor:
    a = _compute(a)
    b = a if homogeneous else _compute(b)
    buffers = {name: t.to(a.device) for name, t in buffers.items()}
    if path == "auto":
        path = _choose_path(method, a.shape[1], b.shape[1], a.shape[2], out_dim)
    sketch = _tensor_sketch if method == "tensor_sketch" else _random_maclaurin
    y = sketch(a, b, buffers, out_dim, path)
    return _normalize(y, signed_sqrt, l2_normalize, eps).to(dtype)


def compact_bilinear_pool(
    x_a: Tensor,
    x_b: Tensor | None = None,
    out_dim: int = 8192,
    *,
    method: str = "tensor_sketch",
    seed: int = 0,
    signed_sqrt: bool = True,
    l2_normalize: bool = True,
    eps: float = 1e-5,
    path: str = "auto",
) -> Tensor:
    """Compact bilinear pooling (Gao et al., arXiv 1511.06062): a ``d``-dim sketch of ``B``.

    The per-position features ``phi(f_a(l), f_b(l))`` are averaged over the ``L`` positions
    (as :func:`bilinear_pool` averages the outer products), so that
    ``E <phi(X), phi(Y)> = <B_X, B_Y>_F`` over the random parameters; with one position,
    ``E <phi(x), phi(y)> = <x, y>^2`` (homogeneous). Then, as in the paper, signed square
    root and L2 normalisation (both on by default, switchable).

    * ``"tensor_sketch"``: count sketches ``Psi(x, h, s)[j] = sum_{h(i)=j} s(i) x_i`` with
      hashes ``h`` uniform on ``[0, d)`` and signs ``s = +-1``, ``phi = IFFT(FFT Psi(f_a, h_a,
      s_a) * FFT Psi(f_b, h_b, s_b))``.
    * ``"random_maclaurin"``: ``phi = (1/sqrt(d)) (W_a f_a) * (W_b f_b)`` with ``+-1`` entries.

    Paths (same result up to rounding, ``path="auto"`` picks the cheaper by
    :func:`compact_bilinear_path`): ``"location"`` sketches every position (Tensor Sketch:
    count sketch + ``torch.fft``; Random Maclaurin: ``W f(l)``); ``"matrix"`` forms the
    bilinear matrix ``B`` with one batched matmul and sketches it once (Tensor Sketch: the
    fixed signed scatter ``phi[j] = sum_{(h_a(i) + h_b(k)) mod d = j} s_a(i) s_b(k) B[i, k]``
    via ``index_add``; Random Maclaurin: ``w_a[j]^T B w_b[j]``). For ``D = 512``, 28x28,
    ``d = 8192`` the matrix path is > 20x faster on a CPU; for large ``D`` and few positions
    the location path wins.

    The random parameters are drawn from ``seed`` on every call (see
    :class:`CompactBilinearPool`, which keeps them as buffers: prefer it for repeated use).
    Homogeneous pooling still uses independent hashes (or projections) for the two factors.

    Args:
        x_a: features ``(N, D_a, *S)``.
        x_b: second features ``(N, D_b, *S)``; ``None`` pairs ``x_a`` with itself.
        out_dim: sketch size ``d``.
        method: ``"tensor_sketch"`` or ``"random_maclaurin"``.
        seed: seed of the hashes / signs / projections.
        signed_sqrt: apply ``sign(y) sqrt(|y| + eps)``.
        l2_normalize: L2-normalise each sample.
        eps: added under the square root, ``>= 0``.
        path: ``"auto"``, ``"matrix"`` or ``"location"``.

    Returns:
        The sketches.

    Shape:
        - Input: ``(N, D_a, *S)`` and optionally ``(N, D_b, *S)``.
        - Output: ``(N, out_dim)``.

    Example:
        >>> x = torch.rand(2, 8, 5, 5)
        >>> y = compact_bilinear_pool(x, out_dim=128)
        >>> y.shape
        torch.Size([2, 128])
        >>> z = compact_bilinear_pool(x, out_dim=128, path="location")
        >>> bool(torch.allclose(y, z, atol=1e-6))
        True
    """
    a, b, homogeneous, dtype = _pair(x_a, x_b)
    out_dim = _positive_int(out_dim, "out_dim")
    check_choice(method, "method", _METHODS)
    check_choice(path, "path", _PATHS)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    check_bool(signed_sqrt, "signed_sqrt")
    check_bool(l2_normalize, "l2_normalize")
    eps = _eps(eps)
    buffers = _sketch_buffers(a.shape[1], b.shape[1], out_dim, method, seed)
    return _compact(a, b, homogeneous, dtype, buffers, out_dim, method, path, signed_sqrt, l2_normalize, eps)


class CompactBilinearPool(_NormalizedPool):
    """Compact bilinear pooling with the random parameters stored as buffers.

    The Module form of :func:`compact_bilinear_pool` (same parameters for the same ``seed``).
    The hashes and signs (Tensor Sketch: ``hash_a``, ``sign_a``, ``hash_b``, ``sign_b``) or
    the ``+-1`` projections (Random Maclaurin: ``weight_a``, ``weight_b``) are persistent
    buffers: they are saved in the state dict, so a reloaded model gives the same output even
    if the drawing recipe changes. They are not trained.

    Args:
        dim_a: channels of ``x_a``.
        dim_b: channels of ``x_b``; ``None`` means ``dim_a`` (and allows ``forward(x)``).
        out_dim: sketch size ``d`` (8192 matches full bilinear pooling in Gao et al.).
        method: ``"tensor_sketch"`` or ``"random_maclaurin"``.
        seed: seed of the random parameters.
        signed_sqrt: apply ``sign(y) sqrt(|y| + eps)`` (on by default, as in the paper).
        l2_normalize: L2-normalise each sample (on by default, as in the paper).
        eps: added under the square root.
        path: ``"auto"``, ``"matrix"`` or ``"location"`` (see :func:`compact_bilinear_pool`).

    Shape:
        - Input: ``(N, dim_a, *S)``, optionally with ``x_b`` of shape ``(N, dim_b, *S)``.
        - Output: ``(N, out_dim)``.

    Example:
        >>> pool = CompactBilinearPool(16, out_dim=256)
        >>> pool(torch.rand(2, 16, 7, 7)).shape
        torch.Size([2, 256])
        >>> sorted(pool.state_dict())
        ['hash_a', 'hash_b', 'sign_a', 'sign_b']
    """

    def __init__(
        self,
        dim_a: int,
        dim_b: int | None = None,
        out_dim: int = 8192,
        *,
        method: str = "tensor_sketch",
        seed: int = 0,
        signed_sqrt: bool = True,
        l2_normalize: bool = True,
        eps: float = 1e-5,
        path: str = "auto",
    ) -> None:
        super().__init__(dim_a, dim_b, signed_sqrt, l2_normalize, eps)
        self.out_dim = _positive_int(out_dim, "out_dim")
        self.method = check_choice(method, "method", _METHODS)
        self.path = check_choice(path, "path", _PATHS)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.seed = seed
        for name, tensor in _sketch_buffers(self.dim_a, self._dim_b, self.out_dim, method, seed).items():
            self.register_buffer(name, tensor)

    def _buffers_dict(self) -> dict[str, Tensor]:
        names: tuple[str, ...] = ("hash_a", "sign_a", "hash_b", "sign_b")
        if self.method == "random_maclaurin":
            names = ("weight_a", "weight_b")
        return {name: getattr(self, name) for name in names}

    def _check_buffers(self, buffers: Mapping[str, object], where: str) -> None:
        """Shapes and dtypes of the given buffers, and (where values can be read) the hash range.

        Hashes outside ``[0, out_dim)`` wrapped modulo ``out_dim`` on the matrix path and raised
        an index error on the location path; signs must be ``+-1`` (as drawn), projections finite.
        """
        for name, tensor in buffers.items():
            side = self.dim_a if name.endswith("_a") else self._dim_b
            shape = (self.out_dim, side) if name.startswith("weight") else (side,)
            if not isinstance(tensor, Tensor):
                raise TypeError(f"{name} {where} must be a torch.Tensor, got {type(tensor).__name__}")
            if tuple(tensor.shape) != shape:
                raise ValueError(f"{name} {where} must have shape {shape}, got {tuple(tensor.shape)}")
            if name.startswith("hash"):
                if tensor.dtype != torch.int64:
                    raise TypeError(f"{name} {where} must have dtype torch.int64, got {tensor.dtype}")
                if tensor.numel() and not _no_values(tensor):
                    low, high = (int(v) for v in torch.aminmax(tensor))
                    if low < 0 or high >= self.out_dim:
                        raise ValueError(
                            f"{name} {where} must lie in [0, out_dim={self.out_dim}), "
                            f"got values in [{low}, {high}]"
                        )
            elif not tensor.is_floating_point():
                raise TypeError(f"{name} {where} must have a floating-point dtype, got {tensor.dtype}")
            elif name.startswith("sign") and not _no_values(tensor) and not bool((tensor.abs() == 1).all()):
                raise ValueError(f"{name} {where} must hold only -1 and +1")
            elif not _no_values(tensor) and not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"{name} {where} must be finite")

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        names = self._buffers_dict()
        given = {name: state_dict[prefix + name] for name in names if prefix + name in state_dict}
        self._check_buffers(given, "in the state dict")
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        return (
            f"dim_a={self.dim_a}, dim_b={self.dim_b}, out_dim={self.out_dim}, method={self.method!r}, "
            f"seed={self.seed}, signed_sqrt={self.signed_sqrt}, l2_normalize={self.l2_normalize}, "
            f"eps={self.eps}, path={self.path!r}"
        )

    def forward(self, x_a: Tensor, x_b: Tensor | None = None) -> Tensor:
        a, b, homogeneous, dtype = _pair(x_a, x_b, self.dim_a, self.dim_b)
        buffers = self._buffers_dict()
        self._check_buffers(buffers, "(a buffer)")  # cheap: D values each; set directly, they skip the load
        return _compact(
            a,
            b,
            homogeneous,
            dtype,
            buffers,
            self.out_dim,
            self.method,
            self.path,
            self.signed_sqrt,
            self.l2_normalize,
            self.eps,
        )


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
    "compact_bilinear",
    CompactBilinearPool,
    family="bilinear",
    dims=(1, 2, 3),
    channel_multiplier=None,
    description="Tensor Sketch / Random Maclaurin sketch of bilinear pooling (Gao et al.)",
    example_kwargs={"dim_a": 4, "out_dim": 64},
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
