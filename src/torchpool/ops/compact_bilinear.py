"""Compact bilinear pooling (section 8 of the survey; Gao et al., arXiv 1511.06062).

A ``d``-dimensional random feature ``phi`` of the features ``x`` (``(N, D, *S)``, read as a
``(D, L)`` matrix per sample) with ``E <phi(x), phi(y)> = <B_x, B_y>`` for the full bilinear
matrix ``B`` of :func:`~torchpool.ops.bilinear.bilinear_pool` (``= <x, y>^2`` for one
position), by Tensor Sketch (Pham & Pagh) or Random Maclaurin. Each is computed along one of
two equal paths, chosen by a cost estimate (see :func:`compact_bilinear_pool`). Half-precision
inputs are computed in float32 and returned in their own dtype.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .._checks import check_bool, check_choice
from ..registry import register_pool
from ._second_order import _compute, _eps, _no_values, _normalize, _NormalizedPool, _pair, _positive_int

__all__ = ["CompactBilinearPool", "compact_bilinear_pool", "compact_bilinear_path"]

_METHODS = ("tensor_sketch", "random_maclaurin")
_PATHS = ("auto", "matrix", "location")

# Cost-model constants for the Tensor Sketch path choice, in units of one multiply-add of a
# batched matmul, measured on a 2-core x86 CPU (torch 2.13): scattering one element with
# ``index_add`` ~ 200 units, one ``n log2 n`` unit of a length-``d`` real FFT pair (with the
# count sketches and the complex product) ~ 30 units. Only the order of magnitude matters.
_SCATTER_UNIT = 200.0
_FFT_UNIT = 30.0


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
    phi: Tensor = torch.fft.irfft((spectrum_a * spectrum_b).sum(1) / length, n=out_dim, dim=1)
    # Bins that no pair (i, k) hashes to are exactly 0 on the matrix path but FFT round-off
    # here, which the signed square root would blow up to +-sqrt(eps): zero them. The reachable
    # bins are the support of the circular convolution of the two hash histograms.
    counts_a = torch.bincount(hash_a, minlength=out_dim).double()
    counts_b = torch.bincount(hash_b, minlength=out_dim).double()
    pairs: Tensor = torch.fft.irfft(torch.fft.rfft(counts_a) * torch.fft.rfft(counts_b), n=out_dim)
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


register_pool(
    "compact_bilinear",
    CompactBilinearPool,
    family="bilinear",
    dims=(1, 2, 3),
    channel_multiplier=None,
    description="Tensor Sketch / Random Maclaurin sketch of bilinear pooling (Gao et al.)",
    example_kwargs={"dim_a": 4, "out_dim": 64},
)
