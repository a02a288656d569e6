"""Darknet's layer arithmetic: the output size, channels, receptive field and jump of each section.

Part of :mod:`torchpool.darknet` (whose docstring states the arithmetic). :func:`next_state` is
the state after one layer section; it checks the section's keys and hands it to the function of
its type (one per darknet layer type, in the order of the module docstring).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._cfg import ACTIVATIONS, COMMON_KEYS, KEYS, SECTIONS, CfgError, Section, parse_int, parse_int_list

__all__ = ["Reader", "State", "next_state"]


def _c_div(a: int, b: int) -> int:
    """C's integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


class Reader:
    """Typed access to one section's options, with messages that name the line."""

    def __init__(self, section: Section, index: int | None) -> None:
        self.section = section
        self.where = section.where() if index is None else f"layer {index} {section.where()}"

    def has(self, key: str) -> bool:
        """Whether the section sets ``key``."""
        return key in self.section.options

    def get(self, key: str, default: int) -> int:
        """The int value of ``key``, or ``default`` when it is not set."""
        option = self.section.options.get(key)
        if option is None:
            return default
        return parse_int(option.value, key, self.section.name, option.line)

    def error(self, message: str, key: str | None = None) -> CfgError:
        """A CfgError naming the layer, and the line of ``key`` when it is set."""
        option = None if key is None else self.section.options.get(key)
        at = "" if option is None else f" (line {option.line})"
        return CfgError(f"{self.where}: {message}{at}")

    def positive(self, key: str, default: int) -> int:
        """The value of ``key`` (or ``default``), refused unless positive."""
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
class State:
    """One layer's output: size, channels, receptive field and jump, and where it comes from."""

    width: int
    height: int
    channels: int
    rf: tuple[int, int]
    jump: tuple[int, int]
    flat: bool = False
    source: str = "the input"


def _check_keys(reader: Reader, name: str) -> None:
    allowed = KEYS.get(name)
    if allowed is None:
        return
    unknown = sorted(set(reader.section.options) - allowed - COMMON_KEYS)
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
    reader: Reader, state: State, size: int, pads: tuple[int, int], strides: tuple[int, int]
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


def _grow(state: State, size: int, stride: int, dilation: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Darknet's receptive-field step for a layer with a window (``show_receptive_field``)."""
    increase = max(0, max(1, size) + (max(1, dilation) - 1) * 2 - 1)
    stride = max(1, stride)
    rf = (state.rf[0] + increase * state.jump[0], state.rf[1] + increase * state.jump[1])
    return rf, (state.jump[0] * stride, state.jump[1] * stride)


def _no_antialiasing(reader: Reader) -> None:
    if reader.get("antialiasing", 0):
        raise reader.error(
            "antialiasing is not supported (its blur layer changes the arithmetic)", "antialiasing"
        )


# ---------------------------------------------------------------------------------------------
# one function per layer type: (reader, name, state before, earlier layers, this index) -> state
# ---------------------------------------------------------------------------------------------


def _convolutional(reader: Reader, name: str, state: State, history: Sequence[State], here: int) -> State:
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
    _no_antialiasing(reader)
    filters = reader.positive("filters", 1)
    width, height = _window(reader, state, size, (2 * padding, 2 * padding), (stride_x, stride_y))
    rf, jump = _grow(state, size, stride_x, dilation)
    return State(width, height, filters, rf, jump)


def _local_pool(reader: Reader, name: str, state: State, history: Sequence[State], here: int) -> State:
    """``[maxpool]`` and ``[local_avgpool]``."""
    stride = reader.positive("stride", 1)
    stride_x, stride_y = reader.positive("stride_x", stride), reader.positive("stride_y", stride)
    size = reader.positive("size", stride)
    padding = reader.get("padding", size - 1)
    if padding < 0:
        raise reader.error(f"padding must be >= 0, got {padding}", "padding")
    _no_antialiasing(reader)
    rf, jump = _grow(state, size, stride_x, 1)
    if name == "maxpool" and reader.get("maxpool_depth", 0):
        return State(state.width, state.height, reader.positive("out_channels", 1), rf, jump)
    width, height = _window(reader, state, size, (padding, padding), (stride_x, stride_y))
    return State(width, height, state.channels, rf, jump)


def _avgpool(reader: Reader, name: str, state: State, history: Sequence[State], here: int) -> State:
    return State(1, 1, state.channels, state.rf, state.jump)


def _upsample(reader: Reader, name: str, state: State, history: Sequence[State], here: int) -> State:
    stride = reader.get("stride", 2)
    if stride == 0:
        raise reader.error("stride must not be 0", "stride")
    if stride > 0:
        width, height = state.width * stride, state.height * stride
    else:
        width, height = state.width // -stride, state.height // -stride
        if min(width, height) < 1:
            raise reader.error(f"stride={stride} divides {state.width}x{state.height} to nothing", "stride")
    s = abs(stride)
    return State(width, height, state.channels, state.rf, (state.jump[0] // s, state.jump[1] // s))


def _reorg(reader: Reader, name: str, state: State, history: Sequence[State], here: int) -> State:
    """``[reorg]`` and ``[reorg3d]``."""
    stride = reader.positive("stride", 1)
    if reader.get("reverse", 0):
        if state.channels % (stride * stride):
            raise reader.error(
                f"reverse reorg needs channels divisible by {stride * stride}, got {state.channels}"
            )
        width, height, channels = state.width * stride, state.height * stride, state.channels // stride**2
    else:
        width, height, channels = state.width // stride, state.height // stride, state.channels * stride**2
        if min(width, height) < 1:
            raise reader.error(f"stride={stride} divides {state.width}x{state.height} to nothing", "stride")
    if name == "reorg3d":  # darknet's receptive-field code divides the jump for REORG
        return State(width, height, channels, state.rf, (state.jump[0] // stride, state.jump[1] // stride))
    rf, jump = _grow(state, 1, stride, 1)  # REORG_OLD takes darknet's generic branch
    return State(width, height, channels, rf, jump)


def _route(reader: Reader, name: str, state: State, history: Sequence[State], here: int) -> State:
    section = reader.section
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
    return State(first.width, first.height, sum(p.channels for p in picked) // groups, rf, jump)


def _from_layers(reader: Reader, name: str, history: Sequence[State], here: int) -> list[State]:
    """The image layers named by ``from=`` (one for ``[sam]`` and ``[scale_channels]``)."""
    section = reader.section
    if not reader.has("from"):
        raise reader.error(f"[{section.name}] needs from=...")
    values = parse_int_list(section.options["from"], "from", section.name)
    if name != "shortcut" and len(values) != 1:
        raise reader.error(f"from must be one layer, got {len(values)}", "from")
    sources = [history[reader.layer("from", value, here)] for value in values]
    for source in sources:
        if source.flat:
            raise reader.error(f"from: {source.source} outputs a flat vector, not an image", "from")
    return sources


def _shortcut(reader: Reader, name: str, state: State, history: Sequence[State], here: int) -> State:
    for source in _from_layers(reader, name, history, here):
        if (source.width, source.height) != (state.width, state.height):
            raise reader.error(
                f"{source.source} is {source.width}x{source.height}, the previous layer "
                f"{state.width}x{state.height} (w x h): darknet requires equal sizes",
                "from",
            )
    return State(state.width, state.height, state.channels, state.rf, state.jump)


def _scale(reader: Reader, name: str, state: State, history: Sequence[State], here: int) -> State:
    """``[sam]`` and ``[scale_channels]``: the previous layer scales its ``from`` layer."""
    source = _from_layers(reader, name, history, here)[0]
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
    return State(source.width, source.height, source.channels, state.rf, state.jump)


def _detection(reader: Reader, name: str, state: State, history: Sequence[State], here: int) -> State:
    """``[yolo]`` and ``[region]``: the previous layer's channels must fit the classes and anchors."""
    section = reader.section
    classes = reader.get("classes", 20)
    num = reader.positive("num", 1)
    if name == "yolo":
        n = len(parse_int_list(section.options["mask"], "mask", section.name)) if reader.has("mask") else num
        expected, rule = n * (classes + 5), f"{n} x ({classes} classes + 5)"
    else:
        coords = reader.get("coords", 4)
        expected, rule = num * (classes + coords + 1), f"{num} x ({classes} classes + {coords} coords + 1)"
    if classes < 0 or state.channels != expected:
        raise reader.error(
            f"the previous layer gives {state.channels} channels, "
            f"[{section.name}] needs {rule} = {expected} "
            "(darknet: filters= in the [convolutional] layer does not match classes=/mask=/num=)"
        )
    return State(state.width, state.height, state.channels, state.rf, state.jump)


def _same(reader: Reader, name: str, state: State, history: Sequence[State], here: int) -> State:
    """``[dropout]``, ``[activation]``, ``[batchnorm]``, ``[empty]``: the previous layer's output."""
    return State(state.width, state.height, state.channels, state.rf, state.jump, state.flat, state.source)


def _flat(reader: Reader, name: str, state: State, history: Sequence[State], here: int) -> State:
    """``[softmax]`` and ``[cost]``: a flat vector of the previous layer's values."""
    return State(state.width, state.height, state.channels, state.rf, state.jump, True)


_LayerRule = Callable[[Reader, str, State, Sequence[State], int], State]

_RULES: dict[str, _LayerRule] = {
    "convolutional": _convolutional,
    "maxpool": _local_pool,
    "local_avgpool": _local_pool,
    "avgpool": _avgpool,
    "upsample": _upsample,
    "reorg": _reorg,
    "reorg3d": _reorg,
    "route": _route,
    "shortcut": _shortcut,
    "sam": _scale,
    "scale_channels": _scale,
    "yolo": _detection,
    "region": _detection,
    "dropout": _same,
    "activation": _same,
    "batchnorm": _same,
    "empty": _same,
    "softmax": _flat,
    "cost": _flat,
}

# the layers that need an image (not a flat vector) as input
_IMAGE_INPUT = (set(KEYS) - {"activation", "batchnorm", "empty"}) | {"yolo", "region", "dropout"}


def next_state(reader: Reader, name: str, state: State, history: Sequence[State], here: int) -> State:
    """The state after one layer section (``name`` already de-aliased).

    Args:
        reader: the section.
        name: its type, de-aliased (``convolutional`` for ``[conv]``).
        state: the previous layer's output (the input for layer 0).
        history: the outputs of layers ``0 .. here - 1``.
        here: this layer's index.

    Raises:
        CfgError: for an unknown option or activation, a flat input to an image layer, an
            unsupported section or a layer darknet cannot build.
    """
    _check_keys(reader, name)
    if state.flat and name in _IMAGE_INPUT:
        raise reader.error(f"the layer before must output an image, but {state.source} outputs a flat vector")
    rule = _RULES.get(name)
    if rule is None:
        raise reader.error(
            f"unsupported section (supported: {', '.join(f'[{n}]' for n in sorted(SECTIONS))})"
        )
    return rule(reader, name, state, history, here)
