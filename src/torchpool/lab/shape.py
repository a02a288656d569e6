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

* ``convK[sS][pP][dD][cC]``: convolution, stride ``S`` (default 1), padding ``P`` on each side
  (default ``D * (K // 2)``, which keeps the size only for an odd ``K`` at stride 1), dilation
  ``D`` (default 1), ``C`` output channels (default unknown).
* ``poolK[sS][pP][dD]`` (or ``maxpoolK...``, ``avgpoolK...``): max/avg pooling, stride default
  ``K``; the size follows :func:`torchpool.pool_output_size` (floor mode, ``--ceil`` for ceil).
* ``sppK1,K2,...``: YOLOv3's SPP block (stride-1 "same" max pools concatenated with the input):
  same size, ``(n + 1) * C`` channels, receptive field grows by ``(max K - 1) * j``.
* ``sppfK``: YOLOv5's SPPF (three cascaded ``K`` pools, equal to ``spp`` with ``K, 2K-1, 3K-2``).
* ``gap``: global pooling to ``1``; the receptive field covers every input position.
* ``sppnetN1,N2,...``: SPPNet's fixed bins; the output is a flat vector, the last layer.
* ``upS``: nearest upsampling by ``S`` (the jump is divided by ``S``).

``--cfg FILE`` reads a darknet cfg instead (every section of darknet's published YOLO files:
``[convolutional]``, ``[maxpool]``, ``[route]`` with ``groups``/``group_id``, ``[shortcut]``,
``[upsample]``, ``[yolo]``, ``[region]``, ...) and prints darknet's own numbers, computed by
:mod:`torchpool.darknet`: output ``w x h``, channels, and the receptive field and jump darknet
prints with ``show_receptive_field=1``. ``--json`` prints one JSON object per layer instead of
the table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

from .._shape import pool_output_size
from ..darknet import CfgError, LayerShape, input_size, parse_sections, read_cfg_file, trace_cfg

__all__ = [
    "Layer",
    "LayerError",
    "State",
    "add_arguments",
    "cfg_json",
    "format_cfg_table",
    "format_table",
    "parse_token",
    "run",
    "trace",
]


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
        kind: ``conv``, ``pool``, ``spp``, ``gap``, ``sppnet`` or ``up``.
        kernel: window size (``conv``, ``pool``).
        stride: stride (``conv``, ``pool``, ``up``).
        padding: left padding, or ``None`` for the default.
        dilation: dilation (``conv``, ``pool``).
        channels: output channels (``conv``), ``None`` to keep unknown.
        levels: kernel sizes (``spp``) or bins per side (``sppnet``).
    """

    label: str
    kind: str
    kernel: int = 1
    stride: int = 1
    padding: int | None = None
    dilation: int = 1
    channels: int | None = None
    levels: tuple[int, ...] = ()


_CONV = re.compile(r"conv([0-9]+)((?:[spdc][0-9]+)*)")
_POOL = re.compile(r"(?:max|avg)?pool([0-9]+)((?:[spd][0-9]+)*)")
_LIST = re.compile(r"(sppnet|sppf|spp)([0-9]+(?:,[0-9]+)*)")
_UP = re.compile(r"up([0-9]+)")
_OPTION = re.compile(r"([spdc])([0-9]+)")


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
    p = 0 if layer.padding is None else layer.padding
    for i in state.size:
        if effective > i + 2 * p:
            raise LayerError(f"window {effective} larger than padded input {i + 2 * p}")
    try:
        out = pool_output_size(state.size, k, s, p, d, ceil)
    except ValueError as error:
        raise LayerError(str(error)) from None
    return _window(state, tuple(out), k, s, p, d, state.channels)


def _apply(layer: Layer, state: State, ceil: bool) -> State:
    """The state after ``layer``."""
    if state.features is not None:
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
    raise LayerError(f"unknown layer kind {layer.kind!r}")  # pragma: no cover - parse_token's kinds


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
        ceil: ceil mode for ``pool`` tokens.
        numbering: the index of the first layer in error messages.

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
    for index, layer in enumerate(layers):
        try:
            state = _apply(layer, state, ceil)
        except LayerError as error:
            raise LayerError(f"layer {index + numbering} '{layer.label}': {error}") from None
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
        numbering: the index of the first layer.

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


_ASCII_INT = re.compile(r"[0-9]+")


def _parse_input(text: str) -> tuple[int, ...]:
    parts = text.strip().lower().split("x")
    if not 1 <= len(parts) <= 3 or not all(_ASCII_INT.fullmatch(p) for p in parts):
        raise LayerError(f"--input must be N, HxW or DxHxW (positive ints), got {text!r}")
    size = tuple(int(p) for p in parts)
    if min(size) < 1:
        raise LayerError(f"--input must be N, HxW or DxHxW (positive ints), got {text!r}")
    return size


def _channels(text: str) -> int:
    """``--channels``: a positive decimal int (argparse's ``int`` also takes ``3_0``)."""
    if _ASCII_INT.fullmatch(text.strip()) is None or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {text!r}")
    return int(text)


_HELP = """\
layer tokens (K, S, P, D, C are decimal ints):
  convK[sS][pP][dD][cC]  convolution: kernel K, stride S (default 1), padding P on each side
                         (default D * (K // 2): the size is kept only for an odd K at stride 1),
                         dilation D (default 1), C output channels (default: unknown)
  poolK[sS][pP][dD]      max/avg pooling (also maxpoolK, avgpoolK): stride default K, padding
                         default 0, floor mode (--ceil for ceil), PyTorch's size rule
  sppK1,K2,...           YOLOv3's SPP block: stride-1 "same" max pools (odd K) concatenated
                         with the input: same size, (n + 1) x the channels
  sppfK                  YOLOv5's SPPF: equal to sppK,2K-1,3K-2
  gap                    global pooling to 1
  sppnetN1,N2,...        SPPNet's fixed N x N bins: a flat vector, the last layer
  upS                    nearest upsampling by S

--cfg FILE reads a darknet cfg (at most 1 MiB of UTF-8 text) and prints darknet's own numbers:
output w x h, channels, and the receptive field and jump darknet prints with
show_receptive_field=1 (its arithmetic: stride_x on both axes, size + 2 (dilation - 1) - 1 per
window, [avgpool] and [shortcut] keep the field). --input (HxW) and --channels override [net].
--json prints a JSON list, one object per layer."""


def _json_lines(objects: Sequence[dict[str, object]]) -> str:
    """A JSON list with one object per line (valid JSON, and one layer per line for ``grep``)."""
    return "[\n" + ",\n".join(json.dumps(item) for item in objects) + "\n]"


def _fraction_json(value: Fraction) -> int | float:
    return value.numerator if value.denominator == 1 else float(value)


def _token_json(layers: Sequence[Layer], states: Sequence[State]) -> list[dict[str, object]]:
    """One object per token layer: index, type, token, output, channels, rf, jump, start."""
    return [
        {
            "index": index,
            "type": layer.kind,
            "token": layer.label,
            "output": list(state.size) if state.features is None else None,
            "features": state.features,
            "channels": state.channels,
            "receptive_field": [_fraction_json(v) for v in state.rf],
            "jump": [_fraction_json(v) for v in state.jump],
            "start": [_fraction_json(v) for v in state.start],
        }
        for index, (layer, state) in enumerate(zip(layers, states[1:]), start=1)
    ]


def cfg_json(shapes: Sequence[LayerShape]) -> list[dict[str, object]]:
    """One object per darknet layer, for tools.

    Args:
        shapes: :func:`torchpool.darknet.trace_cfg`'s output.

    Returns:
        Objects with ``index``, ``type``, ``line`` (of the section header), ``output``
        (``{"width", "height"}``), ``channels``, ``receptive_field`` and ``jump`` (each
        ``{"width", "height"}``) and ``flat`` (``[softmax]``/``[cost]``).
    """
    return [
        {
            "index": s.index,
            "type": s.type,
            "line": s.line,
            "output": {"width": s.width, "height": s.height},
            "channels": s.channels,
            "receptive_field": {"width": s.rf_width, "height": s.rf_height},
            "jump": {"width": s.jump_width, "height": s.jump_height},
            "flat": s.flat,
        }
        for s in shapes
    ]


def _pair(a: int, b: int) -> str:
    return str(a) if a == b else f"{a}x{b}"


def format_cfg_table(shapes: Sequence[LayerShape], width: int, height: int, channels: int) -> str:
    """darknet's layers as an aligned table: index, type, line, output ``w x h``, channels, rf, jump.

    Args:
        shapes: :func:`torchpool.darknet.trace_cfg`'s output.
        width: the input width.
        height: the input height.
        channels: the input channels.

    Returns:
        The table, the input first; a receptive field or jump shows one number when equal on
        both axes, else ``w x h``.
    """
    header = ("#", "layer", "line", "w x h", "channels", "rf", "jump")
    rows = [("", "input", "", f"{width}x{height}", str(channels), "1", "1")]
    for s in shapes:
        size = f"{s.width}x{s.height}" + (" (flat)" if s.flat else "")
        rf, jump = _pair(s.rf_width, s.rf_height), _pair(s.jump_width, s.jump_height)
        rows.append((str(s.index), s.type, str(s.line), size, str(s.channels), rf, jump))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = {0, 2, 4, 5, 6}
    lines = [
        "  ".join(
            cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))
        )
        for row in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``torchpool shape``'s options to ``parser`` (and the token and cfg rules to its help).

    Args:
        parser: the subcommand's parser.
    """
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _HELP
    parser.add_argument(
        "layers",
        nargs="*",
        metavar="LAYER",
        help="layer tokens (below), e.g. conv7s2p3 pool3s2p1",
    )
    parser.add_argument("--input", default=None, help="input size: N (1d), HxW (2d) or DxHxW (3d)")
    parser.add_argument("--channels", type=_channels, default=None, help="input channels (default: unknown)")
    parser.add_argument("--cfg", default=None, help="a darknet cfg file instead of layer tokens")
    parser.add_argument("--ceil", action="store_true", help="ceil mode for pool tokens (default floor)")
    parser.add_argument("--json", action="store_true", help="print JSON (one object per layer), not a table")


def _run_cfg(args: argparse.Namespace) -> str:
    if args.layers:
        raise LayerError("give either layer tokens or --cfg, not both")
    if args.ceil:
        raise LayerError("--ceil applies to pool tokens; a darknet [maxpool] has its own size rule")
    size = None if args.input is None else _parse_input(args.input)
    if size is not None and len(size) != 2:
        raise LayerError(f"--input with --cfg must be HxW, got {args.input!r}")
    try:
        text = read_cfg_file(args.cfg)
    except CfgError as error:
        raise LayerError(f"--cfg: {error}") from None
    try:
        sections = parse_sections(text)
        height, width = (None, None) if size is None else size
        shapes = trace_cfg(sections, width, height, args.channels)
    except CfgError as error:
        raise LayerError(f"{args.cfg}: {error}") from None
    if args.json:
        return _json_lines(cfg_json(shapes))
    return format_cfg_table(shapes, *input_size(sections, width, height, args.channels))


def run(args: argparse.Namespace) -> int:
    """Prints the table (or JSON) for the layers in ``args``; returns 0, or 2 with a message.

    Args:
        args: the parsed options of :func:`add_arguments`.

    Returns:
        The exit status.
    """
    try:
        if args.cfg is not None:
            output = _run_cfg(args)
        else:
            if not args.layers:
                raise LayerError("give layer tokens (e.g. conv3 pool2 spp5,9,13) or --cfg FILE")
            if args.input is None:
                raise LayerError("--input is required with layer tokens (e.g. --input 224 or 416x416)")
            size = _parse_input(args.input)
            layers = []
            for index, token in enumerate(args.layers, start=1):
                try:
                    layers.append(parse_token(token))
                except LayerError as error:
                    raise LayerError(f"layer {index} {error}") from None
            states = trace(size, layers, args.channels, args.ceil)
            output = _json_lines(_token_json(layers, states)) if args.json else format_table(layers, states)
    except LayerError as error:
        print(f"torchpool shape: error: {error}", file=sys.stderr)
        return 2
    print(output)
    return 0
