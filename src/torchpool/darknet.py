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

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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

CFG_MAX_BYTES = 1 << 20
"""The largest cfg file read (1 MiB; darknet's largest published cfgs are under 100 kB)."""

ACTIVATIONS = frozenset(
    {
        "logistic", "swish", "mish", "hard_mish", "normalize_channels", "normalize_channels_softmax",
        "normalize_channels_softmax_maxval", "loggy", "relu", "relu6", "elu", "selu", "gelu", "relie",
        "plse", "hardtan", "lhtan", "linear", "ramp", "revleaky", "leaky", "tanh", "stair",
    }
)  # fmt: skip
"""Every activation name darknet's ``get_activation`` accepts (it falls back to ReLU on others)."""

# keys every layer section may carry (read in parse_network_cfg's main loop)
_COMMON = frozenset(
    {
        "clip", "onlyforward", "dont_update", "burnin_update", "stopbackward", "train_only_bn",
        "dontload", "dontloadscales", "learning_rate", "stream", "wait_stream",
    }
)  # fmt: skip

# the keys darknet reads in the sections whose geometry this module computes: a typo there
# (``strid=2``) would change the shape silently, so other keys are refused
_KEYS: dict[str, frozenset[str]] = {
    "convolutional": frozenset(
        {
            "filters", "groups", "size", "stride", "stride_x", "stride_y", "dilation", "antialiasing",
            "pad", "padding", "activation", "assisted_excitation", "share_index", "batch_normalize",
            "cbn", "binary", "xnor", "bin_output", "sway", "rotate", "stretch", "stretch_sway", "flipped",
            "dot", "angle", "grad_centr", "reverse", "coordconv",
        }
    ),
    "maxpool": frozenset(
        {
            "size", "stride", "stride_x", "stride_y", "padding", "maxpool_depth", "out_channels",
            "antialiasing", "maxpool_zero_nonmax",
        }
    ),
    "local_avgpool": frozenset({"size", "stride", "stride_x", "stride_y", "padding"}),
    "avgpool": frozenset(),
    "route": frozenset({"layers", "groups", "group_id"}),
    "shortcut": frozenset({"from", "activation", "weights_type", "weights_normalization"}),
    "upsample": frozenset({"stride", "scale"}),
    "sam": frozenset({"from", "activation"}),
    "scale_channels": frozenset({"from", "activation", "scale_wh"}),
    "reorg": frozenset({"stride", "reverse"}),
    "reorg3d": frozenset({"stride", "reverse"}),
    "activation": frozenset({"activation"}),
    "batchnorm": frozenset(),
    "empty": frozenset(),
}  # fmt: skip

# darknet's aliases ([conv] is [convolutional], ...)
_ALIASES = {
    "network": "net",
    "conv": "convolutional",
    "max": "maxpool",
    "local_avg": "local_avgpool",
    "avg": "avgpool",
    "soft": "softmax",
    "silence": "empty",
}

SECTIONS = frozenset({"net", *_KEYS, "yolo", "region", "dropout", "softmax", "cost", *_ALIASES})
"""The section names :func:`trace_cfg` accepts (darknet's spellings, aliases included)."""

_INT = re.compile(r"[+-]?[0-9]+")
_SECTION = re.compile(r"^\[([^\[\]]*)\]$")


class CfgError(ValueError):
    """A malformed or unsupported darknet cfg; the message names the line."""


@dataclass(frozen=True)
class Option:
    """One ``key=value`` line of a section.

    Attributes:
        value: the text after ``=``, stripped.
        line: its line number (from 1).
    """

    value: str
    line: int


@dataclass(frozen=True)
class Section:
    """One ``[section]`` of a cfg file.

    Attributes:
        name: the name between the brackets, stripped and lower-cased.
        line: the line of the ``[name]`` header (from 1).
        options: ``key -> Option``.
    """

    name: str
    line: int
    options: dict[str, Option]

    def where(self) -> str:
        """``[name] at line N``, for messages."""
        return f"[{self.name}] at line {self.line}"


@dataclass(frozen=True)
class LayerShape:
    """One layer's output as darknet computes it.

    Attributes:
        index: darknet's layer index (the first section after ``[net]`` is 0).
        type: the section name as written (lower-cased), e.g. ``convolutional``.
        line: the line of the section header.
        width: output width.
        height: output height.
        channels: output channels.
        rf_width: receptive field along the width (darknet's ``receptive_w``).
        rf_height: receptive field along the height.
        jump_width: distance in input pixels between neighbouring outputs along the width
            (darknet's ``receptive_w_scale``).
        jump_height: the same along the height.
        flat: ``True`` for ``[softmax]``/``[cost]``, whose output is a vector of
            ``width * height * channels`` values rather than an image.
    """

    index: int
    type: str
    line: int
    width: int
    height: int
    channels: int
    rf_width: int
    rf_height: int
    jump_width: int
    jump_height: int
    flat: bool = False


# ---------------------------------------------------------------------------------------------
# text
# ---------------------------------------------------------------------------------------------


def parse_sections(text: str) -> list[Section]:
    """Splits a cfg's text into sections.

    Blank lines and comments (from ``#`` or ``;`` to the end of the line) are skipped; a
    ``key=value`` line belongs to the section above it.

    Args:
        text: the cfg's text.

    Returns:
        The sections in file order.

    Raises:
        CfgError: for a line that is neither ``[name]`` nor ``key=value``, a key before any
            section, an empty key or value, or a key given twice in a section (naming the line).

    Example:
        >>> [(s.name, s.line, s.options["size"].value) for s in parse_sections("[maxpool]\\nsize = 2")]
        [('maxpool', 1, '2')]
    """
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        match = _SECTION.match(line)
        if match:
            sections.append(Section(match.group(1).strip().lower(), number, {}))
            continue
        if "=" not in line:
            raise CfgError(
                f"darknet cfg line {number}: expected 'key=value' or '[section]', got {raw.strip()!r}"
            )
        if not sections:
            raise CfgError(f"darknet cfg line {number}: 'key=value' before any [section]: {raw.strip()!r}")
        key, value = (part.strip() for part in line.split("=", 1))
        section = sections[-1]
        if not key or not value:
            raise CfgError(
                f"darknet cfg line {number} in [{section.name}] (line {section.line}): "
                f"malformed {raw.strip()!r}"
            )
        if key in section.options:
            raise CfgError(
                f"darknet cfg line {number} in [{section.name}] (line {section.line}): duplicate key {key!r}"
            )
        section.options[key] = Option(value, number)
    return sections


def parse_int(value: str, key: str, section: str, line: int) -> int:
    """A strict decimal int: ASCII digits with an optional sign, nothing else.

    Python's ``int`` also accepts ``5_1``, non-ASCII digits and surrounding spaces; darknet's ``atoi``
    reads ``5x`` as 5. Both would give a silent wrong size, so anything else is refused.

    Args:
        value: the text.
        key: the option's name, for the message.
        section: the section's name, for the message.
        line: the option's line, for the message.

    Returns:
        The int.

    Raises:
        CfgError: if ``value`` is not a plain decimal int.

    Example:
        >>> parse_int("-3", "layers", "route", 7)
        -3
    """
    if _INT.fullmatch(value) is None:
        raise CfgError(f"darknet cfg line {line} in [{section}]: {key} must be an int, got {value!r}")
    return int(value)


def parse_int_list(option: Option, key: str, section: str) -> tuple[int, ...]:
    """A comma-separated list of strict ints (``layers = -1, 61``).

    Args:
        option: the option.
        key: its name, for messages.
        section: the section's name, for messages.

    Returns:
        The ints, at least one.

    Raises:
        CfgError: for an empty item or an item that is not an int.

    Example:
        >>> parse_int_list(Option("-1, 61", 3), "layers", "route")
        (-1, 61)
    """
    return tuple(parse_int(item.strip(), key, section, option.line) for item in option.value.split(","))


def read_cfg_file(path: str | Path, limit: int = CFG_MAX_BYTES) -> str:
    """Reads a cfg file's text, refusing what cannot be a cfg before reading it all.

    Args:
        path: the file.
        limit: the most bytes read; a larger file (or ``/dev/zero``) is refused.

    Returns:
        The text (UTF-8, a byte-order mark dropped).

    Raises:
        CfgError: if the file cannot be read, is larger than ``limit`` bytes, contains a NUL
            byte or is not UTF-8 text; the message is one line.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as error:
        raise CfgError(f"cannot read {path}: {error.strerror or error}") from None
    if len(data) > limit:
        raise CfgError(f"{path} is larger than {limit} bytes: not a darknet cfg")
    if b"\0" in data:
        line = data.count(b"\n", 0, data.index(b"\0")) + 1
        raise CfgError(f"{path} is not a text file (a NUL byte at line {line})")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise CfgError(
            f"{path} is not a UTF-8 text file (byte {data[error.start]:#04x} at line {line})"
        ) from None


# ---------------------------------------------------------------------------------------------
# layer arithmetic
# ---------------------------------------------------------------------------------------------


def _c_div(a: int, b: int) -> int:
    """C's integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


class _Reader:
    """Typed access to one section's options, with messages that name the line."""

    def __init__(self, section: Section, index: int | None) -> None:
        self.section = section
        self.where = section.where() if index is None else f"layer {index} {section.where()}"

    def has(self, key: str) -> bool:
        return key in self.section.options

    def get(self, key: str, default: int) -> int:
        option = self.section.options.get(key)
        if option is None:
            return default
        return parse_int(option.value, key, self.section.name, option.line)

    def error(self, message: str, key: str | None = None) -> CfgError:
        option = None if key is None else self.section.options.get(key)
        at = "" if option is None else f" (line {option.line})"
        return CfgError(f"{self.where}: {message}{at}")

    def positive(self, key: str, default: int) -> int:
        value = self.get(key, default)
        if value < 1:
            raise self.error(f"{key} must be positive, got {value}", key)
        return value

    def layer(self, key: str, value: int, here: int) -> int:
        """An absolute index from a ``layers``/``from`` value (negative: relative to ``here``)."""
        target = here + value if value < 0 else value
        if not 0 <= target < here:
            raise self.error(f"{key}={value} does not name an earlier layer (this is layer {here})", key)
        return target


@dataclass
class _State:
    width: int
    height: int
    channels: int
    rf: tuple[int, int]
    jump: tuple[int, int]
    flat: bool = False
    source: str = "the input"


def _check_keys(reader: _Reader, name: str) -> None:
    allowed = _KEYS.get(name)
    if allowed is None:
        return
    unknown = sorted(set(reader.section.options) - allowed - _COMMON)
    if unknown:
        raise reader.error(
            f"unknown option(s) {unknown} (darknet would ignore them; the shape may not be what you meant)",
            unknown[0],
        )
    if "activation" in reader.section.options:
        option = reader.section.options["activation"]
        if option.value not in ACTIVATIONS:
            raise reader.error(
                f"unknown activation {option.value!r} (darknet's: {', '.join(sorted(ACTIVATIONS))})",
                "activation",
            )


def _window(
    reader: _Reader, state: _State, size: int, pads: tuple[int, int], strides: tuple[int, int]
) -> tuple[int, int]:
    """Output (width, height) of darknet's ``(in + pad - size) / stride + 1``; ``pads`` are totals."""
    out = []
    for axis, (extent, pad, stride) in enumerate(zip((state.width, state.height), pads, strides)):
        value = _c_div(extent + pad - size, stride) + 1
        if value < 1:
            name = ("width", "height")[axis]
            raise reader.error(
                f"size {size} does not fit the {name} {extent} with padding {pad}: "
                f"the output {name} would be {value}"
            )
        out.append(value)
    return out[0], out[1]


def _grow(state: _State, size: int, stride: int, dilation: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Darknet's receptive-field step for a layer with a window (``show_receptive_field``)."""
    increase = max(0, max(1, size) + (max(1, dilation) - 1) * 2 - 1)
    stride = max(1, stride)
    rf = (state.rf[0] + increase * state.jump[0], state.rf[1] + increase * state.jump[1])
    return rf, (state.jump[0] * stride, state.jump[1] * stride)


def _layer(reader: _Reader, name: str, state: _State, history: Sequence[_State], here: int) -> _State:
    """The state after one layer section (``name`` already de-aliased)."""
    section = reader.section
    _check_keys(reader, name)
    image_layers = set(_KEYS) - {"activation", "batchnorm", "empty"}
    if state.flat and name in image_layers | {"yolo", "region", "dropout"}:
        raise reader.error(f"the layer before must output an image, but {state.source} outputs a flat vector")
    if name == "convolutional":
        size = reader.positive("size", 1)
        stride_x, stride_y = reader.get("stride_x", -1), reader.get("stride_y", -1)
        if stride_x < 1 or stride_y < 1:
            stride = reader.positive("stride", 1)
            stride_x = stride if stride_x < 1 else stride_x
            stride_y = stride if stride_y < 1 else stride_y
        else:
            stride = reader.positive("stride", 1)
        dilation = 1 if size == 1 else reader.positive("dilation", 1)
        padding = size // 2 if reader.get("pad", 0) else reader.get("padding", 0)
        if padding < 0:
            raise reader.error(f"padding must be >= 0, got {padding}", "padding")
        if reader.get("antialiasing", 0):
            raise reader.error(
                "antialiasing is not supported (its blur layer changes the arithmetic)", "antialiasing"
            )
        filters = reader.positive("filters", 1)
        width, height = _window(reader, state, size, (2 * padding, 2 * padding), (stride_x, stride_y))
        rf, jump = _grow(state, size, stride_x, dilation)
        return _State(width, height, filters, rf, jump)
    if name in ("maxpool", "local_avgpool"):
        stride = reader.positive("stride", 1)
        stride_x, stride_y = reader.positive("stride_x", stride), reader.positive("stride_y", stride)
        size = reader.positive("size", stride)
        padding = reader.get("padding", size - 1)
        if padding < 0:
            raise reader.error(f"padding must be >= 0, got {padding}", "padding")
        if reader.get("antialiasing", 0):
            raise reader.error(
                "antialiasing is not supported (its blur layer changes the arithmetic)", "antialiasing"
            )
        rf, jump = _grow(state, size, stride_x, 1)
        if name == "maxpool" and reader.get("maxpool_depth", 0):
            return _State(state.width, state.height, reader.positive("out_channels", 1), rf, jump)
        width, height = _window(reader, state, size, (padding, padding), (stride_x, stride_y))
        return _State(width, height, state.channels, rf, jump)
    if name == "avgpool":
        return _State(1, 1, state.channels, state.rf, state.jump)
    if name == "upsample":
        stride = reader.get("stride", 2)
        if stride == 0:
            raise reader.error("stride must not be 0", "stride")
        if stride > 0:
            width, height = state.width * stride, state.height * stride
        else:
            width, height = state.width // -stride, state.height // -stride
            if min(width, height) < 1:
                raise reader.error(
                    f"stride={stride} divides {state.width}x{state.height} to nothing", "stride"
                )
        s = abs(stride)
        return _State(width, height, state.channels, state.rf, (state.jump[0] // s, state.jump[1] // s))
    if name in ("reorg", "reorg3d"):
        stride = reader.positive("stride", 1)
        if reader.get("reverse", 0):
            if state.channels % (stride * stride):
                raise reader.error(
                    f"reverse reorg needs channels divisible by {stride * stride}, got {state.channels}"
                )
            width, height, channels = state.width * stride, state.height * stride, state.channels // stride**2
        else:
            width, height, channels = (
                state.width // stride,
                state.height // stride,
                state.channels * stride**2,
            )
            if min(width, height) < 1:
                raise reader.error(
                    f"stride={stride} divides {state.width}x{state.height} to nothing", "stride"
                )
        if name == "reorg3d":  # darknet's receptive-field code divides the jump for REORG
            return _State(
                width, height, channels, state.rf, (state.jump[0] // stride, state.jump[1] // stride)
            )
        rf, jump = _grow(state, 1, stride, 1)  # REORG_OLD takes darknet's generic branch
        return _State(width, height, channels, rf, jump)
    if name == "route":
        if not reader.has("layers"):
            raise reader.error("[route] needs layers=...")
        values = parse_int_list(section.options["layers"], "layers", section.name)
        picked = [history[reader.layer("layers", value, here)] for value in values]
        for source in picked:
            if source.flat:
                raise reader.error(f"layers: {source.source} outputs a flat vector, not an image", "layers")
        first = picked[0]
        if any((p.width, p.height) != (first.width, first.height) for p in picked):
            shown = ", ".join(f"{p.width}x{p.height}" for p in picked)
            raise reader.error(f"the routed layers have different sizes (w x h): {shown}", "layers")
        groups = reader.positive("groups", 1)
        group_id = reader.get("group_id", 0)
        if not 0 <= group_id < groups:
            raise reader.error(f"group_id must be in [0, {groups}), got {group_id}", "group_id")
        for p in picked:
            if p.channels % groups:
                raise reader.error(
                    f"groups={groups} does not divide the {p.channels} channels of {p.source}", "groups"
                )
        rf = (max(p.rf[0] for p in picked), max(p.rf[1] for p in picked))
        jump = (max(p.jump[0] for p in picked), max(p.jump[1] for p in picked))
        return _State(first.width, first.height, sum(p.channels for p in picked) // groups, rf, jump)
    if name in ("shortcut", "sam", "scale_channels"):
        if not reader.has("from"):
            raise reader.error(f"[{section.name}] needs from=...")
        values = parse_int_list(section.options["from"], "from", section.name)
        if name != "shortcut" and len(values) != 1:
            raise reader.error(f"from must be one layer, got {len(values)}", "from")
        sources = [history[reader.layer("from", value, here)] for value in values]
        for source in sources:
            if source.flat:
                raise reader.error(f"from: {source.source} outputs a flat vector, not an image", "from")
        if name == "shortcut":
            for source in sources:
                if (source.width, source.height) != (state.width, state.height):
                    raise reader.error(
                        f"{source.source} is {source.width}x{source.height}, the previous layer "
                        f"{state.width}x{state.height} (w x h): darknet requires equal sizes",
                        "from",
                    )
            return _State(state.width, state.height, state.channels, state.rf, state.jump)
        source = sources[0]
        if (name == "sam" or not reader.get("scale_wh", 0)) and source.channels != state.channels:
            raise reader.error(
                f"{source.source} has {source.channels} channels, the previous layer {state.channels}", "from"
            )
        if name == "sam" and (source.width, source.height) != (state.width, state.height):
            raise reader.error(
                f"{source.source} is {source.width}x{source.height}, "
                f"the previous layer {state.width}x{state.height}",
                "from",
            )
        if name == "scale_channels":
            if reader.get("scale_wh", 0):
                if state.channels != 1 or (source.width, source.height) != (state.width, state.height):
                    raise reader.error("scale_wh=1 needs a 1-channel previous layer of the from layer's size")
            elif (state.width, state.height) != (1, 1):
                raise reader.error(
                    f"the previous layer must be 1x1 (channel weights), got {state.width}x{state.height}"
                )
        return _State(source.width, source.height, source.channels, state.rf, state.jump)
    if name in ("yolo", "region"):
        classes = reader.get("classes", 20)
        num = reader.positive("num", 1)
        if name == "yolo":
            n = (
                len(parse_int_list(section.options["mask"], "mask", section.name))
                if reader.has("mask")
                else num
            )
            expected, rule = n * (classes + 5), f"{n} x ({classes} classes + 5)"
        else:
            coords = reader.get("coords", 4)
            expected, rule = (
                num * (classes + coords + 1),
                f"{num} x ({classes} classes + {coords} coords + 1)",
            )
        if classes < 0 or state.channels != expected:
            raise reader.error(
                f"the previous layer gives {state.channels} channels, "
                f"[{section.name}] needs {rule} = {expected} "
                "(darknet: filters= in the [convolutional] layer does not match classes=/mask=/num=)"
            )
        return _State(state.width, state.height, state.channels, state.rf, state.jump)
    if name in ("dropout", "activation", "batchnorm", "empty"):
        return _State(
            state.width, state.height, state.channels, state.rf, state.jump, state.flat, state.source
        )
    if name in ("softmax", "cost"):
        return _State(state.width, state.height, state.channels, state.rf, state.jump, True)
    raise reader.error(f"unsupported section (supported: {', '.join(f'[{n}]' for n in sorted(SECTIONS))})")


def input_size(
    sections: Sequence[Section],
    width: int | None = None,
    height: int | None = None,
    channels: int | None = None,
) -> tuple[int, int, int]:
    """The network's input ``(width, height, channels)``: the arguments, else ``[net]``'s.

    Args:
        sections: the cfg's :func:`parse_sections`.
        width: input width, or ``None`` for ``[net]``'s ``width``.
        height: input height, or ``None`` for ``[net]``'s ``height``.
        channels: input channels, or ``None`` for ``[net]``'s ``channels``.

    Returns:
        ``(width, height, channels)``, all positive.

    Raises:
        CfgError: if a value is neither given nor in ``[net]``, or is not a positive int.

    Example:
        >>> input_size(parse_sections("[net]\\nwidth=608\\nheight=608\\nchannels=3"), channels=1)
        (608, 608, 1)
    """
    net: dict[str, int] = {}
    has_net = bool(sections) and _ALIASES.get(sections[0].name, sections[0].name) == "net"
    if has_net:
        reader = _Reader(sections[0], None)
        net = {key: reader.get(key, 0) for key in ("width", "height", "channels") if reader.has(key)}
    for key, value in (("width", width), ("height", height), ("channels", channels)):
        if value is not None:
            net[key] = value
        if net.get(key, 0) < 1:
            where = f"[net] at line {sections[0].line}" if has_net else "the cfg (no [net] section)"
            given = f"{key}={net[key]}" if key in net else f"no {key}="
            raise CfgError(f"{where}: {given}; darknet needs a positive input {key}")
    return net["width"], net["height"], net["channels"]


def trace_cfg(
    text: str | Sequence[Section],
    width: int | None = None,
    height: int | None = None,
    channels: int | None = None,
) -> list[LayerShape]:
    """Every layer's output size, channels, receptive field and jump, as darknet computes them.

    Args:
        text: the cfg's text (or its :func:`parse_sections`).
        width: input width; default ``[net]``'s ``width``.
        height: input height; default ``[net]``'s ``height``.
        channels: input channels; default ``[net]``'s ``channels``.

    Returns:
        One :class:`LayerShape` per section after ``[net]``, in darknet's layer order.

    Raises:
        CfgError: for a malformed file, an unsupported section or option, an input size that
            is neither given nor in ``[net]``, or a layer darknet cannot build (a window larger
            than its padded input, a route to a later layer or of different sizes, a
            ``[yolo]`` whose input channels do not match ``classes``/``mask``); the message
            names the layer and its line.

    Example:
        >>> cfg = "[net]\\nwidth=13\\nheight=13\\nchannels=255\\n[yolo]\\nmask=0,1,2\\nclasses=80\\nnum=9"
        >>> shape = trace_cfg(cfg)[0]
        >>> shape.type, shape.width, shape.channels
        ('yolo', 13, 255)
    """
    sections = parse_sections(text) if isinstance(text, str) else list(text)
    width, height, channels = input_size(sections, width, height, channels)
    has_net = bool(sections) and _ALIASES.get(sections[0].name, sections[0].name) == "net"
    layers = sections[1:] if has_net else sections
    state = _State(width, height, channels, (1, 1), (1, 1))
    history: list[_State] = []
    shapes: list[LayerShape] = []
    for index, section in enumerate(layers):
        name = _ALIASES.get(section.name, section.name)
        reader = _Reader(section, index)
        if name == "net":
            raise reader.error("[net] must be the first section")
        state = _layer(reader, name, state, history, index)
        state.source = f"layer {index} [{section.name}] (line {section.line})"
        history.append(state)
        shapes.append(
            LayerShape(
                index, section.name, section.line, state.width, state.height, state.channels,
                state.rf[0], state.rf[1], state.jump[0], state.jump[1], state.flat,
            )
        )  # fmt: skip
    return shapes
