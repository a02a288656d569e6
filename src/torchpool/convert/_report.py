"""What :func:`~torchpool.swap_pooling` did: one :class:`SwapRecord` per replaced layer."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

__all__ = ["SwapRecord", "SwapReport"]


@dataclass
class SwapRecord:
    """One replaced layer.

    Attributes:
        name: qualified module name, e.g. ``"avgpool"`` or ``"layer1.0.pool"``.
        old: repr of the layer that was removed.
        new: repr of the pool that replaced it.
        old_width: features per sample the old layer produced (flattened), if measured.
        new_width: features per sample the new pool produces (flattened), if measured.
        consumer: name of the ``nn.Linear`` that was rebuilt for the new width, if any.
        note: a short human note on the output width.
    """

    name: str
    old: str
    new: str
    old_width: int | None = None
    new_width: int | None = None
    consumer: str | None = None
    note: str = ""


@dataclass
class SwapReport:
    """What :func:`swap_pooling` did.

    Attributes:
        model: the resulting model (the input model itself when ``inplace=True``).
        replaced: one :class:`SwapRecord` per swapped layer name, in module order (a pool
            instance registered under two names has two records).
    """

    model: nn.Module
    replaced: list[SwapRecord] = field(default_factory=list)

    def __str__(self) -> str:
        rows = [("layer", "old", "new", "output width")]
        rows += [(r.name, _short(r.old), _short(r.new), r.note) for r in self.replaced]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
        ]
        lines.append(f"{len(self.replaced)} layer(s) replaced")
        return "\n".join(lines)


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
