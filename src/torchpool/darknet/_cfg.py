"""The text of a darknet cfg: darknet's section and option names, and a strict parser.

Part of :mod:`torchpool.darknet` (which re-exports the public names): the names darknet
accepts (``ACTIVATIONS``, ``SECTIONS``, the keys each section reads), the sections and options
of a file (:class:`Section`, :class:`Option`), and the strict readers of text and ints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ACTIVATIONS",
    "ALIASES",
    "CFG_MAX_BYTES",
    "COMMON_KEYS",
    "KEYS",
    "SECTIONS",
    "CfgError",
    "Option",
    "Section",
    "parse_int",
    "parse_int_list",
    "parse_sections",
    "read_cfg_file",
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

COMMON_KEYS = frozenset(
    {
        "clip", "onlyforward", "dont_update", "burnin_update", "stopbackward", "train_only_bn",
        "dontload", "dontloadscales", "learning_rate", "stream", "wait_stream",
    }
)  # fmt: skip
"""The keys every layer section may carry (read in darknet's ``parse_network_cfg`` main loop)."""

KEYS: dict[str, frozenset[str]] = {
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
"""The keys darknet reads in the sections whose geometry :mod:`torchpool.darknet` computes.

A typo there (``strid=2``) would change the shape silently, so other keys are refused.
"""

ALIASES = {
    "network": "net",
    "conv": "convolutional",
    "max": "maxpool",
    "local_avg": "local_avgpool",
    "avg": "avgpool",
    "soft": "softmax",
    "silence": "empty",
}
"""Darknet's short section names: ``[conv]`` is ``[convolutional]``, ..."""

SECTIONS = frozenset({"net", *KEYS, "yolo", "region", "dropout", "softmax", "cost", *ALIASES})
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
