"""Spatial pyramid pooling (section 5 of the survey): SPPNet, the YOLOv3-SPP block and SPPF.

* SPPNet (He et al. 2014, arXiv 1406.4729): max (or average) pool into ``n x n`` bins for each
  pyramid level ``n`` and concatenate, giving ``C * sum(n^2)`` features for any input size.
  The bins are PyTorch's adaptive bins ``[floor(i*a/n), ceil((i+1)*a/n))``, which always give
  exactly ``n`` bins; the paper's ``win = ceil(a/n), str = floor(a/n)`` rule does not
  (``a=5, n=3`` gives 4 bins, ``a=7, n=4`` gives 6, ``a < n`` a zero stride).
* YOLOv3-SPP (darknet ``yolov3-spp.cfg``): stride-1 max pools with ``-inf`` "same" padding
  ``k // 2`` for ``k = 5, 9, 13``, concatenated with the input in darknet's route order
  ``[mp13, mp9, mp5, x]`` (``layers=-1,-3,-5,-6``), or ultralytics' ``[x, mp5, mp9, mp13]``.
* SPPF (YOLOv5): ``y1 = mp5(x), y2 = mp5(y1), y3 = mp5(y2)``, ``cat[x, y1, y2, y3]``. Stride-1
  max pools with ``-inf`` padding compose by adding radii (``mp5 o mp5 = mp9``), so SPPF has
  exactly the values of the parallel ``5, 9, 13`` block; :func:`spp_to_sppf` rewrites one into
  the other where that equivalence holds.

Fast path. PyTorch's CPU ``max_pool2d`` with stride 1 is slow (``k^2`` comparisons per output,
scalar code for NCHW). Here a ``k x k`` stride-1 max pool is computed separably (``k x 1`` then
``1 x k``, exact for max) and each 1-d running max by doubling: ``m2 = max(m1, m1 >> 1)``,
``m4 = max(m2, m2 >> 2)``, ... and ``mk = max(mp, mp >> (k - p))`` with ``p`` the largest power
of two ``<= k`` - a few ``torch.maximum`` calls on shifted views, shared between all the
kernels of the block. Channels-last inputs are processed as ``(N, H, W, C)`` so every shifted
view stays dense. Values are bit-identical to ``F.max_pool2d``.

Gradients follow max pooling: each output sends its gradient to exactly one maximum of its
window, never split between tied inputs. When a gradient is needed the block runs as PyTorch's
vectorised channels-last ``max_pool2d``, cascaded like SPPF (``mp9 = mp5 o mp5``); NCHW inputs
are converted to channels-last for it and the output converted back. This was measured about
twice as fast for forward+backward as carrying the argmax through the doubling steps. On ties
the chosen maximum (the first through the cascade) may differ from a direct ``F.max_pool2d``'s
row-major first one; both are valid max-pool subgradients.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_bool, check_choice, check_input, is_traced, restore_batch
from ..darknet import Section, parse_int, parse_int_list, parse_sections
from ..registry import register_pool
from .adaptive import adaptive_pool

__all__ = [
    "SPPF",
    "SpatialPyramidPool",
    "SpatialPyramidPool1d",
    "SpatialPyramidPool2d",
    "SpatialPyramidPool3d",
    "YoloSPP",
    "from_darknet_cfg",
    "spatial_pyramid_pool",
    "spatial_pyramid_pool1d",
    "spatial_pyramid_pool2d",
    "spatial_pyramid_pool3d",
    "spp_to_sppf",
    "sppf",
    "yolo_spp",
]

_MODES = ("max", "avg")
_ORDERS = ("darknet", "ultralytics")
Level = int | Sequence[int]

# ---------------------------------------------------------------------------------------------
# SPPNet
# ---------------------------------------------------------------------------------------------


def _check_levels(levels: object, n: int) -> tuple[tuple[int, ...], ...]:
    """Normalises ``levels`` to a tuple of ``n``-tuples of positive ints (bins per dimension)."""
    if isinstance(levels, (int, bool)) or not isinstance(levels, Sequence) or isinstance(levels, str):
        raise TypeError(f"levels must be a sequence of ints (or of {n}-tuples), got {type(levels).__name__}")
    if len(levels) == 0:
        raise ValueError("levels must not be empty")
    out: list[tuple[int, ...]] = []
    for level in levels:
        if isinstance(level, bool):
            raise TypeError(f"levels must contain ints, got {level!r}")
        if isinstance(level, int):
            bins: tuple[int, ...] = (level,) * n
        elif isinstance(level, Sequence) and not isinstance(level, str):
            if len(level) != n or any(isinstance(v, bool) or not isinstance(v, int) for v in level):
                raise TypeError(f"levels must contain ints or {n}-tuples of ints, got {level!r}")
            bins = tuple(level)
        else:
            raise TypeError(f"levels must contain ints or {n}-tuples of ints, got {type(level).__name__}")
        if any(v < 1 for v in bins):
            raise ValueError(f"levels must be positive, got {level!r}")
        out.append(bins)
    return tuple(out)


def _pool_level(x: Tensor, bins: tuple[int, ...], mode: str, n: int) -> Tensor:
    """``(N, C, *bins)``: one level of the pyramid."""
    if all(b == 1 for b in bins):  # global level: a plain reduction (max keeps one argmax)
        flat = x.flatten(2)
        y = flat.max(dim=2).values if mode == "max" else flat.mean(dim=2)
        return y.reshape(*y.shape, *bins)
    return adaptive_pool(x, n, bins, mode)


def _spp(x: Tensor, n: int, levels: Sequence[Level], mode: str, flatten: bool) -> Tensor:
    bins = _check_levels(levels, n)
    check_choice(mode, "mode", _MODES)
    check_bool(flatten, "flatten")
    x, unbatched = check_input(x, n)
    if any(size == 0 for size in x.shape[2:]):
        raise ValueError(f"input must have non-zero spatial sizes, got shape {tuple(x.shape)}")
    if x.shape[1] == 0:
        # C = 0: the empty result (adaptive pooling refuses an empty channel dimension)
        count = 0
        for level in bins:
            cells = 1
            for b in level:
                cells *= b
            count += cells
        empty = x.flatten(2)[:, :, :1].expand(x.shape[0], 0, count)
        return restore_batch((empty.flatten(1) if flatten else empty).contiguous(), unbatched)
    pooled = [_pool_level(x, b, mode, n) for b in bins]
    if flatten:
        y = torch.cat([p.flatten(1) for p in pooled], dim=1)
    else:
        y = torch.cat([p.flatten(2) for p in pooled], dim=2)
    return restore_batch(y, unbatched)


def _spp_function(n: int) -> Callable[..., Tensor]:
    shape = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}[n]
    example_in = {1: "1, 2, 8", 2: "1, 2, 5, 7", 3: "1, 2, 3, 5, 4"}[n]
    example_len = {1: 2 * 7, 2: 2 * 21, 3: 2 * 73}[n]

    def spatial_pyramid_pool(
        x: Tensor, levels: Sequence[Level] = (1, 2, 4), mode: str = "max", *, flatten: bool = True
    ) -> Tensor:
        return _spp(x, n, levels, mode, flatten)

    spatial_pyramid_pool.__name__ = spatial_pyramid_pool.__qualname__ = f"spatial_pyramid_pool{n}d"
    spatial_pyramid_pool.__doc__ = f"""Spatial pyramid pooling (SPPNet): a fixed-length vector for any input.

    Each level ``l`` splits every spatial dimension of size ``a`` into ``l`` adaptive bins
    ``[floor(i*a/l), ceil((i+1)*a/l))`` (PyTorch's adaptive pooling bins, which overlap when
    ``a`` is not a multiple of ``l`` and when ``a < l``), pools each bin and concatenates.

    Args:
        x: input ``{shape}`` or batch-less, any spatial size ``>= 1``.
        levels: bins per dimension for each level: ints, or {n}-tuples of ints.
        mode: ``"max"`` or ``"avg"`` pooling in each bin.
        flatten: return one vector per sample, ``[level 0 (C * bins, channel-major), level 1, ...]``
            as in SPPNet; otherwise ``(N, C, sum bins)`` with the bins of all levels
            (row-major within a level) along the last dimension.

    Returns:
        The pooled features.

    Shape:
        - Input: ``(N, C, *S)`` or ``(C, *S)`` with {n} spatial dims.
        - Output: ``(N, C * B)`` or ``(C * B,)`` with ``B = sum(prod(level))``; with
          ``flatten=False``, ``(N, C, B)`` or ``(C, B)``.

    Example:
        >>> x = torch.randn({example_in})
        >>> spatial_pyramid_pool{n}d(x).shape
        torch.Size([1, {example_len}])
        >>> spatial_pyramid_pool{n}d(x, flatten=False).shape
        torch.Size([1, 2, {example_len // 2}])
    """
    return spatial_pyramid_pool


spatial_pyramid_pool1d, spatial_pyramid_pool2d, spatial_pyramid_pool3d = (_spp_function(n) for n in (1, 2, 3))
spatial_pyramid_pool = spatial_pyramid_pool2d


class _SPPBase(nn.Module):
    _n: int

    def __init__(
        self, levels: Sequence[Level] = (1, 2, 4), mode: str = "max", *, flatten: bool = True
    ) -> None:
        super().__init__()
        _check_levels(levels, self._n)
        self.levels = tuple(levels)
        self.mode = check_choice(mode, "mode", _MODES)
        self.flatten = check_bool(flatten, "flatten")

    def output_features(self, channels: int) -> int:
        """Length of the flattened output for ``channels`` input channels."""
        total = 0
        for bins in _check_levels(self.levels, self._n):
            count = 1
            for b in bins:
                count *= b
            total += count
        return channels * total

    def extra_repr(self) -> str:
        return f"levels={self.levels}, mode={self.mode!r}, flatten={self.flatten}"

    def forward(self, x: Tensor) -> Tensor:
        return _spp(x, self._n, self.levels, self.mode, self.flatten)


class SpatialPyramidPool1d(_SPPBase):
    """Module form of :func:`spatial_pyramid_pool1d`; arguments as for the function.

    Example:
        >>> SpatialPyramidPool1d((1, 2, 4))(torch.randn(3, 8, 11)).shape
        torch.Size([3, 56])
    """

    _n = 1


class SpatialPyramidPool2d(_SPPBase):
    """SPPNet's spatial pyramid pooling layer: the Module form of :func:`spatial_pyramid_pool2d`.

    Args:
        levels: bins per side for each level, e.g. ``(1, 2, 4)`` or ``(6, 3, 2, 1)``.
        mode: ``"max"`` or ``"avg"``.
        flatten: return ``(N, C * sum(n^2))``; otherwise ``(N, C, sum(n^2))``.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``, any ``H, W >= 1``.
        - Output: ``(N, C * sum(n^2))`` or ``(C * sum(n^2),)``.

    Example:
        >>> pool = SpatialPyramidPool2d((1, 2, 4))
        >>> pool(torch.randn(2, 256, 13, 9)).shape
        torch.Size([2, 5376])
        >>> pool.output_features(256)
        5376
    """

    _n = 2


class SpatialPyramidPool3d(_SPPBase):
    """Module form of :func:`spatial_pyramid_pool3d`; arguments as for the function.

    Example:
        >>> SpatialPyramidPool3d((1, 2))(torch.randn(1, 4, 3, 5, 5)).shape
        torch.Size([1, 36])
    """

    _n = 3


SpatialPyramidPool = SpatialPyramidPool2d

# ---------------------------------------------------------------------------------------------
# Stride-1 max pooling with -inf "same" padding: separable running maxima by doubling
# ---------------------------------------------------------------------------------------------


def _pad_neg_inf(x: Tensor, dim: int, r: int) -> Tensor:
    """Pads ``dim`` by ``r`` on both sides with ``-inf``."""
    if r == 0:
        return x
    shape = list(x.shape)
    shape[dim] += 2 * r
    out = x.new_full(shape, float("-inf"))
    out.narrow(dim, r, x.shape[dim]).copy_(x)
    return out


def _running_max(
    xp: Tensor,
    dim: int,
    length: int,
    pad: int,
    kernels: Sequence[int],
    outs: Sequence[Tensor | None] | None = None,
) -> list[Tensor]:
    """Running maxima along ``dim`` of ``xp`` (padded by ``pad`` on both sides) for odd ``kernels``.

    For each ``k`` returns ``values`` with ``values[i] = max xp[i + pad - k//2 : i + pad + k//2 + 1]``
    (``length`` positions), written into ``outs[i]`` when given.
    """
    size = xp.shape[dim]
    levels: dict[int, Tensor] = {1: xp}
    w = 1
    while 2 * w <= max(kernels):
        m = levels[w]
        n = size - 2 * w + 1
        levels[2 * w] = torch.maximum(m.narrow(dim, 0, n), m.narrow(dim, w, n))
        w *= 2
    results: list[Tensor] = []
    for i, k in enumerate(kernels):
        out = outs[i] if outs is not None else None
        p = 1
        while 2 * p <= k:
            p *= 2
        m = levels[p]
        start = pad - k // 2
        a = m.narrow(dim, start, length)
        if k == p:  # only k == 1 for odd kernels
            results.append(a if out is None else out.copy_(a))
            continue
        b = m.narrow(dim, start + k - p, length)
        results.append(torch.maximum(a, b) if out is None else torch.maximum(a, b, out=out))
    return results


def _row_max(colmax: Tensor, k: int, wdim: int, channels_last: bool, out: Tensor | None) -> Tensor:
    """The ``1 x k`` running max along ``wdim`` (into ``out`` if given).

    For NCHW the rows are short, so the doubling steps run on each padded plane flattened to
    one long row (``(H, W + 2r)`` -> ``H * (W + 2r)``): a window that would cross a row end is
    never read, because the last window of a row ends on that row's padding.
    """
    r = k // 2
    width = colmax.shape[wdim]
    padded = _pad_neg_inf(colmax, wdim, r)
    if channels_last:
        [value] = _running_max(padded, wdim, width, r, (k,), None if out is None else [out])
        return value
    n, c, height, row = padded.shape
    m = padded.reshape(n, c, height * row)
    w = 1
    while 2 * w <= k:
        size = m.shape[2] - w
        m = torch.maximum(m.narrow(2, 0, size), m.narrow(2, w, size))
        w *= 2
    shape, strides = (n, c, height, width), (m.stride(0), m.stride(1), row, 1)
    a = m.as_strided(shape, strides, m.storage_offset())
    b = m.as_strided(shape, strides, m.storage_offset() + k - w)
    return torch.maximum(a, b) if out is None else torch.maximum(a, b, out=out)


_BLOCK_ELEMENTS = 2**21  # input elements per block: bounds the temporaries of large inputs


def _multi_max_pool2d(x: Tensor, slots: tuple[int, ...]) -> Tensor:
    """``cat([mp_k(x) for k in slots], channels)`` with ``mp_1`` the identity; ``x`` is ``(N, C, H, W)``.

    Values only (no autograd). Large inputs run in blocks of samples and channels, which bounds
    the temporaries (smaller, cache-sized blocks were measured slower with 2 threads).
    """
    channels_last = (
        x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    )
    if channels_last:
        view = x.permute(0, 2, 3, 1)  # dense (N, H, W, C)
        cdim = 3
    else:
        view = x.contiguous()
        cdim = 1
    batch, c = view.shape[0], view.shape[cdim]
    out_shape = list(view.shape)
    out_shape[cdim] = c * len(slots)
    out_view = view.new_empty(out_shape)
    for s, k in enumerate(slots):
        if k == 1:
            out_view.narrow(cdim, s * c, c).copy_(view)
    kernels = sorted({k for k in slots if k > 1})
    if kernels:
        plane = view.shape[1] * view.shape[2] if channels_last else view.shape[2] * view.shape[3]
        channels = max(1, min(c, _BLOCK_ELEMENTS // max(plane, 1)))
        samples = max(1, min(batch, _BLOCK_ELEMENTS // max(plane * c, 1))) if channels == c else 1
        for n0 in range(0, batch, samples):
            nb = min(samples, batch - n0)
            for c0 in range(0, c, channels):
                cb = min(channels, c - c0)
                block = view.narrow(0, n0, nb).narrow(cdim, c0, cb)
                targets = [out_view.narrow(0, n0, nb).narrow(cdim, s * c + c0, cb) for s in range(len(slots))]
                _pool_block(block, slots, kernels, channels_last, targets)
    return out_view.permute(0, 3, 1, 2) if channels_last else out_view


def _pool_block(
    view: Tensor, slots: tuple[int, ...], kernels: list[int], channels_last: bool, targets: list[Tensor]
) -> None:
    """Pools one block (``(N, C, H, W)``, or ``(N, H, W, C)`` if ``channels_last``) into ``targets``:
    columns first (shared by all kernels), then rows."""
    hdim, wdim = (1, 2) if channels_last else (2, 3)
    height = view.shape[hdim]
    pad_h = max(kernels) // 2
    columns = _running_max(_pad_neg_inf(view, hdim, pad_h), hdim, height, pad_h, kernels)
    for s, k in enumerate(slots):
        if k > 1:
            _row_max(columns[kernels.index(k)], k, wdim, channels_last, targets[s])


def _native_cascade(x: Tensor, slots: tuple[int, ...]) -> Tensor:
    """The block through PyTorch's channels-last ``max_pool2d``, cascaded: ``mp_k = mp_(k - k' + 1) o mp_k'``
    for the previous kernel ``k'``. Used when a gradient is needed (autograd gives max-pool routing)."""
    pooled: dict[int, Tensor] = {1: x}
    previous = 1
    for k in sorted({k for k in slots if k > 1}):
        d = k - previous + 1
        pooled[k] = F.max_pool2d(pooled[previous], d, 1, d // 2)
        previous = k
    return torch.cat([pooled[k] for k in slots], dim=1)


def _stride_one_max(x: Tensor, slots: tuple[int, ...]) -> Tensor:
    x, unbatched = check_input(x, 2)
    if any(size == 0 for size in x.shape[2:]):
        raise ValueError(f"input must have non-zero spatial sizes, got shape {tuple(x.shape)}")
    if x.shape[1] == 0:
        # C = 0: the empty result (PyTorch's max_pool2d refuses an empty channel dimension)
        y = x.repeat(1, len(slots), 1, 1)
    elif is_traced() or (torch.is_grad_enabled() and x.requires_grad):
        # the autograd path, and the traceable one: torch.compile (fullgraph), torch.export and
        # ONNX export run PyTorch's max_pool2d cascade (the doubling path's as_strided views and
        # data-sized blocks break dynamo graphs); the values are the same either way
        channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        y = _native_cascade(x.contiguous(memory_format=torch.channels_last), slots)
        y = y if channels_last else y.contiguous()
    else:
        y = _multi_max_pool2d(x, slots)
    return restore_batch(y, unbatched)


# ---------------------------------------------------------------------------------------------
# YOLO SPP and SPPF
# ---------------------------------------------------------------------------------------------


def _check_kernel_sizes(kernel_sizes: object) -> tuple[int, ...]:
    if isinstance(kernel_sizes, (int, str)) or not isinstance(kernel_sizes, Sequence):
        raise TypeError(f"kernel_sizes must be a sequence of odd ints, got {type(kernel_sizes).__name__}")
    if len(kernel_sizes) == 0:
        raise ValueError("kernel_sizes must not be empty")
    for k in kernel_sizes:
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"kernel_sizes must contain ints, got {k!r}")
        if k < 1 or k % 2 == 0:
            raise ValueError(
                f"kernel_sizes must be positive odd ints (same padding k // 2 needs odd k), got {k} in "
                f"{tuple(kernel_sizes)}"
            )
    if len(set(kernel_sizes)) != len(kernel_sizes):
        repeated = sorted({k for k in kernel_sizes if list(kernel_sizes).count(k) > 1})
        raise ValueError(
            f"kernel_sizes must not repeat a kernel size (the block would output the same pooled "
            f"channels twice), got {tuple(kernel_sizes)} with {repeated} repeated"
        )
    return tuple(kernel_sizes)


def _check_kernel(kernel_size: object, name: str = "kernel_size") -> int:
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int):
        raise TypeError(f"{name} must be an odd int, got {type(kernel_size).__name__}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"{name} must be a positive odd int (same padding needs odd k), got {kernel_size}")
    return kernel_size


def _ordered(kernel_sizes: tuple[int, ...], order: str) -> tuple[int, ...]:
    # slot 1 is the input itself
    return (*reversed(kernel_sizes), 1) if order == "darknet" else (1, *kernel_sizes)


def yolo_spp(x: Tensor, kernel_sizes: Sequence[int] = (5, 9, 13), order: str = "ultralytics") -> Tensor:
    """YOLOv3's SPP block: stride-1 max pools with ``-inf`` same padding, concatenated with the input.

    ``order="ultralytics"`` (the default, as :func:`sppf`) gives ``[x, mp5, mp9, mp13]`` (in
    general ``x``, then the pools in the order of ``kernel_sizes``); ``order="darknet"`` gives
    ``[mp13, mp9, mp5, x]`` (``yolov3-spp.cfg``'s ``route layers=-1,-3,-5,-6``: the pools from
    the last kernel to the first, then ``x``; the layout darknet weights expect). Values equal
    ``F.max_pool2d(x, k, 1, k // 2)`` exactly; see the module notes for the fast path and the
    gradient's tie rule.

    Args:
        x: input ``(N, C, H, W)`` or ``(C, H, W)``.
        kernel_sizes: odd kernel sizes, each at most once.
        order: ``"ultralytics"`` or ``"darknet"`` channel order.

    Returns:
        The concatenation, ``(len(kernel_sizes) + 1) * C`` channels, same spatial size.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
        - Output: ``(N, 4C, H, W)`` or ``(4C, H, W)`` for three kernels.

    Example:
        >>> x = torch.arange(5.0).reshape(1, 1, 1, 5)
        >>> yolo_spp(x, (3, 5)).flatten().tolist()
        [0.0, 1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0, 4.0, 2.0, 3.0, 4.0, 4.0, 4.0]
        >>> yolo_spp(x, (3, 5), order="darknet").flatten().tolist()
        [2.0, 3.0, 4.0, 4.0, 4.0, 1.0, 2.0, 3.0, 4.0, 4.0, 0.0, 1.0, 2.0, 3.0, 4.0]
    """
    ks = _check_kernel_sizes(kernel_sizes)
    check_choice(order, "order", _ORDERS)
    return _stride_one_max(x, _ordered(ks, order))


def _sppf_kernels(kernel_size: int, n: int) -> tuple[int, ...]:
    """Kernel sizes of the parallel block equal to ``n`` cascaded ``kernel_size`` pools."""
    return tuple((i + 1) * (kernel_size - 1) + 1 for i in range(n))


def _check_n(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    return n


def sppf(x: Tensor, kernel_size: int = 5, n: int = 3, order: str = "ultralytics") -> Tensor:
    """YOLOv5's SPPF: ``y1 = mp(x), y2 = mp(y1), ...``, then ``cat[x, y1, ..., yn]``.

    ``mp`` is a ``kernel_size`` stride-1 max pool with ``-inf`` padding ``kernel_size // 2``.
    Such pools compose by adding radii, so ``yi`` equals a single pool of size
    ``i * (kernel_size - 1) + 1``; it is computed that way (shared separable running
    maxima), with the cascade's exact values. ``order="darknet"`` reverses the channel blocks
    (``[yn, ..., y1, x]``) to match :func:`yolo_spp`'s darknet order.

    Args:
        x: input ``(N, C, H, W)`` or ``(C, H, W)``.
        kernel_size: the odd kernel size of each pool.
        n: number of cascaded pools.
        order: ``"ultralytics"`` or ``"darknet"``.

    Returns:
        ``(n + 1) * C`` channels, same spatial size.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
        - Output: ``(N, (n+1)C, H, W)`` or ``((n+1)C, H, W)``.

    Example:
        >>> x = torch.arange(5.0).reshape(1, 1, 1, 5)
        >>> sppf(x, 3, 2).flatten().tolist()
        [0.0, 1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0, 4.0, 2.0, 3.0, 4.0, 4.0, 4.0]
    """
    k = _check_kernel(kernel_size)
    count = _check_n(n)
    check_choice(order, "order", _ORDERS)
    return _stride_one_max(x, _ordered(_sppf_kernels(k, count), order))


class YoloSPP(nn.Module):
    """The YOLOv3-SPP block: the Module form of :func:`yolo_spp`.

    Args:
        kernel_sizes: odd kernel sizes, each at most once, ``(5, 9, 13)`` in YOLOv3-SPP.
        order: ``"ultralytics"`` (``[x, mp5, mp9, mp13]``, the default, as :class:`SPPF`) or
            ``"darknet"`` (``[mp13, mp9, mp5, x]``, as darknet's ``yolov3-spp.cfg``).

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
        - Output: ``(N, 4C, H, W)`` or ``(4C, H, W)``.

    Example:
        >>> YoloSPP()(torch.randn(2, 8, 19, 19)).shape
        torch.Size([2, 32, 19, 19])
    """

    def __init__(self, kernel_sizes: Sequence[int] = (5, 9, 13), order: str = "ultralytics") -> None:
        super().__init__()
        self.kernel_sizes = _check_kernel_sizes(kernel_sizes)
        self.order = check_choice(order, "order", _ORDERS)

    def extra_repr(self) -> str:
        return f"kernel_sizes={self.kernel_sizes}, order={self.order!r}"

    def forward(self, x: Tensor) -> Tensor:
        return yolo_spp(x, self.kernel_sizes, self.order)


class SPPF(nn.Module):
    """YOLOv5's SPPF block: the Module form of :func:`sppf`.

    Args:
        kernel_size: odd size of each cascaded pool.
        n: number of cascaded pools.
        order: ``"ultralytics"`` (``[x, y1, y2, y3]``) or ``"darknet"`` (``[y3, y2, y1, x]``).

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
        - Output: ``(N, (n+1)C, H, W)`` or ``((n+1)C, H, W)``.

    Example:
        >>> x = torch.randn(1, 4, 10, 10)
        >>> torch.equal(SPPF()(x), YoloSPP((5, 9, 13))(x))  # the same default order
        True
    """

    def __init__(self, kernel_size: int = 5, n: int = 3, order: str = "ultralytics") -> None:
        super().__init__()
        self.kernel_size = _check_kernel(kernel_size)
        self.n = _check_n(n)
        self.order = check_choice(order, "order", _ORDERS)

    @property
    def equivalent_kernel_sizes(self) -> tuple[int, ...]:
        """The kernel sizes of the parallel :class:`YoloSPP` with the same output."""
        return _sppf_kernels(self.kernel_size, self.n)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, n={self.n}, order={self.order!r}"

    def forward(self, x: Tensor) -> Tensor:
        return sppf(x, self.kernel_size, self.n, self.order)


def spp_to_sppf(module: YoloSPP) -> SPPF:
    """Rewrites a parallel :class:`YoloSPP` as the cheaper, output-identical :class:`SPPF`.

    The rewrite holds when the kernels are odd and in the progression ``k, 2k-1, 3k-2, ...``
    (``kernel_sizes[i] = (i + 1) * (k - 1) + 1``): stride-1 max pools with ``-inf`` padding
    ``k // 2`` compose by adding radii. The channel order is kept.

    Args:
        module: the block to rewrite.

    Returns:
        An :class:`SPPF` with identical outputs.

    Raises:
        TypeError: if ``module`` is not a :class:`YoloSPP`.
        ValueError: if the kernels are not such a progression (the message says why).

    Example:
        >>> spp_to_sppf(YoloSPP((5, 9, 13), order="darknet"))
        SPPF(kernel_size=5, n=3, order='darknet')
    """
    if not isinstance(module, YoloSPP):
        raise TypeError(f"module must be a YoloSPP, got {type(module).__name__}")
    ks = _check_kernel_sizes(module.kernel_sizes)
    k = ks[0]
    expected = _sppf_kernels(k, len(ks))
    if ks != expected:
        raise ValueError(
            f"cannot rewrite kernel_sizes={ks} as SPPF: a cascade of n={len(ks)} max pools of size {k} "
            f"equals parallel pools of sizes {expected} (kernel_sizes[i] must be (i + 1) * (k - 1) + 1)"
        )
    return SPPF(k, len(ks), module.order)


# ---------------------------------------------------------------------------------------------
# darknet cfg
# ---------------------------------------------------------------------------------------------


def _spp_block(sections: Sequence[Section], base: int | None) -> YoloSPP:
    """The :class:`YoloSPP` a run of ``[maxpool]``/``[route]`` sections describes.

    Layer outputs are followed symbolically from the block's input ``x`` (the layer before the
    first section). ``base`` is darknet's layer index of the first section when the run comes
    from a whole file (absolute ``layers=`` indices are then resolved), ``None`` for a snippet.
    """
    outputs: list[int] = []  # effective kernel size of each layer's output (1 = the block input x)
    concat: list[int] | None = None
    for position, section in enumerate(sections):
        name, options, where = section.name, section.options, section.where()
        if concat is not None:
            raise ValueError(f"darknet cfg {where}: the SPP block must end with its concatenating [route]")
        previous = outputs[-1] if outputs else 1
        if name == "maxpool":
            unknown = set(options) - {"size", "stride", "padding"}
            if unknown:
                raise ValueError(f"darknet cfg {where}: unknown option(s) {sorted(unknown)}")
            values = {key: parse_int(o.value, key, name, o.line) for key, o in options.items()}
            stride = values.get("stride", 1)
            size = values.get("size", stride)
            if stride != 1:
                raise ValueError(f"darknet cfg {where}: SPP max pools need stride=1, got stride={stride}")
            if size < 1 or size % 2 == 0:
                raise ValueError(f"darknet cfg {where}: size must be a positive odd int, got {size}")
            if values.get("padding", size - 1) != size - 1:
                raise ValueError(
                    f"darknet cfg {where}: padding must be size - 1 = {size - 1} (same padding), "
                    f"got {values['padding']}"
                )
            outputs.append(previous + size - 1)
        elif name == "route":
            if set(options) != {"layers"}:
                raise ValueError(
                    f"darknet cfg {where}: a route needs exactly 'layers=...', got {sorted(options)}"
                )
            line = options["layers"].line
            picked: list[int] = []
            for index in parse_int_list(options["layers"], "layers", name):
                relative = index
                if index >= 0:
                    if base is None:
                        raise ValueError(
                            f"darknet cfg line {line} in {where}: absolute layer index {index} is not "
                            "supported in an SPP block (use negative offsets)"
                        )
                    relative = index - (base + position)
                target = position + relative
                if target < -1:
                    raise ValueError(
                        f"darknet cfg line {line} in {where}: layers={index} points before the block's input"
                    )
                if target >= position:
                    raise ValueError(
                        f"darknet cfg line {line} in {where}: layers={index} is not an earlier layer"
                    )
                picked.append(1 if target == -1 else outputs[target])
            if len(picked) > 1:
                concat = picked
            outputs.append(picked[0])
        else:
            raise ValueError(
                f"darknet cfg {where}: unsupported section in an SPP block (only [maxpool] and [route])"
            )
    if concat is None:
        raise ValueError("darknet cfg: the SPP block must end with a [route] concatenating x and the pools")
    pools = [k for k in concat if k != 1]
    if concat == [*sorted(pools, reverse=True), 1] and len(set(pools)) == len(pools) and pools:
        return YoloSPP(tuple(sorted(pools)), "darknet")
    if concat == [1, *sorted(pools)] and len(set(pools)) == len(pools) and pools:
        return YoloSPP(tuple(sorted(pools)), "ultralytics")
    raise ValueError(
        f"darknet cfg: the final [route] gives effective kernels {concat} (1 = the block input), which is "
        "not an SPP concatenation [largest, ..., smallest, x] (darknet) or [x, smallest, ..., largest] "
        "(ultralytics)"
    )


def _find_spp_block(layers: Sequence[Section]) -> YoloSPP:
    """The one SPP block of a whole file's layer sections (``[net]`` left out)."""
    found: list[tuple[int, YoloSPP]] = []
    nearest: str | None = None
    for start, section in enumerate(layers):
        stride = section.options.get("stride")
        if section.name != "maxpool" or stride is None:
            continue
        if parse_int(stride.value, "stride", "maxpool", stride.line) != 1:
            continue
        end = start
        while end < len(layers) and layers[end].name in ("maxpool", "route"):
            route = layers[end].options.get("layers")
            if layers[end].name == "route" and route is not None and "," in route.value:
                break
            end += 1
        if end == len(layers) or layers[end].name != "route":
            continue
        try:
            found.append((section.line, _spp_block(layers[start : end + 1], start)))
        except ValueError as error:
            nearest = nearest or str(error)
    if len(found) == 1:
        return found[0][1]
    if found:
        lines = ", ".join(str(line) for line, _ in found)
        raise ValueError(
            f"darknet cfg: {len(found)} SPP blocks (starting at lines {lines}); "
            "pass the text of the one you want"
        )
    hint = f" (the nearest candidate: {nearest})" if nearest else ""
    raise ValueError(
        "darknet cfg: no SPP block (stride-1 [maxpool]s whose outputs a [route] concatenates with their "
        f"input) in the file{hint}"
    )


def from_darknet_cfg(text: str) -> YoloSPP:
    """Builds the :class:`YoloSPP` block described by a darknet cfg: a whole file or its SPP part.

    A whole file (its first section is ``[net]``, e.g. ``yolov3-spp.cfg`` or ``yolov4.cfg``)
    is searched for its SPP block: stride-1 ``[maxpool]`` sections and ``[route]`` sections
    ending with the ``[route]`` that concatenates the block input ``x`` and the pooled outputs;
    a file with none or several is refused. Otherwise ``text`` is the block itself.

    Layer outputs are followed symbolically from the block's input ``x`` (the layer before
    the first section): a ``[maxpool]`` (``stride=1``, ``size=k``, darknet's default padding
    ``size - 1`` in total) pools the previous output, a one-layer ``[route]`` selects an
    earlier output, and the last section must be a ``[route]`` concatenating ``x`` and the
    pooled outputs in darknet (``[mp13, mp9, mp5, x]``) or ultralytics (``[x, mp5, ...]``)
    order. Cascaded pools are accepted and add radii (``mp5 o mp5 = mp9``).
    ``yolov3-spp.cfg``'s ``### SPP ###`` block gives ``YoloSPP((5, 9, 13), "darknet")``.
    Ints are plain decimals (``size=5_1`` is refused); see :mod:`torchpool.darknet`.

    Args:
        text: the cfg text of a whole file or of the block.

    Returns:
        The equivalent block.

    Raises:
        TypeError: if ``text`` is not a string.
        ValueError: for other sections in a block, malformed or unknown options,
            ``stride != 1``, even sizes, routes outside the block, a final route that is not an
            SPP concatenation, or a whole file without exactly one SPP block; messages name the
            section and line.

    Example:
        >>> cfg = "[maxpool]\\nstride=1\\nsize=5\\n[route]\\nlayers=-2\\n[maxpool]\\nstride=1\\nsize=9\\n"
        >>> from_darknet_cfg(cfg + "[route]\\nlayers=-1,-3,-4")
        YoloSPP(kernel_sizes=(5, 9), order='darknet')
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    sections = parse_sections(text)
    if not sections:
        raise ValueError("darknet cfg has no [maxpool]/[route] sections")
    if sections[0].name in ("net", "network"):
        return _find_spp_block(sections[1:])
    return _spp_block(sections, None)


register_pool(
    "spp",
    SpatialPyramidPool2d,
    family="pyramid",
    dims=(2,),
    channel_multiplier=None,
    description="SPPNet spatial pyramid pooling: C * sum(n^2) features for any input size",
    example_kwargs={"levels": (1, 2, 4)},
)
register_pool(
    "spp1d",
    SpatialPyramidPool1d,
    family="pyramid",
    dims=(1,),
    channel_multiplier=None,
    description="1-d spatial pyramid pooling",
    example_kwargs={"levels": (1, 2, 4)},
)
register_pool(
    "spp3d",
    SpatialPyramidPool3d,
    family="pyramid",
    dims=(3,),
    channel_multiplier=None,
    description="3-d spatial pyramid pooling",
    example_kwargs={"levels": (1, 2)},
)
register_pool(
    "yolo_spp",
    YoloSPP,
    family="pyramid",
    dims=(2,),
    channel_multiplier=4,
    description="YOLOv3-SPP: stride-1 max pools 5/9/13 concatenated with the input",
    example_kwargs={"kernel_sizes": (5, 9, 13)},
)
register_pool(
    "sppf",
    SPPF,
    family="pyramid",
    dims=(2,),
    channel_multiplier=4,
    description="YOLOv5 SPPF: three cascaded 5x5 max pools, same output as yolo_spp (same default order)",
    example_kwargs={"kernel_size": 5, "n": 3},
)
