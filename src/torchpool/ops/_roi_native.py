"""The max mode of SPP on regions on the CPU in float32 through the C kernel ``csrc/roi_spp.c``.

The kernel computes torchvision's ``roi_pool`` bins itself (float32, as
:func:`torchpool.ops.roi_pyramid._bins` does), pools one image and a block of 16 channels at a
time from a copy of the block held as channel vectors (in cache), and derives a coarser level from
a finer one box by box where the bins nest. Each bin's max is its first in row-major order among
ties (torchvision's cell), a NaN where it holds one, 0 where it is empty; with ``argmax``, each max's
cell ``((n * C + c) * H + h) * W + w`` in the map (``N * C * H * W`` for an empty bin). The backward
(:func:`max_backward`) adds each bin's gradient to its cell, each channel one thread's, boxes in
order: the same sums for any number of threads.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .. import _native

__all__ = ["available", "max_backward", "max_forward"]

#: the kernel reads batch indices as float32 (exact integers below 2**24) and cells as int32
_MAX_IMAGES = 2**24
_MAX_AREA = 2**31 - 1


def _library() -> ctypes.CDLL | None:
    return _native.load("roi_spp")


def _kernel() -> ctypes.CDLL:
    lib = _library()
    if lib is None:
        raise RuntimeError(f"torchpool: the roi_spp kernel is not built: {_native.build_error('roi_spp')}")
    return lib


def available(features: Tensor, rois: Tensor) -> bool:
    """Whether the kernel is built and takes these tensors (CPU, float32 features, sizes it indexes)."""
    n, _, height, width = features.shape
    return (
        features.device.type == "cpu"
        and rois.device.type == "cpu"
        and features.dtype == torch.float32
        and n < _MAX_IMAGES
        and height * width < _MAX_AREA
        and _library() is not None
    )


def _pointers(tensors: Sequence[Tensor]) -> Tensor:
    return torch.tensor([t.data_ptr() for t in tensors], dtype=torch.int64)


def _address(t: Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def _layout(features: Tensor) -> Tensor:
    """``features`` in a layout the kernel reads: NCHW or channels-last (else a contiguous copy)."""
    if features.is_contiguous() or features.is_contiguous(memory_format=torch.channels_last):
        return features
    return features.contiguous()


def max_forward(
    features: Tensor,
    rois: Tensor,
    levels: Sequence[tuple[int, int]],
    spatial_scale: float,
    argmax: bool,
    flat: Tensor | None = None,
) -> tuple[list[Tensor], list[Tensor]]:
    """Each level's ``(K, C, nh, nw)`` maxima (0 in empty bins) and, with ``argmax``, their cells
    (int64, ``N * C * H * W`` for an empty bin). ``rois``: ``(K, 5)`` checked boxes. With ``flat``
    (``(K, C * sum(nh * nw))``, contiguous) the maxima are written into it, level after level, and
    returned as views of it."""
    x = _layout(features)
    count, channels = rois.shape[0], x.shape[1]
    sizes = [channels * nh * nw for nh, nw in levels]
    if flat is not None:
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        values = [
            flat[:, s : s + size].view(count, channels, nh, nw)
            for s, size, (nh, nw) in zip(starts, sizes, levels)
        ]
        strides = [flat.shape[1]] * len(levels)
    else:
        values = [x.new_empty(count, channels, nh, nw) for nh, nw in levels]
        strides = sizes
    cells = [torch.empty(count, channels, nh, nw, dtype=torch.int64) for nh, nw in levels] if argmax else []
    if count and channels:
        boxes = rois.to(torch.float32).contiguous()
        shape = torch.tensor([*x.shape, *x.stride()], dtype=torch.int64)
        flat_levels = torch.tensor([size for level in levels for size in level], dtype=torch.int64)
        out, stride = _pointers(values), torch.tensor(strides, dtype=torch.int64)
        where = _pointers(cells) if argmax else None
        failed = _kernel().tp_roi_spp_max_forward(
            _address(x),
            _address(shape),
            _address(boxes),
            ctypes.c_int64(count),
            _address(flat_levels),
            ctypes.c_int64(len(levels)),
            ctypes.c_float(spatial_scale),
            _address(out),
            _address(stride),
            ctypes.c_void_p(None) if where is None else _address(where),
            torch.get_num_threads(),
        )
        if failed:
            raise MemoryError("torchpool: the roi_spp kernel could not allocate its work space")
    elif argmax:
        for cell in cells:
            cell.fill_(math.prod(x.shape))
    return values, cells


# an explicit schema: torch 2.4 cannot read this module's string annotations
@torch.library.custom_op(
    "torchpool::roi_spp_max_backward",
    mutates_args=(),
    device_types="cpu",
    schema="(Tensor[] grads, Tensor[] cells, int[] shape) -> Tensor",
)
def max_backward(grads: list[Tensor], cells: list[Tensor], shape: list[int]) -> Tensor:
    """The map's ``(N, C, H, W)`` float32 gradient: each level's ``(K, C, nh, nw)`` gradient added to
    the cells of its maxima (``N * C * H * W``: an empty bin's, skipped)."""
    grad_x = torch.empty(shape, dtype=torch.float32)
    grads = [g if g[:1].is_contiguous() else g.contiguous() for g in grads]  # slices of a flat one: in place
    cells = [c.contiguous() for c in cells]
    strides = torch.tensor([g.stride(0) for g in grads], dtype=torch.int64)
    dims = torch.tensor(shape, dtype=torch.int64)
    levels = torch.tensor([size for g in grads for size in g.shape[2:]], dtype=torch.int64)
    sources, targets = _pointers(grads), _pointers(cells)  # (alive through the call)
    _kernel().tp_roi_spp_max_backward(
        _address(grad_x),
        _address(dims),
        ctypes.c_int64(cells[0].shape[0] if cells else 0),
        _address(levels),
        ctypes.c_int64(len(grads)),
        _address(sources),
        _address(strides),
        _address(targets),
        torch.get_num_threads(),
    )
    return grad_x


@max_backward.register_fake
def _(grads: list[Tensor], cells: list[Tensor], shape: list[int]) -> Tensor:
    return torch.empty(shape, dtype=torch.float32, device="meta" if not grads else grads[0].device)
