"""Median pooling: the lower median of each window, computed with min/max networks on shifted views.

The median of a window is computed exactly, without materialising the ``k``-fold unfolded input,
by a *selection network* of elementwise ``torch.minimum`` / ``torch.maximum`` calls on strided views
of the padded input:

1. **Separable sorting.** Along the first spatial axis, each vertical run of ``k_0`` cells is sorted
   once with a sorting network; the sorted runs are shared by every window that contains them. The
   sorted runs are then sorted along the next axis (shared by windows that differ only in later
   axes), and so on; the last axis is sorted per window. Sorting lines of a column-sorted array keeps
   the columns sorted, so afterwards every window is sorted along every axis (a product order).
2. **Pruning.** In a window sorted along every axis, the cell with per-axis ranks ``j`` has at least
   ``prod(j + 1)`` cells below it and ``prod(k - j)`` above it, so most cells cannot be the median.
   Only the ranks that remain candidates are computed (dead-code elimination of the networks).
3. **Selection.** The candidates are run through a sorting network that skips every comparator whose
   order is already known, and only the ancestors of the wanted rank are evaluated.

For 3x3 windows this is the classic median-of-9 from sorted columns (max of the column minima, median
of the medians, min of the maxima, then the median of those three): 18 min/max per output. The input
is padded a chunk at a time, in the forward, the backward and for the indices, so that no padded copy
of the whole input is made: a chunk is a group of ``(n, c)`` planes, or, when one plane is larger than
a chunk, a band of rows of one plane with the halo its windows need (along the first spatial axis
whose band of one output row fits a chunk: the last one for planes of few, long rows). Chunks are
1/32 of the input (at least 2^16 elements, but never more than 1/16 of the input; at most 2^23), so
that the extra memory stays under 2x the input's size at any shape (``tests/test_memory.py``); every
chunk gives the same bits as the whole input. The eager path runs the network over chunks of the
batch so that intermediates stay in cache and reuses buffers; ``compiled=True`` runs the same network
under :func:`torch.compile` (padding is done outside the network's compiled function, which keeps every
load unmasked; the memory bound holds for the eager path, not for ``compiled=True``). On the CPU, a
float32/float64 input without NaN runs the network on integer keys (the float's bits with the
magnitude of negatives flipped: the integer order is the float order, -0.0 just below +0.0, and an
integer min/max is one vector instruction where the NaN-propagating float one takes several), a chunk
of planes at a time: a compiled pass writes a chunk's keys into a reused padded buffer (the padding
cells copied from their sources), and the compiled network writes that chunk's output; other inputs
pad the whole input at once and run the float network. Windows with too many cells for a network (see
:data:`NETWORK_MAX_OPS`) use a memory-bounded fallback: ``unfold`` + :func:`torch.median` over
chunks of the batch. Dilation only changes where the views start (window
cell ``c`` of an axis sits ``c * dilation`` cells after the window's first cell). The eager backward
on the CPU writes each window's selected cell as a flat offset (one float comparison and one
``lerp_`` per window offset, vectorised) and adds the gradient with a single ``index_add_``, walked
from the last window to the first so that every cell sums its windows in the offset order of the
general path (one masked addition per offset, used on other devices): the same bits.

The kernel, its backward, the backward's backward and the indices are ``torch.library`` custom ops
(``torchpool::median_pool``, ...) with fake kernels and a registered gradient, so ``torch.compile``
(``fullgraph=True``) and ``torch.export`` see one opaque op per call. During an ONNX export (either
exporter), which cannot translate a custom op, the network is written out as plain min/max on views.

Conventions:

* Even windows give the **lower** median (as :func:`torch.median`): the element at sorted index
  ``(n - 1) // 2`` of the ``n`` window cells.
* A NaN anywhere in a window gives NaN for that window.
* ``padding_mode`` is ``"reflect"`` (default), ``"replicate"``, ``"circular"``, ``"zeros"`` (padded
  cells are 0 and take part in the median) or ``"valid"`` (the lower median of only the in-bounds
  cells of each window; padded cells are ignored).
* ``dilation`` and ``ceil_mode`` give max pooling's output size. In ceil mode the last window may
  reach past the padded input: those cells are not part of the window (max pooling ignores them
  too), the output is the lower median of the remaining cells.
* Integer and bool inputs give the exact median in their own dtype (no gradient).
* Gradient: one-hot to the *selected cell*, the first cell of the (padded) window in row-major order
  whose value equals the output (for a NaN output, the first NaN cell); overlapping windows add up.
  A padded cell passes its gradient to the input cell it copies (reflect, replicate, circular) or
  drops it (zeros). In ``"valid"`` mode only in-bounds cells can be selected; ceil-mode cells past
  the padded input never are.
* Indices (``*_with_indices``) are flat indices into each ``(n, c)`` spatial plane of the *unpadded*
  input, as returned by ``F.max_pool2d(..., return_indices=True)``: the selected cell, or the input
  cell that a selected reflect/replicate/circular padding cell copies. In ``"zeros"`` mode, when the selected
  cell is a padded zero, the index is the first in-bounds cell of the window equal to the output (0)
  if there is one, else the first in-bounds cell of the window (whose value then differs from the
  output).

The package reads in order: ``_network`` builds the selection network in pure Python (sorting
networks, pruning, the cheapest plan); ``_kernels`` runs it on padded tensors (eager, compiled, the
unfold fallback and the border fix-up for ``"valid"`` and ceil mode); ``_ops`` computes forward,
backward and indices a chunk (of planes, or a band of rows) at a time and defines the custom ops;
``_pool`` is the rank-generic pooling function (validation, layout, the op call); ``_api`` holds the
public functions and Modules (``return_indices=True`` returns ``(values, indices)``, as the
``*_with_indices`` functions do).
"""

from __future__ import annotations

from ._api import (
    PADDING_MODES,
    MedianPool1d,
    MedianPool2d,
    MedianPool3d,
    median_pool1d,
    median_pool1d_with_indices,
    median_pool2d,
    median_pool2d_with_indices,
    median_pool3d,
    median_pool3d_with_indices,
)
from ._network import NETWORK_MAX_OPS

__all__ = [
    "NETWORK_MAX_OPS",
    "PADDING_MODES",
    "MedianPool1d",
    "MedianPool2d",
    "MedianPool3d",
    "median_pool1d",
    "median_pool1d_with_indices",
    "median_pool2d",
    "median_pool2d_with_indices",
    "median_pool3d",
    "median_pool3d_with_indices",
]
