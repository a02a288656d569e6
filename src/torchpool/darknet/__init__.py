"""Darknet cfg files: a strict parser and darknet's own layer arithmetic, in pure Python.

Used by ``torchpool shape --cfg`` and :func:`torchpool.from_darknet_cfg`. The arithmetic is
the one of AlexeyAB's darknet (``src/parser.c`` and the ``make_*_layer`` functions), which
also covers pjreddie's files:

* ``[convolutional]``: ``padding = size // 2`` when ``pad=1`` (else ``padding``, default 0),
  ``out = (in + 2 * padding - size) / stride + 1`` per axis with ``stride_x``/``stride_y``
  (dilation does not enter the size: darknet pads by ``padding * dilation``); ``filters``
  channels.
* ``[maxpool]`` and ``[local_avgpool]``: ``out = (in + padding - size) / stride + 1`` with the
  total ``padding`` defaulting to ``size - 1`` and ``size`` to ``stride``; ``maxpool_depth=1``
  keeps the size and gives ``out_channels`` channels.
* ``[avgpool]``: global, ``1 x 1``. ``[upsample]``: ``stride`` times larger (a negative
  stride divides). ``[reorg3d]``/``[reorg]``: ``stride`` times smaller and ``stride ** 2``
  times more channels (``reverse=1``: the opposite).
* ``[route]``: the listed layers (negative offsets or absolute indices) must share a size;
  their channels add up and are divided by ``groups`` (``group_id`` picks the part).
* ``[shortcut]``, ``[dropout]``, ``[activation]``, ``[batchnorm]``, ``[empty]``: the size of
  the previous layer. ``[sam]``/``[scale_channels]``: the size of their ``from`` layer.
* ``[yolo]``/``[region]``: the size of the previous layer, whose channels must be
  ``n * (classes + 5)`` (``n`` the ``mask`` count, else ``num``) or
  ``num * (classes + coords + 1)``, as darknet checks.
* ``[softmax]``/``[cost]``: a flat vector of the previous layer's values; only a classifier's
  end can follow.

Divisions are C's (truncating); a size below 1 is refused rather than passed on.

The receptive field and jump are those darknet prints with ``show_receptive_field=1`` in
``[net]``: starting at ``1`` and ``1``, a layer with ``size`` ``k``, ``stride`` ``s`` and
``dilation`` ``d`` adds ``max(0, k + 2 * (d - 1) - 1) * jump`` to the field and multiplies the
jump by ``s``; a ``[route]`` takes the largest field and jump of its layers; ``[upsample]`` and
``[reorg3d]`` divide the jump by their stride (integer division); layers without a window
(``[shortcut]``, ``[yolo]``, ``[avgpool]``, ``[sam]``, ...) change neither. This is darknet's
arithmetic, reproduced with its simplifications: it uses the layer's ``stride`` (``stride_x``)
on both axes, ``k + 2 * (d - 1) - 1`` is the dilated window only for ``k = 3``, the global
``[avgpool]`` does not widen the field, and a ``[shortcut]`` keeps the field of the previous
layer (not of its ``from`` layer).

Example:
    >>> cfg = "[net]\\nwidth=416\\nheight=416\\nchannels=3\\n[convolutional]\\nfilters=16\\nsize=3\\n"
    >>> cfg += "stride=1\\npad=1\\nactivation=leaky\\n[maxpool]\\nsize=2\\nstride=2\\n"
    >>> [(s.type, s.width, s.height, s.channels, s.rf_width, s.jump_width) for s in trace_cfg(cfg)]
    [('convolutional', 416, 416, 16, 3, 1), ('maxpool', 208, 208, 16, 4, 2)]
"""

from __future__ import annotations

from ._cfg import (
    ACTIVATIONS,
    CFG_MAX_BYTES,
    SECTIONS,
    CfgError,
    Option,
    Section,
    parse_int,
    parse_int_list,
    parse_sections,
    read_cfg_file,
)
from ._trace import LayerShape, input_size, trace_cfg

__all__ = [
    "ACTIVATIONS",
    "CFG_MAX_BYTES",
    "SECTIONS",
    "CfgError",
    "LayerShape",
    "Option",
    "Section",
    "parse_int",
    "parse_int_list",
    "parse_sections",
    "input_size",
    "read_cfg_file",
    "trace_cfg",
]
