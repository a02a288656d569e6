"""The YOLO spatial pyramid blocks (section 5 of the survey): YOLOv3-SPP and SPPF.

* YOLOv3-SPP (darknet ``yolov3-spp.cfg``): stride-1 max pools with ``-inf`` "same" padding
  ``k // 2`` for ``k = 5, 9, 13``, concatenated with the input in darknet's route order
  ``[mp13, mp9, mp5, x]`` (``layers=-1,-3,-5,-6``), or ultralytics' ``[x, mp5, mp9, mp13]``.
* SPPF (YOLOv5): ``y1 = mp5(x), y2 = mp5(y1), y3 = mp5(y2)``, ``cat[x, y1, y2, y3]``. Stride-1
  max pools with ``-inf`` padding compose by adding radii (``mp5 o mp5 = mp9``), so SPPF has
  exactly the values of the parallel ``5, 9, 13`` block; :func:`spp_to_sppf` rewrites one into
  the other where that equivalence holds.
* :func:`from_darknet_cfg` reads the block from a darknet cfg.

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

import warnings
from collections.abc import Sequence
from typing import Any

import torch  # noqa: F401  (the doctests use it)
from torch import Tensor, nn

from .._checks import check_choice
from ..darknet import Section, parse_int, parse_int_list, parse_sections
from ..registry import register_pool
from ._stride_one_max import _stride_one_max

__all__ = ["SPPF", "YoloSPP", "from_darknet_cfg", "spp_to_sppf", "sppf", "yolo_spp"]

_ORDERS = ("darknet", "ultralytics")

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


def _sppf_kernels(kernel_size: int, repeats: int) -> tuple[int, ...]:
    """Kernel sizes of the parallel block equal to ``repeats`` cascaded ``kernel_size`` pools."""
    return tuple((i + 1) * (kernel_size - 1) + 1 for i in range(repeats))


_DEFAULT_REPEATS = 3


def _check_repeats(repeats: object, n: object) -> int:
    """``repeats``, or the deprecated alias ``n`` where given (with a ``DeprecationWarning``).

    Errors name the parameter the caller passed. With ``n``, ``repeats`` must keep its default.
    """
    name, value = "repeats", repeats
    if n is not None:
        warnings.warn(
            "SPPF's and sppf's parameter n is deprecated: use repeats (the number of cascaded pools)",
            DeprecationWarning,
            stacklevel=3,
        )
        if repeats != _DEFAULT_REPEATS:
            raise TypeError(
                f"got both repeats={repeats!r} and its deprecated alias n={n!r}: pass repeats only"
            )
        name, value = "n", n
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def sppf(
    x: Tensor,
    kernel_size: int = 5,
    repeats: int = _DEFAULT_REPEATS,
    order: str = "ultralytics",
    *,
    n: int | None = None,
) -> Tensor:
    """YOLOv5's SPPF: ``y1 = mp(x), y2 = mp(y1), ...``, then ``cat[x, y1, ..., yr]``.

    ``mp`` is a ``kernel_size`` stride-1 max pool with ``-inf`` padding ``kernel_size // 2``,
    applied ``r = repeats`` times. Such pools compose by adding radii, so ``yi`` equals a
    single pool of size ``i * (kernel_size - 1) + 1``; it is computed that way (shared
    separable running maxima), with the cascade's exact values. ``order="darknet"`` reverses
    the channel blocks (``[yr, ..., y1, x]``) to match :func:`yolo_spp`'s darknet order.

    Args:
        x: input ``(N, C, H, W)`` or ``(C, H, W)``.
        kernel_size: the odd kernel size of each pool.
        repeats: number of cascaded pools ``r``.
        order: ``"ultralytics"`` or ``"darknet"``.
        n: deprecated alias of ``repeats`` (warns); leave ``repeats`` at its default with it.

    Returns:
        ``(r + 1) * C`` channels, same spatial size.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
        - Output: ``(N, (r+1)C, H, W)`` or ``((r+1)C, H, W)``.

    Example:
        >>> x = torch.arange(5.0).reshape(1, 1, 1, 5)
        >>> sppf(x, 3, 2).flatten().tolist()
        [0.0, 1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0, 4.0, 2.0, 3.0, 4.0, 4.0, 4.0]
    """
    k = _check_kernel(kernel_size)
    count = _check_repeats(repeats, n)
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
        repeats: number of cascaded pools ``r``.
        order: ``"ultralytics"`` (``[x, y1, y2, y3]``) or ``"darknet"`` (``[y3, y2, y1, x]``).
        n: deprecated alias of ``repeats`` (warns); leave ``repeats`` at its default with it.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
        - Output: ``(N, (r+1)C, H, W)`` or ``((r+1)C, H, W)``.

    Example:
        >>> x = torch.randn(1, 4, 10, 10)
        >>> torch.equal(SPPF()(x), YoloSPP((5, 9, 13))(x))  # the same default order
        True
        >>> SPPF(3, repeats=2)
        SPPF(kernel_size=3, repeats=2, order='ultralytics')
    """

    def __init__(
        self,
        kernel_size: int = 5,
        repeats: int = _DEFAULT_REPEATS,
        order: str = "ultralytics",
        *,
        n: int | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size = _check_kernel(kernel_size)
        self.repeats = _check_repeats(repeats, n)
        self.order = check_choice(order, "order", _ORDERS)

    @property
    def n(self) -> int:
        """Deprecated alias of :attr:`repeats` (warns)."""
        warnings.warn("SPPF.n is deprecated: use SPPF.repeats", DeprecationWarning, stacklevel=2)
        return self.repeats

    @n.setter
    def n(self, value: int) -> None:
        warnings.warn("SPPF.n is deprecated: use SPPF.repeats", DeprecationWarning, stacklevel=2)
        self.repeats = value

    def __setstate__(self, state: dict[str, Any]) -> None:
        # an SPPF pickled before the rename holds its count as ``n`` (nn.Module's is unannotated)
        if "n" in state and "repeats" not in state:
            state = {("repeats" if key == "n" else key): value for key, value in state.items()}
        super().__setstate__(state)  # type: ignore[no-untyped-call]

    @property
    def equivalent_kernel_sizes(self) -> tuple[int, ...]:
        """The kernel sizes of the parallel :class:`YoloSPP` with the same output."""
        return _sppf_kernels(self.kernel_size, self.repeats)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, repeats={self.repeats}, order={self.order!r}"

    def forward(self, x: Tensor) -> Tensor:
        return sppf(x, self.kernel_size, self.repeats, self.order)


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
        SPPF(kernel_size=5, repeats=3, order='darknet')
    """
    if not isinstance(module, YoloSPP):
        raise TypeError(f"module must be a YoloSPP, got {type(module).__name__}")
    ks = _check_kernel_sizes(module.kernel_sizes)
    k = ks[0]
    expected = _sppf_kernels(k, len(ks))
    if ks != expected:
        raise ValueError(
            f"cannot rewrite kernel_sizes={ks} as SPPF: a cascade of repeats={len(ks)} max pools of size {k} "
            f"equals parallel pools of sizes {expected} (kernel_sizes[i] must be (i + 1) * (k - 1) + 1)"
        )
    return SPPF(k, len(ks), module.order)


# ---------------------------------------------------------------------------------------------
# darknet cfg
# ---------------------------------------------------------------------------------------------


def _maxpool_output(section: Section, previous: int) -> int:
    """The effective kernel size after an SPP ``[maxpool]`` that pools an output of size ``previous``."""
    name, options, where = section.name, section.options, section.where()
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
    return previous + size - 1


def _route_inputs(section: Section, position: int, base: int | None, outputs: Sequence[int]) -> list[int]:
    """The effective kernel sizes of the layers an SPP ``[route]`` at ``position`` picks (1 = ``x``)."""
    name, options, where = section.name, section.options, section.where()
    if set(options) != {"layers"}:
        raise ValueError(f"darknet cfg {where}: a route needs exactly 'layers=...', got {sorted(options)}")
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
            raise ValueError(f"darknet cfg line {line} in {where}: layers={index} is not an earlier layer")
        picked.append(1 if target == -1 else outputs[target])
    return picked


def _block_from_concat(concat: list[int]) -> YoloSPP:
    """The :class:`YoloSPP` whose output is the final route's ``concat`` (effective kernels, 1 = ``x``)."""
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


def _spp_block(sections: Sequence[Section], base: int | None) -> YoloSPP:
    """The :class:`YoloSPP` a run of ``[maxpool]``/``[route]`` sections describes.

    Layer outputs are followed symbolically from the block's input ``x`` (the layer before the
    first section). ``base`` is darknet's layer index of the first section when the run comes
    from a whole file (absolute ``layers=`` indices are then resolved), ``None`` for a snippet.
    """
    outputs: list[int] = []  # effective kernel size of each layer's output (1 = the block input x)
    concat: list[int] | None = None
    for position, section in enumerate(sections):
        where = section.where()
        if concat is not None:
            raise ValueError(f"darknet cfg {where}: the SPP block must end with its concatenating [route]")
        if section.name == "maxpool":
            outputs.append(_maxpool_output(section, outputs[-1] if outputs else 1))
        elif section.name == "route":
            picked = _route_inputs(section, position, base, outputs)
            if len(picked) > 1:
                concat = picked
            outputs.append(picked[0])
        else:
            raise ValueError(
                f"darknet cfg {where}: unsupported section in an SPP block (only [maxpool] and [route])"
            )
    if concat is None:
        raise ValueError("darknet cfg: the SPP block must end with a [route] concatenating x and the pools")
    return _block_from_concat(concat)


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
    example_kwargs={"kernel_size": 5, "repeats": 3},
)
