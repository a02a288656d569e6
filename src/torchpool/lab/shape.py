"""``torchpool shape``: output sizes and receptive fields through a stack of layers.

The stack is given as tokens on the command line (``torchpool shape --input 224x224 conv7s2p3
pool3s2p1 spp5,9,13 gap``) or read from a darknet cfg file (``--cfg yolov3-tiny.cfg``).

Receptive field arithmetic (per spatial dimension, in input pixels): a layer with kernel ``k``,
stride ``s``, left padding ``p`` and dilation ``d`` maps ``(r, j, start)`` to
``r + (k - 1) * d * j``, ``j * s`` and ``start + ((k - 1) * d / 2 - p) * j``, where ``r`` is the
receptive field, ``j`` the jump (distance in input pixels between neighbouring outputs) and
``start`` the input coordinate of the centre of the first output's receptive field (the first
input pixel is at 0). The input has ``r = 1, j = 1, start = 0``.

Tokens:

* ``convK[sS][pP][dD][cC]``: convolution, stride ``S`` (default 1), padding ``P`` (default
  "same", ``d * (K // 2)``), dilation ``D`` (default 1), ``C`` output channels (default unknown).
* ``poolK[sS][pP][dD]`` (or ``maxpoolK...``, ``avgpoolK...``): max/avg pooling, stride default
  ``K``; the size follows :func:`torchpool.pool_output_size` (floor mode, ``--ceil`` for ceil).
* ``sppK1,K2,...``: YOLOv3's SPP block (stride-1 "same" max pools concatenated with the input):
  same size, ``(n + 1) * C`` channels, receptive field grows by ``(max K - 1) * j``.
* ``sppfK``: YOLOv5's SPPF (three cascaded ``K`` pools, equal to ``spp`` with ``K, 2K-1, 3K-2``).
* ``gap``: global pooling to ``1``; the receptive field covers every input position.
* ``sppnetN1,N2,...``: SPPNet's fixed bins; the output is a flat vector, the last layer.
* ``upS``: nearest upsampling by ``S`` (the jump is divided by ``S``).

Darknet cfg sections: ``[net]`` (``width``, ``height``, ``channels``), ``[convolutional]``
(``size``, ``stride``, ``pad``/``padding``, ``dilation``, ``filters``), ``[maxpool]`` (``size``,
``stride``, ``padding``: darknet's ``out = (w + padding - size) // stride + 1`` with total padding
default ``size - 1``, ``padding // 2`` on the left), ``[route]`` (``layers``, ``groups``),
``[shortcut]`` and ``[upsample]`` (``stride``). Any other section is an error.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

from .._shape import pool_output_size

__all__ = ["Layer", "LayerError", "State", "add_arguments", "format_table", "parse_token", "run", "trace"]


class LayerError(ValueError):
    """A layer that cannot be applied; the message names the layer."""


@dataclass(frozen=True)
class State:
    """The shape and receptive-field geometry after a layer, one value per spatial dimension.

    Attributes:
        size: spatial output size.
        channels: number of channels, ``None`` when unknown.
        rf: receptive field in input pixels.
        jump: distance in input pixels between neighbouring outputs.
        start: input coordinate of the centre of the first output's receptive field.
        features: for a flat output (``sppnet``), the number of bins per channel; else ``None``.
    """

    size: tuple[int, ...]
    channels: int | None
    rf: tuple[Fraction, ...]
    jump: tuple[Fraction, ...]
    start: tuple[Fraction, ...]
    features: int | None = None


@dataclass(frozen=True)
class Layer:
    """One parsed layer: its label for the table and the parameters of its kind.

    Attributes:
        label: how the layer is shown (the token, or the cfg section with its line).
        kind: ``conv``, ``pool``, ``spp``, ``gap``, ``sppnet``, ``up``, ``route`` or ``shortcut``.
        kernel: window size (``conv``, ``pool``).
        stride: stride (``conv``, ``pool``, ``up``).
        padding: left padding, or ``None`` for the default.
        dilation: dilation (``conv``, ``pool``).
        channels: output channels (``conv``), ``None`` to keep unknown.
        levels: kernel sizes (``spp``) or bins per side (``sppnet``).
        darknet_padding: total padding of a darknet ``[maxpool]`` (darknet's size rule), else ``None``.
        sources: earlier layer indices (``route``, ``shortcut``).
        groups: darknet route ``groups``: the channels are split into this many parts.
    """

    label: str
    kind: str
    kernel: int = 1
    stride: int = 1
    padding: int | None = None
    dilation: int = 1
    channels: int | None = None
    levels: tuple[int, ...] = ()
    darknet_padding: int | None = None
    sources: tuple[int, ...] = ()
    groups: int = 1


_CONV = re.compile(r"conv(\d+)((?:[spdc]\d+)*)")
_POOL = re.compile(r"(?:max|avg)?pool(\d+)((?:[spd]\d+)*)")
_LIST = re.compile(r"(sppnet|sppf|spp)(\d+(?:,\d+)*)")
_UP = re.compile(r"up(\d+)")
_OPTION = re.compile(r"([spdc])(\d+)")


def _options(text: str, token: str) -> dict[str, int]:
    options: dict[str, int] = {}
    for letter, value in _OPTION.findall(text):
        if letter in options:
            raise LayerError(f"'{token}': option {letter!r} given twice")
        options[letter] = int(value)
    return options


def parse_token(token: str) -> Layer:
    """Parses one command-line layer token.

    Args:
        token: e.g. ``conv3``, ``conv7s2p3``, ``pool3s2p1``, ``spp5,9,13``, ``sppf5``, ``gap``,
            ``sppnet1,2,4`` or ``up2``.

    Returns:
        The parsed :class:`Layer`.

    Raises:
        LayerError: if the token is not recognised or has a zero size.

    Example:
        >>> layer = parse_token("pool3s2p1")
        >>> layer.kind, layer.kernel, layer.stride, layer.padding
        ('pool', 3, 2, 1)
    """
    text = token.strip().lower()
    if text == "gap":
        return Layer(token, "gap")
    match = _CONV.fullmatch(text)
    if match:
        k = int(match.group(1))
        opts = _options(match.group(2), token)
        layer = Layer(
            token,
            "conv",
            kernel=k,
            stride=opts.get("s", 1),
            padding=opts.get("p"),
            dilation=opts.get("d", 1),
            channels=opts.get("c"),
        )
    elif (match := _POOL.fullmatch(text)) is not None:
        k = int(match.group(1))
        opts = _options(match.group(2), token)
        if "c" in opts:
            raise LayerError(f"'{token}': pooling keeps the channels (no 'c' option)")
        layer = Layer(
            token,
            "pool",
            kernel=k,
            stride=opts.get("s", k),
            padding=opts.get("p", 0),
            dilation=opts.get("d", 1),
        )
    elif (match := _LIST.fullmatch(text)) is not None:
        kind, values = match.group(1), tuple(int(v) for v in match.group(2).split(","))
        if kind == "sppf":
            if len(values) != 1:
                raise LayerError(f"'{token}': sppf takes one kernel size, e.g. sppf5")
            kind, values = "spp", tuple(i * (values[0] - 1) + 1 for i in (1, 2, 3))
        if kind == "spp" and any(v % 2 == 0 for v in values):
            raise LayerError(f"'{token}': SPP kernel sizes must be odd (stride-1 'same' pooling)")
        layer = Layer(token, kind, levels=values)
    elif (match := _UP.fullmatch(text)) is not None:
        layer = Layer(token, "up", stride=int(match.group(1)))
    else:
        raise LayerError(
            f"'{token}': unknown layer (expected convK[sS][pP][dD][cC], poolK[sS][pP][dD], sppK1,K2,..., "
            "sppfK, gap, sppnetN1,N2,... or upS)"
        )
    if min(layer.kernel, layer.stride, layer.dilation, *layer.levels) < 1:
        raise LayerError(f"'{token}': sizes, strides and dilations must be positive")
    return layer


def _window(
    state: State, size: tuple[int, ...], k: int, s: int, p_left: int, d: int, channels: int | None
) -> State:
    """The receptive-field recurrence of a ``k``-window with stride ``s`` and left padding ``p_left``."""
    rf = tuple(r + (k - 1) * d * j for r, j in zip(state.rf, state.jump))
    start = tuple(st + (Fraction((k - 1) * d, 2) - p_left) * j for st, j in zip(state.start, state.jump))
    jump = tuple(j * s for j in state.jump)
    return State(size, channels, rf, jump, start)


def _windowed(layer: Layer, state: State, ceil: bool) -> State:
    k, s, d = layer.kernel, layer.stride, layer.dilation
    effective = d * (k - 1) + 1
    if layer.kind == "conv":
        p = d * (k // 2) if layer.padding is None else layer.padding
        sizes = []
        for i in state.size:
            if effective > i + 2 * p:
                raise LayerError(f"window {effective} larger than padded input {i + 2 * p}")
            sizes.append((i + 2 * p - effective) // s + 1)
        channels = state.channels if layer.channels is None else layer.channels
        return _window(state, tuple(sizes), k, s, p, d, channels)
    if layer.darknet_padding is not None:  # darknet [maxpool]: out = (w + padding - size) / stride + 1
        total = layer.darknet_padding
        sizes = []
        for i in state.size:
            if k > i + total:
                raise LayerError(f"window {k} larger than padded input {i + total}")
            sizes.append((i + total - k) // s + 1)
        return _window(state, tuple(sizes), k, s, total // 2, 1, state.channels)
    p = 0 if layer.padding is None else layer.padding
    for i in state.size:
        if effective > i + 2 * p:
            raise LayerError(f"window {effective} larger than padded input {i + 2 * p}")
    try:
        out = pool_output_size(state.size, k, s, p, d, ceil)
    except ValueError as error:
        raise LayerError(str(error)) from None
    return _window(state, tuple(out), k, s, p, d, state.channels)


def _apply(layer: Layer, state: State, ceil: bool, history: Sequence[State]) -> State:
    """The state after ``layer``; ``history`` holds the outputs of the earlier layers (for routes)."""
    if state.features is not None and layer.kind not in ("route", "shortcut"):
        raise LayerError("the input is the flat vector of an sppnet layer, not a feature map")
    if layer.kind in ("conv", "pool"):
        return _windowed(layer, state, ceil)
    if layer.kind == "spp":
        grow = max(layer.levels) - 1
        channels = None if state.channels is None else state.channels * (len(layer.levels) + 1)
        rf = tuple(r + grow * j for r, j in zip(state.rf, state.jump))
        return replace(state, channels=channels, rf=rf)
    if layer.kind in ("gap", "sppnet"):
        whole = _window(state, (1,) * len(state.size), 1, 1, 0, 1, state.channels)
        rf = tuple(r + (i - 1) * j for r, i, j in zip(state.rf, state.size, state.jump))
        start = tuple(st + Fraction(i - 1, 2) * j for st, i, j in zip(state.start, state.size, state.jump))
        jump = tuple(j * i for i, j in zip(state.size, state.jump))
        whole = replace(whole, rf=rf, start=start, jump=jump)
        if layer.kind == "gap":
            return whole
        bins = sum(n ** len(state.size) for n in layer.levels)
        channels = None if state.channels is None else state.channels * bins
        return replace(whole, channels=channels, features=bins)
    if layer.kind == "up":
        size = tuple(i * layer.stride for i in state.size)
        return replace(state, size=size, jump=tuple(j / layer.stride for j in state.jump))
    if layer.kind in ("route", "shortcut"):
        return _merge(layer, state, history)
    raise LayerError(f"unknown layer kind {layer.kind!r}")  # pragma: no cover - parse_token's kinds


def _merge(layer: Layer, state: State, history: Sequence[State]) -> State:
    """A darknet ``[route]`` (channel concatenation) or ``[shortcut]`` (addition with the previous output)."""
    here = len(history)
    picked: list[State] = []
    for index in layer.sources:
        target = here + index if index < 0 else index
        if not 0 <= target < here:
            raise LayerError(f"layer index {index} does not name an earlier layer (this is layer {here})")
        picked.append(history[target])
    if layer.kind == "shortcut":
        picked.insert(0, state)
    sizes = {p.size for p in picked}
    if len(sizes) > 1:
        shown = ", ".join(_size_text(p.size) for p in picked)
        raise LayerError(f"the merged layers have different sizes: {shown}")
    widest = max(picked, key=lambda p: p.rf)
    if layer.kind == "shortcut":
        channels = state.channels
    elif any(p.channels is None for p in picked):
        channels = None
    else:
        channels = sum(p.channels or 0 for p in picked) // layer.groups
    rf = tuple(max(values) for values in zip(*(p.rf for p in picked)))
    return State(picked[0].size, channels, rf, widest.jump, widest.start, picked[0].features)


# ---------------------------------------------------------------------------------------------
# darknet cfg
# ---------------------------------------------------------------------------------------------


def _cfg_ints(options: dict[str, tuple[str, int]], key: str, default: int | None, where: str) -> int | None:
    if key not in options:
        return default
    value, line = options[key]
    try:
        return int(value)
    except ValueError:
        raise LayerError(f"{where}: {key} must be an int, got {value!r} (line {line})") from None


def _cfg_int(options: dict[str, tuple[str, int]], key: str, default: int, where: str) -> int:
    value = _cfg_ints(options, key, default, where)
    assert value is not None
    return value


def read_cfg(text: str) -> tuple[tuple[int, ...] | None, int | None, list[Layer]]:
    """Parses a darknet cfg into its input size, input channels and layers.

    Args:
        text: the cfg file's text.

    Returns:
        ``(size, channels, layers)``: ``size`` is ``(height, width)`` from ``[net]`` (``None``
        without a ``[net]`` giving both), ``channels`` its ``channels`` (default 3).

    Raises:
        LayerError: for a malformed file or an unsupported section (naming the section and line).

    Example:
        >>> text = "[net]\\nwidth=416\\nheight=416\\n[maxpool]\\nsize=2\\nstride=2"
        >>> size, channels, layers = read_cfg(text)
        >>> size, channels, [layer.label for layer in layers]
        ((416, 416), 3, ['[maxpool] line 4'])
    """
    from ..ops.pyramid import _parse_cfg

    try:
        sections = _parse_cfg(text)
    except ValueError as error:
        raise LayerError(str(error)) from None
    size: tuple[int, ...] | None = None
    channels: int | None = None
    layers: list[Layer] = []
    for position, (name, line, options) in enumerate(sections):
        label = f"[{name}] line {line}"
        where = f"layer {len(layers)} [{name}] at line {line}"
        if name in ("net", "network"):
            if position != 0:
                raise LayerError(f"[{name}] at line {line}: [net] must be the first section")
            width = _cfg_ints(options, "width", None, f"[{name}] at line {line}")
            height = _cfg_ints(options, "height", None, f"[{name}] at line {line}")
            size = None if width is None or height is None else (height, width)
            channels = _cfg_int(options, "channels", 3, f"[{name}] at line {line}")
        elif name in ("convolutional", "conv"):
            k = _cfg_int(options, "size", 1, where)
            pad = _cfg_int(options, "padding", 0, where)
            if _cfg_int(options, "pad", 0, where):
                pad = k // 2
            layers.append(
                Layer(
                    label,
                    "conv",
                    kernel=k,
                    stride=_cfg_int(options, "stride", 1, where),
                    padding=pad,
                    dilation=_cfg_int(options, "dilation", 1, where),
                    channels=_cfg_int(options, "filters", 1, where),
                )
            )
        elif name in ("maxpool", "max"):
            stride = _cfg_int(options, "stride", 1, where)
            k = _cfg_int(options, "size", stride, where)
            total = _cfg_int(options, "padding", k - 1, where)
            layers.append(Layer(label, "pool", kernel=k, stride=stride, darknet_padding=total))
        elif name == "route":
            if "layers" not in options:
                raise LayerError(f"{where}: [route] needs layers=...")
            value, value_line = options["layers"]
            try:
                sources = tuple(int(item) for item in value.split(",") if item.strip())
            except ValueError:
                raise LayerError(f"{where}: layers must be ints, got {value!r} (line {value_line})") from None
            groups = _cfg_int(options, "groups", 1, where)
            layers.append(Layer(label, "route", sources=sources, groups=max(groups, 1)))
        elif name == "shortcut":
            if "from" not in options:
                raise LayerError(f"{where}: [shortcut] needs from=...")
            layers.append(Layer(label, "shortcut", sources=(_cfg_int(options, "from", -1, where),)))
        elif name == "upsample":
            layers.append(Layer(label, "up", stride=_cfg_int(options, "stride", 2, where)))
        else:
            raise LayerError(
                f"unsupported section [{name}] at line {line} (supported: [net], [convolutional], "
                "[maxpool], [route], [shortcut], [upsample])"
            )
        if layers and min(layers[-1].kernel, layers[-1].stride, layers[-1].dilation) < 1:
            raise LayerError(f"{where}: size, stride and dilation must be positive")
    return size, channels, layers


# ---------------------------------------------------------------------------------------------
# tracing and printing
# ---------------------------------------------------------------------------------------------


def trace(
    size: Sequence[int],
    layers: Sequence[Layer],
    channels: int | None = None,
    ceil: bool = False,
    numbering: int = 1,
) -> list[State]:
    """The state after each layer, starting with the input's.

    Args:
        size: input spatial size (one int per dimension).
        layers: the layers, in order.
        channels: input channels, ``None`` if unknown.
        ceil: ceil mode for ``pool`` tokens (darknet ``[maxpool]`` keeps darknet's rule).
        numbering: the index of the first layer in error messages (0 for darknet's indices).

    Returns:
        ``len(layers) + 1`` states: the input, then each layer's output.

    Raises:
        LayerError: naming the first layer that cannot be applied.

    Example:
        >>> states = trace([224], [parse_token("conv7s2p3"), parse_token("pool3s2p1")])
        >>> [(s.size[0], int(s.rf[0]), int(s.jump[0])) for s in states]
        [(224, 1, 1), (112, 7, 2), (56, 11, 4)]
    """
    one = Fraction(1)
    state = State(tuple(size), channels, (one,) * len(size), (one,) * len(size), (Fraction(0),) * len(size))
    states = [state]
    history: list[State] = []
    for index, layer in enumerate(layers):
        try:
            state = _apply(layer, state, ceil, history)
        except LayerError as error:
            name = f"'{layer.label}'" if not layer.label.startswith("[") else layer.label
            raise LayerError(f"layer {index + numbering} {name}: {error}") from None
        history.append(state)
        states.append(state)
    return states


def _number(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):.4g}"


def _joined(values: Sequence[Fraction]) -> str:
    texts = [_number(v) for v in values]
    return texts[0] if len(set(texts)) == 1 else "x".join(texts)


def _size_text(size: Sequence[int]) -> str:
    return "x".join(str(i) for i in size)


def format_table(layers: Sequence[Layer], states: Sequence[State], numbering: int = 1) -> str:
    """An aligned text table: index, layer, output size, channels, receptive field, jump, start.

    Args:
        layers: the layers.
        states: :func:`trace`'s output for them.
        numbering: the index of the first layer (1 for tokens, 0 for darknet's layer indices).

    Returns:
        The table, one line per row, the input first.
    """
    header = ("#", "layer", "output", "channels", "rf", "jump", "start")
    rows = []
    for index, state in enumerate(states):
        output = _size_text(state.size) if state.features is None else f"{state.features} bins"
        rows.append(
            (
                "" if index == 0 else str(index - 1 + numbering),
                "input" if index == 0 else layers[index - 1].label,
                output,
                "-" if state.channels is None else str(state.channels),
                _joined(state.rf),
                _joined(state.jump),
                _joined(state.start),
            )
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = {0, 3, 4, 5, 6}
    lines = [
        "  ".join(
            cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))
        )
        for row in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def _parse_input(text: str) -> tuple[int, ...]:
    parts = text.lower().split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        raise LayerError(f"--input must be N, HxW or DxHxW (positive ints), got {text!r}") from None
    if not 1 <= len(size) <= 3 or min(size) < 1:
        raise LayerError(f"--input must be N, HxW or DxHxW (positive ints), got {text!r}")
    return size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``torchpool shape``'s options to ``parser``.

    Args:
        parser: the subcommand's parser.
    """
    parser.add_argument(
        "layers",
        nargs="*",
        metavar="LAYER",
        help="layer tokens: convK[sS][pP][dD][cC], poolK[sS][pP][dD], spp5,9,13, sppf5, gap, sppnet1,2,4, upS"
        " (e.g. conv7s2p3 pool3s2p1)",
    )
    parser.add_argument("--input", default=None, help="input size: N (1d), HxW (2d) or DxHxW (3d)")
    parser.add_argument("--channels", type=int, default=None, help="input channels (default: unknown)")
    parser.add_argument("--cfg", default=None, help="a darknet cfg file instead of layer tokens")
    parser.add_argument("--ceil", action="store_true", help="ceil mode for pool tokens (default floor)")


def run(args: argparse.Namespace) -> int:
    """Prints the table for the layers in ``args``; returns 0, or 2 with a message on an error.

    Args:
        args: the parsed options of :func:`add_arguments`.

    Returns:
        The exit status.
    """
    try:
        numbering = 1
        channels: int | None = args.channels
        size: tuple[int, ...] | None = None if args.input is None else _parse_input(args.input)
        if args.cfg is not None:
            if args.layers:
                raise LayerError("give either layer tokens or --cfg, not both")
            try:
                text = Path(args.cfg).read_text()
            except OSError as error:
                raise LayerError(f"cannot read --cfg {args.cfg}: {error.strerror or error}") from None
            cfg_size, cfg_channels, layers = read_cfg(text)
            size = size or cfg_size
            channels = channels if channels is not None else cfg_channels
            numbering = 0
            if size is None:
                raise LayerError(f"{args.cfg} has no [net] width/height: give --input")
        else:
            if not args.layers:
                raise LayerError("give layer tokens (e.g. conv3 pool2 spp5,9,13) or --cfg FILE")
            if size is None:
                raise LayerError("--input is required with layer tokens (e.g. --input 224 or 416x416)")
            layers = []
            for index, token in enumerate(args.layers, start=1):
                try:
                    layers.append(parse_token(token))
                except LayerError as error:
                    raise LayerError(f"layer {index} {error}") from None
        if channels is not None and channels < 1:
            raise LayerError(f"--channels must be positive, got {channels}")
        states = trace(size, layers, channels, args.ceil, numbering)
    except LayerError as error:
        print(f"torchpool shape: error: {error}", file=sys.stderr)
        return 2
    print(format_table(layers, states, numbering))
    return 0
