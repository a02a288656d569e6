"""Stochastic pooling (Zeiler & Fergus, "Stochastic Pooling for Regularization of Deep
Convolutional Neural Networks", arXiv 1301.3557).

Training: each window ``R`` draws one cell ``l`` with probability ``p_i = a_i / sum_{j in R} a_j``
and outputs ``a_l``; the gradient flows only to the drawn cell, as in max pooling.
Evaluation ("probabilistic weighting"): each window outputs the expectation of the training
output, ``sum_i p_i a_i = sum a^2 / sum a``.

Sampler (training). Windows are sampled independently: every window draws exactly one
uniform ``r ~ U[0, 1)`` of its own, also where windows overlap (``stride < kernel_size``) and
share cells, so the draws of two windows are independent even when they share cells. The
draw is an inverse-CDF pass over the window's cells in row-major order: with ``S`` the
window sum and ``u = r * S`` (clamped strictly below ``S``), the drawn cell is the first
whose running sum exceeds ``u``. Both passes iterate over the ``prod(kernel_size)`` window
offsets on strided views of the (padded) input, so no ``unfold`` copy is made; the running
sums are accumulated in float32 (float64 for float64 input). The output is gathered from the
input at the drawn flat indices, so autograd gives the exact one-hot gradient (overlapping
windows that draw the same cell add their gradients).

Special values:

* Negative, NaN or infinite input raises ``ValueError``: the probabilities ``a_i / sum a``
  are only defined for finite ``a >= 0`` (apply ReLU first). This check reads the input once;
  it is data-dependent, so it is skipped under ``torch.compile``, ``torch.export`` and tracing
  and for ``meta``/fake tensors.
* A window whose cells are all zero (including padding) outputs 0 with zero gradient, in
  training and in evaluation. In training its index is its first in-bounds cell (row-major).
  Caffe's forward picks that cell too, but Caffe's backward sends the window's gradient to
  it; here the gradient is 0 (the probabilities are undefined and the output is 0 whatever
  is drawn). In evaluation the denominator is made safe before dividing, so neither the
  forward nor the backward pass produces NaN.
* Zero padding cells have probability 0 and are never drawn; so are the cells a ceil-mode
  window reaches beyond the padding.
* ``N = 0`` or ``C = 0`` gives the empty result, as PyTorch's pools do.

Dilation and ceil mode follow max pooling (same output size as ``F.max_pool{n}d``).

Memory. The eager paths work a chunk at a time, so that the extra memory stays under 2x the
input's size (stride 2; measured in ``tests/test_stochastic_memory.py`` and
``tests/test_memory.py``): chunks of whole ``(n, c)`` planes, a share of the input (1/2 in
training, 1/8 in evaluation, at least 2^18 elements but never more than 1/2 in training, 1/3 in the
eval forward and 1/6 in the eval backward), and where one plane is more than a chunk, bands of
output rows of one plane, each with the input rows its windows read and its padding made
explicit, along the first spatial dimension whose band of one output row fits a chunk (the last
one for planes of few, long rows such as (1, 1, 8, 4096); the training backward only along the
first one or one where windows do not overlap). Chunks and bands give the same bits as one
chunk: the uniforms are drawn for the whole output at once, and the gradients add up in the
unchunked order.

Traceable path. Under ``torch.compile``, ``torch.export``, ONNX export and tracing, and for
``meta``/fake tensors, the pool runs in plain differentiable ops with the same arithmetic
(no chunks, no custom autograd Function, no data-dependent branch), so
``torch.compile(fullgraph=True)`` works and matches eager under the same seed. A
``torch.Generator`` cannot enter a dynamo graph: seed with ``torch.manual_seed`` there.

The package reads in order: ``_chunks`` holds the input check, the windows' index tables, the
padding and the chunks (planes and bands); ``_sampling`` the training sampler and its gradient;
``_eval`` the probabilistic weighting and its written-out backward; ``_api`` the rank-generic
``_stochastic`` and the public functions and Modules. The window helpers shared with median
pooling (offset views, chunk sizing, bands, layout) are in :mod:`torchpool.ops._windows`.

The 1d/2d/3d pattern: explicit ``stochastic_pool{1,2,3}d`` functions with their real signatures
over the one rank-generic ``_stochastic``, and classes ``StochasticPool{1,2,3}d(_StochasticPoolNd)``
that only set ``_ndim``; each docstring is one template filled per rank by ``rank_doc``. Each
function keeps three short ``@overload`` stubs on ``return_indices`` (``Literal[False]`` returns a
``Tensor``, ``Literal[True]`` a ``(values, indices)`` tuple, a plain ``bool`` the union), so type
checkers know what a call returns; median pooling uses the same.
"""

from __future__ import annotations

from ._api import (
    StochasticPool1d,
    StochasticPool2d,
    StochasticPool3d,
    stochastic_pool1d,
    stochastic_pool1d_with_indices,
    stochastic_pool2d,
    stochastic_pool2d_with_indices,
    stochastic_pool3d,
    stochastic_pool3d_with_indices,
)

# the chunk sizing, for the tests: _chunk_elements reads _CHUNK_ELEMENTS from here at call time, so
# monkeypatch.setattr(torchpool.ops.stochastic, "_CHUNK_ELEMENTS", n) forces small chunks and bands
from ._chunks import _CHUNK_ELEMENTS as _CHUNK_ELEMENTS
from ._chunks import _band as _band
from ._chunks import _chunk_elements as _chunk_elements
from ._chunks import _Part as _Part
from ._chunks import _parts as _parts

__all__ = [
    "StochasticPool1d",
    "StochasticPool2d",
    "StochasticPool3d",
    "stochastic_pool1d",
    "stochastic_pool1d_with_indices",
    "stochastic_pool2d",
    "stochastic_pool2d_with_indices",
    "stochastic_pool3d",
    "stochastic_pool3d_with_indices",
]
