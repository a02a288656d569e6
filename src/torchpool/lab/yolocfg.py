"""The darknet cfg structure of YOLOv3 and YOLOv3-SPP, written out for the SPP receptive-field claim.

:func:`yolov3_cfg` returns the text of darknet's ``yolov3.cfg`` network (Darknet-53 and the three
detection heads), or of ``yolov3-spp.cfg`` when given the SPP block's max-pool sizes: the
layers, sizes, strides, routes and shortcuts of darknet's published files (AlexeyAB/darknet
``cfg/``), without the training options, which do not change a shape. ``tests/test_claims.py``
checks every layer's size and receptive field against the published files in
``tests/data/darknet``. The SPP block holds one ``[maxpool]`` per size (stride 1) and a
``[route]`` concatenating them with the block's input, so ``(5, 9, 13, 19)`` is the survey's
proposed variant with a 19x19 pool.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["spp_block", "yolov3_cfg"]

_ANCHORS = "10,13, 16,30, 33,23, 30,61, 62,45, 59,119, 116,90, 156,198, 373,326"


def _conv(filters: int, size: int, stride: int = 1, linear: bool = False) -> str:
    if linear:
        return f"[convolutional]\nsize={size}\nstride={stride}\npad=1\nfilters={filters}\nactivation=linear\n"
    return (
        f"[convolutional]\nbatch_normalize=1\nfilters={filters}\nsize={size}\nstride={stride}\npad=1\n"
        "activation=leaky\n"
    )


def _yolo(mask: str) -> str:
    return f"[yolo]\nmask={mask}\nanchors={_ANCHORS}\nclasses=80\nnum=9\n"


def spp_block(sizes: Sequence[int]) -> str:
    """The SPP block: one stride-1 ``[maxpool]`` per size, then a ``[route]`` of them and the input.

    Args:
        sizes: max-pool sizes, e.g. ``(5, 9, 13)``.

    Raises:
        ValueError: for no size or a size below 1.

    Example:
        >>> print(spp_block((5, 9)).strip().replace("\\n\\n", " | ").replace("\\n", " "))
        [maxpool] stride=1 size=5 | [route] layers=-2 | [maxpool] stride=1 size=9 | [route] layers=-1,-3,-4
    """
    if not sizes or any(int(k) < 1 for k in sizes):
        raise ValueError(f"sizes must be one or more positive pool sizes, got {tuple(sizes)}")
    parts: list[str] = []
    for i, k in enumerate(sizes):
        if i:
            parts.append(f"[route]\nlayers=-{2 * i}\n")  # back to the block's input
        parts.append(f"[maxpool]\nstride=1\nsize={k}\n")
    n = len(sizes)
    # the pools sit at -1, -3, ..., -(2n - 1) from the final route; the input one further back
    layers = [f"-{2 * i + 1}" for i in range(n)] + [f"-{2 * n}"]
    parts.append(f"[route]\nlayers={','.join(layers)}\n")
    return "\n".join(parts)


def yolov3_cfg(spp: Sequence[int] | None = None, size: int = 608) -> str:
    """The cfg text of YOLOv3 (``spp=None``) or YOLOv3-SPP with max-pool sizes ``spp``.

    Args:
        spp: the SPP block's pool sizes (darknet's ``yolov3-spp.cfg``: ``(5, 9, 13)``), or None.
        size: the input width and height of ``[net]``.

    Example:
        >>> from torchpool.darknet import trace_cfg
        >>> [s.rf_width for s in trace_cfg(yolov3_cfg()) if s.type == "yolo"]
        [917, 949, 965]
    """
    parts = [f"[net]\nwidth={size}\nheight={size}\nchannels=3\n", _conv(32, 3)]
    filters = 32
    for blocks in (1, 2, 8, 8, 4):  # Darknet-53: a stride-2 conv, then residual blocks
        filters *= 2
        parts.append(_conv(filters, 3, 2))
        for _ in range(blocks):
            parts += [_conv(filters // 2, 1), _conv(filters, 3), "[shortcut]\nfrom=-3\nactivation=linear\n"]
    parts += [_conv(512, 1), _conv(1024, 3), _conv(512, 1)]
    if spp is not None:
        parts += [spp_block(spp), _conv(512, 1), _conv(1024, 3), _conv(512, 1)]
    else:
        parts += [_conv(1024, 3), _conv(512, 1)]
    parts += [_conv(1024, 3), _conv(255, 1, linear=True), _yolo("6,7,8")]
    for filters, skip, mask in ((256, 61, "3,4,5"), (128, 36, "0,1,2")):
        parts += ["[route]\nlayers=-4\n", _conv(filters, 1), "[upsample]\nstride=2\n"]
        parts.append(f"[route]\nlayers=-1, {skip}\n")
        for _ in range(3):
            parts += [_conv(filters, 1), _conv(2 * filters, 3)]
        parts += [_conv(255, 1, linear=True), _yolo(mask)]
    return "\n".join(parts)
