"""A whole cfg traced: every layer's output as darknet computes it (:func:`trace_cfg`).

Part of :mod:`torchpool.darknet`, which re-exports these names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._cfg import ALIASES, CfgError, Section, parse_sections
from ._layers import Reader, State, next_state

__all__ = ["LayerShape", "input_size", "trace_cfg"]


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
    has_net = bool(sections) and ALIASES.get(sections[0].name, sections[0].name) == "net"
    if has_net:
        reader = Reader(sections[0], None)
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
    has_net = bool(sections) and ALIASES.get(sections[0].name, sections[0].name) == "net"
    layers = sections[1:] if has_net else sections
    state = State(width, height, channels, (1, 1), (1, 1))
    history: list[State] = []
    shapes: list[LayerShape] = []
    for index, section in enumerate(layers):
        name = ALIASES.get(section.name, section.name)
        reader = Reader(section, index)
        if name == "net":
            raise reader.error("[net] must be the first section")
        state = next_state(reader, name, state, history, index)
        state.source = f"layer {index} [{section.name}] (line {section.line})"
        history.append(state)
        shapes.append(
            LayerShape(
                index, section.name, section.line, state.width, state.height, state.channels,
                state.rf[0], state.rf[1], state.jump[0], state.jump[1], state.flat,
            )
        )  # fmt: skip
    return shapes
