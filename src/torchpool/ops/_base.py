"""Shared Module bases: they store arguments and own ``extra_repr``; the work is in the functions."""

from __future__ import annotations

from torch import nn

from .._shape import IntOrTuple

__all__ = ["WindowPool"]


class WindowPool(nn.Module):
    """Base for pools defined on sliding windows (``kernel_size``, ``stride``, ``padding``).

    Subclasses add their own options as attributes and list them in ``_repr_options``.
    """

    _repr_options: tuple[str, ...] = ()

    def __init__(
        self, kernel_size: IntOrTuple, stride: IntOrTuple | None = None, padding: IntOrTuple = 0
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding

    def extra_repr(self) -> str:
        parts = [f"kernel_size={self.kernel_size}", f"stride={self.stride}", f"padding={self.padding}"]
        parts += [f"{name}={getattr(self, name)!r}" for name in self._repr_options]
        return ", ".join(parts)
